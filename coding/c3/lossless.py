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

With the causal pixel context (`models.c3.lossless.PixelContext`), the 9 outputs of a
pixel are first corrected by the fixed-point pixel MLP from its causal neighbours
(`IntegerC3.corrected_outputs`), so a pixel can only be decoded after them: `PixelCoder`
decodes in wavefronts (t = s y + x, s the neighbours' slope, as the latents in
`coding.c3.wavefront`): per wavefront, one batched MLP evaluation, then its R values,
then G, then B, each from its own string (one range decoder per channel, every
wavefront a group of `coding.range_coding`). The encoder evaluates the same MLP on all
pixels at once (exact arithmetic: the batching changes nothing) and codes each channel's
values in the decoder's order.
"""

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from coding import fixed_point as fp
from coding import laplace_tables as lt
from coding.c3.networks import C3Architecture, IntegerC3, laplace_rows
from coding.c3.wavefront import Canvas, Schedule
from coding.range_coding import Coder
from common.errors import BitstreamError
from models.c3 import lossless as model_lossless
from models.c3.context import wavefront_slope

_ONE = 2.0**fp.ACTIVATION_BITS


def channel_rows(outputs: tf.Tensor, pixels: tf.Tensor, channel: int, means=None):
    """(rows, rounded mu), int32 (n,) each, of one channel's values.

    Args:
      outputs: float64 (n, 9), the integer synthesis's outputs (`synthesis_outputs`).
      pixels: float64 (n, 3), the 8-bit values; only the channels before `channel` are
        read (the decoder has those).
      channel: 0, 1 or 2 (R, G, B).
      means: float64 (n, 3), the means 255 m in 8-bit units at the activation scale,
        in [0, 255 x 2^12], if not those of outputs[:, 0:3] (RC's, relative to x_l:
        `coding.rc.codec`).
    """
    act = fp.ACTIVATION_BITS
    if means is None:
        means = synthesis_means(outputs)
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


def synthesis_means(outputs: tf.Tensor) -> tf.Tensor:
    """255 m of lossless C3's outputs (n, 9): 8-bit units at the activation scale."""
    return 255.0 * tf.clip_by_value(outputs[:, 0:3], 0.0, _ONE)


def prediction_errors(outputs: tf.Tensor, pixels: tf.Tensor) -> tf.Tensor:
    """`models.c3.lossless.prediction_errors` in fixed point: (x - 255 m) / 16 at the
    activation scale, 256 x - round(255 m / 16) for m the clipped mean's integer; (n, 3)
    from outputs (n, 9) and 8-bit values (n, 3), float64."""
    means = tf.clip_by_value(outputs[:, 0:3], 0.0, _ONE)
    shift = int(round(-np.log2(model_lossless.PIXEL_INPUT_SCALE)))
    return pixels * (_ONE * model_lossless.PIXEL_INPUT_SCALE) - fp.round_shift(255.0 * means, shift)


def encode(outputs: tf.Tensor, image: np.ndarray, means=None) -> list[bytes]:
    """The three channel strings of an 8-bit image (H, W, 3) given the synthesis's
    outputs (H, W, 9) (and the means, (H, W, 3), if not theirs: `channel_rows`)."""
    tables = lt.tables()
    n = image.shape[0] * image.shape[1]
    outputs = tf.reshape(tf.cast(outputs, tf.float64), (n, -1))
    pixels = image.reshape(n, 3).astype(np.int64)
    pixel_tensor = tf.constant(pixels, tf.float64)
    strings = []
    means = None if means is None else tf.reshape(tf.cast(means, tf.float64), (n, 3))
    for c in range(3):
        rows, rounded = (t.numpy() for t in channel_rows(outputs, pixel_tensor, c, means))
        values = pixels[:, c] - rounded + tables.half_widths[rows]
        strings.append(tables.coder.encode(rows, values))
    return strings


def decode(outputs: tf.Tensor, strings: list[bytes], shape: tuple[int, int], what: str, means=None):
    """The 8-bit image (H, W, 3) of the channel strings (`encode`'s arguments);
    BitstreamError if a value falls outside 0..255 (a damaged file)."""
    tables = lt.tables()
    h, w = shape
    n = h * w
    outputs = tf.reshape(tf.cast(outputs, tf.float64), (n, -1))
    pixels = np.zeros((n, 3), np.int64)
    means = None if means is None else tf.reshape(tf.cast(means, tf.float64), (n, 3))
    for c, name in enumerate("RGB"):
        rows, rounded = (
            t.numpy() for t in channel_rows(outputs, tf.constant(pixels, tf.float64), c, means)
        )
        values = tables.coder.decode(strings[c], rows, f"{what} ({name} pixels)")
        channel = values - tables.half_widths[rows] + rounded
        if channel.min(initial=0) < 0 or channel.max(initial=0) > 255:
            raise BitstreamError(f"{what}: {name} pixels outside 0..255 (damaged file).")
        pixels[:, c] = channel
    return pixels.reshape(h, w, 3).astype(np.uint8)


_ENCODE_BATCH = 2**16  # pixels per pixel-context evaluation in the encoder (memory)


class PixelCoder:
    """Codes lossless C3's pixels with the causal pixel context, in wavefronts.

    The pixels' prediction errors (`prediction_errors`) live on a
    `coding.c3.wavefront.Canvas` (one grid, zero borders), so the neighbours of any pixel
    are its canvas position plus constant offsets, and outside the image they read 0, as
    `models.c3.lossless.shifted_pixels` pads.
    """

    def __init__(self, arch: C3Architecture):
        if not arch.lossless or not arch.pixel_neighbours:
            raise ValueError("PixelCoder is for lossless C3 with a pixel context.")
        self.arch = arch
        offsets = model_lossless.pixel_offsets(arch.pixel_neighbours)
        pad = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
        h, w = arch.height, arch.width
        self.canvas = Canvas([(h, w)], pad)
        self.schedule = Schedule(self.canvas, wavefront_slope(offsets), [[0]])
        self.offsets = self.canvas.offsets(offsets)
        self.positions = self.canvas.positions(0)  # raster order
        self.index_of = np.zeros(self.canvas.size, np.int32)
        self.index_of[self.positions] = np.arange(h * w, dtype=np.int32)
        self.tables = lt.tables()
        self._decode_fn = None  # built on first use

    @property
    def num_wavefronts(self) -> int:
        return self.schedule.num_wavefronts

    def _neighbours(self, canvas, positions):
        """(n, 3 N) float64: the prediction errors at each position's causal offsets."""
        values = tf.gather(canvas, positions[:, None] + self.offsets)  # (n, N, 3)
        return tf.reshape(values, (-1, 3 * len(self.offsets)))

    def encode(self, model: IntegerC3, outputs: tf.Tensor, image: np.ndarray) -> list[bytes]:
        """The three channel strings of an 8-bit image (H, W, 3), each value in the
        decoder's order (wavefront by wavefront), given the synthesis's outputs."""
        n = image.shape[0] * image.shape[1]
        outputs = tf.reshape(tf.cast(outputs, tf.float64), (n, -1))
        pixels = image.reshape(n, 3).astype(np.int64)
        pixel_tensor = tf.constant(pixels, tf.float64)
        errors = prediction_errors(outputs, pixel_tensor).numpy()
        canvas = np.zeros((self.canvas.size, 3), np.float64)
        canvas[self.positions] = errors
        canvas = tf.constant(canvas)
        corrected = []
        for start in range(0, n, _ENCODE_BATCH):
            positions = self.positions[start : start + _ENCODE_BATCH]
            neighbours = self._neighbours(canvas, positions)
            corrected.append(
                model.corrected_outputs(outputs[start : start + len(positions)], neighbours)
            )
        corrected = tf.concat(corrected, axis=0)
        order = self.index_of[self.schedule.order]  # pixel indices in decoding order
        strings = []
        for c in range(3):
            rows, rounded = (t.numpy() for t in channel_rows(corrected, pixel_tensor, c))
            values = pixels[:, c] - rounded + self.tables.half_widths[rows]
            strings.append(
                self.tables.coder.encode(rows[order], values[order], self.schedule.wave_of_order)
            )
        return strings

    def _build_decoder(self):
        canvas = tf.Variable(tf.zeros([self.canvas.size, 3], tf.float64), trainable=False)
        h, w = self.arch.height, self.arch.width
        image = tf.Variable(tf.zeros([h * w, 3], tf.float64), trainable=False)
        tables = self.tables.coder.tables()
        half_widths = tf.constant(self.tables.half_widths)
        waves = tf.constant(self.schedule.phase_waves[0])
        counts = tf.constant(self.schedule.phase_counts[0])
        index_of = tf.constant(self.index_of)
        width = int(self.schedule.phase_waves[0].shape[1])
        shapes = self.arch.parameter_shapes()
        signature = [
            tf.TensorSpec([3], tf.string),
            tf.TensorSpec([None, model_lossless.NUM_OUTPUTS], tf.float64),
            [tf.TensorSpec(None, tf.float64)] * len(shapes),
        ]

        @tf.function(input_signature=signature, autograph=False)
        def decode(strings, outputs, parameters):
            model = IntegerC3(self.arch, parameters)
            canvas.assign(tf.zeros_like(canvas))
            image.assign(tf.zeros_like(image))
            handles = tuple(tfc.create_range_decoder(strings[c], tables.lookup) for c in range(3))

            def body(step, handles, bad):
                padded = waves[step]
                n = counts[step]
                indices = tf.gather(index_of, padded)  # the pixels' raster indices
                out = tf.gather(outputs, indices)
                corrected = model.corrected_outputs(out, self._neighbours(canvas, padded))
                columns = [tf.zeros([width], tf.float64)] * 3
                handles = list(handles)
                for c in range(3):
                    rows, rounded = channel_rows(corrected, tf.stack(columns, axis=1), c)
                    rows = rows[:n]
                    handles[c], coded = Coder.decode_group(handles[c], tables, rows, n)
                    value = coded - tf.gather(half_widths, rows) + rounded[:n]
                    # Values beyond 0..255 come from a damaged file only: noted, clipped
                    # (bounded work), and the decoder refuses the image afterwards.
                    bad = tf.logical_or(bad, tf.reduce_any((value < 0) | (value > 255)))
                    value = tf.cast(tf.clip_by_value(value, 0, 255), tf.float64)
                    columns[c] = tf.pad(value, [[0, width - n]])
                values = tf.stack(columns, 1)[:n]
                errors = prediction_errors(out[:n], values)
                update = canvas.scatter_nd_update(padded[:n, None], errors)
                update_image = image.scatter_nd_update(indices[:n, None], values)
                with tf.control_dependencies([update, update_image]):  # the next reads it
                    handles = tuple(tf.identity(h) for h in handles)
                    return tf.identity(step + 1), handles, tf.identity(bad)

            _, handles, bad = tf.while_loop(
                lambda step, *_: step < len(self.schedule.phase_counts[0]),
                body,
                (tf.constant(0), handles, tf.constant(False)),
            )
            ok = [tfc.entropy_decode_finalize(h) for h in handles]
            with tf.control_dependencies(ok):
                return tf.identity(image), bad

        return decode

    def decode(self, outputs, strings: list[bytes], parameters, what: str) -> np.ndarray:
        """The 8-bit image (H, W, 3); BitstreamError if the strings are damaged."""
        if self._decode_fn is None:
            self._decode_fn = self._build_decoder()
        h, w = self.arch.height, self.arch.width
        outputs = tf.reshape(tf.cast(outputs, tf.float64), (h * w, -1))
        parameters = [tf.constant(p, tf.float64) for p in parameters]
        try:
            image, bad = self._decode_fn(tf.constant(strings), outputs, parameters)
        except tf.errors.OpError as e:
            raise BitstreamError(f"{what}: pixels cannot be decoded ({e.message}).") from None
        if bool(bad.numpy()):
            raise BitstreamError(f"{what}: pixels outside 0..255 (damaged file).")
        return image.numpy().reshape(h, w, 3).astype(np.uint8)
