"""Lossless C3: the synthesis predicts each pixel's distribution instead of its value.

What no public per-image codec does (C3 and Cool-chic are lossy only; RC, Mentzer et al.
CVPR 2020, codes a lossy image plus a residual with an amortised CNN): the fitted
synthesis outputs, per pixel, the parameters of a discretised Laplace for each of its
8-bit values, and the pixels are range coded with them. Fitting minimises the total bits
(latents + pixels; the networks' bits are added after fitting, as in lossy C3).

The synthesis has 9 outputs per pixel:
- m_R, m_G, m_B: predicted means on [0, 1], clipped there (straight-through gradient);
- s_R, s_G, s_B: ln b = s + LN_SCALE_SHIFT, b the Laplace scale in 8-bit values, clipped
  to LN_SCALE_RANGE (the coder's table range);
- a_GR, a_BR, a_BG: channel coupling (as RC and PixelCNN++ couple R -> G -> B): the
  outputs times COUPLING_SCALE, clipped to +-COUPLING_LIMIT. With e_c = x_c - 255 m_c
  the prediction error of channel c:

    mu_R = 255 m_R,  mu_G = 255 m_G + a_GR e_R,  mu_B = 255 m_B + a_BR e_R + a_BG e_G,

  each then clipped to [0, 255]. The decoder codes R for every pixel, then G, then B.

Every clip passes the gradient straight through (`straight_through_clip`): a parameter
pushed beyond its range in one step is pulled back by the next, where a hard clip would
leave it there for good (a scale stuck at the smallest one costs thousands of bits).

The coder (`coding.c3.lossless`) computes the same quantities in fixed point from the
decoder's integer synthesis; this module is the float model that is fitted.
"""

import math

import numpy as np
import tensorflow as tf

from models.c3 import rate
from models.c3.synthesis import straight_through_clip

NUM_OUTPUTS = 9
LN_SCALE_SHIFT = 1.0  # ln b = s + 1: a zero output predicts b = e (a few 8-bit values)
LN_SCALE_RANGE = (-4.0, 8.0)  # `coding.laplace_tables`' ln b range
COUPLING_LIMIT = 4.0
# a = o / 64: the coupling starts near 0 and moves slowly. At a = o (same learning rate
# as the means) fits on a 128x128 kodim23 crop collapsed to ~20 bpp of pixels after a
# few hundred steps (at lr 1e-2 and 3e-3); at o / 16 too; at o / 64 they did not, and
# ended 1.1 % below the same fit without coupling (1000 steps).
COUPLING_BITS = 6
COUPLING_SCALE = 2.0**-COUPLING_BITS
MAX_BITS_PER_VALUE = 16.0  # of the flat reference (`flat_bits_per_pixel`)
UNCAPPED_BITS = 1e9


def distribution(outputs: tf.Tensor, pixels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(mu, b): each value's Laplace mean and scale in 8-bit units, (H, W, 3) each.

    Args:
      outputs: the synthesis's (H, W, 9).
      pixels: the image's 8-bit values (H, W, 3) as floats (the coupling reads the
        channels coded before, as the decoder does).
    """
    means = 255.0 * straight_through_clip(outputs[..., 0:3])
    errors = pixels - means
    a = straight_through_clip(COUPLING_SCALE * outputs[..., 6:9], -COUPLING_LIMIT, COUPLING_LIMIT)
    mu_r = means[..., 0]
    mu_g = means[..., 1] + a[..., 0] * errors[..., 0]
    mu_b = means[..., 2] + a[..., 1] * errors[..., 0] + a[..., 2] * errors[..., 1]
    mu = straight_through_clip(tf.stack([mu_r, mu_g, mu_b], axis=-1), 0.0, 255.0)
    ln_b = straight_through_clip(outputs[..., 3:6] + LN_SCALE_SHIFT, *LN_SCALE_RANGE)
    return mu, tf.exp(ln_b)


def pixel_bits(outputs: tf.Tensor, pixels: tf.Tensor) -> tf.Tensor:
    """Bits of every 8-bit value (H, W, 3) under its discretised Laplace (`distribution`).

    Not capped, unlike C3's latent bits: a cap has no gradient, and a pixel far in the
    tail of a narrow prediction would stop pulling its mean and scale back (fits at lr
    1e-2 collapsed that way, to near-uniform pixels). The coder's escape code pays for
    such values (`coding.laplace_tables`)."""
    mu, b = distribution(outputs, pixels)
    return rate.laplace_bits(pixels, mu, b, UNCAPPED_BITS)


def flat_bits_per_pixel(image) -> float:
    """Bits per pixel of the image under one Laplace per channel at its mean colour, with
    the best scale (the mean absolute deviation): the bits of a model that has learnt
    nothing, for the fitter's learning check."""
    pixels = np.round(np.asarray(image, np.float64) * 255.0).reshape(-1, 3)
    total = 0.0
    for c in range(3):
        x = pixels[:, c]
        mu = float(np.round(x.mean()))  # an integer mean: x - mu is never within 1/2 of 0
        b = max(float(np.mean(np.abs(x - mu))), math.exp(LN_SCALE_RANGE[0]))
        d = np.abs(x - mu)
        # P(0) = 1 - e^(-1/(2b)); P(d) = e^(-(d - 1/2)/b) (1 - e^(-1/b)) / 2 for d >= 1.
        p = np.where(
            d == 0,
            -np.expm1(-0.5 / b),
            np.exp(-(d - 0.5) / b) * -np.expm1(-1.0 / b) / 2,
        )
        total += float(np.mean(-np.log2(np.maximum(p, 2.0**-MAX_BITS_PER_VALUE))))
    return total
