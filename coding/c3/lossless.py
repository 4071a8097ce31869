"""Lossless C3's pixels: range coded with the distributions of the fixed-point synthesis.

The float model is `models.c3.lossless`; this is its exact counterpart. From the decoder's
integer synthesis outputs (9 per pixel, at the activation scale 2^-12) and the channels
already decoded, `channel_rows` gives each pixel's coding table row and round(mu) for one
channel, in integer arithmetic (float64 holding integers below 2^53, as everywhere in
`coding.fixed_point`), so the encoder and every decoder pick the same rows:

    m_c  = clip(out_c, 0, 1)                          (means on [0, 1])
    e_c  = x_c - 255 m_c                              (prediction errors, 8-bit units)
    mu_R = 255 m_R
    mu_G = 255 m_G + round(a_GR e_R)                  (a = clip(out_6..8 / 64, +-4))
    mu_B = 255 m_B + round(a_BR e_R + a_BG e_G)
    mu   = clip(mu, 0, 255);  ln b = clip(out_3+c + 1, -4, 8)

and each value is coded as x - round(mu) with the Laplace tables
(`coding.laplace_tables`), one string per channel: R for every pixel, then G, then B.
"""

import numpy as np
import tensorflow as tf

from coding import fixed_point as fp
from coding import laplace_tables as lt
from coding.c3.networks import laplace_rows
from common.errors import BitstreamError
from models.c3 import lossless as model_lossless

_ONE = 2.0**fp.ACTIVATION_BITS


def channel_rows(outputs: tf.Tensor, pixels: tf.Tensor, channel: int):
    """(rows, rounded mu), int32 (n,) each, of one channel's values.

    Args:
      outputs: float64 (n, 9), the integer synthesis's outputs (`synthesis_outputs`).
      pixels: float64 (n, 3), the 8-bit values; only the channels before `channel` are
        read (the decoder has those).
      channel: 0, 1 or 2 (R, G, B).
    """
    act = fp.ACTIVATION_BITS
    means = 255.0 * tf.clip_by_value(outputs[:, 0:3], 0.0, _ONE)
    # a = out / 2^6 (`COUPLING_SCALE`): out clipped to +-4 x 2^6 O, products exact.
    bits = model_lossless.COUPLING_BITS
    limit = model_lossless.COUPLING_LIMIT * _ONE * 2.0**bits
    a = tf.clip_by_value(outputs[:, 6:9], -limit, limit)
    mu = means[:, channel]
    if channel >= 1:
        e_r = pixels[:, 0] * _ONE - means[:, 0]
        coupled = a[:, 0] * e_r if channel == 1 else a[:, 1] * e_r
        if channel == 2:
            coupled = coupled + a[:, 2] * (pixels[:, 1] * _ONE - means[:, 1])
        mu = mu + fp.round_shift(coupled, act + bits)
    mu = tf.clip_by_value(mu, 0.0, 255.0 * _ONE)
    low, high = model_lossless.LN_SCALE_RANGE
    ln_b = outputs[:, 3 + channel] + model_lossless.LN_SCALE_SHIFT * _ONE
    ln_b = tf.clip_by_value(ln_b, low * _ONE, high * _ONE)
    return laplace_rows(mu, 2.0 * ln_b, 255.0)


def encode(outputs: tf.Tensor, image: np.ndarray) -> list[bytes]:
    """The three channel strings of an 8-bit image (H, W, 3) given the synthesis's
    outputs (H, W, 9)."""
    tables = lt.tables()
    n = image.shape[0] * image.shape[1]
    outputs = tf.reshape(tf.cast(outputs, tf.float64), (n, -1))
    pixels = image.reshape(n, 3).astype(np.int64)
    pixel_tensor = tf.constant(pixels, tf.float64)
    strings = []
    for c in range(3):
        rows, rounded = (t.numpy() for t in channel_rows(outputs, pixel_tensor, c))
        values = pixels[:, c] - rounded + tables.half_widths[rows]
        strings.append(tables.coder.encode(rows, values))
    return strings


def decode(outputs: tf.Tensor, strings: list[bytes], shape: tuple[int, int], what: str):
    """The 8-bit image (H, W, 3) of the channel strings; BitstreamError if a value falls
    outside 0..255 (a damaged file)."""
    tables = lt.tables()
    h, w = shape
    n = h * w
    outputs = tf.reshape(tf.cast(outputs, tf.float64), (n, -1))
    pixels = np.zeros((n, 3), np.int64)
    for c, name in enumerate("RGB"):
        rows, rounded = (
            t.numpy() for t in channel_rows(outputs, tf.constant(pixels, tf.float64), c)
        )
        values = tables.coder.decode(strings[c], rows, f"{what} ({name} pixels)")
        channel = values - tables.half_widths[rows] + rounded
        if channel.min(initial=0) < 0 or channel.max(initial=0) > 255:
            raise BitstreamError(f"{what}: {name} pixels outside 0..255 (damaged file).")
        pixels[:, c] = channel
    return pixels.reshape(h, w, 3).astype(np.uint8)
