"""Factorized prior with GDN (Balle et al., ICLR 2017), 5x5 convolutions, N=192, M=320.

python train.py --config configs/bls2017.py [--hid N] [--config.data.name=folder
                --config.data.root=DIR]
"""

from configs import amortised_base


def get_config():
    config = amortised_base.get_base_config("bls2017")
    config.model.hyper_channels = 0
    return config


def get_hyper():
    return amortised_base.lambda_sweep()
