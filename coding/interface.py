"""One interface for every codec: per-image (C3), amortised, classical, and later lossless
and hierarchical-VAE codecs.

    codec = ...                 # C3Codec(config), AmortisedCodec(...), CODECS["jpeg"].at(50)
    data = codec.encode(image)  # uint8 (H, W, 3) -> the bytes of a real file
    decoded = codec.decode(data)  # those bytes -> uint8 (H, W, 3)
    codec.name, codec.description  # what the results rows and aggregates call it

`common.results.row_from_file` turns (original, file bytes, decoded image, seconds) into
the results row, whatever the codec. Codecs may offer richer methods beside these (C3's
fit details, an amortised model's rate estimate), but these two are what every caller
can rely on.

`decode` takes the original's (height, width) as an optional hint, for the raw streams of
classical tools that do not carry it (an HEVC picture padded to the coding unit); the
project's own files carry their size and ignore it.
"""

import abc

import numpy as np


class Codec(abc.ABC):
    """An image codec: 8-bit RGB image <-> bytes of a file."""

    #: short, stable name (results rows, aggregates, file names)
    name: str = "codec"
    #: one sentence: what it is and its settings (aggregates' description)
    description: str = ""

    @abc.abstractmethod
    def encode(self, image: np.ndarray) -> bytes:
        """uint8 (H, W, 3) -> the file's bytes. Raises a `CodecError` if it cannot."""

    @abc.abstractmethod
    def decode(self, data: bytes, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The file's bytes -> uint8 (H, W, 3). Raises a `BitstreamError` for a bad file."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
