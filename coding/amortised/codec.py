"""Real files for the amortised codecs: compress an image with a trained run, decompress it.

A file is the project's container (coding/container.py, docs/bitstream.md) with codec id
= the model name and a 9-14 byte header: image height and width (varints) and a 4-byte
fingerprint of the decoder (synthesis weights, fixed-point hyper-synthesis, entropy
tables), so that a file decoded with another model is refused instead of decoded to
noise. Sections: z then y for hyperprior models, y alone for bls2017, each a string of
tfc's range coder over the entropy models' CDF tables (precision 16). The symbols are
tfc's (value minus the table's offset, per channel for the factorized model, per scale
index for the Gaussian); values beyond a table are coded with `coding.range_coding`'s
bounded escape code (format version 2), so decoding work is bounded by the image size
whatever the file holds. Version 1 files (tfc's own escape code) are still read.

Encoding pads the image to a multiple of the model's stride (replicating the border),
runs the analysis, rounds z, computes (mu, scale index) with the fixed-point
hyper-synthesis (coding/amortised/hyper_synthesis.py), rounds y around mu and range-codes both.
Decoding runs the same fixed-point hyper-synthesis on the decoded z, so its indexes and
means are the encoder's numbers bit for bit, on any machine and thread count; the
synthesis then runs in float32 and the result is cropped, clipped and rounded to 8 bits.

The codec takes its entropy models with their CDF tables already built: the run-directory
loader (pipelines/trained_run.py) computes them once per checkpoint and stores them in
the run directory, so that encoder and decoder read the same integers rather than
recomputing them from floats (tfc's advice).
"""

import dataclasses
import hashlib
import time

import numpy as np
import tensorflow as tf

from coding import container
from coding.amortised.hyper_synthesis import FixedPointHyperSynthesis
from coding.container import Reader
from coding.interface import Codec
from coding.range_coding import Coder
from common.errors import BitstreamError
from common.images import to_float
from models.amortised.hyperprior import (
    MeanScaleHyperprior,
    edge_pad_batch,
    factorized_entropy_model,
    latent_entropy_model,
)

FINGERPRINT_BYTES = 4
MAX_SIDE = 1 << 15  # refuse headers claiming larger images


@dataclasses.dataclass(frozen=True)
class Encoded:
    data: bytes
    bits_estimated: dict  # per latent: the entropy model's estimate for the coded values
    reconstruction: np.ndarray  # the quantised forward pass, uint8 (H, W, 3)
    seconds: float


@dataclasses.dataclass(frozen=True)
class Decoded:
    image: np.ndarray
    seconds: float


def _to_uint8(x_hat: tf.Tensor, height: int, width: int) -> np.ndarray:
    x_hat = tf.clip_by_value(x_hat[0, :height, :width], 0.0, 1.0)
    return tf.cast(tf.round(x_hat * 255.0), tf.uint8).numpy()


class LatentCoder:
    """The symbols of one tfc entropy model, coded with `coding.range_coding`.

    For the factorized model (`indexed=False`) symbol = round(x - offset_c) - cdf_offset_c
    in the row of channel c; for the indexed Gaussian symbol = round(y - mu) -
    cdf_offset_i in the row of scale index i: tfc's own mapping
    (`ContinuousBatchedEntropyModel.compress`, `ContinuousIndexedEntropyModel.compress`).
    """

    def __init__(self, entropy_model, indexed: bool):
        self.model = entropy_model
        self.indexed = indexed
        self.coder = Coder.from_tfc(entropy_model.cdf.numpy())
        self.cdf_offset = entropy_model.cdf_offset.numpy().astype(np.int64)
        self.offset = None
        if not indexed and entropy_model.quantization_offset is not None:
            self.offset = entropy_model.quantization_offset

    def _rows(self, shape, indexes=None) -> np.ndarray:
        if self.indexed:
            indexes = np.asarray(indexes, np.int64).ravel()
            return np.clip(indexes, 0, self.coder.num_rows - 1)
        channels = shape[-1]
        return np.tile(np.arange(channels), int(np.prod(shape[:-1])))

    def encode(self, x: tf.Tensor, indexes=None, loc=None) -> bytes:
        x = x - loc if loc is not None else x
        x = x - self.offset if self.offset is not None else x
        values = tf.cast(tf.round(x), tf.int32).numpy().astype(np.int64).ravel()
        rows = self._rows(x.shape, indexes)
        return self.coder.encode(rows, values - self.cdf_offset[rows])

    def decode(self, data: bytes, shape, what: str, version: int, indexes=None, loc=None):
        rows = self._rows(shape, indexes)
        values = self.coder.decode(data, rows, what, version) + self.cdf_offset[rows]
        x = tf.cast(tf.constant(values.astype(np.int32).reshape(shape)), tf.float32)
        x = x + self.offset if self.offset is not None else x
        return x + loc if loc is not None else x


def entropy_models(model) -> dict:
    """The coding entropy models of a trained model (CDF tables built from its weights):
    {"z": factorized, "y": indexed Gaussian} for a hyperprior, {"y": factorized} otherwise.
    Build them once per checkpoint and store them (pipelines/trained_run.py)."""
    factorized = factorized_entropy_model(model.prior, compression=True)
    if not isinstance(model, MeanScaleHyperprior):
        return {"y": factorized}
    return {"z": factorized, "y": latent_entropy_model(compression=True)}


class AmortisedCodec(Codec):
    """The file codec of a trained amortised model (bls2017, mbt2018_mean, jpegl,
    two_layer_syn[2]).

    Workflow:
      models = entropy_models(model)          # or the tables stored with the checkpoint
      codec = AmortisedCodec(name, model, models, description)
      encoded = codec.compress(image)         # bytes + estimate + reconstruction
      decoded = codec.decompress(encoded.data)
      # or, through the common interface: codec.encode(image), codec.decode(data)
    """

    def __init__(self, name: str, model, entropy_models: dict, description: str = ""):
        hyper = isinstance(model, MeanScaleHyperprior)
        expected = {"z", "y"} if hyper else {"y"}
        if set(entropy_models) != expected:
            raise ValueError(f"entropy models {sorted(entropy_models)} != {sorted(expected)}.")
        if name not in container.CODEC_IDS:
            raise ValueError(f"{name!r} has no codec id in coding/container.py.")
        self.name = name
        self.description = description or f"{name}, a trained amortised codec"
        self.model = model
        self.entropy_models = dict(entropy_models)
        self.hyper = hyper
        self.stride = model.total_stride
        self.hyper_synthesis = FixedPointHyperSynthesis(model.hyper_synthesis) if hyper else None
        self.coders = {
            name: LatentCoder(em, indexed=(name == "y" and hyper))
            for name, em in self.entropy_models.items()
        }
        self.fingerprint = self._fingerprint()

    def _fingerprint(self) -> bytes:
        digest = hashlib.sha256(self.name.encode())
        for variable in self.model.synthesis.variables:
            digest.update(variable.numpy().tobytes())
        if self.hyper:
            digest.update(self.hyper_synthesis.parameters_bytes())
        for em in self.entropy_models.values():
            digest.update(em.cdf.numpy().tobytes() + em.cdf_offset.numpy().tobytes())
        return digest.digest()[:FINGERPRINT_BYTES]

    def latent_shapes(self, height: int, width: int) -> dict:
        """Spatial shapes of y (stride 16) and z (stride 64) for an image of this size."""
        h, w = -(-height // self.stride) * self.stride, -(-width // self.stride) * self.stride
        shapes = {"y": (h // 16, w // 16)}
        if self.hyper:
            shapes["z"] = (h // 64, w // 64)
        return shapes

    def header(self, height: int, width: int) -> bytes:
        return container.encode_varint(height) + container.encode_varint(width) + self.fingerprint

    # The common interface.

    def encode(self, image: np.ndarray) -> bytes:
        return self.compress(image).data

    def decode(self, data: bytes, shape: tuple[int, int] | None = None) -> np.ndarray:
        return self.decompress(data).image

    # With the details.

    def analyse(self, image: np.ndarray):
        """The continuous latents (y, z) of an image (z is None without a hyperprior)."""
        x = edge_pad_batch(tf.constant(to_float(image))[None], self.stride)
        y = self.model.analysis(x)
        return y, (self.model.hyper_analysis(y) if self.hyper else None)

    def compress(self, image: np.ndarray) -> Encoded:
        """uint8 (H, W, 3) -> file bytes, with the estimate and the reconstruction; the
        time covers analysis, hyper-synthesis and range coding."""
        start = time.perf_counter()
        y, z = self.analyse(image)
        return self.compress_latents(y, z, *image.shape[:2], start=start)

    def compress_latents(self, y, z, height: int, width: int, start: float | None = None):
        """Codes continuous latents (from the analysis, or refined by SGA): z is rounded,
        y rounded around the fixed-point hyper-synthesis's mean. `start` is when the
        encoding began (perf_counter), for the reported seconds."""
        start = time.perf_counter() if start is None else start
        estimated, sections = {}, []
        if self.hyper:
            em_z, em_y = self.entropy_models["z"], self.entropy_models["y"]
            z_hat, estimated["z"] = em_z(z, training=False)
            sections.append(self.coders["z"].encode(z))
            mu, indexes = self.hyper_synthesis(z_hat)
            y_hat, estimated["y"] = em_y(y, indexes, loc=mu, training=False)
            sections.append(self.coders["y"].encode(y, indexes, loc=mu))
        else:
            em_y = self.entropy_models["y"]
            y_hat, estimated["y"] = em_y(y, training=False)
            sections.append(self.coders["y"].encode(y))
        reconstruction = _to_uint8(self.model.synthesis(y_hat), height, width)
        data = container.Container(self.name, self.header(height, width), tuple(sections))
        return Encoded(
            data=data.to_bytes(),
            bits_estimated={k: float(tf.reduce_sum(v)) for k, v in estimated.items()},
            reconstruction=reconstruction,
            seconds=time.perf_counter() - start,
        )

    def decompress(self, data: bytes, what: str = "bitstream") -> Decoded:
        """File bytes -> uint8 (H, W, 3); BitstreamError for anything invalid."""
        start = time.perf_counter()
        parsed = container.parse(data, what)
        if parsed.codec != self.name:
            raise BitstreamError(f"{what}: a {parsed.codec} file, but the model is {self.name}.")
        reader = Reader(parsed.header, what)
        height, width = reader.image_size(MAX_SIDE)
        if reader.take(FINGERPRINT_BYTES, "model fingerprint") != self.fingerprint:
            raise BitstreamError(
                f"{what}: written by another {self.name} model (fingerprint mismatch); "
                "decode it with the run directory that encoded it."
            )
        reader.expect_end()
        shapes = self.latent_shapes(height, width)
        expected = 2 if self.hyper else 1
        if len(parsed.sections) != expected:
            raise BitstreamError(f"{what}: {len(parsed.sections)} sections, expected {expected}.")
        try:
            version, sections = parsed.version, parsed.sections
            if self.hyper:
                z_shape = (1, *shapes["z"], self.coders["z"].coder.num_rows)
                z_hat = self.coders["z"].decode(sections[0], z_shape, f"{what}: z", version)
                mu, indexes = self.hyper_synthesis(z_hat)
                y_hat = self.coders["y"].decode(
                    sections[1], mu.shape, f"{what}: y", version, indexes.numpy(), mu
                )
            else:
                y_shape = (1, *shapes["y"], self.coders["y"].coder.num_rows)
                y_hat = self.coders["y"].decode(sections[0], y_shape, f"{what}: y", version)
            image = _to_uint8(self.model.synthesis(y_hat), height, width)
        except tf.errors.OpError as e:
            raise BitstreamError(
                f"{what}: corrupt payload ({e.message.splitlines()[0]})."
            ) from None
        return Decoded(image, time.perf_counter() - start)
