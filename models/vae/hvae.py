"""Hierarchical VAEs for lossy compression: QRes-VAE and QARV (Duan et al., WACV 2023,
TPAMI 2023), built from `config.model` (configs/qres_vae*.py, configs/qarv*.py).

    x in [0, 1] -> (x - 0.4546) 3.6757 -> encoder: patch-down x4, ConvNeXt blocks, patch-down
    x2 ... -> features at strides 4, 8, ..., S (S = the total stride, 64 in the papers)

    top-down decoder, from a learned bias tiled to (H/S, W/S), coarse to fine; per stage
    (one resolution) its latent blocks, then `decoder_blocks` ConvNeXt blocks, then
    patch-up x2 to the next stage (x4 to the 3 output channels after the last):

    latent block k:  f = front(f)
                     (mu_p, ln sigma_p) = prior(f);  ln sigma_p <- softplus(. + 2.3) - 2.3
                     mu_q = posterior(f, encoder feature at this stride)  (a mean only)
                     z = mu_q + U(-1/2, 1/2)           in training
                     z = round(mu_q - mu_p) + mu_p     when coding (residual quantisation)
                     f = end(f + z_proj(z))

    rate of z under N(mu_p, sigma_p) convolved with U(-1/2, 1/2), summed over layers;
    loss = rate in nats per sub-pixel + lambda * MSE of the output against 2x - 1 (the
    papers' convention: lambda in [16, 2048], not the zoo's bpp + lambda MSE_255).

Where ours differs from lossy-vae: the decoder runs in fixed point when coding
(`coding.vae.fixed`: the papers decode in float, so their files are not portable); the
scale index rounds up to the table as theirs, but the table is tfc's (64 scales 0.11 ..
20, `latent_entropy_model`); TensorFlow's crops and optimiser, so trained numbers are not
theirs. The layer counts of qres34m (34.5M parameters) and qarv_base (92.0M, published
93.4M) follow their configs.

Layer k's prior sees only z_<k: the decoder never reads the encoder except through the
posterior mean, so the decoder can decode the layers' strings one after the other, and a
prefix of them is an image (progressive decoding: the remaining z at their prior means).

Variants (`config.model.variant`):
- "qres" (QRes-VAE): fixed rate (one model per lambda); prior and posterior heads are
  VDVAE bottlenecks; z_proj is conv 3x3, GELU, conv 1x1.
- "qarv" (QARV): variable rate; lambda -> `LambdaEmbedding` -> AdaLN in every ConvNeXt
  block of encoder and decoder; training samples lambda per image, cube-root uniform in
  `lmbda_range`; prior head conv 1x1; posterior AdaLN blocks on both features, concat,
  conv 1x1, AdaLN block, conv 3x3; z_proj conv 1x1. `model.loss_balance` says how the
  batch's images, each at its own lambda, add up: the papers' mean ("sum") or "log"
  (`balanced_mean`: each image weighed by its own loss; ours, for short budgets).
"""

import functools
import math

import tensorflow as tf
import tensorflow_compression as tfc

from common.errors import ConfigError
from common.metrics import psnr_from_mse_tensor
from models.amortised.hyperprior import edge_pad_batch
from models.registry import register_model
from models.vae import blocks

HVAE_MODELS = ("qres_vae", "qarv")
VARIANTS = ("qres", "qarv")
INPUT_MEAN = 0.4546  # the papers' input normalisation (ImageNet mean and std)
INPUT_SCALE = 3.6757
LOG_SCALE_FLOOR = 2.3  # ln sigma_p = softplus(. + 2.3) - 2.3 > -2.3: sigma_p > 0.1
LOSS_BALANCES = ("sum", "log")
LIKELIHOOD_FLOOR = 1e-6  # below it, the bin's mass is taken from the density (as QRes)
# The coding scale table: 64 scales log-spaced from 0.11 to 20 (QARV's), written as
# literals (ln 0.11, ln 20) so that every machine builds the same tables.
NUM_SCALES = 64
LOG_SCALE_MIN = -2.2072749131897207
LOG_SCALE_MAX = 2.995732273553991
SCALE_STEP = (LOG_SCALE_MAX - LOG_SCALE_MIN) / (NUM_SCALES - 1)


def scale_from_index(index):
    return tf.exp(LOG_SCALE_MIN + tf.cast(index, tf.float32) * SCALE_STEP)


def latent_entropy_model(compression: bool = False) -> tfc.LocationScaleIndexedEntropyModel:
    """The Gaussian of every latent layer, indexed by its scale (table above): the
    codec's tables and the file's rate estimate."""
    return tfc.LocationScaleIndexedEntropyModel(
        tfc.NoisyNormal,
        NUM_SCALES,
        scale_from_index,
        coding_rank=3,
        compression=compression,
        range_coder_precision=16,
    )


def lower_bounded_log_scale(raw):
    return tf.nn.softplus(raw + LOG_SCALE_FLOOR) - LOG_SCALE_FLOOR


def _normal_cdf(x):
    return 0.5 * tf.math.erfc(-x / math.sqrt(2.0))


def gaussian_bits(z, mu, sigma):
    """-log2 of the mass of N(mu, sigma) on [z - 1/2, z + 1/2], elementwise.

    Computed on the lower tail (|z - mu| folded to the left), where the normal CDF keeps
    its relative precision; where the mass is below LIKELIHOOD_FLOOR (far tails, where the
    difference of two tiny CDFs has no useful gradient) the density at z is used instead.
    """
    v = -tf.abs(z - mu)
    upper = _normal_cdf((v + 0.5) / sigma)
    lower = _normal_cdf((v - 0.5) / sigma)
    mass = upper - lower
    log_density = -0.5 * tf.square(v / sigma) - tf.math.log(sigma) - 0.5 * math.log(2 * math.pi)
    log_p = tf.where(
        mass > LIKELIHOOD_FLOOR, tf.math.log(tf.maximum(mass, LIKELIHOOD_FLOOR)), log_density
    )
    return -log_p / math.log(2.0)


def check_loss_balance(balance: str) -> None:
    if balance not in LOSS_BALANCES:
        raise ConfigError(f"model.loss_balance {balance!r} is not one of {LOSS_BALANCES}.")


def balanced_mean(per_image: tf.Tensor, balance: str = "sum") -> tf.Tensor:
    """The batch's training loss from each image's R + lambda D (each at its own lambda).

    "sum": the papers' mean. "log": the same value, but the gradient of mean(log loss_i)
    times the batch's mean loss, i.e. image i's gradient weighted by mean / loss_i: each
    image counts by its own loss, not by its lambda, and the gradient keeps the size of
    the sum's (so `clip_norm` means the same). Why: with the sum an image at lambda 2048
    outweighs one at 16 about 100x, and the rate gradient of the low-lambda images, the
    only signal that teaches a variable-rate model to spend fewer bits there, is lost in
    the distortion gradient of the others. A tiny QARV trained 2000 steps over lambda in
    [0.05, 64] coded 0.296 bpp at 0.05 and 0.298 at 64 with the sum (one rate for all),
    0.088 and 0.226 with "log" (estimates on six Kodak crops; README, "Hierarchical VAEs").
    """
    check_loss_balance(balance)
    mean = tf.reduce_mean(per_image)
    if balance == "sum":
        return mean
    return tf.reduce_mean(tf.stop_gradient(mean / per_image) * per_image)


class LatentBlock(tf.keras.layers.Layer):
    """One latent layer of the top-down path (module docstring), at one resolution.

    The decoder side is `prior` then `update`; only the encoder calls `posterior`.
    """

    def __init__(
        self,
        width: int,
        z_channels: int,
        kernel: int,
        variant: str,
        encoder_width: int,
        layer_scale: float = blocks.LAYER_SCALE_INIT,
        mlp_ratio: float = 2,
        **kw,
    ):
        super().__init__(**kw)
        convnext = functools.partial(blocks.ConvNeXtBlock, layer_scale=layer_scale)
        if variant not in VARIANTS:
            raise ValueError(f"variant {variant!r} is not one of {VARIANTS}.")
        self.width, self.z_channels, self.variant = int(width), int(z_channels), variant
        adaptive = variant == "qarv"
        self.front = convnext(width, kernel, mlp_ratio, adaptive=adaptive, name="front")
        self.end = convnext(width, kernel, mlp_ratio, adaptive=adaptive, name="end")
        hidden = max(width // 4, 1)
        if variant == "qres":
            self.prior_head = blocks.Bottleneck(
                hidden, 2 * z_channels, zero_last=True, name="prior"
            )
            self.posterior_head = [blocks.Bottleneck(hidden, z_channels, name="posterior")]
            self.z_proj = [
                blocks.Conv(hidden, 3, name="z_proj_in"),
                blocks.Conv(width, 1, name="z_proj_out"),
            ]
        else:
            self.prior_head = blocks.Conv(2 * z_channels, 1, zero_init=True, name="prior")
            self.posterior_dec = convnext(width, kernel, adaptive=True, name="q_dec")
            self.posterior_enc = convnext(encoder_width, kernel, adaptive=True, name="q_enc")
            self.posterior_head = [
                blocks.Conv(width, 1, name="q_merge"),
                convnext(width, kernel, adaptive=True, name="q_block"),
                blocks.Conv(z_channels, 3, name="q_out"),
            ]
            self.z_proj = [blocks.Conv(width, 1, name="z_proj")]

    def prior(self, feature, embedding=None):
        """f -> (front(f), mu_p, sigma_p)."""
        feature = self.front(feature, embedding)
        mu, raw = tf.split(self.prior_head(feature, embedding), 2, axis=-1)
        return feature, mu, tf.exp(lower_bounded_log_scale(raw))

    def posterior(self, feature, encoder_feature, embedding=None):
        """The posterior mean mu_q from the decoder's (fronted) and the encoder's features."""
        if self.variant == "qres":
            return self.posterior_head[0](tf.concat([feature, encoder_feature], -1))
        merged = tf.concat(
            [
                self.posterior_dec(feature, embedding),
                self.posterior_enc(encoder_feature, embedding),
            ],
            -1,
        )
        for layer in self.posterior_head:
            merged = layer(merged, embedding)
        return merged

    def update(self, feature, z, embedding=None):
        """f -> end(f + z_proj(z))."""
        h = z
        for i, layer in enumerate(self.z_proj):
            h = layer(h if i == 0 else blocks.gelu(h), embedding)
        return self.end(feature + h, embedding)

    def decoder_macs_per_position(self) -> int:
        """front, prior head, z_proj and end (the posterior runs only in the encoder)."""
        total = self.front.macs_per_position() + self.end.macs_per_position()
        total += self.prior_head.macs_per_position()
        return total + sum(layer.macs_per_position() for layer in self.z_proj)


class HierarchicalVAE(tf.keras.Model):
    """QRes-VAE / QARV (module docstring). Images (B, H, W, 3) in [0, 1], H and W multiples
    of `total_stride` (`edge_pad_batch`).

    Workflow:
      model = build_model(config.model)                  # models.registry
      terms = model.rd_terms(x, lmbda, training=True)    # the training loss and its parts
      out = model(x, lmbda=...)                          # x_hat, bits per layer
      out = model.decode_prefix(zs, lmbda, shape)        # the first len(zs) layers given,
                                                         # the rest at their prior means
    """

    def __init__(
        self,
        variant: str,
        encoder_widths,
        encoder_blocks,
        encoder_kernels,
        decoder_widths,
        decoder_kernels,
        latent_channels,
        decoder_blocks,
        lmbda: float,
        lmbda_range=(16.0, 2048.0),
        embed_dim: int = blocks.EMBED_DIM,
        layer_scale: float = blocks.LAYER_SCALE_INIT,
        decoder_blocks_before=None,
        decoder_mlp_ratios=None,
        encoder_down_blocks: bool = False,
        loss_balance: str = "sum",
        **kw,
    ):
        super().__init__(**kw)
        check_loss_balance(loss_balance)
        convnext = functools.partial(blocks.ConvNeXtBlock, layer_scale=layer_scale)
        stages = len(encoder_widths)
        decoder_blocks_before = tuple(decoder_blocks_before or (0,) * stages)
        decoder_mlp_ratios = tuple(decoder_mlp_ratios or (2,) * stages)
        lengths = {
            len(encoder_blocks),
            len(encoder_kernels),
            len(decoder_widths),
            len(decoder_kernels),
            len(latent_channels),
            len(decoder_blocks),
            len(decoder_blocks_before),
            len(decoder_mlp_ratios),
        }
        if variant not in VARIANTS:
            raise ConfigError(f"model.variant {variant!r} is not one of {VARIANTS}.")
        if stages < 1 or lengths != {stages}:
            raise ConfigError("the encoder and decoder lists of config.model differ in length.")
        if not any(len(zs) for zs in latent_channels):
            raise ConfigError("config.model.latent_channels has no latent layer.")
        low, high = (float(v) for v in lmbda_range)
        if not (0 < low <= high) or lmbda <= 0:
            raise ConfigError(f"lambda {lmbda} and range {lmbda_range} must be positive.")
        self.variant = variant
        self.variable_rate = variant == "qarv"
        self.lmbda = float(lmbda)
        self.lmbda_range = (low, high)
        self.loss_balance = loss_balance
        self.total_stride = 4 * 2 ** (stages - 1)
        adaptive = self.variable_rate
        self.embedding = None
        if adaptive:
            self.embedding = blocks.LambdaEmbedding(embed_dim, name="lambda_embedding")

        # Encoder: (stride, layer) in order; features kept after each stage's blocks.
        self.encoder_layers = []
        for i, (width, count, kernel) in enumerate(
            zip(encoder_widths, encoder_blocks, encoder_kernels, strict=True)
        ):
            stride = 4 * 2**i
            if i > 0 and encoder_down_blocks:  # a block at the finer stride, then down
                previous = (encoder_widths[i - 1], encoder_kernels[i - 1])
                block = convnext(*previous, adaptive=adaptive, name=f"enc_pre_down{stride}")
                self.encoder_layers.append((stride // 2, block))
            down = blocks.PatchDown(width, 4 if i == 0 else 2, name=f"enc_down{stride}")
            self.encoder_layers.append((stride, down))
            for j in range(count):
                block = convnext(width, kernel, adaptive=adaptive, name=f"enc{stride}_{j}")
                self.encoder_layers.append((stride, block))

        # Decoder: (stride, kind, layer); kind "latent", "block" or "up" (stride = input's).
        self.decoder_steps = []
        top = self.total_stride
        for i in range(stages):
            stride = top // 2**i
            width, kernel, ratio = decoder_widths[i], decoder_kernels[i], decoder_mlp_ratios[i]
            for j in range(decoder_blocks_before[i]):
                block = convnext(width, kernel, ratio, adaptive=adaptive, name=f"pre{stride}_{j}")
                self.decoder_steps.append((stride, "block", block))
            for j, z in enumerate(latent_channels[i]):
                encoder_width = encoder_widths[stages - 1 - i]
                latent = LatentBlock(
                    width,
                    z,
                    kernel,
                    variant,
                    encoder_width,
                    layer_scale,
                    ratio,
                    name=f"z{stride}_{j}",
                )
                self.decoder_steps.append((stride, "latent", latent))
            for j in range(decoder_blocks[i]):
                block = convnext(width, kernel, adaptive=adaptive, name=f"dec{stride}_{j}")
                self.decoder_steps.append((stride, "block", block))
            if i < stages - 1:
                up = blocks.PatchUp(decoder_widths[i + 1], 2, name=f"up{stride}")
            else:
                up = blocks.PatchUp(3, 4, name="up_out")
            self.decoder_steps.append((stride, "up", up))
        self.latents = [layer for _, kind, layer in self.decoder_steps if kind == "latent"]
        self.start_width = int(decoder_widths[0])

    def build(self, input_shape):
        self.start = self.add_weight(
            "decoder_bias", shape=(1, 1, 1, self.start_width), initializer="zeros"
        )
        super().build(input_shape)

    # The pieces.

    def embed(self, lmbda, batch):
        """The lambda embedding (B, embed_dim), or None for a fixed-rate model."""
        if not self.variable_rate:
            return None
        lmbda = tf.broadcast_to(tf.cast(lmbda, tf.float32), [batch])
        return self.embedding(lmbda)

    def encode_features(self, x, embedding=None) -> dict:
        """{stride: encoder feature}, x (B, H, W, 3) in [0, 1]."""
        h = (x - INPUT_MEAN) * INPUT_SCALE
        features = {}
        for stride, layer in self.encoder_layers:
            h = layer(h, embedding)
            features[stride] = h
        return features

    def top_down(self, batch, height: int, width: int, embedding, choose_z):
        """Runs the decoder; `choose_z(k, feature, mu_p, sigma_p)` gives latent layer k's z.
        Returns (output in [-1, 1] space, unclipped; [(z, mu_p, sigma_p)] per layer)."""
        s = self.total_stride
        feature = tf.tile(self.start, [batch, height // s, width // s, 1])
        latents = []
        for _, kind, layer in self.decoder_steps:
            if kind == "latent":
                feature, mu, sigma = layer.prior(feature, embedding)
                z = choose_z(len(latents), feature, mu, sigma)
                latents.append((z, mu, sigma))
                feature = layer.update(feature, z, embedding)
            else:
                feature = layer(feature, embedding)
        return feature, latents

    def _posterior_chooser(self, features, embedding, training: bool):
        strides = [stride for stride, kind, _ in self.decoder_steps if kind == "latent"]

        def choose(k, feature, mu, sigma):
            del sigma
            mu_q = self.latents[k].posterior(feature, features[strides[k]], embedding)
            if training:
                return mu_q + tf.random.uniform(tf.shape(mu_q), -0.5, 0.5)
            return tf.round(mu_q - mu) + mu

        return choose

    @staticmethod
    def to_image(output):
        """Decoder output (target space [-1, 1]) -> x_hat in [0, 1]."""
        return tf.clip_by_value((output + 1.0) / 2.0, 0.0, 1.0)

    # The model.

    def call(self, x, training=False, lmbda=None):
        """{"x_hat", "output" (unclipped, [-1, 1] space), "bits": {"z<k>": (B,)}}."""
        shape = tf.shape(x)
        batch = shape[0]
        embedding = self.embed(self.lmbda if lmbda is None else lmbda, batch)
        features = self.encode_features(x, embedding)
        chooser = self._posterior_chooser(features, embedding, bool(training))
        output, latents = self.top_down(batch, x.shape[1], x.shape[2], embedding, chooser)
        bits = {
            f"z{k}": tf.reduce_sum(gaussian_bits(z, mu, sigma), axis=[1, 2, 3])
            for k, (z, mu, sigma) in enumerate(latents)
        }
        return {"x_hat": self.to_image(output), "output": output, "bits": bits}

    def decode_prefix(self, zs, lmbda, batch: int, height: int, width: int) -> tf.Tensor:
        """x_hat from the first len(zs) latent layers; the later ones at their prior means
        (the papers' progressive decoding at temperature 0). height, width: padded."""
        embedding = self.embed(self.lmbda if lmbda is None else lmbda, batch)

        def choose(k, feature, mu, sigma):
            return zs[k] if k < len(zs) else mu

        output, _ = self.top_down(batch, height, width, embedding, choose)
        return self.to_image(output)

    def sample_lmbda(self, batch):
        """Training lambdas of a variable-rate model: lambda^(1/3) uniform in the range."""
        low, high = self.lmbda_range
        return tf.random.uniform([batch], low ** (1.0 / 3.0), high ** (1.0 / 3.0)) ** 3

    def rd_terms(self, x, lmbda, training: bool) -> dict:
        """loss (nats per sub-pixel + lambda MSE on [-1, 1]), bpp, MSE (0..255), PSNR.

        A variable-rate model in training draws its own lambda per image (`lmbda` is used
        otherwise); a fixed-rate model always uses its own `model.lmbda` scale through
        `lmbda` (the training loop passes config.model.lmbda)."""
        batch = tf.shape(x)[0]
        if self.variable_rate and training:
            lmbdas = self.sample_lmbda(batch)
        else:
            lmbdas = tf.fill([batch], tf.cast(lmbda, tf.float32))
        out = self(x, training=training, lmbda=lmbdas)
        pixels = tf.cast(tf.shape(x)[1] * tf.shape(x)[2], tf.float32)
        bits = tf.add_n(list(out["bits"].values()))  # (B,)
        nats_per_subpixel = bits * math.log(2.0) / (3.0 * pixels)
        target = 2.0 * x - 1.0
        mse_target = tf.reduce_mean(tf.square(out["output"] - target), axis=[1, 2, 3])
        per_image = nats_per_subpixel + lmbdas * mse_target
        balance = self.loss_balance if (training and self.variable_rate) else "sum"
        loss = balanced_mean(per_image, balance)
        mse = tf.reduce_mean(tf.math.squared_difference(x * 255.0, out["x_hat"] * 255.0))
        bpp = tf.reduce_mean(bits) / pixels
        return {"loss": loss, "bpp": bpp, "mse": mse, "psnr": psnr_from_mse_tensor(mse)}

    def rd_loss(self, bpp, mse, lmbda):
        """The loss of an estimate in the papers' convention, from bpp and MSE (0..255)."""
        return bpp * math.log(2.0) / 3.0 + lmbda * 4.0 * mse / 255.0**2

    def pad(self, x):
        return edge_pad_batch(x, self.total_stride)

    def decoder_macs(self, height: int, width: int) -> dict:
        """Decoder multiply-accumulates for an image of this size (padded to the stride):
        the prior path (everything up to the last latent layer's prior and update) and the
        rest of the synthesis."""
        s = self.total_stride
        h, w = -(-height // s) * s, -(-width // s) * s
        last = max(i for i, (_, kind, _) in enumerate(self.decoder_steps) if kind == "latent")
        parts = {"prior_path": 0, "synthesis": 0}
        for i, (stride, kind, layer) in enumerate(self.decoder_steps):
            per = (
                layer.decoder_macs_per_position() if kind == "latent" else layer.macs_per_position()
            )
            part = "prior_path" if i <= last else "synthesis"
            parts[part] += per * (h // stride) * (w // stride)
        return parts


@register_model(*HVAE_MODELS, family="hvae")
def build_hvae(model_config):
    """The hierarchical VAE of `config.model`, its variables created."""
    m = model_config
    variant = m.variant
    expected = {"qres_vae": "qres", "qarv": "qarv"}[m.name]
    if variant != expected:
        raise ConfigError(f"model {m.name} has variant {expected}, not {variant!r}.")
    model = HierarchicalVAE(
        variant,
        tuple(m.encoder_widths),
        tuple(m.encoder_blocks),
        tuple(m.encoder_kernels),
        tuple(m.decoder_widths),
        tuple(m.decoder_kernels),
        tuple(tuple(z) for z in m.latent_channels),
        tuple(m.decoder_blocks),
        float(m.lmbda),
        tuple(m.lmbda_range),
        int(m.get("embed_dim", blocks.EMBED_DIM)),
        float(m.get("layer_scale", blocks.LAYER_SCALE_INIT)),
        tuple(m.get("decoder_blocks_before", ())) or None,
        tuple(m.get("decoder_mlp_ratios", ())) or None,
        bool(m.get("encoder_down_blocks", False)),
        str(m.get("loss_balance", "sum")),
        name=m.name,
    )
    s = model.total_stride
    model(tf.zeros([1, s, s, 3]))
    return model
