"""The decoder of a hierarchical VAE (QRes-VAE, QARV) in fixed point: same numbers everywhere.

In a hierarchical VAE the prior of latent layer k is computed by the whole top-down path
up to k: the learned start, every block and every z_<k. A one-ulp difference between the
encoder's and a decoder's float path that moves a prior mean across a rounding boundary
or a scale across a table bucket corrupts every later symbol (Balle, Johnston & Minnen,
"Integer networks for data compression with latent-variable models", ICLR 2019). So both
sides run this copy of the trained decoder (`models.vae.hvae.HierarchicalVAE.top_down`),
in integers held in float64 or int64 (coding/fixed_point.py says why that is exact
whatever the summation order, thread count or XLA):

- activations are integers at scale 2^-12, clamped to +-4096.0 after every layer;
- every convolution (depthwise too) and dense layer has its weights quantised to the
  finest step 2^-k (k <= 16) that keeps it exact (`fixed_point.quantise_layer`); a
  ConvNeXt block's layer scale gamma is folded into its last dense layer first;
- GELU is `fixed_point.gelu` (erf), from a table built with Python's `decimal`;
- LayerNorm is integer arithmetic in int64: the mean and variance over channels by
  integer sums and floor divisions, the standard deviation by an integer square root,
  x / std rounded half up; its affine part (QRes) is a per-channel fixed-point layer,
  its AdaLN modulation (QARV) a per-image (shift, scale) from the lambda embedding;
- the lambda embedding's sinusoids are computed with `decimal` (correctly rounded cos
  and sin from their series) from the float32 lambda of the file's header;
- the prior's scale index is the number of integer boundaries below the raw prior
  output: the boundaries are softplus^-1(ln s_j + 2.3) - 2.3 of the table scales s_j,
  computed with `decimal`, so no transcendental function runs on the coding path.

The whole decoder runs this way, including the layers after the last latent, so the
decoded image is the encoder's reconstruction bit for bit.
"""

import decimal
import functools

import numpy as np
import tensorflow as tf

from coding import fixed_point as fp
from models.vae import blocks, hvae

_ONE = 2**fp.ACTIVATION_BITS
_CONTEXT = fp.DECIMAL_CONTEXT
_PI = fp.DECIMAL_PI
LN_EPSILON_FIXED = round(blocks.LN_EPSILON * _ONE * _ONE)  # eps at the variance's scale


def _fixed(value: decimal.Decimal) -> int:
    return int((value * _ONE).to_integral_value(rounding=decimal.ROUND_HALF_EVEN))


def _cos_sin(x: decimal.Decimal) -> tuple[decimal.Decimal, decimal.Decimal]:
    """(cos x, sin x) from their Taylor series after reduction to [-pi, pi]."""
    two_pi = 2 * _PI
    x = x - two_pi * (x / two_pi).to_integral_value(rounding=decimal.ROUND_HALF_EVEN)
    cos, sin = decimal.Decimal(0), decimal.Decimal(0)
    term, n = decimal.Decimal(1), 0  # x^n / n!
    while abs(term) > decimal.Decimal(10) ** -35 or n < 2:
        if n % 4 == 0:
            cos += term
        elif n % 4 == 1:
            sin += term
        elif n % 4 == 2:
            cos -= term
        else:
            sin -= term
        n += 1
        term = term * x / n
    return cos, sin


def sinusoidal_embedding_fixed(lmbda: float, dim: int = blocks.EMBED_DIM) -> np.ndarray:
    """`blocks.sinusoidal_embedding` of ln(lambda) 64 / ln 8192 at 2^-12, exactly."""
    with decimal.localcontext(_CONTEXT):
        t = _CONTEXT.ln(decimal.Decimal(float(lmbda))) * decimal.Decimal(blocks.EMBED_MAX_PERIOD)
        t = t / _CONTEXT.ln(decimal.Decimal(8192))
        half = dim // 2
        ln_period = _CONTEXT.ln(decimal.Decimal(blocks.EMBED_MAX_PERIOD))
        cos, sin = [], []
        for i in range(half):
            freq = _CONTEXT.exp(-ln_period * i / (half - 1))
            c, s = _cos_sin(t * freq)
            cos.append(_fixed(c))
            sin.append(_fixed(s))
    return np.asarray([cos + sin], np.float64)


@functools.lru_cache(maxsize=1)
def scale_index_boundaries() -> np.ndarray:
    """Raw prior outputs (integers at 2^-12) at which the scale index steps up.

    The index of a prior scale sigma is the smallest j with s_j >= sigma (the papers'
    convention: rounded up), s_j = exp(LOG_SCALE_MIN + j STEP); with sigma =
    exp(softplus(raw + 2.3) - 2.3) that is the number of j < 63 with raw > b_j,
    b_j = ln(exp(ln s_j + 2.3) - 1) - 2.3. Returned as floor(b_j 2^12): raw > b_j
    exactly when the integer raw is > floor(b_j 2^12) (b_j 2^12 is never an integer).
    """
    out = []
    with decimal.localcontext(_CONTEXT):
        floor = decimal.Decimal(str(hvae.LOG_SCALE_FLOOR))
        for j in range(hvae.NUM_SCALES - 1):
            ln_s = decimal.Decimal(hvae.LOG_SCALE_MIN) + j * decimal.Decimal(hvae.SCALE_STEP)
            b = _CONTEXT.ln(_CONTEXT.exp(ln_s + floor) - 1) - floor
            out.append(int((b * _ONE).to_integral_value(rounding=decimal.ROUND_FLOOR)))
    return np.asarray(out, np.float64)


def _quantised(kernel, bias, what: str):
    weights, acc_bias, bits = fp.quantise_layer(kernel, bias, what)
    return tf.constant(weights), tf.constant(acc_bias), 2.0**-bits


class _Linear:
    """A convolution (any kernel, stride 1, SAME), a 1x1 dense layer or a depthwise
    convolution of a trained Keras layer, in fixed point."""

    def __init__(self, kernel, bias, what: str, depthwise: bool = False, gamma=None):
        kernel = np.asarray(kernel, np.float64)
        bias = np.asarray(bias, np.float64)
        if kernel.ndim == 2:
            kernel = kernel[None, None]
        if gamma is not None:  # ConvNeXt's layer scale, folded into the last layer
            kernel = kernel * np.asarray(gamma, np.float64)
            bias = bias * np.asarray(gamma, np.float64)
        self.depthwise = depthwise
        if depthwise:  # (k, k, C, 1): the fan-in of channel c is its k x k taps
            kernel = np.transpose(kernel, (0, 1, 3, 2))
        weights, self.bias, self.step = _quantised(kernel, bias, what)
        self.weights = tf.transpose(weights, (0, 1, 3, 2)) if depthwise else weights
        self.layer = fp.FixedPointLayer(self.weights, self.bias, self.step)

    def __call__(self, x):
        if self.depthwise:
            acc = tf.nn.depthwise_conv2d(x, self.weights, [1, 1, 1, 1], "SAME")
        else:
            acc = tf.nn.conv2d(x, self.weights, 1, "SAME")
        return self.layer.rescale(acc)

    def parameters_bytes(self) -> bytes:
        return self.weights.numpy().tobytes() + self.bias.numpy().tobytes()


def _conv(layer: tf.keras.layers.Layer, what: str, gamma=None) -> _Linear:
    return _Linear(layer.kernel.numpy(), layer.bias.numpy(), what, gamma=gamma)


def layer_norm(x: tf.Tensor) -> tf.Tensor:
    """(x - mean) / sqrt(var + eps) over channels, at 2^-12, in int64 (exact)."""
    xi = tf.cast(x, tf.int64)
    channels = tf.cast(tf.shape(xi)[-1], tf.int64)
    total = tf.reduce_sum(xi, axis=-1, keepdims=True)
    mean = tf.math.floordiv(2 * total + channels, 2 * channels)  # round half up
    d = xi - mean
    var = tf.math.floordiv(tf.reduce_sum(d * d, axis=-1, keepdims=True), channels)
    var = var + LN_EPSILON_FIXED  # at 2^-24
    std = tf.cast(tf.floor(tf.sqrt(tf.cast(var, tf.float64))), tf.int64)
    # The float root can be one off for large var: fix it to floor(sqrt(var)) exactly.
    std = std - tf.cast(std * std > var, tf.int64)
    std = std + tf.cast((std + 1) * (std + 1) <= var, tf.int64)
    std = tf.maximum(std, 1)
    normed = tf.math.floordiv(d * (2 * _ONE) + std, 2 * std)  # round(d 2^12 / std)
    limit = fp.ACTIVATION_LIMIT
    return tf.cast(tf.clip_by_value(normed, -limit, limit), tf.float64)


def _gelu(x):
    return fp.gelu(x, _gelu_table())


@functools.lru_cache(maxsize=1)
def _gelu_table():
    return tf.constant(fp.gelu_lookup_table(approximate=False))


class _ConvNeXt:
    """`blocks.ConvNeXtBlock` in fixed point."""

    def __init__(self, block: blocks.ConvNeXtBlock, what: str):
        self.depthwise = _Linear(
            block.depthwise.depthwise_kernel.numpy(),
            block.depthwise.bias.numpy(),
            f"{what} depthwise",
            depthwise=True,
        )
        self.adaptive = block.adaptive
        if not block.adaptive:
            gamma, beta = block.norm.gamma.numpy(), block.norm.beta.numpy()
            self.affine = _Linear(gamma[None, None, :, None], beta, f"{what} norm", True)
        else:
            self.modulation = _conv(block.modulation, f"{what} adaln")
        self.expand = _conv(block.expand, f"{what} expand")
        self.project = _conv(block.project, f"{what} project", gamma=block.gamma.numpy())

    def modulate(self, embedding):
        """(shift, scale) of the AdaLN from the fixed embedding (1, 256)."""
        out = self.modulation(_gelu(embedding)[:, None, None, :])
        shift, scale = tf.split(out, 2, axis=-1)
        return shift, scale

    def __call__(self, x, embedding=None):
        h = layer_norm(self.depthwise(x))
        if self.adaptive:
            shift, scale = self.modulate(embedding)
            h = fp.round_shift(h * (scale + _ONE), fp.ACTIVATION_BITS) + shift
        else:
            h = self.affine(h)
        h = self.project(_gelu(self.expand(h)))
        limit = float(fp.ACTIVATION_LIMIT)
        return tf.clip_by_value(x + h, -limit, limit)

    def parameters(self) -> list:
        parts = [self.depthwise, self.expand, self.project]
        return parts + [self.modulation if self.adaptive else self.affine]


class _Sequence:
    """Convolutions with GELU between them (a bottleneck, z_proj, a plain conv)."""

    def __init__(self, convs: list, what: str):
        self.convs = [_conv(c, f"{what} {i}") for i, c in enumerate(convs)]

    def __call__(self, x, embedding=None):
        for i, conv in enumerate(self.convs):
            x = conv(x if i == 0 else _gelu(x))
        return x

    def parameters(self) -> list:
        return list(self.convs)


class _PatchUp:
    def __init__(self, layer: blocks.PatchUp, what: str):
        self.conv = _conv(layer.conv, what)
        self.rate = layer.rate

    def __call__(self, x, embedding=None):
        return tf.nn.depth_to_space(self.conv(x), self.rate)

    def parameters(self) -> list:
        return [self.conv]


def _head(layer, what: str) -> _Sequence:
    if isinstance(layer, blocks.Bottleneck):
        return _Sequence(layer.convs, what)
    return _Sequence([layer.conv], what)


class _Latent:
    """The decoder side of `hvae.LatentBlock`: front, prior head, z_proj, end."""

    def __init__(self, block: hvae.LatentBlock, what: str):
        self.front = _ConvNeXt(block.front, f"{what} front")
        self.end = _ConvNeXt(block.end, f"{what} end")
        self.prior_head = _head(block.prior_head, f"{what} prior")
        self.z_proj = _Sequence([layer.conv for layer in block.z_proj], f"{what} z_proj")
        self.z_channels = block.z_channels

    def prior(self, feature, embedding):
        """feature -> (front(feature), mu_p, raw ln-scale), all at 2^-12."""
        feature = self.front(feature, embedding)
        out = self.prior_head(feature)
        return feature, out[..., : self.z_channels], out[..., self.z_channels :]

    def update(self, feature, z, embedding):
        return self.end(feature + self.z_proj(z), embedding)

    def parameters(self) -> list:
        return (
            self.front.parameters()
            + self.end.parameters()
            + self.prior_head.parameters()
            + self.z_proj.parameters()
        )


class FixedPointDecoder:
    """The top-down path of a trained `hvae.HierarchicalVAE` in fixed point.

    Workflow (`coding.vae.codec`):
      decoder = FixedPointDecoder(model)
      embedding = decoder.embed(lmbda)            # None for a fixed-rate model
      output, priors = decoder.top_down(h, w, embedding, choose)
      # choose(k, feature_float, mu_int, index) -> z_int of latent layer k
      image = decoder.to_uint8(output, height, width)
    """

    def __init__(self, model: hvae.HierarchicalVAE):
        self.total_stride = model.total_stride
        self.variable_rate = model.variable_rate
        start = np.round(model.start.numpy().astype(np.float64) * _ONE)
        self.start = tf.constant(np.clip(start, -fp.ACTIVATION_LIMIT, fp.ACTIVATION_LIMIT))
        if model.variable_rate:
            emb = model.embedding
            self.embed_dim = emb.dim
            self.embedding = [_conv(emb.hidden, "embedding hidden"), _conv(emb.out, "embedding")]
        self.steps = []
        for stride, kind, layer in model.decoder_steps:
            what = layer.name
            if kind == "latent":
                self.steps.append((stride, kind, _Latent(layer, what)))
            elif kind == "block":
                self.steps.append((stride, kind, _ConvNeXt(layer, what)))
            else:
                self.steps.append((stride, kind, _PatchUp(layer, what)))
        self.num_latents = sum(1 for _, kind, _ in self.steps if kind == "latent")
        self.boundaries = tf.constant(scale_index_boundaries())

    def parameters_bytes(self) -> bytes:
        parts = [p for _, _, step in self.steps for p in step.parameters()]
        if self.variable_rate:
            parts += self.embedding
        return self.start.numpy().tobytes() + b"".join(p.parameters_bytes() for p in parts)

    def embed(self, lmbda: float):
        """The fixed-point lambda embedding (1, embed_dim), or None (fixed rate)."""
        if not self.variable_rate:
            return None
        with tf.device(fp.EXACT_DEVICE):
            x = tf.constant(sinusoidal_embedding_fixed(lmbda, self.embed_dim))
            x = x[:, None, None, :]
            return self.embedding[1](_gelu(self.embedding[0](x)))[:, 0, 0, :]

    def scale_indexes(self, raw: tf.Tensor) -> tf.Tensor:
        """int32 scale indexes of the raw prior outputs (integers at 2^-12)."""
        flat = tf.reshape(raw, [-1])
        index = tf.searchsorted(self.boundaries, flat, side="left")
        return tf.reshape(tf.cast(index, tf.int32), tf.shape(raw))

    def top_down(self, height: int, width: int, embedding, choose):
        """Runs the decoder for a (padded) height x width image.

        `choose(k, feature, mu, indexes)` returns latent layer k's z (integers at 2^-12):
        feature is the fronted decoder feature (float64 integers), mu the prior mean
        (float64 integers at 2^-12), indexes the int32 scale indexes. Returns (output at
        2^-12, [(mu, indexes)] per layer)."""
        with tf.device(fp.EXACT_DEVICE):
            s = self.total_stride
            feature = tf.tile(self.start, [1, height // s, width // s, 1])
            priors = []
            for _, kind, step in self.steps:
                if kind == "latent":
                    feature, mu, raw = step.prior(feature, embedding)
                    indexes = self.scale_indexes(raw)
                    z = choose(len(priors), feature, mu, indexes)
                    priors.append((mu, indexes))
                    feature = step.update(feature, z, embedding)
                else:
                    feature = step(feature, embedding)
            return feature, priors

    @staticmethod
    def to_uint8(output: tf.Tensor, height: int, width: int) -> np.ndarray:
        """Output (target space [-1, 1] at 2^-12) -> 8-bit pixels: round(255 (o + 1) / 2),
        clipped, in integer arithmetic; cropped to height x width."""
        o = output[0, :height, :width].numpy().astype(np.int64)
        pixels = (255 * (o + _ONE) * 2 + 2 * _ONE) // (4 * _ONE)
        return np.clip(pixels, 0, 255).astype(np.uint8)
