"""A small QARV for tests and CPU runs: qarv_base's layout (AdaLN blocks, lambda sampled
in [16, 2048], no latents at stride 4, blocks after the last latents) with 32-64
channels. Trains on a folder of photos: --config.data.root=DIR.
"""

from configs import hvae_base, qres_vae_small


def get_config():
    config = hvae_base.get_base_config("qarv")
    config.model.variant = "qarv"
    config.model.lmbda = 128.0
    config.model.latent_channels = ((8,), (8, 8), (8, 8), (4, 4), ())
    config = qres_vae_small.small_architecture(config)
    config.model.decoder_blocks = (0, 0, 0, 1, 2)
    return config
