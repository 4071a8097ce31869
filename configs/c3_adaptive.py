"""C3-Adaptive on Kodak: a per-image choice among decoder architectures (Kim et al. 2023,
Sec. 5.1: 12 configurations, 578-2626 MACs per pixel, -1.7 % BD-rate against one).

C3's exact 12 configurations are not in its paper's text; this grid is ours, spanning a
similar MAC range at 768x512 (about 850 to 2626, the top one C3's): the synthesis's
hidden widths (12, 18, 24) x the context model's (8, 12, 18, 24). Each image fits all
candidates together for `arch_search.steps` stage-1 steps (one batched fit), the best by
RD loss (with its networks' estimated bits) continues; the results row says which was
chosen.
`--config.arch_search.max_macs=N` (or codec.py --max_macs N) keeps only the candidates
that decode within N MACs per pixel.

python train.py --config configs/c3_adaptive.py [--hid N] [--config.data.root=DIR]
"""

from configs import c3_base, c3_kodak

SYNTHESIS_WIDTHS = (12, 18, 24)
CONTEXT_WIDTHS = (8, 12, 18, 24)


def get_config():
    config = c3_kodak.get_config()
    config.name = "c3_adaptive"
    config.arch_search.candidates = tuple(
        {"synthesis_hidden": (s, s), "arm_hidden": (a, a)}
        for s in SYNTHESIS_WIDTHS
        for a in CONTEXT_WIDTHS
    )
    config.arch_search.steps = 500
    return config


def get_hyper():
    return c3_base.image_lambda_sweep(24)
