import io

import numpy as np
import pytest
from PIL import Image

from common.errors import ImageError
from common.images import decode_image, read_image, to_float


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_rgb_round_trip():
    array = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(decode_image(_png(Image.fromarray(array))), array)


def test_grayscale_and_palette_are_converted_to_rgb():
    gray = np.arange(35, dtype=np.uint8).reshape(5, 7)
    out = decode_image(_png(Image.fromarray(gray, "L")))
    assert out.shape == (5, 7, 3) and np.all(out[..., 0] == gray)
    palette = Image.fromarray(gray, "L").convert("P")
    assert decode_image(_png(palette)).shape == (5, 7, 3)


def test_opaque_rgba_is_accepted_and_transparent_refused():
    rgba = np.full((4, 4, 4), 255, np.uint8)
    assert decode_image(_png(Image.fromarray(rgba, "RGBA"))).shape == (4, 4, 3)
    rgba[0, 0, 3] = 10
    with pytest.raises(ImageError, match="transparency"):
        decode_image(_png(Image.fromarray(rgba, "RGBA")))


def test_16_bit_png_is_refused():
    deep = Image.fromarray(np.arange(20, dtype=np.uint16).reshape(4, 5) * 1000)
    with pytest.raises(ImageError, match="16-bit"):
        decode_image(_png(deep))


def test_corrupt_and_missing_files(tmp_path):
    data = _png(Image.fromarray(np.zeros((8, 8, 3), np.uint8)))
    with pytest.raises(ImageError, match="cannot decode"):
        decode_image(data[:40])
    with pytest.raises(ImageError, match="no such file"):
        read_image(str(tmp_path / "missing.png"))


def test_to_float_takes_8_bit_values_only():
    """A float image (e.g. already on [0, 1]) is refused, not divided by 255 again."""
    array = np.array([[[0, 128, 255]]], np.uint8)
    np.testing.assert_allclose(to_float(array), [[[0.0, 128 / 255, 1.0]]], rtol=1e-7)
    np.testing.assert_array_equal(to_float(array.astype(np.int64)), to_float(array))
    with pytest.raises(TypeError, match="8-bit"):
        to_float(to_float(array))
    with pytest.raises(ValueError, match="0 ... 255"):
        to_float(np.array([[[0, 256, 1]]]))
