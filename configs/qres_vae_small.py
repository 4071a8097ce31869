"""A small QRes-VAE for tests and CPU runs: qres34m's layout (5 stages, strides 4 to 64,
latent layers at every stride) with 32-64 channels, one ConvNeXt block per encoder stage
and 8 latent layers. Trains on a folder of photos: --config.data.root=DIR.
"""

from configs import hvae_base


def small_architecture(config):
    m = config.model
    m.encoder_widths = (32, 64, 64, 64, 64)
    m.encoder_blocks = (1, 1, 1, 1, 1)
    m.encoder_kernels = (7, 7, 5, 3, 1)
    m.decoder_widths = (64, 64, 64, 64, 32)
    m.decoder_kernels = (1, 3, 5, 7, 7)
    m.decoder_blocks = (0, 0, 0, 0, 0)
    config.data.name = "folder"
    config.data.patch_size = 128
    config.data.shuffle_buffer = 64
    config.val.name = "none"  # or folder, with val.root
    config.val.max_images = 4
    config.train.num_steps = 20_000
    config.train.batch_size = 8
    config.train.ema_momentum = 0.999
    config.train.log_every = 50
    config.train.checkpoint_every = 500
    config.train.validate_every = 1000
    return config


def get_config():
    config = hvae_base.get_base_config("qres_vae")
    config.model.variant = "qres"
    config.model.lmbda = 512.0
    config.model.latent_channels = ((8,), (8,), (8, 8), (8, 8), (4, 4))
    return small_architecture(config)


def get_hyper():
    return hvae_base.lambda_sweep((64, 256, 1024))
