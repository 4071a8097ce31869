"""Mean-scale hyperprior (Minnen et al., NeurIPS 2018, without the context model):
GDN transforms N=192, M=320; hyper-analysis 320 channels, hyper-synthesis 320/480/640.
Decoder: 108,871 MACs per pixel (217,742 FLOPs; published 217,940).
"""

from configs import amortised_base


def get_config():
    return amortised_base.get_base_config("mbt2018_mean")


def get_hyper():
    return amortised_base.lambda_sweep()
