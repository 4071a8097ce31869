"""COOL-CHIC v1 architecture (Ladune et al. 2023, arXiv 2212.05458), fitted with C3's recipe.

12 context latents (a causal 5x5 window), ARM and synthesis hidden layers (12, 12), no
residual convolutions: 680 MACs per pixel plus 48 for upsampling. The training recipe
is C3's (soft-round + Kumaraswamy noise, then straight-through), which is stronger than
the paper's uniform noise; the architecture is the paper's. Sweeps Kodak.
"""

from configs import c3_base


def get_config():
    config = c3_base.get_base_config()
    config.name = "coolchic"
    config.data.name = "kodak"
    config.data.num_images = 24
    config.model.synthesis_hidden = (12, 12)
    config.model.num_residual_layers = 0
    config.model.arm_hidden = (12, 12)
    config.model.context_rows_cols = 2
    return config


def get_hyper():
    return c3_base.image_lambda_sweep(24)
