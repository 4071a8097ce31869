"""The building blocks of the hierarchical VAEs (QRes-VAE, QARV): ConvNeXt blocks, patch
down- and up-sampling, the VDVAE bottleneck and QARV's lambda embedding.

Duan et al., "Lossy Image Compression with Quantized Hierarchical VAEs" (WACV 2023) and
"QARV: Quantization-Aware ResNet VAE for Lossy Image Compression" (TPAMI 2023), in Keras.
Every block takes `(x, embedding)`: the embedding (B, EMBED_DIM) of the rate parameter
lambda, or None for a fixed-rate model; only the adaptive blocks read it.

Each block also reports its multiply-accumulates per position of its own resolution
(`macs_per_position`): convolutions k^2 C_in C_out, depthwise convolutions k^2 C, dense
layers C_in C_out; normalisations, activations and the per-image AdaLN projections are
not counted (the usual convention, as for the other models of the zoo).
"""

import math

import tensorflow as tf

EMBED_DIM = 256  # QARV's lambda embedding width
EMBED_MAX_PERIOD = 64.0
LAYER_SCALE_INIT = 1e-6  # ConvNeXt's layer scale: each block starts as the identity
LN_EPSILON = 1e-6


def gelu(x):
    """GELU with erf, PyTorch's nn.GELU default that QRes-VAE and QARV use."""
    return tf.nn.gelu(x, approximate=False)


class ConvNeXtBlock(tf.keras.layers.Layer):
    """x + gamma * MLP(LN(dwconv_k(x))): ConvNeXt (Liu et al., CVPR 2022) as QRes-VAE uses it.

    depthwise k x k -> LayerNorm (eps 1e-6) -> dense C -> int(ratio C), GELU -> dense -> C,
    times a per-channel layer scale gamma (init 1e-6), added to the input. With
    `adaptive=True` (QARV's AdaLN) the LayerNorm has no affine parameters; instead
    (shift, scale) = dense(GELU(embedding)) and the normalised x becomes x (1 + scale) +
    shift, so every block is conditioned on lambda.
    """

    def __init__(
        self,
        width: int,
        kernel: int,
        mlp_ratio: float = 2,
        adaptive=False,
        layer_scale: float = LAYER_SCALE_INIT,
        **kw,
    ):
        super().__init__(**kw)
        if width < 1 or kernel < 1 or kernel % 2 == 0 or mlp_ratio < 1:
            raise ValueError(f"bad ConvNeXt block: width {width}, kernel {kernel}.")
        self.width, self.kernel, self.mlp_ratio = int(width), int(kernel), float(mlp_ratio)
        self.hidden = int(self.mlp_ratio * self.width)
        self.adaptive = bool(adaptive)
        self.layer_scale = float(layer_scale)
        self.depthwise = tf.keras.layers.DepthwiseConv2D(kernel, padding="same", name="dw")
        self.norm = tf.keras.layers.LayerNormalization(
            epsilon=LN_EPSILON, center=not adaptive, scale=not adaptive, name="norm"
        )
        self.expand = tf.keras.layers.Dense(self.hidden, name="expand")
        self.project = tf.keras.layers.Dense(width, name="project")
        self.modulation = tf.keras.layers.Dense(2 * width, name="adaln") if adaptive else None

    def build(self, input_shape):
        self.gamma = self.add_weight(
            "layer_scale",
            shape=(self.width,),
            initializer=tf.keras.initializers.Constant(self.layer_scale),
        )
        super().build(input_shape)

    def call(self, x, embedding=None):
        h = self.norm(self.depthwise(x))
        if self.adaptive:
            if embedding is None:
                raise ValueError("an adaptive ConvNeXt block needs the lambda embedding.")
            shift, scale = tf.split(self.modulation(gelu(embedding)), 2, axis=-1)
            h = h * (1.0 + scale[:, None, None, :]) + shift[:, None, None, :]
        h = self.project(gelu(self.expand(h)))
        return x + self.gamma * h

    def macs_per_position(self) -> int:
        return self.kernel**2 * self.width + 2 * self.width * self.hidden


class PatchDown(tf.keras.layers.Layer):
    """Downsampling by `rate` with a convolution whose kernel is the stride ("patchify")."""

    def __init__(self, width: int, rate: int, **kw):
        super().__init__(**kw)
        self.width, self.rate = int(width), int(rate)
        self.conv = tf.keras.layers.Conv2D(width, rate, strides=rate, name="conv")

    def call(self, x, embedding=None):
        self.in_channels = int(x.shape[-1])
        return self.conv(x)

    def macs_per_position(self) -> int:
        """Per position of the *output* (coarse) resolution."""
        return self.rate**2 * self.in_channels * self.width


class PatchUp(tf.keras.layers.Layer):
    """Upsampling by `rate`: 1x1 convolution to C r^2 channels, then depth_to_space."""

    def __init__(self, width: int, rate: int, **kw):
        super().__init__(**kw)
        self.width, self.rate = int(width), int(rate)
        self.conv = tf.keras.layers.Conv2D(width * rate * rate, 1, name="conv")

    def call(self, x, embedding=None):
        self.in_channels = int(x.shape[-1])
        return tf.nn.depth_to_space(self.conv(x), self.rate)

    def macs_per_position(self) -> int:
        """Per position of the *input* (coarse) resolution."""
        return self.in_channels * self.width * self.rate**2


class Bottleneck(tf.keras.layers.Layer):
    """VDVAE's bottleneck: 1x1 -> 3x3 -> 3x3 -> 1x1 with GELU between, hidden width
    `hidden`; the prior head's last convolution starts at zero (`zero_last`), so the prior
    starts as a unit Gaussian at mean 0."""

    def __init__(self, hidden: int, out: int, zero_last: bool = False, **kw):
        super().__init__(**kw)
        self.hidden, self.out = int(hidden), int(out)
        last = "zeros" if zero_last else "glorot_uniform"
        self.convs = [
            tf.keras.layers.Conv2D(hidden, 1, name="c1"),
            tf.keras.layers.Conv2D(hidden, 3, padding="same", name="c2"),
            tf.keras.layers.Conv2D(hidden, 3, padding="same", name="c3"),
            tf.keras.layers.Conv2D(out, 1, kernel_initializer=last, name="c4"),
        ]

    def call(self, x, embedding=None):
        self.in_channels = int(x.shape[-1])
        x = self.convs[0](x)
        for conv in self.convs[1:]:
            x = conv(gelu(x))
        return x

    def macs_per_position(self) -> int:
        h = self.hidden
        return self.in_channels * h + 2 * 9 * h * h + h * self.out


class Conv(tf.keras.layers.Layer):
    """A plain k x k convolution with the blocks' call signature."""

    def __init__(self, width: int, kernel: int, zero_init: bool = False, **kw):
        super().__init__(**kw)
        self.width, self.kernel = int(width), int(kernel)
        init = "zeros" if zero_init else "glorot_uniform"
        self.conv = tf.keras.layers.Conv2D(
            width, kernel, padding="same", kernel_initializer=init, name="conv"
        )

    def call(self, x, embedding=None):
        self.in_channels = int(x.shape[-1])
        return self.conv(x)

    def macs_per_position(self) -> int:
        return self.kernel**2 * self.in_channels * self.width


def sinusoidal_embedding(t, dim: int = EMBED_DIM, max_period: float = EMBED_MAX_PERIOD):
    """(B,) -> (B, dim): [cos(t f_i), sin(t f_i)], f_i = max_period^(-i / (dim / 2 - 1)),
    i = 0 .. dim / 2 - 1 (QARV's: frequencies from 1 down to 1 / max_period)."""
    half = dim // 2
    freqs = tf.exp(-math.log(max_period) * tf.range(half, dtype=tf.float32) / (half - 1))
    args = tf.cast(t, tf.float32)[:, None] * freqs[None, :]
    return tf.concat([tf.cos(args), tf.sin(args)], axis=-1)


class LambdaEmbedding(tf.keras.layers.Layer):
    """QARV's rate conditioning: lambda -> ln(lambda) 64 / ln(8192) -> sinusoidal embedding
    (256, max period 64) -> dense 256, GELU, dense 256. The result feeds every AdaLN."""

    def __init__(self, dim: int = EMBED_DIM, **kw):
        super().__init__(**kw)
        self.dim = int(dim)
        self.hidden = tf.keras.layers.Dense(dim, name="hidden")
        self.out = tf.keras.layers.Dense(dim, name="out")

    def call(self, lmbda):
        t = tf.math.log(tf.cast(lmbda, tf.float32)) * (EMBED_MAX_PERIOD / math.log(8192.0))
        return self.out(gelu(self.hidden(sinusoidal_embedding(t, self.dim))))
