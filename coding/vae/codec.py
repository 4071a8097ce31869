"""Real files for the hierarchical VAEs (QRes-VAE, QARV): one string per latent layer,
decodable coarse to fine.

A file is the project's container (coding/container.py, docs/bitstream.md) with codec id
qres_vae (10) or qarv (11) and the header

    height, width (varints) | lambda (float32, QARV only) | 4-byte model fingerprint

followed by one section per latent layer, in decoding order (coarsest first). Section k
holds the symbols round(mu_q - mu_p) of layer k, range coded (`coding.range_coding`, tfc's
coder with the bounded escape code) with the Gaussian of its prior: the row of scale
index j of `models.vae.hvae.latent_entropy_model` (64 scales 0.11 .. 20, the index the
smallest scale >= sigma_p). Both sides compute mu_p and j with the fixed-point decoder
(`coding.vae.fixed`), so they agree bit for bit on any machine; z = symbol + mu_p.

Progressive decoding: `decompress(data, layers=K)` decodes the first K sections and sets
every later z to its prior mean (temperature 0, as the papers' progressive decoding);
the image of a prefix is what the encoder's model predicts from those layers alone.
Variable rate (QARV): `compress(image, lmbda)` codes at any lambda of the model's range;
lambda travels in the header, so the decoder needs nothing else.
"""

import dataclasses
import hashlib
import time

import numpy as np
import tensorflow as tf

from coding import container
from coding import fixed_point as fp
from coding.amortised.codec import LatentCoder
from coding.container import Reader
from coding.interface import Codec
from coding.vae.fixed import FixedPointDecoder
from common.errors import BitstreamError, CodecError
from common.images import to_float
from models.vae import hvae

FINGERPRINT_BYTES = 4
MAX_SIDE = 1 << 15
_ONE = 2.0**fp.ACTIVATION_BITS


@dataclasses.dataclass(frozen=True)
class Encoded:
    data: bytes
    lmbda: float  # the (float32) lambda coded with
    bits_estimated: list  # per latent layer: the entropy model's bits for its symbols
    section_bytes: list  # per latent layer: its section's payload bytes
    reconstruction: np.ndarray  # uint8 (H, W, 3): what the decoder will output
    seconds: float


@dataclasses.dataclass(frozen=True)
class Decoded:
    image: np.ndarray
    layers: int  # latent layers decoded (the rest at their prior means)
    lmbda: float
    prefix_bytes: int  # the file without the sections of the layers not decoded
    seconds: float


class HvaeCodec(Codec):
    """The file codec of a trained QRes-VAE or QARV run.

    Workflow:
      codec = HvaeCodec(model, entropy_model, description)   # pipelines.trained_run
      encoded = codec.compress(image, lmbda=64.0)            # lambda: QARV only
      decoded = codec.decompress(encoded.data, layers=4)     # a progressive prefix
      # or, through the common interface: codec.encode(image), codec.decode(data)
    """

    def __init__(self, model: hvae.HierarchicalVAE, entropy_model, description: str = ""):
        if model.name not in container.CODEC_IDS:
            raise ValueError(f"{model.name!r} has no codec id in coding/container.py.")
        self.name = model.name
        self.description = description or f"{model.name}, a trained hierarchical VAE"
        self.model = model
        self.entropy_model = entropy_model
        self.decoder = FixedPointDecoder(model)
        self.coder = LatentCoder(entropy_model, indexed=True)
        self.num_layers = self.decoder.num_latents
        self.strides = [s for s, kind, _ in model.decoder_steps if kind == "latent"]
        digest = hashlib.sha256(self.name.encode() + self.decoder.parameters_bytes())
        digest.update(entropy_model.cdf.numpy().tobytes())
        digest.update(entropy_model.cdf_offset.numpy().tobytes())
        self.fingerprint = digest.digest()[:FINGERPRINT_BYTES]

    # The common interface.

    def encode(self, image: np.ndarray) -> bytes:
        return self.compress(image).data

    def decode(self, data: bytes, shape: tuple[int, int] | None = None) -> np.ndarray:
        return self.decompress(data).image

    # With the details.

    def check_lmbda(self, lmbda) -> float:
        """The float32 lambda a file is coded with; CodecError for a bad one."""
        if not self.model.variable_rate:
            if lmbda is not None:
                raise CodecError(
                    f"{self.name} is a fixed-rate model (lambda {self.model.lmbda:g}); "
                    "drop --lmbda, or train one run per lambda."
                )
            return self.model.lmbda
        lmbda = self.model.lmbda if lmbda is None else lmbda
        low, high = self.model.lmbda_range
        if not (np.isfinite(lmbda) and low <= lmbda <= high):
            raise CodecError(f"lambda {lmbda} is outside the model's range [{low:g}, {high:g}].")
        return container.f32(lmbda)

    def header(self, height: int, width: int, lmbda: float) -> bytes:
        out = container.encode_varint(height) + container.encode_varint(width)
        if self.model.variable_rate:
            out += container.pack_f32(lmbda)
        return out + self.fingerprint

    def compress(self, image: np.ndarray, lmbda: float | None = None) -> Encoded:
        """uint8 (H, W, 3) -> file bytes, estimate and the decoder's reconstruction."""
        start = time.perf_counter()
        lmbda = self.check_lmbda(lmbda)
        height, width = image.shape[:2]
        x = self.model.pad(tf.constant(to_float(image))[None])
        padded_h, padded_w = int(x.shape[1]), int(x.shape[2])
        embedding = self.model.embed(lmbda, 1)
        features = self.model.encode_features(x, embedding)
        symbols = []

        def choose(k, feature, mu, indexes):
            mu_q = self.model.latents[k].posterior(
                tf.cast(feature / _ONE, tf.float32), features[self.strides[k]], embedding
            )
            symbol = tf.round(tf.cast(mu_q, tf.float64) - mu / _ONE)
            symbol = tf.clip_by_value(symbol, -fp.SYMBOL_LIMIT, fp.SYMBOL_LIMIT)
            symbols.append((symbol, indexes))
            return symbol * _ONE + mu

        output, _ = self.decoder.top_down(padded_h, padded_w, self.decoder.embed(lmbda), choose)
        sections, estimated = [], []
        for symbol, indexes in symbols:
            sections.append(self.coder.encode(symbol, indexes))
            _, bits = self.entropy_model(tf.cast(symbol, tf.float32), indexes, training=False)
            estimated.append(float(tf.reduce_sum(bits)))
        data = container.Container(self.name, self.header(height, width, lmbda), tuple(sections))
        return Encoded(
            data=data.to_bytes(),
            lmbda=lmbda,
            bits_estimated=estimated,
            section_bytes=[len(s) for s in sections],
            reconstruction=self.decoder.to_uint8(output, height, width),
            seconds=time.perf_counter() - start,
        )

    def read_header(self, data: bytes, what: str):
        """(sections, format version, height, width, lambda) of a file; BitstreamError if
        it is not ours."""
        parsed = container.parse(data, what)
        if parsed.codec != self.name:
            raise BitstreamError(f"{what}: a {parsed.codec} file, but the model is {self.name}.")
        reader = Reader(parsed.header, what)
        height, width = reader.image_size(MAX_SIDE)
        lmbda = self.model.lmbda
        if self.model.variable_rate:
            lmbda = reader.f32("lambda")
            low, high = self.model.lmbda_range
            if not (np.isfinite(lmbda) and low <= lmbda <= high):
                raise BitstreamError(f"{what}: lambda {lmbda} outside the model's range.")
        if reader.take(FINGERPRINT_BYTES, "model fingerprint") != self.fingerprint:
            raise BitstreamError(
                f"{what}: written by another {self.name} model (fingerprint mismatch); "
                "decode it with the run directory that encoded it."
            )
        reader.expect_end()
        if len(parsed.sections) != self.num_layers:
            raise BitstreamError(
                f"{what}: {len(parsed.sections)} sections, the model has {self.num_layers} "
                "latent layers."
            )
        return parsed.sections, parsed.version, height, width, lmbda

    def decompress(self, data: bytes, what: str = "bitstream", layers: int | None = None):
        """File bytes -> Decoded; with `layers` = K only the first K latent layers are
        decoded (progressive). BitstreamError for anything invalid."""
        start = time.perf_counter()
        sections, version, height, width, lmbda = self.read_header(data, what)
        layers = self.num_layers if layers is None else int(layers)
        if not 0 <= layers <= self.num_layers:
            raise CodecError(f"--layers {layers}: the model has {self.num_layers} latent layers.")
        s = self.model.total_stride
        padded_h, padded_w = -(-height // s) * s, -(-width // s) * s

        def choose(k, feature, mu, indexes):
            if k >= layers:
                return mu
            symbol = self.coder.decode(
                sections[k], mu.shape, f"{what}: latent layer {k}", version, indexes.numpy()
            )
            return tf.cast(symbol, tf.float64) * _ONE + mu

        try:
            output, _ = self.decoder.top_down(padded_h, padded_w, self.decoder.embed(lmbda), choose)
        except tf.errors.OpError as e:
            raise BitstreamError(
                f"{what}: corrupt payload ({e.message.splitlines()[0]})."
            ) from None
        image = self.decoder.to_uint8(output, height, width)
        prefix = len(data) - sum(len(section) for section in sections[layers:])
        return Decoded(image, layers, lmbda, prefix, time.perf_counter() - start)
