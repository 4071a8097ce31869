"""Analysis and synthesis transforms of the amortised codecs, and their decoding cost.

- `GDNAnalysis` / `GDNSynthesis`: four 5x5 stride-2 convolutions with GDN / IGDN between
  them (Balle et al., "End-to-end optimized image compression", ICLR 2017; the 5x5
  variant of Balle et al., "Variational image compression with a scale hyperprior",
  ICLR 2018).
- `ELICAnalysis`: four 5x5 stride-2 convolutions with residual bottleneck blocks and
  attention (He et al., "ELIC", CVPR 2022), the encoder of the shallow decoders.
- `CNNAnalysis`: four 5x5 stride-2 convolutions with leaky ReLU (shallow-ntc's
  `two_layer_syn2` encoder).
- `HyperAnalysis` / `HyperSynthesis`: the mean-scale hyperprior's side transforms (Minnen
  et al., "Joint autoregressive and hierarchical priors", NeurIPS 2018): conv3 s1 ->
  conv5 s2 -> conv5 s2, and convT5 s2 -> convT5 s2 -> convT3 s1 to (mu, log sigma).
- `JPEGLikeSynthesis` / `TwoLayerSynthesis`: the shallow decoders of Yang & Mandt,
  "Computationally-efficient neural image compression with shallow decoders", ICCV 2023.

Every transform reports `macs(input_shape)`: multiply-accumulates per image for an input
of that (height, width, channels) shape, and the output shape. A convolution costs
k*k*Cin*Cout per output position; a transposed convolution k*k*Cin*Cout per *input*
position (each input scatters one kernel); GDN's normalisation pool is a 1x1
convolution, C*C per position. Biases and element-wise operations are not MACs.
"""

import tensorflow as tf
import tensorflow_compression as tfc


def conv(filters: int, kernel_size: int, strides: int = 1, activation=None, name=None):
    return tf.keras.layers.Conv2D(
        filters, kernel_size, strides, padding="same", activation=activation, name=name
    )


def conv_transpose(filters: int, kernel_size: int, strides: int = 1, activation=None, name=None):
    return tf.keras.layers.Conv2DTranspose(
        filters, kernel_size, strides, padding="same", activation=activation, name=name
    )


def layer_macs(layer, shape: tuple[int, int, int]) -> tuple[int, tuple[int, int, int]]:
    """(MACs, output shape) of one layer for an input of shape (H, W, C)."""
    if hasattr(layer, "macs"):
        return layer.macs(shape)
    h, w, c = shape
    if isinstance(layer, tf.keras.layers.Conv2DTranspose):  # before Conv2D: it subclasses it
        k, s = layer.kernel_size[0] * layer.kernel_size[1], layer.strides[0]
        return h * w * k * c * layer.filters, (h * s, w * s, layer.filters)
    if isinstance(layer, tf.keras.layers.Conv2D):
        k, s = layer.kernel_size[0] * layer.kernel_size[1], layer.strides[0]
        oh, ow = -(-h // s), -(-w // s)
        return oh * ow * k * c * layer.filters, (oh, ow, layer.filters)
    if isinstance(layer, tfc.GDN):
        return h * w * c * c, shape
    if isinstance(layer, (tf.keras.layers.Activation, tf.keras.layers.LeakyReLU)):
        return 0, shape
    raise TypeError(f"no MAC count for layer {layer.name} ({type(layer).__name__}).")


def sequence_macs(layers, shape):
    total = 0
    for layer in layers:
        macs, shape = layer_macs(layer, shape)
        total += macs
    return total, shape


class Stack(tf.keras.layers.Layer):
    """Layers applied in sequence; the base of the transforms below."""

    def __init__(self, layers, **kwargs):
        super().__init__(**kwargs)
        self.stack = list(layers)

    def call(self, x):
        for layer in self.stack:
            x = layer(x)
        return x

    def macs(self, shape):
        return sequence_macs(self.stack, shape)


def _check_channels(channels, n: int, what: str) -> tuple[int, ...]:
    channels = tuple(int(c) for c in channels)
    if len(channels) != n or min(channels) < 1:
        raise ValueError(f"{what} needs {n} positive channel counts, got {channels}.")
    return channels


class GDNAnalysis(Stack):
    """x (H, W, 3) -> y (H/16, W/16, M): 3 x (conv5 s2 + GDN) + conv5 s2."""

    def __init__(self, channels=(192, 192, 192, 320), **kwargs):
        self.channels = _check_channels(channels, 4, "GDNAnalysis")
        layers = []
        for i, c in enumerate(self.channels):
            layers.append(conv(c, 5, 2, name=f"conv{i}"))
            if i < 3:
                layers.append(tfc.GDN(name=f"gdn{i}"))
        super().__init__(layers, **kwargs)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


class GDNSynthesis(Stack):
    """y (h, w, M) -> x (16h, 16w, 3): 3 x (convT5 s2 + IGDN) + convT5 s2."""

    def __init__(self, channels=(192, 192, 192), **kwargs):
        self.channels = _check_channels(channels, 3, "GDNSynthesis")
        layers = []
        for i, c in enumerate(self.channels):
            layers += [conv_transpose(c, 5, 2, name=f"convT{i}"), tfc.GDN(inverse=True)]
        layers.append(conv_transpose(3, 5, 2, name="convT3"))
        super().__init__(layers, **kwargs)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


class CNNAnalysis(Stack):
    """x -> y: four conv5 s2 with leaky ReLU between them (no GDN)."""

    def __init__(self, channels=(256, 256, 256, 320), **kwargs):
        self.channels = _check_channels(channels, 4, "CNNAnalysis")
        act = tf.nn.leaky_relu
        layers = [
            conv(c, 5, 2, activation=act if i < 3 else None, name=f"conv{i}")
            for i, c in enumerate(self.channels)
        ]
        super().__init__(layers, **kwargs)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


class ResidualBottleneck(tf.keras.layers.Layer):
    """x + conv1x1(relu(conv3x3(relu(conv1x1(x))))), halving the channels inside (ELIC)."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        half = max(self.channels // 2, 1)
        self.stack = [
            conv(half, 1, activation="relu"),
            conv(half, 3, activation="relu"),
            conv(self.channels, 1),
        ]

    def call(self, x):
        y = x
        for layer in self.stack:
            y = layer(y)
        return x + y

    def macs(self, shape):
        return sequence_macs(self.stack, shape)[0], shape

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


class Attention(tf.keras.layers.Layer):
    """Simplified attention (Cheng et al. 2020, used by ELIC): x + trunk(x) * sigmoid(mask(x)),
    trunk and mask being three residual units each, the mask ending in a 1x1 convolution."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.trunk = [ResidualBottleneck(self.channels) for _ in range(3)]
        self.mask = [ResidualBottleneck(self.channels) for _ in range(3)]
        self.mask_out = conv(self.channels, 1)

    def call(self, x):
        trunk, mask = x, x
        for block in self.trunk:
            trunk = block(trunk)
        for block in self.mask:
            mask = block(mask)
        return x + trunk * tf.sigmoid(self.mask_out(mask))

    def macs(self, shape):
        return sequence_macs(self.trunk + self.mask + [self.mask_out], shape)[0], shape

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


class ELICAnalysis(Stack):
    """ELIC's analysis: conv5 s2 -> residual blocks, attention after stages 2 and 4."""

    def __init__(self, channels=(192, 192, 192, 320), num_residual_blocks: int = 3, **kwargs):
        self.channels = _check_channels(channels, 4, "ELICAnalysis")
        self.num_residual_blocks = int(num_residual_blocks)
        layers = []
        for i, c in enumerate(self.channels):
            layers.append(conv(c, 5, 2, name=f"conv{i}"))
            if i < 3:
                layers += [ResidualBottleneck(c) for _ in range(self.num_residual_blocks)]
            if i in (1, 3):
                layers.append(Attention(c))
        super().__init__(layers, **kwargs)

    def get_config(self):
        return {
            **super().get_config(),
            "channels": self.channels,
            "num_residual_blocks": self.num_residual_blocks,
        }


class HyperAnalysis(Stack):
    """y (h, w, M) -> z (h/4, w/4, C): conv3 s1 -> conv5 s2 -> conv5 s2, ReLU between."""

    def __init__(self, channels=(320, 320, 320), **kwargs):
        self.channels = _check_channels(channels, 3, "HyperAnalysis")
        a, b, c = self.channels
        layers = [conv(a, 3, 1, "relu"), conv(b, 5, 2, "relu"), conv(c, 5, 2)]
        super().__init__(layers, **kwargs)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


class HyperSynthesis(Stack):
    """z (h/4, w/4, C) -> (mu, log sigma) (h, w, 2M): convT5 s2 -> convT5 s2 -> convT3 s1.

    The hidden widths are M and 1.5 M (320, 480 for M = 320), as in the shallow-ntc
    models whose decoding cost zoo.md quotes.
    """

    def __init__(self, channels=(320, 480), latent_channels: int = 320, **kwargs):
        self.channels = _check_channels(channels, 2, "HyperSynthesis")
        self.latent_channels = int(latent_channels)
        a, b = self.channels
        layers = [
            conv_transpose(a, 5, 2, "relu"),
            conv_transpose(b, 5, 2, "relu"),
            conv_transpose(2 * self.latent_channels, 3, 1),
        ]
        super().__init__(layers, **kwargs)

    def call(self, z):
        """Returns (mu, log_scale), each (h, w, M)."""
        out = super().call(z)
        return out[..., : self.latent_channels], out[..., self.latent_channels :]

    def get_config(self):
        return {
            **super().get_config(),
            "channels": self.channels,
            "latent_channels": self.latent_channels,
        }


class JPEGLikeSynthesis(Stack):
    """One transposed convolution, kernel 18, stride 16, to RGB: each latent vector paints
    an 18x18 patch, overlapping its neighbours by 2 pixels (shallow-ntc's "JPEG-like")."""

    def __init__(self, kernel_size: int = 18, stride: int = 16, **kwargs):
        self.kernel_size, self.stride = int(kernel_size), int(stride)
        super().__init__([conv_transpose(3, self.kernel_size, self.stride)], **kwargs)

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "stride": self.stride}


class TwoLayerSynthesis(tf.keras.layers.Layer):
    """convT(k2, s2)( IGDN(convT(k1, s1)(y)) [+ convT(k1, s1)(y)] ) (shallow-ntc).

    With `residual=True` a second, linear transposed convolution of the same shape runs
    beside the nonlinear one and the two are added (`two_layer_syn`); without it, the
    synthesis is two layers in sequence (`two_layer_syn2`).
    """

    def __init__(
        self,
        hidden_channels: int = 12,
        kernel_sizes=(13, 5),
        strides=(8, 2),
        residual: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_channels, self.residual = int(hidden_channels), bool(residual)
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.strides = tuple(int(s) for s in strides)
        k1, k2 = self.kernel_sizes
        s1, s2 = self.strides
        self.base = conv_transpose(self.hidden_channels, k1, s1, name="base")
        self.igdn = tfc.GDN(inverse=True, name="igdn")
        self.linear = conv_transpose(self.hidden_channels, k1, s1, name="linear")
        self.out = conv_transpose(3, k2, s2, name="out")

    def call(self, y):
        hidden = self.igdn(self.base(y))
        if self.residual:
            hidden = hidden + self.linear(y)
        return self.out(hidden)

    def macs(self, shape):
        layers = [self.base, self.igdn, self.out]
        total, out_shape = sequence_macs(layers, shape)
        if self.residual:
            total += layer_macs(self.linear, shape)[0]
        return total, out_shape

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_channels": self.hidden_channels,
            "kernel_sizes": self.kernel_sizes,
            "strides": self.strides,
            "residual": self.residual,
        }
