"""RC files: a lossy file plus the range-coded pixels given its reconstruction x_l.

    codec = RcCodec(model, config)          # a trained run (pipelines.trained_run)
    encoded = codec.compress(image)         # tries config.lossy.qualities, keeps the smallest
    image = codec.decode(encoded.data)      # exactly the original, or a BitstreamError

Encoding, per lossy quality of `config.lossy.qualities` (RC's Q-classifier picks one
BPG Q per image; trying a few and keeping the smallest total file is what it
approximates): the lossy layer's file and its exact reconstruction x_l
(`coding.rc.lossy`); the fixed-point residual network (`FixedPointResidual`) on x_l;
the per-channel scale refinement tau (RC's tau, here an offset of each channel's
ln-scale on the coding tables' grid of 1/16, searched on the bits and sent in the
header); then the pixels, R for every pixel, then G, then B:
- a logistic-mixture network (`mixtures` > 0, RC's): each value with its own integer
  CDF (`coding.rc.mixture`), each channel in strings of `mixture.CHUNK` values;
- a Laplace network (`mixtures` = 0): each channel one string coded with the Laplace
  tables exactly as lossless C3 codes its pixels (`coding.c3.lossless`, with the means
  x_l + d).

The file is the project's container (docs/bitstream.md), codec id rc_hevc or rc_c3:

    header: height, width (u16 each) | quality (f32, for the record) | tau (3 x int8)
            | fingerprint of the residual network (4 bytes) | CRC-32 of the pixels (u32)
    sections: the lossy file | R strings | G strings | B strings
              (one string per channel with a Laplace network; ceil(H W / CHUNK) with a
              mixture network)

Decoding needs the run directory that encoded the file (the residual network's weights),
as every amortised codec does: a file from another network is refused by its
fingerprint. The decoded image is checked against the CRC-32 before it is returned.
"""

import dataclasses
import hashlib
import struct
import time

import numpy as np
import tensorflow as tf

from coding import container
from coding import fixed_point as fp
from coding.c3 import lossless as pixel_coder
from coding.c3.codec import pixels_crc
from coding.container import Reader
from coding.interface import Codec
from coding.rc import mixture as mixture_coder
from coding.rc.lossy import lossy_layer
from common.errors import BitstreamError, CodecError
from models.c3 import lossless as model_lossless
from models.rc import residual

FINGERPRINT_BYTES = 4
MAX_SIDE = 1 << 15
TAU_RANGE = 16  # tau offsets in [-16, 16] sixteenths of ln: scales x e^(+-1)
TAU_UNIT = 1.0 / 16.0  # the coding tables' ln-scale grid (`coding.laplace_tables`)
_ONE = 2.0**fp.ACTIVATION_BITS


class FixedPointResidual:
    """`models.rc.residual.ResidualModel` in fixed point: the same outputs everywhere.

    Every convolution's weights are quantised to their finest power-of-two step
    (`fixed_point.quantise_layer`) from the float32 checkpoint; activations are integers
    at scale 2^-12 (clamped to +-4096 after every layer and every residual sum); the
    convolutions accumulate integers in float64, exactly whatever the summation order
    (`coding.fixed_point`), so the decoder's distributions are the encoder's bit for bit
    in any process, thread count, with or without XLA.
    """

    def __init__(self, model: residual.ResidualModel, jit: bool = False):
        self.num_blocks = model.num_blocks
        self.layers = []  # (kernel, accumulator bias, weight step, stride, transposed)
        for layer in model.layers_in_order():
            kernel = layer.kernel.numpy().astype(np.float64)
            transposed = isinstance(layer, tf.keras.layers.Conv2DTranspose)
            if transposed:  # Keras keeps (k, k, out, in): fan-in axes go first
                kernel = np.transpose(kernel, (0, 1, 3, 2))
            weights, acc_bias, bits = fp.quantise_layer(kernel, layer.bias.numpy(), layer.name)
            if transposed:
                weights = np.transpose(weights, (0, 1, 3, 2))
            self.layers.append(
                (
                    tf.constant(weights),
                    tf.constant(acc_bias),
                    2.0**-bits,
                    layer.strides[0],
                    transposed,
                )
            )
        name = f"rc {model.channels} {model.num_blocks}"
        if model.mixtures:
            name += f" logistic mixture {model.mixtures}"
        digest = hashlib.sha256(name.encode())
        for weights, acc_bias, step, _, _ in self.layers:
            digest.update(weights.numpy().tobytes() + acc_bias.numpy().tobytes())
            digest.update(struct.pack(">d", step))
        self.fingerprint = digest.digest()[:FINGERPRINT_BYTES]
        self._fn = tf.function(self._call, jit_compile=jit, autograph=False)

    def _conv(self, x, index: int, relu: bool):
        weights, acc_bias, step, stride, transposed = self.layers[index]
        if transposed:
            shape = tf.shape(x)
            out = [shape[0], shape[1] * stride, shape[2] * stride, weights.shape[2]]
            accumulator = tf.nn.conv2d_transpose(x, weights, out, stride, "SAME")
        else:
            accumulator = tf.nn.conv2d(x, weights, stride, "SAME")
        y = fp.FixedPointLayer(weights, acc_bias, step).rescale(accumulator)
        return tf.nn.relu(y) if relu else y

    def _call(self, x_l):
        h, w = tf.shape(x_l)[1], tf.shape(x_l)[2]
        x = (residual.pad_to_even(x_l) - residual.INPUT_CENTRE) * 2.0 ** (
            fp.ACTIVATION_BITS - residual.INPUT_SCALE_BITS
        )
        limit = float(fp.ACTIVATION_LIMIT)
        head = self._conv(x, 0, True)
        y = self._conv(head, 1, True)
        for i in range(self.num_blocks):
            y = tf.clip_by_value(y + self._conv(self._conv(y, 2 + 2 * i, True), 3 + 2 * i, False),
                                 -limit, limit)  # fmt: skip
        n = 2 + 2 * self.num_blocks
        y = self._conv(y, n, True)
        y = self._conv(tf.concat([head, y], axis=-1), n + 1, True)
        return self._conv(y, n + 2, False)[:, :h, :w]

    def __call__(self, x_l: np.ndarray) -> tf.Tensor:
        """x_l uint8 (H, W, 3) -> outputs (H, W, outputs), integers at 2^-12 (float64)."""
        with tf.device(fp.EXACT_DEVICE):
            return self._fn(tf.constant(x_l[None], tf.float64))[0]


def coding_inputs(outputs: tf.Tensor, x_l: np.ndarray, tau) -> tuple[tf.Tensor, tf.Tensor]:
    """(outputs with the ln-scales moved by tau, means x_l + d in [0, 255]), at 2^-12."""
    means = tf.clip_by_value(
        tf.constant(x_l, tf.float64) * _ONE + outputs[..., 0:3], 0.0, 255.0 * _ONE
    )
    shift = tf.constant([t * TAU_UNIT * _ONE for t in tau], tf.float64)
    outputs = tf.concat([outputs[..., :3], outputs[..., 3:6] + shift, outputs[..., 6:]], -1)
    return outputs, means


def search_tau(outputs: tf.Tensor, x_l: np.ndarray, image: np.ndarray) -> tuple[int, int, int]:
    """Per channel, the ln-scale offset (in TAU_UNITs) with the fewest estimated bits.

    A channel's scale does not enter the other channels' distributions (the coupling
    reads prediction errors), so each channel's offset is found on its own."""
    x = tf.constant(image, tf.float32)
    base = residual.absolute_outputs(tf.cast(outputs / _ONE, tf.float32), tf.cast(x_l, tf.float32))
    costs = []
    for t in range(-TAU_RANGE, TAU_RANGE + 1):
        shift = tf.constant([0.0] * 3 + [t * TAU_UNIT] * 3 + [0.0] * 3)
        bits = model_lossless.pixel_bits(base + shift, x)
        costs.append(tf.reduce_sum(bits, axis=(0, 1)).numpy())
    best = np.argmin(np.stack(costs), axis=0) - TAU_RANGE
    return tuple(int(t) for t in best)


TAU_SEARCH_VALUES = 1 << 16  # values per channel that the mixture's tau search scores


def search_mixture_tau(outputs: np.ndarray, x_l: np.ndarray, residuals: np.ndarray,
                       mixtures: int) -> tuple[int, int, int]:  # fmt: skip
    """Per channel, the ln-scale offset (in TAU_UNITs) with the fewest coded bits on an
    evenly strided subset of at most TAU_SEARCH_VALUES pixels: from 0, one step at a
    time in the direction that saves bits, while it does (the bits are unimodal in tau
    in practice: a scale too small or too large costs more the further it is off)."""
    stride = max(1, len(x_l) // TAU_SEARCH_VALUES)
    sub = (outputs[::stride], x_l[::stride], residuals[::stride])
    best = []
    for channel in range(3):

        def cost(tau, c=channel):
            return mixture_coder.channel_bits(*sub, c, mixtures, tau)

        tau, bits = 0, cost(0)
        for step in (1, -1):
            while abs(tau + step) <= TAU_RANGE and (trial := cost(tau + step)) < bits:
                tau, bits = tau + step, trial
            if tau:
                break
        best.append(tau)
    return tuple(best)


def _flat_inputs(outputs: tf.Tensor, x_l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixed-point outputs (H, W, n) as int64 (H W, n) (exact: they are integers) and
    x_l as int64 (H W, 3), in raster order."""
    flat = outputs.numpy().reshape(-1, outputs.shape[-1]).astype(np.int64)
    return flat, x_l.reshape(-1, 3).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class RcEncoded:
    data: bytes
    quality: float  # of the lossy layer (QP or lambda)
    tau: tuple[int, int, int]
    bytes_lossy: int
    bytes_residual: int
    lossy_psnr: float
    tries: list  # [{quality, bytes}] of every lossy quality tried
    seconds: float


@dataclasses.dataclass(frozen=True)
class RcDecoded:
    image: np.ndarray
    seconds: float


class RcCodec(Codec):
    """RC: lossy layer + residual network; lossless (see the module docstring)."""

    lossless = True

    def __init__(self, model: residual.ResidualModel, config, description: str = "",
                 jit: bool = False, layer=None):  # fmt: skip
        """`layer`: the lossy layer (`coding.rc.lossy`), by default the model's without
        a C3 encoder (`pipelines.rc_training.make_lossy_layer` adds it)."""
        self.name = config.model.name
        self.description = description or f"{self.name}: lossy layer + residual coder"
        self.config = config
        self.model = model
        self.layer = layer or lossy_layer(self.name)
        self.network = FixedPointResidual(model, jit)
        self.mixtures = model.mixtures

    def header(self, h: int, w: int, quality: float, tau, crc: int) -> bytes:
        return (
            struct.pack(">HHf", h, w, quality)
            + struct.pack(">bbb", *tau)
            + self.network.fingerprint
            + struct.pack(">I", crc)
        )

    def _residual(self, image: np.ndarray, x_l: np.ndarray):
        outputs = self.network(x_l)
        if self.mixtures:
            flat = _flat_inputs(outputs, x_l)
            residuals = image.reshape(-1, 3).astype(np.int64) - flat[1]
            tau = search_mixture_tau(*flat, residuals, self.mixtures)
            strings = [
                s
                for c in range(3)
                for s in mixture_coder.encode_channel(*flat, residuals, c, self.mixtures, tau[c])
            ]
            return tau, strings
        tau = search_tau(outputs, x_l, image)
        coded, means = coding_inputs(outputs, x_l, tau)
        return tau, pixel_coder.encode(coded, image, means)

    def compress(self, image: np.ndarray, qualities=None) -> RcEncoded:
        from common.metrics import psnr

        start = time.perf_counter()
        h, w = image.shape[:2]
        if max(h, w) >= MAX_SIDE:
            raise CodecError(f"images up to {MAX_SIDE - 1} pixels a side, not {w}x{h}.")
        self.layer.check()
        best, tries = None, []
        for quality in qualities or self.config.lossy.qualities:
            lossy = self.layer.encode(image, quality)
            x_l = self.layer.decode(lossy, (h, w), "lossy layer")
            tau, strings = self._residual(image, x_l)
            header = self.header(h, w, quality, tau, pixels_crc(image))
            data = container.Container(self.name, header, (lossy, *strings)).to_bytes()
            tries.append({"quality": float(quality), "bytes": len(data)})
            if best is None or len(data) < len(best[0]):
                best = (data, quality, tau, len(lossy), sum(map(len, strings)), psnr(x_l, image))
        data, quality, tau, bytes_lossy, bytes_residual, lossy_psnr = best
        seconds = time.perf_counter() - start
        return RcEncoded(data, float(quality), tau, bytes_lossy, bytes_residual, lossy_psnr,
                         tries, seconds)  # fmt: skip

    def encode(self, image: np.ndarray) -> bytes:
        return self.compress(image).data

    def decompress(self, data: bytes, what: str = "bitstream") -> RcDecoded:
        start = time.perf_counter()
        parsed = container.parse(data, what)
        if parsed.codec != self.name:
            raise BitstreamError(f"{what}: a {parsed.codec} file, not {self.name} (this run).")
        reader = Reader(parsed.header, what)
        h, w = reader.u16("height"), reader.u16("width")
        reader.f32("quality")
        tau = struct.unpack(">bbb", reader.take(3, "tau"))
        fingerprint = reader.take(FINGERPRINT_BYTES, "fingerprint")
        crc = struct.unpack(">I", reader.take(4, "pixel CRC"))[0]
        reader.expect_end()
        if not h or not w:
            raise BitstreamError(f"{what}: an empty image ({w}x{h}).")
        if any(abs(t) > TAU_RANGE for t in tau):
            raise BitstreamError(f"{what}: tau {tau} outside +-{TAU_RANGE}.")
        if fingerprint != self.network.fingerprint:
            raise BitstreamError(
                f"{what}: encoded with another residual network; decode it with the run "
                "directory that encoded it."
            )
        per_channel = mixture_coder.num_chunks(h * w) if self.mixtures else 1
        if len(parsed.sections) != 1 + 3 * per_channel:
            raise BitstreamError(
                f"{what}: {len(parsed.sections)} sections, not {1 + 3 * per_channel}."
            )
        x_l = self.layer.decode(parsed.sections[0], (h, w), what)
        if self.mixtures:
            image = self._decode_mixture(parsed.sections[1:], x_l, tau, per_channel, what)
        else:
            coded, means = coding_inputs(self.network(x_l), x_l, tau)
            image = pixel_coder.decode(coded, list(parsed.sections[1:]), (h, w), what, means)
        if pixels_crc(image) != crc:
            raise BitstreamError(f"{what}: the decoded pixels fail the file's CRC-32.")
        return RcDecoded(image, time.perf_counter() - start)

    def _decode_mixture(self, sections, x_l: np.ndarray, tau, per_channel: int, what: str):
        """The image from the mixture strings: R of every pixel, then G, then B."""
        outputs, flat_x_l = _flat_inputs(self.network(x_l), x_l)
        residuals = np.zeros_like(flat_x_l)
        for c in range(3):
            strings = list(sections[c * per_channel : (c + 1) * per_channel])
            values = mixture_coder.decode_channel(
                strings, outputs, flat_x_l, residuals, c, self.mixtures, tau[c], what
            )
            residuals[:, c] = values - flat_x_l[:, c]
        return (flat_x_l + residuals).astype(np.uint8).reshape(x_l.shape)

    def decode(self, data: bytes, shape: tuple[int, int] | None = None) -> np.ndarray:
        return self.decompress(data).image
