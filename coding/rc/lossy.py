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

The C3 layer's encoder is a fit (`pipelines.per_image`), a layer above this one: the
pipelines hand it in (`pipelines.rc_training.make_lossy_layer`); without it the layer
decodes only.
"""

import numpy as np

from coding import container, hevc
from coding.c3 import codec as c3_codec
from common.errors import BitstreamError, CodecError


class HevcLayer:
    """HEVC intra 4:4:4 (x265 veryslow, tune psnr) at a QP."""

    name = "hevc"
    quality_name = "qp"

    def check(self) -> None:
        """CodecError naming the missing tool (x265, ffmpeg)."""
        hevc.check()

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        if not 0 <= quality <= 51 or quality != int(quality):
            raise ValueError(f"an HEVC QP is an integer in 0..51, got {quality}.")
        return hevc.encode(image, int(quality), chroma_420=False)

    def decode(self, data: bytes, shape: tuple[int, int], what: str) -> np.ndarray:
        try:
            image = hevc.decode(data, tuple(shape), chroma_420=False)
        except CodecError as e:
            raise BitstreamError(f"{what}: the HEVC layer does not decode ({e}).") from None
        if image.shape[:2] != tuple(shape):
            raise BitstreamError(f"{what}: the HEVC layer is {image.shape[:2]}, not {shape}.")
        return image


class C3Layer:
    """A lossy C3 file at a lambda; `encoder(image, lmbda) -> bytes` fits and codes it."""

    name = "c3"
    quality_name = "lmbda"

    def __init__(self, encoder=None):
        self.encoder = encoder

    def check(self) -> None:
        pass

    def encode(self, image: np.ndarray, quality: float) -> bytes:
        if self.encoder is None:
            raise CodecError("this RC codec decodes only: it was built without a C3 encoder.")
        return self.encoder(image, float(quality))

    def decode(self, data: bytes, shape: tuple[int, int], what: str) -> np.ndarray:
        if container.parse(data, f"{what} (lossy layer)").codec != "c3":
            raise BitstreamError(f"{what}: the lossy layer is not a lossy C3 file.")
        image = c3_codec.decode(data, what=f"{what} (lossy layer)").image
        if image.shape[:2] != tuple(shape):
            raise BitstreamError(f"{what}: the C3 layer is {image.shape[:2]}, not {shape}.")
        return image


def lossy_layer(model_name: str, c3_encoder=None):
    """The lossy layer of an RC model (`models.rc.residual.RC_MODELS`)."""
    if model_name == "rc_hevc":
        return HevcLayer()
    if model_name == "rc_c3":
        return C3Layer(c3_encoder)
    raise ValueError(f"{model_name!r} is not an RC model.")
