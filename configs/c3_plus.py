"""C3 with the Cool-chic 5 tools that measurably help (issue 13; docs/c3.md).

Today: C3's Kodak recipe with SOAP on the network weights (`fit.optimizer = "soap"`,
Vyas et al. 2024), Cool-chic 5's learned upsampling (`model.upsampling = "learned"`:
a cascade of separable symmetric filters, bicubic at init, in place of bilinear
resizing; 1788 MACs per pixel at 768x512 against C3's 1770) and its per-module network
steps (`fit.per_module_steps`: the context model gets its own (weight, bias) step pair,
greedy after the shared pair), and RDOQ of the network integers (`fit.rdoq`: each integer
moved by up to +-15 steps while the RD loss, counted with the file's bits, falls). Each
lowered the mean RD loss on the kodim23 crop at equal iterations (docs/c3.md says which
benchmarks/results JSON measured it). Files carry the learned-upsampling and per-module
flags in their header: a decoder from before them refuses them with a clear error. Tools
that did not pay for themselves at this budget (the warm-up, keep-best, Gaussian noise)
stay off.

python train.py --config configs/c3_plus.py [--hid N] [--config.data.root=DIR]
"""

from configs import c3_base, c3_kodak


def get_config():
    config = c3_kodak.get_config()
    config.name = "c3_plus"
    config.fit.optimizer = "soap"
    config.model.upsampling = "learned"
    config.fit.per_module_steps = True
    config.fit.rdoq = True
    return config


def get_hyper():
    return c3_base.image_lambda_sweep(24)
