"""RC's lossy layer: the file whose exact reconstruction x_l the residual coder sees.

Two layers, chosen by the model name (`configs/rc_hevc.py`, `configs/rc_c3.py`):
- HEVC intra 4:4:4 through x265 (`bench.codecs`' hevc444: our stand-in for BPG, which
  is x265 intra with 4:4:4 chroma, as RC uses it), quality = the QP. Its decoder (ffmpeg)
  is bit-exact by the HEVC standard, and the Y'CbCr -> RGB conversion is elementwise
  IEEE arithmetic (no BLAS), so x_l is the same on every machine.
- a lossy C3 file of ours, quality = lambda. Its decoder is fixed point: x_l is the same
  on every machine (`coding.fixed_point`).

    layer = lossy_layer("rc_hevc", config.lossy)
    data = layer.encode(image, quality)         # bytes of the lossy file
    x_l = layer.decode(data, (h, w), what)      # uint8 (h, w, 3); BitstreamError if bad
"""

import copy

import numpy as np

from common.errors import BitstreamError, CodecError


class HevcLayer:
    """HEVC intra 4:4:4 (x265 veryslow, tune psnr) at a QP."""

    name = "hevc"
    quality_name = "qp"

    def __init__(self):
        from bench.codecs import CODECS

        self.codec = CODECS["hevc444"]

    def check(self) -> None:
        """CodecError naming the missing tool (x265, ffmpeg)."""
        self.codec.check()

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        if not 0 <= quality <= 51 or quality != int(quality):
            raise ValueError(f"an HEVC QP is an integer in 0..51, got {quality}.")
        return self.codec.encode(image, int(quality))

    def decode(self, data: bytes, shape: tuple[int, int], what: str) -> np.ndarray:
        try:
            image = self.codec.decode(data, tuple(shape))
        except CodecError as e:
            raise BitstreamError(f"{what}: the HEVC layer does not decode ({e}).") from None
        if image.shape[:2] != tuple(shape):
            raise BitstreamError(f"{what}: the HEVC layer is {image.shape[:2]}, not {shape}.")
        return image


class C3Layer:
    """A lossy C3 file (the C3 config of `config.lossy.c3`) at a lambda."""

    name = "c3"
    quality_name = "lmbda"

    def __init__(self, c3_config):
        self.c3_config = c3_config

    def check(self) -> None:
        pass

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        from pipelines.per_image import C3Codec

        config = copy.deepcopy(self.c3_config)
        config.model.lmbda = float(quality)
        return C3Codec(config).fit_and_encode(image, what="lossy layer").encoded.data

    def decode(self, data: bytes, shape: tuple[int, int], what: str) -> np.ndarray:
        from coding import container
        from coding.c3 import codec as c3_codec

        if container.parse(data, f"{what} (lossy layer)").codec != "c3":
            raise BitstreamError(f"{what}: the lossy layer is not a lossy C3 file.")
        image = c3_codec.decode(data, what=f"{what} (lossy layer)").image
        if image.shape[:2] != tuple(shape):
            raise BitstreamError(f"{what}: the C3 layer is {image.shape[:2]}, not {shape}.")
        return image


def lossy_layer(model_name: str, lossy_config):
    """The lossy layer of an RC model (`models.rc.residual.RC_MODELS`)."""
    if model_name == "rc_hevc":
        return HevcLayer()
    if model_name == "rc_c3":
        return C3Layer(lossy_config.c3)
    raise ValueError(f"{model_name!r} is not an RC model.")
