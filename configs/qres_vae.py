"""QRes-VAE, qres34m (Duan et al., WACV 2023): 12 latent layers at strides 64 to 4, one
model per lambda (`get_hyper()` sweeps the eight). 192/384 channels, ConvNeXt kernels
7, 7, 5, 3, 1 from stride 4 to 64 (a block before each patch-down); z channels 16, 14,
12, 10, 8 from stride 64 to 4. 34.5M parameters (published: ~34M, the name).
"""

from configs import hvae_base


def get_config():
    config = hvae_base.get_base_config("qres_vae")
    m = config.model
    m.variant = "qres"
    m.encoder_widths = (192, 384, 384, 384, 384)
    m.encoder_blocks = (6, 6, 6, 4, 2)
    m.encoder_kernels = (7, 7, 5, 3, 1)
    m.decoder_widths = (384, 384, 384, 384, 192)
    m.decoder_kernels = (1, 3, 5, 7, 7)
    m.latent_channels = ((16,), (14, 14), (12, 12, 12), (10, 10, 10), (8, 8, 8))
    m.decoder_blocks = (0, 0, 0, 0, 0)
    m.encoder_down_blocks = True
    return config


def get_hyper():
    return hvae_base.lambda_sweep()
