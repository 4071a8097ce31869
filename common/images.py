"""Reading and writing 8-bit RGB images, with clear errors for what we cannot code.

Policy: grayscale, palette and bilevel images are converted to RGB (the codecs code
three channels); images with real transparency and 16-bit images are refused, because
silently dropping alpha or precision would change what the user asked us to code.

Which files of a folder are images, for every part of the project (training, C3, eval,
bench): `image_files`. Files whose extension is one of IMAGE_EXTENSIONS (any case),
searched recursively (symbolic links followed), hidden files and folders (".name")
skipped, sorted by path. An image's name (results, bitstreams, matching originals) is
its path below the folder without the extension, "/" replaced by "_" (`image_name`); two
files with one name (e.g. a.png and a.jpg) are an error.
"""

import io
import os

import numpy as np
from PIL import Image

from common.errors import ImageError
from common.files import atomic_write_bytes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


def image_files(folder: str) -> list[str]:
    """The image files of a folder and its subfolders, by the rule above (sorted paths)."""
    paths = []
    for directory, subdirectories, names in os.walk(folder, followlinks=True):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        paths += [
            os.path.join(directory, name)
            for name in names
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)
        ]
    paths.sort()
    seen = {}
    for path in paths:
        name = image_name(folder, path)
        if name in seen:
            raise ImageError(f"{seen[name]} and {path} have the same name {name!r}; rename one.")
        seen[name] = path
    return paths


def image_name(folder: str, path: str) -> str:
    """The name of an image file of `folder`: its relative path without the extension."""
    relative = os.path.splitext(os.path.relpath(path, folder))[0]
    return relative.replace(os.sep, "_")


def _png_bit_depth(header: bytes) -> int | None:
    """Bit depth from a PNG's IHDR chunk (byte 24), or None for other formats."""
    if len(header) >= 25 and header.startswith(PNG_SIGNATURE) and header[12:16] == b"IHDR":
        return header[24]
    return None


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decodes image bytes to a uint8 (H, W, 3) array, converting or refusing by policy."""
    if _png_bit_depth(data[:32]) == 16:
        raise ImageError(f"{name}: 16-bit PNG is not supported; convert it to 8 bits per channel.")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as e:  # Pillow raises many types for corrupt data.
        raise ImageError(f"{name}: cannot decode image ({e}).") from None
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        raise ImageError(f"{name}: {mode} (high bit depth) images are not supported.")
    if mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 255:
            raise ImageError(
                f"{name}: image has transparency (alpha < 255); flatten it onto a background first."
            )
    if image.mode != "RGB":
        image = image.convert("RGB")
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise ImageError(f"{name}: unexpected image shape {array.shape}.")
    return array


def read_image(path: str) -> np.ndarray:
    """Reads an image file as uint8 (H, W, 3)."""
    if not os.path.isfile(path):
        raise ImageError(f"{path}: no such file.")
    with open(path, "rb") as f:
        return decode_image(f.read(), path)


def encode_png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: str, array: np.ndarray) -> None:
    """Writes a uint8 (H, W, 3) array as PNG, atomically."""
    atomic_write_bytes(path, encode_png(array))


def to_float(array: np.ndarray) -> np.ndarray:
    """8-bit image (uint8, or integers in 0 ... 255) -> float32 in [0, 1].

    A float image is refused: one already on [0, 1] divided by 255 again would be fitted
    as a black image without a word (the codecs take the 8-bit values they code)."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"expected an 8-bit image (uint8 values 0 ... 255), got {array.dtype}")
    if array.dtype != np.uint8 and (array.min(initial=0) < 0 or array.max(initial=0) > 255):
        raise ValueError("expected 8-bit values 0 ... 255")
    return array.astype(np.float32) / 255.0
