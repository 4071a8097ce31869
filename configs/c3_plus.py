"""C3 with the Cool-chic 5 encoder tools that measurably help (issue 13; docs/c3.md).

Today: C3's Kodak architecture and recipe with SOAP on the network weights
(`fit.optimizer = "soap"`, Vyas et al. 2024), which lowered the RD loss of every seed
on the kodim23 crop at equal iterations (mean -2.3 %, benchmarks/results/
rd_small_soap.json). The decoder and file format are C3's, so files decode as any C3
file. Tools that did not pay for themselves at this budget (the warm-up) stay off; the
decoder-side tools (learned upsampling, inter-grid context) are not here yet.

python train.py --config configs/c3_plus.py [--hid N] [--config.data.root=DIR]
"""

from configs import c3_base, c3_kodak


def get_config():
    config = c3_kodak.get_config()
    config.name = "c3_plus"
    config.fit.optimizer = "soap"
    return config


def get_hyper():
    return c3_base.image_lambda_sweep(24)
