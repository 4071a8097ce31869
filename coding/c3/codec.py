"""C3 / COOL-CHIC bitstreams: a fitted model -> bytes -> the decoded image.

File = container (`coding.container`) with codec "c3":
- header: `C3Architecture.to_bytes()` (image size, architecture, q_step, network steps);
- section 0: the quantised networks (`coding.weights`);
- section 1: the latent symbols, range coded in wavefront order with the fixed-point
  context model (`coding.c3.wavefront`).

Lossless C3 (`models.c3.lossless`) is codec "c3_lossless": its header is the CRC-32 of
the original pixels (4 bytes, big-endian) then the C3 header (whose lossless flag is
set), and sections 2-4 hold the R, G and B pixels (`coding.c3.lossless`). The decoder
checks the CRC and fails with a BitstreamError rather than return another image.

The decoder builds everything from the file alone. Every byte counts in the measured
bpp; `EncodedC3` splits it into header (container, architecture and the per-tensor code
bytes), networks, latents and (lossless) pixels.
"""

import dataclasses
import functools
import struct
import time
import zlib

import numpy as np
import tensorflow as tf
from absl import logging

from coding import fixed_point as fp
from coding import weights
from coding.c3 import lossless
from coding.c3.networks import C3Architecture, IntegerC3, compiled_key, prepare_parameters
from coding.c3.wavefront import LatentCoder
from coding.container import Container, parse
from common.errors import BitstreamError


@dataclasses.dataclass
class EncodedC3:
    data: bytes
    bits_header: int  # container + architecture + per-tensor code bytes and lengths
    bits_networks: int  # entropy-coded network parameters
    bits_latents: int  # range-coded latents
    clipped_latents: int  # latents beyond the format's range (normally 0)
    seconds: float  # entropy coding (networks + latents), not fitting
    bits_pixels: int = 0  # lossless C3's range-coded pixels

    @property
    def num_bits(self) -> int:
        return 8 * len(self.data)


@dataclasses.dataclass
class DecodedC3:
    image: np.ndarray  # uint8 (H, W, 3)
    symbols: list[np.ndarray]
    arch: C3Architecture
    integers: list[np.ndarray]  # the quantised network parameters
    seconds_networks: float
    seconds_latents: float
    seconds_synthesis: float

    @property
    def seconds(self) -> float:
        return self.seconds_networks + self.seconds_latents + self.seconds_synthesis


# Compiled decoders are kept per architecture (image size included) and reused for every
# file; a few sizes at a time bound the memory of a long evaluation.
_CACHED_ARCHITECTURES = 8


def latent_coder(arch: C3Architecture) -> LatentCoder:
    """One coder (and compiled decoder) per architecture (steps aside)."""
    return _latent_coder(compiled_key(arch))


@functools.lru_cache(maxsize=_CACHED_ARCHITECTURES)
def _latent_coder(arch: C3Architecture) -> LatentCoder:
    return LatentCoder(arch)


def pixel_coder(arch: C3Architecture) -> lossless.PixelCoder:
    """One pixel coder (and compiled decoder) per lossless architecture with a pixel
    context (steps aside)."""
    return _pixel_coder(compiled_key(arch))


@functools.lru_cache(maxsize=_CACHED_ARCHITECTURES)
def _pixel_coder(arch: C3Architecture) -> lossless.PixelCoder:
    return lossless.PixelCoder(arch)


@functools.lru_cache(maxsize=2 * _CACHED_ARCHITECTURES)
def _synthesis_fn(arch: C3Architecture, jit: bool):
    def fn(parameters, symbols):
        model = IntegerC3(arch, parameters)
        return model.synthesis_outputs(symbols) if arch.lossless else model.synthesize(symbols)

    return tf.function(fn, jit_compile=jit, autograph=False)


def synthesize(
    arch: C3Architecture, parameters: list[np.ndarray], symbols: list[np.ndarray], jit: bool
) -> np.ndarray:
    """The decoded image of the given symbols (lossless C3: the synthesis's outputs, the
    pixels' distributions). Exact integers: `jit` changes nothing."""
    parameters = [tf.constant(p, tf.float64) for p in parameters]
    fn = _synthesis_fn(compiled_key(arch), jit)
    return fn(parameters, [tf.constant(s) for s in symbols]).numpy()


def pixels_crc(image: np.ndarray) -> int:
    """CRC-32 of an 8-bit image's bytes (H, W, 3, row-major), as a lossless file holds."""
    return zlib.crc32(np.ascontiguousarray(image, np.uint8).tobytes())


_CRC = struct.Struct(">I")
_SECTIONS = {"c3": 2, "c3_lossless": 5}


def _parse_c3(data: bytes, what: str) -> tuple[Container, C3Architecture, int | None]:
    """(container, architecture, the lossless file's pixel CRC or None)."""
    container = parse(data, what)
    if container.codec not in _SECTIONS:
        raise BitstreamError(f"{what}: codec {container.codec!r} is not C3.")
    expected = _SECTIONS[container.codec]
    if len(container.sections) != expected:
        raise BitstreamError(
            f"{what}: {container.codec} needs {expected} sections, found {len(container.sections)}."
        )
    header, crc = container.header, None
    if container.codec == "c3_lossless":
        if len(header) < _CRC.size:
            raise BitstreamError(f"{what}: lossless C3 header too short.")
        (crc,), header = _CRC.unpack(header[: _CRC.size]), header[_CRC.size :]
    arch = C3Architecture.from_bytes(header, what, container.version)
    if arch.lossless != (crc is not None):
        raise BitstreamError(f"{what}: the C3 header's lossless flag contradicts the codec.")
    return container, arch, crc


def architecture(data: bytes, what: str = "bitstream") -> C3Architecture:
    """The architecture a C3 file declares (BitstreamError if it is not a C3 file)."""
    return _parse_c3(data, what)[1]


def encode(
    model,
    weight_step: float,
    bias_step: float,
    upsampling_step=None,
    arm_steps=None,
    pixel_steps=None,
    step_shifts=None,
    image: np.ndarray | None = None,
) -> EncodedC3:
    """Writes the bitstream of a fitted `C3Model` whose networks are quantised.

    Args:
      model: the fitted model; its network parameters are integers * steps.
      weight_step, bias_step: the network quantisation steps (powers of two).
      upsampling_step: the learned upsampling's (the weight step when None).
      arm_steps: the context model's (weight, bias) steps (the pair above when None).
      pixel_steps: lossless C3's pixel context's (weight, bias) steps (likewise).
      step_shifts: the per-tensor steps (one int per network tensor: its step is the
        module's times 2^-shift), or None.
      image: the 8-bit image (H, W, 3) a lossless model codes (its pixels are in the
        file); None for a lossy model.
    """
    start = time.perf_counter()
    steps = (weight_step, bias_step, upsampling_step, arm_steps, pixel_steps, step_shifts)
    arch = C3Architecture.from_model_config(model.get_config(), *steps)
    integers = model.network_integers(*steps)
    return write(arch, integers, model.symbols(), start, image)


def write(
    arch: C3Architecture,
    integers: list[np.ndarray],
    symbols: list[np.ndarray],
    start: float | None = None,
    image: np.ndarray | None = None,
) -> EncodedC3:
    """Writes the bitstream of an architecture, its quantised network integers and its
    latent symbols (what `decode` returns: so a file can be rewritten in the latest
    format), and a lossless architecture's 8-bit `image`. `start` is when encoding
    began (perf_counter), for the reported seconds."""
    start = time.perf_counter() if start is None else start
    if arch.lossless:
        if image is None:
            raise ValueError("a lossless C3 file needs the image it codes.")
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.shape != (arch.height, arch.width, 3):
            raise ValueError(
                f"lossless C3 codes an 8-bit {arch.height}x{arch.width}x3 image, not "
                f"{image.dtype} {image.shape}."
            )
    elif image is not None:
        raise ValueError("a lossy C3 file does not take the image.")
    with tf.device(fp.EXACT_DEVICE):  # as the decoder: exact arithmetic on the CPU
        return _write(arch, integers, symbols, start, image)


def _write(arch, integers, symbols, start, image) -> EncodedC3:
    # The decoder sees the header's values (float32 fields): so must the encoder.
    arch = C3Architecture.from_bytes(arch.to_bytes())
    parameters = prepare_parameters(arch, integers)
    clipped = int(sum(np.sum(np.abs(s) > fp.SYMBOL_LIMIT) for s in symbols))
    if clipped:
        logging.warning("%d latents exceed +-%d and are clipped.", clipped, fp.SYMBOL_LIMIT)
        symbols = [np.clip(s, -fp.SYMBOL_LIMIT, fp.SYMBOL_LIMIT) for s in symbols]
    network_section = weights.encode_networks(integers)
    latent_section = latent_coder(arch).encode(symbols, parameters)
    if arch.lossless:
        outputs = synthesize(arch, parameters, symbols, jit=False)
        if arch.pixel_neighbours:
            model = IntegerC3(arch, parameters)
            pixel_sections = tuple(pixel_coder(arch).encode(model, outputs, image))
        else:
            pixel_sections = tuple(lossless.encode(outputs, image))
        header = _CRC.pack(pixels_crc(image)) + arch.to_bytes()
        sections = (network_section, latent_section, *pixel_sections)
        container = Container("c3_lossless", header, sections)
    else:
        pixel_sections = ()
        container = Container("c3", arch.to_bytes(), (network_section, latent_section))
    data = container.to_bytes()
    bits_pixels = 8 * sum(len(s) for s in pixel_sections)
    # The per-tensor code bytes are side information: counted with the header.
    bits_networks = 8 * (len(network_section) - len(integers))
    bits_latents = 8 * len(latent_section)
    return EncodedC3(
        data=data,
        bits_header=8 * len(data) - bits_networks - bits_latents - bits_pixels,
        bits_networks=bits_networks,
        bits_latents=bits_latents,
        clipped_latents=clipped,
        seconds=time.perf_counter() - start,
        bits_pixels=bits_pixels,
    )


def decode(data: bytes, jit: bool = True, what: str = "bitstream") -> DecodedC3:
    """Decodes a C3 bitstream to an 8-bit image; BitstreamError if it is not valid.

    `jit` runs the fixed-point networks through XLA: faster on a CPU, same integers.
    Decoding runs on the CPU whatever devices there are (`fixed_point.EXACT_DEVICE`).
    """
    with tf.device(fp.EXACT_DEVICE):
        return _decode(data, jit, what)


def _decode(data: bytes, jit: bool, what: str) -> DecodedC3:
    container, arch, crc = _parse_c3(data, what)
    start = time.perf_counter()
    shapes = arch.network_shapes()
    integers = weights.decode_networks(container.sections[0], shapes, container.version)
    try:
        parameters = prepare_parameters(arch, integers)
    except ValueError as e:
        raise BitstreamError(f"{what}: network section: {e}.") from None
    seconds_networks = time.perf_counter() - start
    start = time.perf_counter()
    try:
        grids, _ = latent_coder(arch).decode(
            container.sections[1], parameters, jit, container.version
        )
    except tf.errors.OpError as e:
        raise BitstreamError(f"{what}: latents cannot be decoded ({e.message}).") from None
    symbols = [g.numpy() for g in grids]
    seconds_latents = time.perf_counter() - start
    start = time.perf_counter()
    image = synthesize(arch, parameters, symbols, jit)
    if arch.lossless:
        size = (arch.height, arch.width)
        strings = list(container.sections[2:])
        if arch.pixel_neighbours:
            image = pixel_coder(arch).decode(image, strings, parameters, what)
        else:
            image = lossless.decode(image, strings, size, what)
        if pixels_crc(image) != crc:
            raise BitstreamError(
                f"{what}: the decoded pixels do not match the file's CRC (damaged file)."
            )
    return DecodedC3(
        image=image,
        symbols=symbols,
        arch=arch,
        integers=integers,
        seconds_networks=seconds_networks,
        seconds_latents=seconds_latents,
        seconds_synthesis=time.perf_counter() - start,
    )
