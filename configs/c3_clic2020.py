"""C3 on CLIC2020 (professional validation, 41 images): ~2925 MACs per pixel.

Wider networks (24, 24) and a context model that also sees a 3x3 window of the next
finer grid (Kim et al. 2023, App. A). Point data.root at a folder with the 41 PNGs, or
use tensorflow-datasets: --config.data.name=tfds --config.data.tfds_name=clic
--config.data.tfds_split=validation (that split mixes mobile and professional images).
"""

from configs import c3_base


def get_config():
    config = c3_base.get_base_config()
    config.name = "c3_clic2020"
    config.data.name = "folder"
    config.data.num_images = 41
    config.model.synthesis_hidden = (24, 24)
    config.model.arm_hidden = (24, 24)
    config.model.use_prev_grid = True
    return config


def get_hyper():
    return c3_base.image_lambda_sweep(41)
