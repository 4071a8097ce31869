"""Two-layer synthesis with IGDN and a linear residual branch (Yang & Mandt, ICCV 2023):
convT(k5, s2)(IGDN(convT(k13, s8)(y)) + convT(k13, s8)(y)), 12 then 3 channels; ELIC
analysis; mean-scale hyperprior.
Decoder: 20,506 MACs per pixel incl. hyper-synthesis (41,012 FLOPs; published 41,035).
"""

from configs import amortised_base


def get_config():
    config = amortised_base.get_base_config("two_layer_syn")
    config.model.analysis = "elic"
    config.model.synthesis = "two_layer"
    config.model.synthesis_channels = (12,)
    config.model.two_layer_residual = True
    return config


def get_hyper():
    return amortised_base.lambda_sweep()
