"""JPEG-like synthesis (Yang & Mandt, ICCV 2023): one transposed convolution k18 s16 to
RGB, ELIC analysis (192, 192, 192, 320), mean-scale hyperprior.
Decoder: 16,390 MACs per pixel incl. hyper-synthesis (32,780 FLOPs; published 32,788).
"""

from configs import amortised_base


def get_config():
    config = amortised_base.get_base_config("jpegl")
    config.model.analysis = "elic"
    config.model.synthesis = "jpeg_like"
    config.model.synthesis_channels = ()
    return config


def get_hyper():
    return amortised_base.lambda_sweep()
