"""C3's synthesis: a per-pixel MLP followed by residual 3x3 convolutions.

Kim et al. 2023 (C3, arXiv 2312.02753), Sec. 3: the upsampled latents (H x W x 7) go
through a 1x1-convolution MLP 7 -> 18 -> 18 -> 3 with GELU, then through residual
convolutions `x + conv(edge_pad(x))` on 3 channels whose weights and biases start at
zero (so the stack starts as the identity), GELU between them, and the output is
clipped to [0, 1].

Cool-chic 5's synthesis (Ladune et al., Cool-chic 4/5, "hop" preset) is the same
skeleton with other choices, each a constructor argument: ReLU instead of GELU
(`activation`), a 48-wide single hidden layer (`hidden=(48,)`), a parallel linear 1x1
"stabiliser" from the latents to the output added to the main branch (`stabiliser`), and
its small uniform initialisation (`init="cool_chic"`: kernels U(+-1 / (C_out^2
sqrt(C_in))), so the main branch starts near zero and the stabiliser carries the first
steps).

The clip's gradient (`output_clip`): C3 clips hard, so a pixel outside [0, 1] gets no
gradient; a fit whose output lands there early (a bright or dark image) can stay stuck
at a flat, wrong image. "straight_through" (the default here) clips the same in the
forward pass but passes the gradient as if unclipped, so such pixels are pulled back;
the decoded image is the same function of the parameters either way. "none" leaves the
outputs unclipped: lossless C3's synthesis outputs distribution parameters
(`models.c3.lossless`), which are clipped there, each in its own range.
"""

import math

import tensorflow as tf

from models.c3.mlp import dense_stack, gelu_fn, mlp_macs

OUTPUT_CLIPS = ("straight_through", "hard", "none")
ACTIVATIONS = ("gelu", "relu")
INITS = ("fan_in", "cool_chic")


def cool_chic_initializer(fan_in: int, fan_out: int) -> tf.keras.initializers.Initializer:
    """Cool-chic's synthesis init (Cool-chic 5, component/core/synthesis.py): kernels
    uniform in +-1 / (fan_out^2 sqrt(fan_in)), e.g. +-1.6e-4 for 7 -> 48."""
    limit = 1.0 / (fan_out**2 * math.sqrt(fan_in))
    return tf.keras.initializers.RandomUniform(-limit, limit)


def straight_through_clip(x: tf.Tensor, low: float = 0.0, high: float = 1.0) -> tf.Tensor:
    """clip(x, low, high) in the forward pass, the identity's gradient in the backward."""
    return x + tf.stop_gradient(tf.clip_by_value(x, low, high) - x)


def edge_pad(x: tf.Tensor, pad: int) -> tf.Tensor:
    """Replicates the border rows and columns of an (H, W, C) tensor, or of every frame of
    a (T, H, W, C) one, `pad` times."""
    if pad == 0:
        return x
    top = tf.repeat(x[..., :1, :, :], pad, axis=-3)
    bottom = tf.repeat(x[..., -1:, :, :], pad, axis=-3)
    x = tf.concat([top, x, bottom], axis=-3)
    left = tf.repeat(x[..., :1, :], pad, axis=-2)
    right = tf.repeat(x[..., -1:, :], pad, axis=-2)
    return tf.concat([left, x, right], axis=-2)


class Synthesis(tf.keras.layers.Layer):
    """Maps upsampled latents (H, W, num_grids) to an image (H, W, out_channels), or a
    video's (T, H, W, num_grids) frame by frame (C3 video's `per_frame_conv`)."""

    def __init__(
        self,
        num_grids: int = 7,
        hidden: tuple[int, ...] = (18, 18),
        out_channels: int = 3,
        num_residual_layers: int = 2,
        residual_kernel_size: int = 3,
        gelu_approximate: bool = True,
        output_clip: str = "straight_through",
        activation: str = "gelu",
        stabiliser: bool = False,
        init: str = "fan_in",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if output_clip not in OUTPUT_CLIPS:
            raise ValueError(f"output_clip must be one of {OUTPUT_CLIPS}, got {output_clip!r}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}.")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}.")
        if num_grids < 1 or out_channels < 1:
            raise ValueError("num_grids and out_channels must be positive.")
        if any(w < 1 for w in hidden):
            raise ValueError(f"Hidden widths must be positive, got {hidden}.")
        if num_residual_layers < 0:
            raise ValueError("num_residual_layers must be >= 0.")
        if residual_kernel_size < 1 or residual_kernel_size % 2 == 0:
            raise ValueError(f"residual_kernel_size must be odd, got {residual_kernel_size}.")
        self._num_grids = int(num_grids)
        self._hidden = tuple(int(w) for w in hidden)
        self._out_channels = int(out_channels)
        self._num_residual_layers = int(num_residual_layers)
        self._residual_kernel_size = int(residual_kernel_size)
        self._gelu_approximate = bool(gelu_approximate)
        self._output_clip = output_clip
        self._activation_name = activation
        self._stabiliser = bool(stabiliser)
        self._init = init
        self._activation = gelu_fn(gelu_approximate) if activation == "gelu" else tf.nn.relu
        initializer = cool_chic_initializer if init == "cool_chic" else None
        self.mlp = dense_stack(
            self._hidden + (self._out_channels,), self._num_grids, "mlp", initializer=initializer
        )
        self.residual_convs = [
            tf.keras.layers.Conv2D(
                self._out_channels,
                self._residual_kernel_size,
                padding="valid",
                kernel_initializer="zeros",
                bias_initializer="zeros",
                name=f"residual_conv_{i}",
            )
            for i in range(self._num_residual_layers)
        ]
        # Created after the residual convolutions: its variables come last, the order of
        # the bitstream's synthesis parameters.
        self.stabiliser = None
        if self._stabiliser:
            (self.stabiliser,) = dense_stack(
                (self._out_channels,), self._num_grids, "stabiliser", initializer=initializer
            )

    def build(self, input_shape):
        widths = (self._num_grids,) + self._hidden
        for layer, width in zip(self.mlp, widths, strict=True):
            layer.build((None, width))
        for conv in self.residual_convs:
            conv.build((None, None, None, self._out_channels))
        if self.stabiliser is not None:
            self.stabiliser.build((None, self._num_grids))
        super().build(input_shape)

    def call(self, latents: tf.Tensor) -> tf.Tensor:
        x = latents
        for i, layer in enumerate(self.mlp):
            x = layer(x)
            if i < len(self.mlp) - 1:
                x = self._activation(x)
        pad = self._residual_kernel_size // 2
        frames = len(latents.shape) == 4  # C3 video: the convolutions run per frame
        for i, conv in enumerate(self.residual_convs):
            x = x + (conv(edge_pad(x, pad)) if frames else conv(edge_pad(x, pad)[None])[0])
            if i < len(self.residual_convs) - 1:
                x = self._activation(x)
        if self.stabiliser is not None:
            x = x + self.stabiliser(latents)
        if self._output_clip == "none":  # lossless C3: distribution parameters, not pixels
            return x
        if self._output_clip == "straight_through":
            return straight_through_clip(x)
        return tf.clip_by_value(x, 0.0, 1.0)

    def macs_per_pixel(self) -> int:
        mlp = mlp_macs((self._num_grids,) + self._hidden + (self._out_channels,))
        k2 = self._residual_kernel_size**2
        stabiliser = self._num_grids * self._out_channels if self._stabiliser else 0
        return mlp + self._num_residual_layers * k2 * self._out_channels**2 + stabiliser

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            num_grids=self._num_grids,
            hidden=self._hidden,
            out_channels=self._out_channels,
            num_residual_layers=self._num_residual_layers,
            residual_kernel_size=self._residual_kernel_size,
            gelu_approximate=self._gelu_approximate,
            output_clip=self._output_clip,
            activation=self._activation_name,
            stabiliser=self._stabiliser,
            init=self._init,
        )
        return config
