"""Real files for the amortised codecs: compress an image with a trained run, decompress it.

A file is the project's container (coding/container.py, docs/bitstream.md) with codec id
= the model name and a 9-14 byte header: image height and width (varints) and a 4-byte
fingerprint of the decoder (synthesis weights, fixed-point hyper-synthesis, entropy
tables), so that a file decoded with another model is refused instead of decoded to
noise. Sections: z then y for hyperprior models, y alone for bls2017, each a string of
tfc's range coder (precision 16, escape-coded tails).

Encoding pads the image to a multiple of the model's stride (replicating the border),
runs the analysis, rounds z, computes (mu, scale index) with the fixed-point
hyper-synthesis (coding/hyper_synthesis.py), rounds y around mu and range-codes both.
Decoding runs the same fixed-point hyper-synthesis on the decoded z, so its indexes and
means are the encoder's numbers bit for bit, on any machine and thread count; the
synthesis then runs in float32 and the result is cropped, clipped and rounded to 8 bits.

The range coder's CDF tables are computed once per checkpoint and stored in the run
directory (codec/): encoder and decoder read the same integers rather than recomputing
them from floats (tfc's advice).
"""

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf
from ml_collections import config_dict

from coding import container
from coding.amortised_experiment import restore_model
from coding.container import BitstreamError, Reader
from coding.hyper_synthesis import FixedPointHyperSynthesis
from common.images import to_float
from models.hyperprior import (
    MeanScaleHyperprior,
    edge_pad_batch,
    factorized_entropy_model,
    latent_entropy_model,
)

TABLES_DIR = "codec"
FINGERPRINT_BYTES = 4
MAX_SIDE = 1 << 15  # refuse headers claiming larger images


class CodecError(ValueError):
    """A run directory that cannot code (no checkpoint, not an amortised model)."""


@dataclasses.dataclass
class Encoded:
    data: bytes
    bits_estimated: dict  # per latent: the entropy model's estimate for the coded values
    reconstruction: np.ndarray  # the quantised forward pass, uint8 (H, W, 3)
    seconds: float


@dataclasses.dataclass
class Decoded:
    image: np.ndarray
    seconds: float


def read_run_config(workdir: str):
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise CodecError(f"{workdir}: no config.json (is it a run directory?).")
    with open(path) as f:
        return config_dict.ConfigDict(json.load(f))


def _to_uint8(x_hat: tf.Tensor, height: int, width: int) -> np.ndarray:
    x_hat = tf.clip_by_value(x_hat[0, :height, :width], 0.0, 1.0)
    return tf.cast(tf.round(x_hat * 255.0), tf.uint8).numpy()


class TrainedCodec:
    """The codec of a trained run directory (its latest checkpoint)."""

    def __init__(self, workdir: str):
        from models.registry import AMORTISED_MODELS

        self.config = config = read_run_config(workdir)
        self.name = config.model.name
        if self.name not in AMORTISED_MODELS:
            raise CodecError(f"{workdir}: {self.name!r} is not an amortised model.")
        try:
            self.model, self.checkpoint = restore_model(workdir, config.model)
        except ValueError as e:
            raise CodecError(str(e)) from None
        self.hyper = isinstance(self.model, MeanScaleHyperprior)
        self.stride = self.model.total_stride
        factorized = factorized_entropy_model(self.model.prior, compression=True)
        self.entropy_models = {"z" if self.hyper else "y": factorized}
        if self.hyper:
            self.entropy_models["y"] = latent_entropy_model(compression=True)
            self.hyper_synthesis = FixedPointHyperSynthesis(self.model.hyper_synthesis)
        self._load_or_store_tables(workdir)
        self.fingerprint = self._fingerprint()

    def _load_or_store_tables(self, workdir: str) -> None:
        tables = tf.train.Checkpoint(**self.entropy_models)
        name = os.path.basename(self.checkpoint)
        directory = os.path.join(workdir, TABLES_DIR, name)
        prefix = os.path.join(directory, "tables")
        if os.path.isdir(directory):
            tables.read(prefix).assert_existing_objects_matched()
            return
        os.makedirs(os.path.dirname(directory), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(directory))
        try:
            tables.write(os.path.join(tmp, "tables"))
            os.replace(tmp, directory)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not os.path.isdir(directory):  # not another process storing them first
                raise
            tables.read(prefix).assert_existing_objects_matched()

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

    def encode(self, image: np.ndarray) -> Encoded:
        """uint8 (H, W, 3) -> file bytes, with the estimate and the reconstruction."""
        start = time.perf_counter()
        height, width = image.shape[:2]
        x = edge_pad_batch(tf.constant(to_float(image))[None], self.stride)
        y = self.model.analysis(x)
        z = self.model.hyper_analysis(y) if self.hyper else None
        encoded = self.encode_latents(y, z, height, width)
        encoded.seconds = time.perf_counter() - start
        return encoded

    def encode_latents(self, y, z, height: int, width: int) -> Encoded:
        """Codes continuous latents (from the analysis, or refined by SGA): z is rounded,
        y rounded around the fixed-point hyper-synthesis's mean."""
        start = time.perf_counter()
        estimated, sections = {}, []
        if self.hyper:
            em_z, em_y = self.entropy_models["z"], self.entropy_models["y"]
            z_hat, estimated["z"] = em_z(z, training=False)
            sections.append(em_z.compress(z).numpy()[0])
            mu, indexes = self.hyper_synthesis(z_hat)
            y_hat, estimated["y"] = em_y(y, indexes, loc=mu, training=False)
            sections.append(em_y.compress(y, indexes, loc=mu).numpy()[0])
        else:
            em_y = self.entropy_models["y"]
            y_hat, estimated["y"] = em_y(y, training=False)
            sections.append(em_y.compress(y).numpy()[0])
        reconstruction = _to_uint8(self.model.synthesis(y_hat), height, width)
        data = container.Container(self.name, self.header(height, width), tuple(sections))
        return Encoded(
            data.to_bytes(),
            {k: float(tf.reduce_sum(v)) for k, v in estimated.items()},
            reconstruction,
            time.perf_counter() - start,
        )

    def decode(self, data: bytes, what: str = "bitstream") -> Decoded:
        """File bytes -> uint8 (H, W, 3); BitstreamError for anything invalid."""
        start = time.perf_counter()
        parsed = container.parse(data, what)
        if parsed.codec != self.name:
            raise BitstreamError(f"{what}: a {parsed.codec} file, but the model is {self.name}.")
        reader = Reader(parsed.header, what)
        height, width = reader.varint("image height"), reader.varint("image width")
        if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
            raise BitstreamError(f"{what}: invalid image size {height}x{width}.")
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
            if self.hyper:
                z_hat = self.entropy_models["z"].decompress(parsed.sections[:1], shapes["z"])
                mu, indexes = self.hyper_synthesis(z_hat)
                y_hat = self.entropy_models["y"].decompress(parsed.sections[1:], indexes, mu)
            else:
                y_hat = self.entropy_models["y"].decompress(parsed.sections, shapes["y"])
            image = _to_uint8(self.model.synthesis(y_hat), height, width)
        except tf.errors.OpError as e:
            raise BitstreamError(
                f"{what}: corrupt payload ({e.message.splitlines()[0]})."
            ) from None
        return Decoded(image, time.perf_counter() - start)


def peek_codec(data: bytes, what: str = "bitstream") -> str:
    """The codec name of a file (raises BitstreamError for non-files)."""
    return container.parse(data, what).codec
