"""HEVC intra pictures through x265 and ffmpeg: the bytes of a raw HEVC stream and back.

Our stand-in for BPG (which is x265 intra inside), used by the classical bench
(`bench.codecs`' hevc420 / hevc444) and by RC's lossy layer (`coding.rc.lossy`). We
convert RGB to full-range BT.601 Y'CbCr ourselves, hand x265 raw planes (`--keyint 1
--preset veryslow --tune psnr --no-info`), decode with ffmpeg to raw planes and convert
back with the same matrix (elementwise IEEE arithmetic: the same pixels on every
machine). Letting ffmpeg's scaler convert (limited range) or keeping x265's
psycho-visual tuning and settings SEI would cost quality and bits that are not HEVC's.
"""

import os
import tempfile

import numpy as np
from PIL import Image

from common.errors import CodecError
from common.tools import require_tool, run_tool

_KR, _KB = 0.299, 0.114


def rgb_to_ycbcr(image: np.ndarray) -> np.ndarray:
    """Full-range BT.601 (JPEG / BPG) Y'CbCr, float, planes last."""
    rgb = image.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = _KR * r + (1 - _KR - _KB) * g + _KB * b
    cb = (b - y) / (2 * (1 - _KB)) + 128
    cr = (r - y) / (2 * (1 - _KR)) + 128
    return np.stack([y, cb, cr], axis=-1)


def ycbcr_to_rgb(ycbcr: np.ndarray) -> np.ndarray:
    y, cb, cr = ycbcr[..., 0], ycbcr[..., 1] - 128, ycbcr[..., 2] - 128
    r = y + 2 * (1 - _KR) * cr
    b = y + 2 * (1 - _KB) * cb
    g = (y - _KR * r - _KB * b) / (1 - _KR - _KB)
    rgb = np.stack([r, g, b], axis=-1)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


# x265 (64x64 coding tree units with the veryslow preset) cannot code a picture smaller
# than one unit: smaller images are padded by edge replication and cropped after decoding.
_MIN_HEVC_SIDE = 64


def _hevc_size(h: int, w: int) -> tuple[int, int]:
    """The coded picture size: even (4:2:0 chroma) and at least one coding tree unit."""
    return max(_MIN_HEVC_SIDE, h + h % 2), max(_MIN_HEVC_SIDE, w + w % 2)


def _planes(image: np.ndarray, chroma_420: bool) -> tuple[bytes, tuple[int, int]]:
    """Raw 8-bit planes (Y, Cb, Cr) of the padded image (`_hevc_size`), and its size."""
    h, w = image.shape[:2]
    ph, pw = _hevc_size(h, w)
    padded = np.pad(image, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    ycbcr = rgb_to_ycbcr(padded)
    planes = [ycbcr[..., 0]]
    for c in (1, 2):
        plane = ycbcr[..., c]
        if chroma_420:  # 2x2 mean: chroma sited between the luma samples
            plane = plane.reshape(plane.shape[0] // 2, 2, plane.shape[1] // 2, 2).mean((1, 3))
        planes.append(plane)
    data = b"".join(np.clip(np.round(p), 0, 255).astype(np.uint8).tobytes() for p in planes)
    return data, padded.shape[:2]


def _upsample_chroma(plane: np.ndarray) -> np.ndarray:
    """2x bilinear upsampling with half-pixel centres (the inverse siting of `_planes`)."""
    h, w = plane.shape
    image = Image.fromarray(plane.astype(np.float32), mode="F")
    return np.asarray(image.resize((2 * w, 2 * h), Image.Resampling.BILINEAR), np.float64)


def encode(image: np.ndarray, qp: float, chroma_420: bool) -> bytes:
    raw, (h, w) = _planes(image, chroma_420)
    with tempfile.TemporaryDirectory() as tmp:
        source, target = os.path.join(tmp, "in.yuv"), os.path.join(tmp, "out.hevc")
        with open(source, "wb") as f:
            f.write(raw)
        args = [
            require_tool("x265"),
            "--input", source,
            "--input-res", f"{w}x{h}",
            "--input-csp", "i420" if chroma_420 else "i444",
            "--input-depth", "8",
            "--fps", "1",
            "--frames", "1",
            "--keyint", "1",
            "--preset", "veryslow",
            "--tune", "psnr",
            "--qp", str(int(qp)),
            "--no-info",
            "--log-level", "error",
            "--output", target,
        ]  # fmt: skip
        run_tool(args, "x265")
        with open(target, "rb") as f:
            return f.read()


def decode(data: bytes, size, chroma_420: bool) -> np.ndarray:
    if size is None:
        raise CodecError("an HEVC stream of ours decodes with the original's (height, width).")
    h, w = size
    ph, pw = _hevc_size(h, w)
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "in.hevc")
        with open(source, "wb") as f:
            f.write(data)
        pix_fmt = "yuv420p" if chroma_420 else "yuv444p"
        raw = run_tool(
            [require_tool("ffmpeg"), "-loglevel", "error", "-i", source, "-f", "rawvideo",
             "-pix_fmt", pix_fmt, "-"],
            "ffmpeg",
        )  # fmt: skip
    luma = np.frombuffer(raw[: ph * pw], np.uint8).reshape(ph, pw).astype(np.float64)
    ch, cw = (ph // 2, pw // 2) if chroma_420 else (ph, pw)
    chroma = []
    for i in range(2):
        start = ph * pw + i * ch * cw
        plane = np.frombuffer(raw[start : start + ch * cw], np.uint8).reshape(ch, cw)
        chroma.append(_upsample_chroma(plane) if chroma_420 else plane.astype(np.float64))
    if len(raw) != ph * pw + 2 * ch * cw:
        raise CodecError(f"ffmpeg returned {len(raw)} bytes for a {pw}x{ph} {pix_fmt} frame.")
    return ycbcr_to_rgb(np.stack([luma, *chroma], axis=-1))[:h, :w]


def check() -> None:
    require_tool("x265")
    require_tool("ffmpeg")
