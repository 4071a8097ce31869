"""C3 on Kodak (Kim et al. 2023, Table/Fig. "Kodak"): 1770 MACs per pixel.

python train.py --config configs/c3_kodak.py [--hid N] [--config.data.root=DIR]
Without data.root the 24 images are downloaded once and verified against their SHA-256.
"""

from configs import c3_base


def get_config():
    config = c3_base.get_base_config()
    config.name = "c3_kodak"
    config.data.name = "kodak"
    config.data.num_images = 24
    return config


def get_hyper():
    return c3_base.image_lambda_sweep(24)
