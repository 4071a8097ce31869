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

Causal pixel context (`PixelContext`, optional): a small MLP sees the synthesis's 9
outputs at a pixel and the already coded pixels around it (Cool-chic 5's priority-ordered
causal neighbours, `models.c3.context.PRIORITY_OFFSETS`) and adds a correction to the 9
outputs. The latents carry what is smooth at large scale; the neighbours carry the fine
texture that latents cannot afford (the way CALIC or JPEG-LS predict from neighbours).
The decoder then decodes the pixels in wavefronts, as the latents (`coding.c3.lossless`).

The coder (`coding.c3.lossless`) computes the same quantities in fixed point from the
decoder's integer synthesis; this module is the float model that is fitted.
"""

import math

import numpy as np
import tensorflow as tf

from models.c3 import rate
from models.c3.context import PRIORITY_OFFSETS, gather_window
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
# The neighbours' prediction errors enter the pixel context divided by 16 (about +-1 for
# typical errors, so that weights of about 1 matter: at 1 / 256 the context learnt
# slowly): x / 16 is exact at the fixed-point activation scale 2^-12 (256 x), and
# 255 m / 16 is m's activation integer times 255, shifted by 4 bits.
PIXEL_INPUT_SCALE = 1.0 / 16.0
# The pixel context sees the pixel's means and ln-scales, not its coupling outputs:
# those are 64 times larger than what they mean (`COUPLING_SCALE`), and as inputs they
# made the fit unstable (pixel bits up 25 % within 200 steps at lr 1e-2, 256x256 crop).
CONTEXT_OUTPUTS = 6


def context_outputs(outputs: tf.Tensor, one: float = 1.0) -> tf.Tensor:
    """The pixel's own inputs to the pixel context: its means clipped to [0, 1] and its
    ln-scale outputs clipped to where they act (ln b = s + 1 in LN_SCALE_RANGE), for
    outputs at the scale `one` (1 here; 2^12 in the fixed-point decoder). Not the raw
    outputs: with every clip passing the gradient straight through, an output whose
    clip holds it (the scale of a value predicted exactly, pushed ever lower) drifts far
    beyond its range, and as an input it blew fits up after several hundred steps."""
    means = tf.clip_by_value(outputs[..., 0:3], 0.0, one)
    low, high = (one * (v - LN_SCALE_SHIFT) for v in LN_SCALE_RANGE)
    return tf.concat([means, tf.clip_by_value(outputs[..., 3:6], low, high)], axis=-1)


def prediction_errors(outputs: tf.Tensor, pixels: tf.Tensor) -> tf.Tensor:
    """(x - 255 m) / 16 per channel (H, W, 3): how far each 8-bit value x is from the
    synthesis's mean m (clipped to [0, 1], as `distribution` clips it)."""
    means = straight_through_clip(outputs[..., 0:3])
    return (pixels - 255.0 * means) * PIXEL_INPUT_SCALE


def pixel_offsets(neighbours: int) -> list[tuple[int, int]]:
    """(dy, dx) of the first `neighbours` causal pixels, in Cool-chic 5's priority order."""
    if not 1 <= neighbours <= len(PRIORITY_OFFSETS):
        raise ValueError(f"pixel neighbours must be in [1, {len(PRIORITY_OFFSETS)}].")
    return list(PRIORITY_OFFSETS[:neighbours])


def shifted_pixels(pixels: tf.Tensor, offsets: list[tuple[int, int]]) -> tf.Tensor:
    """(H, W, 3 len(offsets)): for each offset, the pixels at (y + dy, x + dx), zero
    outside the image; channels offset by offset (R, G, B of the first, then ...)."""
    h, w = pixels.shape[0], pixels.shape[1]
    return tf.reshape(gather_window(pixels, offsets), (h, w, 3 * len(offsets)))


class PixelContext(tf.keras.layers.Layer):
    """Corrects the synthesis's 9 outputs at each pixel from its causal neighbours.

    inputs = [the neighbours' prediction errors (`prediction_errors`, 3 per neighbour:
    where the latents' prediction missed around the pixel), the pixel's means and
    ln-scales (6 outputs)];
    correction = MLP(inputs) + L inputs (ReLU hidden layers; the MLP's output layer and
    the linear path L initialised to zero, so that a fit starts from the latents-only
    model); the distribution is then
    `distribution(outputs + correction, pixels)`. Only causal pixels are read, so the
    decoder can rebuild the inputs wavefront by wavefront (slope `wavefront_slope` of the
    offsets).
    """

    def __init__(self, neighbours: int, hidden: tuple[int, ...], **kwargs):
        super().__init__(**kwargs)
        self.offsets = pixel_offsets(neighbours)
        if any(int(w) < 1 for w in hidden):
            raise ValueError(f"pixel context widths must be positive, got {hidden}.")
        self.hidden = tuple(int(w) for w in hidden)
        self.layers_ = [tf.keras.layers.Dense(w, activation="relu") for w in self.hidden]
        self.layers_.append(tf.keras.layers.Dense(NUM_OUTPUTS, kernel_initializer="zeros"))
        # A linear path from the inputs to the correction (as Cool-chic 5's context model
        # has): a linear predictor from the neighbours' errors, learnt fast.
        self.linear = tf.keras.layers.Dense(NUM_OUTPUTS, kernel_initializer="zeros")

    @property
    def num_inputs(self) -> int:
        return 3 * len(self.offsets) + CONTEXT_OUTPUTS

    def build(self, input_shape=None):
        width = self.num_inputs
        for layer in self.layers_:
            layer.build((None, width))
            width = layer.units
        self.linear.build((None, self.num_inputs))
        super().build(input_shape)

    def inputs(self, outputs: tf.Tensor, pixels: tf.Tensor) -> tf.Tensor:
        """(H W, num_inputs): the MLP's inputs at every pixel."""
        h, w = outputs.shape[0], outputs.shape[1]
        neighbours = shifted_pixels(prediction_errors(outputs, pixels), self.offsets)
        own = context_outputs(outputs)
        return tf.reshape(tf.concat([neighbours, own], axis=-1), (h * w, self.num_inputs))

    def call(self, outputs: tf.Tensor, pixels: tf.Tensor) -> tf.Tensor:
        """The corrected outputs (H, W, 9), from the synthesis's and the 8-bit pixels."""
        x = self.inputs(outputs, pixels)
        h = x
        for layer in self.layers_:
            h = layer(h)
        return outputs + tf.reshape(h + self.linear(x), tf.shape(outputs))

    def macs_per_pixel(self) -> int:
        widths = (self.num_inputs, *self.hidden, NUM_OUTPUTS)
        mlp = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
        return mlp + self.num_inputs * NUM_OUTPUTS


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
