"""RC (Mentzer et al., CVPR 2020): lossless = a lossy file + the residual coded by a CNN.

Not a runnable config on its own: `rc_hevc.py` (HEVC intra layer, RC's BPG) and
`rc_c3.py` (a lossy C3 file) start from `get_base_config(name)`. The residual network is
`models.rc.residual.ResidualModel`; training pairs (x, x_l) are made once per training
image and lossy quality and cached in the run directory (RUN/lossy/), then random crops
of the pairs are batched. The loop, TensorBoard, checkpoints and resume are the
amortised models' (`pipelines.rc_training`).

RC's recipe, where ours differs: RC trains on ~300k Open Images photos pre-compressed at
a random BPG Q in {12, 13, 14}, 128x128 crops, batch 16, RMSprop 5e-5, ~1M steps, with a
C = 128, 16-block network; ours is Adam 1e-4 with the amortised models' warm-up and
decay, and a C = 32, 4-block network (defaults below) that a CPU trains in an hour. The
distribution is RC's: K = 5 logistics per value, R -> G -> B coupling, support [0, 255].
"""

from ml_collections import config_dict

from configs import amortised_base


def get_base_config(name: str) -> config_dict.ConfigDict:
    config = amortised_base.get_base_config(name)
    config.data.name = "folder"
    config.data.patch_size = 128
    config.data.shuffle_buffer = 64
    config.val.name = "none"  # or folder, with val.root: whole images, estimated bpsp
    config.val.max_images = 4

    config.model = config_dict.ConfigDict()
    config.model.name = name
    config.model.channels = 32
    config.model.blocks = 4
    # RC's distribution: a mixture of K = 5 discretised logistics per value, truncated to
    # [0, 255] (`models.rc.mixture`); 0: one discretised Laplace per value, not
    # truncated (the first RC models here; runs without this field are those).
    config.model.mixtures = 5
    config.model.lmbda = 0.0  # no rate-distortion trade-off: the loss is the bits

    # The lossy layer: its qualities tried at encode time (the smallest total file is
    # kept, what RC's Q-classifier approximates) and those of the training pairs.
    config.lossy = config_dict.ConfigDict()
    config.lossy.qualities = ()
    config.lossy.train_qualities = ()
    # Training images are cut to their central part of at most this side before the lossy
    # layer (0: whole images): x265 veryslow spends about a minute on a 2048x2048 photo.
    config.lossy.train_max_side = 512
    config.lossy.c3 = config_dict.ConfigDict()  # rc_c3: the C3 config of the layer

    config.train.num_steps = 100_000
    config.train.batch_size = 16
    config.train.learning_rate = 1e-4
    config.train.decay_after = 0.8
    config.train.lambda_warmup_factor = 1.0
    config.train.log_every = 100
    config.train.checkpoint_every = 2000
    config.train.validate_every = 5000
    return config
