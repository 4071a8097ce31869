"""Classical image codecs, driven through their real libraries and command-line tools.

Each codec maps (8-bit RGB image, one quality setting) to the bytes of a real file and
decodes those bytes back to 8-bit RGB: `CODECS[name].at(quality)` is a `coding.interface.Codec`
like every other codec of the project. A curve point uses ONE setting for every image,
as VTM, BPG and the published learned curves do. Settings follow what measures each codec
at its best on PSNR (../reference notes, docs/bench.md):

- JPEG, WebP, JPEG 2000: Pillow's built-in libjpeg-turbo, libwebp and OpenJPEG. JPEG 2000
  uses the irreversible 9/7 wavelet with the colour transform (without them Pillow codes
  losslessly-oriented 5/3 and loses ~6 dB).
- AVIF: `avifenc -s 6 --min Q --max Q -y 444` / `avifdec` (libavif's tools: 12 % fewer
  bits than Pillow's AVIF plugin at the same speed, measured on 4 Kodak images).
- JPEG XL: `cjxl -d D -e 7`, decoded by `djxl`.
- HEVC intra (our stand-in for BPG, which is x265 intra inside): `coding.hevc` (x265 on
  our own full-range BT.601 Y'CbCr planes, decoded by ffmpeg), shared with RC's lossy
  layer. The command-line tools are found and run by `common.tools`.
"""

import dataclasses
import functools
import io
import os
import tempfile
from collections.abc import Callable

import numpy as np
from PIL import Image, features

from coding import hevc
from coding.interface import Codec
from common.errors import CodecError
from common.tools import require_tool, run_tool, tool_version


@dataclasses.dataclass(frozen=True)
class ClassicalCodec:
    """A classical codec and its curve: one quality setting per point."""

    name: str
    qualities: tuple  # one curve point per setting, from low to high rate
    encode: Callable[[np.ndarray, float], bytes]
    decode: Callable[[bytes, tuple[int, int]], np.ndarray]
    version: Callable[[], str]
    check: Callable[[], None] = lambda: None  # raises CodecError if it cannot run here

    def at(self, quality) -> "ClassicalAtQuality":
        """The codec at one quality setting, behind the project's codec interface."""
        return ClassicalAtQuality(self, quality)


class ClassicalAtQuality(Codec):
    """`ClassicalCodec` at one setting: encode(image) -> bytes, decode(bytes) -> image."""

    def __init__(self, codec: ClassicalCodec, quality):
        self.codec, self.quality = codec, quality
        self.name = codec.name
        self.description = f"{codec.name} at quality setting {quality}"

    def encode(self, image: np.ndarray) -> bytes:
        return self.codec.encode(image, self.quality)

    def decode(self, data: bytes, shape: tuple[int, int] | None = None) -> np.ndarray:
        # Raw streams (HEVC) lack the size of a padded picture: `shape` crops it.
        return self.codec.decode(data, shape)


# Pillow codecs.


def _pillow_encode(image: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _pillow_decode(data: bytes, size) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _pillow_check(feature: str, name: str) -> Callable[[], None]:
    def check():
        if not features.check(feature):
            raise CodecError(f"this Pillow has no {name} support; pip install pillow>=11.")

    return check


def _pillow_version(feature: str) -> Callable[[], str]:
    import PIL

    return lambda: f"Pillow {PIL.__version__}, {feature} {features.version(feature)}"


def _jpeg2000_encode(image: np.ndarray, bpp: float) -> bytes:
    # One compression ratio for every image: 24 bits per pixel / target bpp.
    return _pillow_encode(
        image,
        "JPEG2000",
        irreversible=True,
        mct=1,
        quality_mode="rates",
        quality_layers=[24.0 / bpp],
    )


# Codecs with their own command-line encoder and decoder, PNG in and out.


def _tool_encode(image: np.ndarray, suffix: str, command) -> bytes:
    """Writes a PNG, runs `command(source, target)` and returns the coded file's bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        source, target = os.path.join(tmp, "in.png"), os.path.join(tmp, "out" + suffix)
        Image.fromarray(image).save(source)
        args = command(source, target)
        run_tool(args, os.path.basename(args[0]))
        with open(target, "rb") as f:
            return f.read()


def _tool_decode(data: bytes, suffix: str, tool: str) -> np.ndarray:
    """Runs `tool coded.suffix out.png` and returns the decoded 8-bit RGB."""
    with tempfile.TemporaryDirectory() as tmp:
        source, target = os.path.join(tmp, "in" + suffix), os.path.join(tmp, "out.png")
        with open(source, "wb") as f:
            f.write(data)
        run_tool([require_tool(tool), source, target], tool)
        with Image.open(target) as decoded:
            return np.asarray(decoded.convert("RGB"))


# AVIF through libavif's own tools: on 4 Kodak images this measured 12 % fewer bits
# (BD-rate, PCHIP) than Pillow's AVIF plugin at the same speed and 4:4:4.


def _avif_encode(image: np.ndarray, quantizer: float) -> bytes:
    q = str(int(quantizer))

    def command(source, target):
        args = [require_tool("avifenc"), "-s", "6", "--min", q, "--max", q, "-y", "444"]
        return [*args, source, target]

    return _tool_encode(image, ".avif", command)


def _jxl_encode(image: np.ndarray, distance: float) -> bytes:
    def command(source, target):
        return [require_tool("cjxl"), source, target, "-d", str(distance), "-e", "7"]

    return _tool_encode(image, ".jxl", command)


def _hevc_codec(name: str, chroma_420: bool) -> ClassicalCodec:
    def version():
        x265 = tool_version([require_tool("x265"), "--version"], "HEVC encoder version")
        ffmpeg = tool_version([require_tool("ffmpeg"), "-version"], "ffmpeg version")
        return f"x265 {x265.split('version ')[-1]}; {ffmpeg.split(' Copyright')[0]}"

    return ClassicalCodec(
        name=name,
        qualities=(47, 44, 41, 38, 35, 32, 29, 26, 23, 20, 17),
        encode=functools.partial(hevc.encode, chroma_420=chroma_420),
        decode=functools.partial(hevc.decode, chroma_420=chroma_420),
        version=version,
        check=hevc.check,
    )


CODECS = {
    "jpeg": ClassicalCodec(
        "jpeg",
        (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95),
        lambda image, q: _pillow_encode(image, "JPEG", quality=int(q), optimize=True),
        _pillow_decode,
        _pillow_version("jpg"),
        _pillow_check("jpg", "JPEG"),
    ),
    "webp": ClassicalCodec(
        "webp",
        (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
        lambda image, q: _pillow_encode(image, "WEBP", quality=int(q), method=6),
        _pillow_decode,
        _pillow_version("webp"),
        _pillow_check("webp", "WebP"),
    ),
    "jpeg2000": ClassicalCodec(
        "jpeg2000",
        (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0),
        _jpeg2000_encode,
        _pillow_decode,
        _pillow_version("jpg_2000"),
        _pillow_check("jpg_2000", "JPEG 2000"),
    ),
    "avif": ClassicalCodec(
        "avif",
        (56, 50, 44, 38, 32, 26, 20, 14, 8, 4),  # quantizer (lower = better)
        _avif_encode,
        lambda data, size: _tool_decode(data, ".avif", "avifdec"),
        lambda: "avifenc " + tool_version([require_tool("avifenc"), "--version"], "Version"),
        lambda: (require_tool("avifenc"), require_tool("avifdec")) and None,
    ),
    "jxl": ClassicalCodec(
        "jxl",
        (12.0, 8.0, 6.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.75, 0.5, 0.3),
        _jxl_encode,
        lambda data, size: _tool_decode(data, ".jxl", "djxl"),
        lambda: tool_version([require_tool("cjxl"), "--version"], "cjxl"),
        lambda: (require_tool("cjxl"), require_tool("djxl")) and None,
    ),
    "hevc444": _hevc_codec("hevc444", chroma_420=False),
    "hevc420": _hevc_codec("hevc420", chroma_420=True),
}


# Lossless codecs (run by `bench.classical`): one setting each, the codec's strongest
# lossless mode that its real tool offers. FLIF has no Debian or PyPI package here and is left out.


def _lossless(name, encode, decode, version, check) -> ClassicalCodec:
    return ClassicalCodec(
        name, ("lossless",), lambda image, _: encode(image), decode, version, check
    )


def _jxl_lossless_encode(image: np.ndarray, effort: int) -> bytes:
    def command(source, target):
        return [require_tool("cjxl"), source, target, "-d", "0", "-e", str(effort)]

    return _tool_encode(image, ".jxl", command)


def _jxl_lossless(effort: int) -> ClassicalCodec:
    return _lossless(
        f"jxl_lossless_e{effort}",
        functools.partial(_jxl_lossless_encode, effort=effort),
        lambda data, size: _tool_decode(data, ".jxl", "djxl"),
        lambda: tool_version([require_tool("cjxl"), "--version"], "cjxl"),
        lambda: (require_tool("cjxl"), require_tool("djxl")) and None,
    )


LOSSLESS_CODECS = {
    # zlib level 9 with Pillow's filter search.
    "png": _lossless(
        "png",
        lambda image: _pillow_encode(image, "PNG", optimize=True),
        _pillow_decode,
        _pillow_version("zlib"),
        lambda: None,
    ),
    "webp_lossless": _lossless(
        "webp_lossless",
        lambda image: _pillow_encode(image, "WEBP", lossless=True, quality=100, method=6),
        _pillow_decode,
        _pillow_version("webp"),
        _pillow_check("webp", "WebP"),
    ),
    # The reversible 5/3 wavelet with the reversible colour transform (mct=1; without it
    # Kodak measured 4.485 bpsp instead of 3.192).
    "jpeg2000_lossless": _lossless(
        "jpeg2000_lossless",
        lambda image: _pillow_encode(image, "JPEG2000", irreversible=False, mct=1),
        _pillow_decode,
        _pillow_version("jpg_2000"),
        _pillow_check("jpg_2000", "JPEG 2000"),
    ),
    "jxl_lossless_e7": _jxl_lossless(7),
    "jxl_lossless_e9": _jxl_lossless(9),
}
