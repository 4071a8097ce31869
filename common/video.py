"""Videos in and out: .y4m, folders of numbered PNG frames, and anything ffmpeg reads.

Frames are uint8 RGB arrays (T, H, W, 3), what the C3 video codec fits. Colour:
- .y4m (YUV4MPEG2, 8-bit; C420jpeg/420paldv/420mpeg2/420, C422, C444 and Cmono) is read
  as BT.601 limited range (ffmpeg's convention for untagged Y'CbCr), chroma upsampled by
  repetition; written as C444 by default (C420jpeg on request), the same matrix;
- PNG frames are the exact pixels (use them when a round trip must be lossless);
- other containers (.mp4, .mkv, .avi, ...) are decoded by ffmpeg to RGB frames.

PSNR conventions (`psnr_rgb`, `psnr_yuv`): the mean over frames of each frame's PSNR
(the video literature's average), on RGB, and on BT.601 Y'CbCr 4:2:0 weighted 6:1:1
((6 Y + Cb + Cr) / 8, as JVET and the learned-video papers report), both videos
converted with the same matrix.
"""

import dataclasses
import glob
import os
import re
import subprocess
import tempfile

import numpy as np

from common.errors import ImageError
from common.files import atomic_write_bytes
from common.images import image_files, read_image, write_png
from common.metrics import psnr_from_mse
from common.tools import require_tool

Y4M_MAGIC = b"YUV4MPEG2 "
VIDEO_SUFFIXES = (".y4m", ".mp4", ".mkv", ".avi", ".mov", ".webm", ".yuv4mpeg")
_CHROMA = {  # y4m colour space -> (vertical, horizontal) chroma subsampling; 0: no chroma
    "420jpeg": (2, 2),
    "420paldv": (2, 2),
    "420mpeg2": (2, 2),
    "420": (2, 2),
    "422": (1, 2),
    "444": (1, 1),
    "mono": (0, 0),
}
# BT.601 limited range: Y' in [16, 235], Cb, Cr in [16, 240].
_KR, _KB = 0.299, 0.114


@dataclasses.dataclass
class Video:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    fps: tuple[int, int] = (25, 1)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.frames.shape[:3])


def is_video_path(path: str) -> bool:
    """A directory of frames or a file with a video suffix."""
    return os.path.isdir(path) or os.path.splitext(path)[1].lower() in VIDEO_SUFFIXES


def rgb_to_yuv(frames: np.ndarray) -> np.ndarray:
    """RGB (..., 3) uint8 -> BT.601 limited-range Y'CbCr, float (..., 3)."""
    rgb = frames.astype(np.float64) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = _KR * r + (1 - _KR - _KB) * g + _KB * b
    cb = (b - y) / (2 * (1 - _KB))
    cr = (r - y) / (2 * (1 - _KR))
    return np.stack([16 + 219 * y, 128 + 224 * cb, 128 + 224 * cr], axis=-1)


def rgb_to_yuv8(frames: np.ndarray) -> np.ndarray:
    """RGB uint8 -> 8-bit BT.601 limited-range Y'CbCr 4:4:4 planes (rounded)."""
    return np.clip(np.round(rgb_to_yuv(frames)), 0, 255).astype(np.uint8)


def yuv_to_rgb(yuv: np.ndarray) -> np.ndarray:
    """BT.601 limited-range Y'CbCr (..., 3) -> RGB uint8 (rounded, clipped)."""
    yuv = yuv.astype(np.float64)
    y = (yuv[..., 0] - 16) / 219
    cb, cr = (yuv[..., 1] - 128) / 224, (yuv[..., 2] - 128) / 224
    r = y + 2 * (1 - _KR) * cr
    b = y + 2 * (1 - _KB) * cb
    g = (y - _KR * r - _KB * b) / (1 - _KR - _KB)
    rgb = np.stack([r, g, b], axis=-1) * 255.0
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def yuv420_planes(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB frames -> 8-bit Y (T, H, W), Cb and Cr (T, H/2, W/2) (2x2 means; odd sizes
    are edge-padded)."""
    yuv = rgb_to_yuv(frames)
    t, h, w, _ = yuv.shape
    padded = np.pad(yuv[..., 1:], [(0, 0), (0, h % 2), (0, w % 2), (0, 0)], mode="edge")
    chroma = padded.reshape(t, (h + 1) // 2, 2, (w + 1) // 2, 2, 2).mean(axis=(2, 4))
    planes = [yuv[..., 0], chroma[..., 0], chroma[..., 1]]
    return tuple(np.clip(np.round(p), 0, 255).astype(np.uint8) for p in planes)


def _frame_psnrs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    axes = tuple(range(1, a.ndim))
    mse = np.mean(np.square(a.astype(np.float64) - b.astype(np.float64)), axis=axes)
    return np.asarray([psnr_from_mse(float(m)) for m in mse])


def psnr_rgb(original: np.ndarray, decoded: np.ndarray) -> float:
    """Mean over frames of the RGB PSNR of each frame (uint8 videos)."""
    if original.shape != decoded.shape:
        raise ImageError(f"video shapes differ: {original.shape} vs {decoded.shape}.")
    return float(np.mean(_frame_psnrs(original, decoded)))


def psnr_yuv(original: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
    """Per-plane and 6:1:1 PSNR on BT.601 Y'CbCr 4:2:0, means over frames."""
    if original.shape != decoded.shape:
        raise ImageError(f"video shapes differ: {original.shape} vs {decoded.shape}.")
    pairs = zip(yuv420_planes(original), yuv420_planes(decoded), strict=True)
    planes = [_frame_psnrs(a, b) for a, b in pairs]
    y, u, v = (float(np.mean(p)) for p in planes)
    yuv = float(np.mean((6 * planes[0] + planes[1] + planes[2]) / 8))
    return {"psnr_y": y, "psnr_u": u, "psnr_v": v, "psnr_yuv": yuv}


# Reading.


def _parse_y4m_header(line: bytes, path: str) -> dict:
    fields = {}
    for token in line[len(Y4M_MAGIC) :].split():
        fields[chr(token[0])] = token[1:].decode("ascii", errors="replace")
    try:
        width, height = int(fields["W"]), int(fields["H"])
    except (KeyError, ValueError):
        raise ImageError(f"{path}: y4m header without a valid W and H.") from None
    colour = fields.get("C", "420jpeg")
    if colour not in _CHROMA:
        raise ImageError(
            f"{path}: y4m colour space C{colour} is not supported (8-bit 420, 422, 444 or "
            "mono only); convert it, e.g. ffmpeg -i IN -pix_fmt yuv444p OUT.y4m."
        )
    fps = (25, 1)
    if "F" in fields and re.fullmatch(r"\d+:\d+", fields["F"]):
        num, den = (int(x) for x in fields["F"].split(":"))
        fps = (num, den) if num > 0 and den > 0 else fps
    if fields.get("I", "p") not in ("p", "?"):
        raise ImageError(f"{path}: interlaced y4m (I{fields['I']}) is not supported.")
    if width < 1 or height < 1 or width * height > 2**28:
        raise ImageError(f"{path}: invalid y4m frame size {width}x{height}.")
    return {"width": width, "height": height, "colour": colour, "fps": fps}


def read_y4m(path: str, max_frames: int = 0) -> Video:
    """Reads an 8-bit .y4m as RGB frames (see the module docstring for the colour)."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(Y4M_MAGIC):
        raise ImageError(f"{path}: not a y4m file (no YUV4MPEG2 header).")
    end = data.find(b"\n")
    if end < 0:
        raise ImageError(f"{path}: y4m header is not terminated (truncated file).")
    info = _parse_y4m_header(data[:end], path)
    h, w = info["height"], info["width"]
    sy, sx = _CHROMA[info["colour"]]
    ch, cw = (-(-h // sy), -(-w // sx)) if sy else (0, 0)
    frame_bytes = h * w + 2 * ch * cw
    frames, position = [], end + 1
    while position < len(data) and (not max_frames or len(frames) < max_frames):
        line_end = data.find(b"\n", position)
        if line_end < 0 or not data.startswith(b"FRAME", position):
            raise ImageError(f"{path}: frame {len(frames)} has no FRAME marker (damaged file).")
        start = line_end + 1
        if start + frame_bytes > len(data):
            raise ImageError(
                f"{path}: frame {len(frames)} is truncated ({len(data) - start} of "
                f"{frame_bytes} bytes)."
            )
        raw = np.frombuffer(data, np.uint8, frame_bytes, start)
        y = raw[: h * w].reshape(h, w).astype(np.float64)
        if sy:
            cb = raw[h * w : h * w + ch * cw].reshape(ch, cw)
            cr = raw[h * w + ch * cw :].reshape(ch, cw)
            cb = np.repeat(np.repeat(cb, sy, 0), sx, 1)[:h, :w]
            cr = np.repeat(np.repeat(cr, sy, 0), sx, 1)[:h, :w]
        else:
            cb = cr = np.full((h, w), 128.0)
        frames.append(yuv_to_rgb(np.stack([y, cb, cr], axis=-1)))
        position = start + frame_bytes
    if not frames:
        raise ImageError(f"{path}: the y4m file has no frames.")
    return Video(np.stack(frames), info["fps"])


def _frame_number(path: str) -> int | None:
    numbers = re.findall(r"\d+", os.path.basename(path))
    return int(numbers[-1]) if numbers else None


def read_frames(folder: str, max_frames: int = 0) -> Video:
    """Reads a folder of numbered PNG frames (frame_0001.png, ...): the numbers must be
    consecutive (a missing frame is an error) and the frames of one size."""
    paths = [p for p in image_files(folder) if p.lower().endswith(".png")]
    if not paths:
        raise ImageError(f"{folder}: no PNG frames in this folder.")
    numbered = [(_frame_number(p), p) for p in paths]
    if any(n is None for n, _ in numbered):
        bad = next(p for n, p in numbered if n is None)
        raise ImageError(f"{folder}: frame {os.path.basename(bad)} has no frame number.")
    numbered.sort()
    numbers = [n for n, _ in numbered]
    for a, b in zip(numbers, numbers[1:], strict=False):
        if b != a + 1:
            raise ImageError(
                f"{folder}: frame {a + 1} is missing (frames {a} and {b} follow each other)."
            )
    paths = [p for _, p in numbered][: max_frames or None]
    frames = [read_image(p) for p in paths]
    for p, frame in zip(paths, frames, strict=True):
        if frame.shape != frames[0].shape:
            first = frames[0].shape[:2]
            raise ImageError(f"{p}: frame size {frame.shape[:2]} differs from {first}.")
    return Video(np.stack(frames))


def read_with_ffmpeg(path: str, max_frames: int = 0) -> Video:
    """Any video ffmpeg decodes, as RGB frames (through PNG frames in a temporary folder)."""
    ffmpeg = require_tool("ffmpeg")
    with tempfile.TemporaryDirectory() as folder:
        args = [ffmpeg, "-v", "error", "-i", path]
        args += ["-frames:v", str(max_frames)] if max_frames else []
        args += ["-pix_fmt", "rgb24", os.path.join(folder, "frame_%06d.png")]
        out = subprocess.run(args, capture_output=True, timeout=3600)
        if out.returncode != 0 or not glob.glob(os.path.join(folder, "*.png")):
            message = out.stderr.decode(errors="replace").strip().splitlines()
            reason = message[-1] if message else "no frames"
            raise ImageError(f"{path}: ffmpeg cannot decode this video ({reason}).")
        return read_frames(folder)


def read_video(path: str, max_frames: int = 0) -> Video:
    """A .y4m, a folder of numbered PNG frames or any video ffmpeg reads -> RGB frames."""
    if not os.path.exists(path):
        raise ImageError(f"{path}: no such file or folder.")
    if os.path.isdir(path):
        return read_frames(path, max_frames)
    with open(path, "rb") as f:
        head = f.read(len(Y4M_MAGIC))
    if head == Y4M_MAGIC:
        return read_y4m(path, max_frames)
    if path.lower().endswith(".y4m"):
        raise ImageError(f"{path}: not a y4m file (no YUV4MPEG2 header).")
    return read_with_ffmpeg(path, max_frames)


# Writing.


def y4m_bytes(video: Video, colour: str = "444") -> bytes:
    """The frames as an 8-bit y4m of colour space C444 or C420jpeg (2x2 chroma means)."""
    if colour not in ("444", "420jpeg"):
        raise ValueError(f"y4m output is C444 or C420jpeg, not {colour}.")
    t, h, w, _ = video.frames.shape
    num, den = video.fps
    out = bytearray(f"YUV4MPEG2 W{w} H{h} F{num}:{den} Ip A1:1 C{colour}\n".encode())
    if colour == "444":
        yuv = rgb_to_yuv8(video.frames)
        planes = [yuv[..., i] for i in range(3)]
    else:
        planes = list(yuv420_planes(video.frames))
    for i in range(t):
        out += b"FRAME\n" + b"".join(p[i].tobytes() for p in planes)
    return bytes(out)


def write_video(path: str, video: Video) -> None:
    """.y4m (C444), or a folder of PNG frames (frame_000001.png, ...) for any other path
    without a suffix; atomically per file."""
    if path.lower().endswith(".y4m"):
        atomic_write_bytes(path, y4m_bytes(video))
        return
    if os.path.splitext(path)[1]:
        raise ImageError(
            f"{path}: decoded videos are written as .y4m or as a folder of PNG frames "
            "(a path without a suffix)."
        )
    os.makedirs(path, exist_ok=True)
    for i, frame in enumerate(video.frames):
        write_png(os.path.join(path, f"frame_{i + 1:06d}.png"), frame)
