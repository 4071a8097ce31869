"""RC's residual coder: p(x | x_l) for an image x given its lossy reconstruction x_l.

RC (Mentzer, Van Gool & Tschannen, "Learning Better Lossless Compression Using Lossy
Compression", CVPR 2020) codes an image losslessly as a lossy file (BPG) plus the
residual r = x - x_l, range coded with the distribution that a CNN predicts from x_l
alone: every pixel in parallel, the three channels of a pixel coupled R -> G -> B. This
is that CNN, amortised (trained once on crops of a folder, `configs/rc_hevc.py`,
`configs/rc_c3.py`); the coder is `coding.rc.codec`.

    x_l (B, H, W, 3) 8-bit values -> (x_l - 128) / 64
    head   conv 3x3, C, ReLU                                 (full resolution)
    down   conv 3x3 stride 2, C, ReLU                        (half resolution)
    blocks x + conv 3x3 (ReLU (conv 3x3 x)), `blocks` times  (EDSR-style, as RC's)
    up     transposed conv 2x2 stride 2, C, ReLU
    fuse   conv 1x1 of [head, up], C, ReLU                   (RC's U-Net skip)
    tail   conv 3x3 -> 9 outputs, zero at initialisation

With `mixtures` = K > 0 (RC's design, `configs/rc_hevc.py`), the tail has 12 K outputs
per pixel: a discretised logistic mixture of K components per value, coupled R -> G ->
B through the residuals and truncated to the values x_l allows (`models.rc.mixture`),
coded with a CDF per value built in integers (`coding.rc.mixture`).

With `mixtures` = 0 (the first RC models), the 9 outputs per pixel are those of lossless
C3 (`models.c3.lossless`), except that
the means are relative to x_l: mu_c = x_l,c + d_c (8-bit units), then the same
coupling (mu_G += a_GR e_R, mu_B += a_BR e_R + a_BG e_G, e the prediction errors), the
same ln-scales and the same discretised Laplace, so that one fixed-point coder codes
both (`coding.c3.lossless`). Where RC differs, and why:
- (mixtures = 0 only) one Laplace per value coded with the shared Laplace tables
  (`coding.laplace_tables`); the support is not truncated: the mean is clipped to
  [0, 255] and the mass beyond the edges is spent.
- a small CNN (C = 32, a few blocks, ReLU, no GDN) that trains on this CPU in minutes;
  RC's is C = 128 with 16 blocks, trained for 1M steps on 300k images.
RC's per-image scale refinement (tau) is the coder's (`coding.rc.codec`): an offset of
each channel's ln-scale, searched at encode time and sent in the header.
"""

import tensorflow as tf

from models.c3 import lossless
from models.rc import mixture
from models.registry import register_model

NUM_OUTPUTS = lossless.NUM_OUTPUTS
INPUT_CENTRE = 128.0
INPUT_SCALE_BITS = 6  # (x_l - 128) / 64: exact at the fixed-point activation scale
RC_MODELS = ("rc_hevc", "rc_c3")  # the lossy layer: HEVC intra (x265) or a C3 file


def normalise(x_l: tf.Tensor) -> tf.Tensor:
    """The network's input from 8-bit values (floats): (x_l - 128) / 64."""
    return (x_l - INPUT_CENTRE) * 2.0**-INPUT_SCALE_BITS


class ResidualModel(tf.keras.Model):
    """x_l -> the 9 distribution outputs of every pixel (see the module docstring).

    Workflow: `train.py --config configs/rc_hevc.py` trains it on (x, x_l) crop pairs
    with `bits_per_subpixel` as the loss; `coding.rc.codec.RcCodec` runs a fixed-point
    copy of the trained weights (`layers_in_order`) on encoder and decoder side.
    """

    def __init__(self, channels: int = 32, blocks: int = 4, mixtures: int = 0, **kwargs):
        super().__init__(**kwargs)
        if channels < 1 or blocks < 0:
            raise ValueError(f"channels must be >= 1 and blocks >= 0, got {channels}, {blocks}.")
        if not 0 <= mixtures <= 16:
            raise ValueError(f"mixtures must be in [0, 16] (0: one Laplace), got {mixtures}.")
        self.channels, self.num_blocks = int(channels), int(blocks)
        self.mixtures = int(mixtures)
        self.num_outputs = mixture.num_outputs(self.mixtures) if self.mixtures else NUM_OUTPUTS
        conv = tf.keras.layers.Conv2D
        c = self.channels
        self.head = conv(c, 3, padding="same", activation="relu", name="head")
        self.down = conv(c, 3, strides=2, padding="same", activation="relu", name="down")
        self.blocks = [
            (
                conv(c, 3, padding="same", activation="relu", name=f"block{i}_a"),
                conv(c, 3, padding="same", name=f"block{i}_b"),
            )
            for i in range(self.num_blocks)
        ]
        self.up = tf.keras.layers.Conv2DTranspose(
            c, 2, strides=2, padding="same", activation="relu", name="up"
        )
        self.fuse = conv(c, 1, activation="relu", name="fuse")
        if self.mixtures:  # small random weights: K identical components stay identical
            tail_init = dict(
                kernel_initializer=tf.keras.initializers.RandomNormal(stddev=1e-3, seed=0),
                bias_initializer=tf.keras.initializers.Constant(
                    mixture.initial_tail_bias(self.mixtures)
                ),
            )
        else:
            tail_init = dict(kernel_initializer="zeros")
        self.tail = conv(self.num_outputs, 3, padding="same", name="tail", **tail_init)

    def layers_in_order(self) -> list[tf.keras.layers.Layer]:
        """Every convolution, in the order of the fixed-point decoder's parameters."""
        inner = [layer for pair in self.blocks for layer in pair]
        return [self.head, self.down, *inner, self.up, self.fuse, self.tail]

    def call(self, x_l: tf.Tensor) -> tf.Tensor:
        """x_l (B, H, W, 3) 8-bit values (float) -> outputs (B, H, W, num_outputs).

        Odd sizes are edge padded to even ones for the stride-2 path and cropped back."""
        h, w = tf.shape(x_l)[1], tf.shape(x_l)[2]
        x = normalise(pad_to_even(x_l))
        head = self.head(x)
        y = self.down(head)
        for a, b in self.blocks:
            y = y + b(a(y))
        y = self.up(y)
        y = self.fuse(tf.concat([head, y], axis=-1))
        return self.tail(y)[:, :h, :w]

    def bits_per_subpixel(self, x: tf.Tensor, x_l: tf.Tensor) -> tf.Tensor:
        """Mean bits per 8-bit value of x (B, H, W, 3) given x_l (the training loss)."""
        outputs = self(x_l)
        if self.mixtures:
            return tf.reduce_mean(mixture.fused_bits(outputs, x_l, x, self.mixtures))
        return tf.reduce_mean(lossless.pixel_bits(absolute_outputs(outputs, x_l), x))

    def macs_per_pixel(self) -> float:
        """Multiply-accumulates per pixel of the decoder's network."""
        c = self.channels
        full = 9 * 3 * c + 2 * c * c + 9 * c * self.num_outputs  # head, fuse, tail
        half = 9 * c * c * (1 + 2 * self.num_blocks) + 4 * c * c  # down, blocks, up
        return full + half / 4


def pad_to_even(x: tf.Tensor) -> tf.Tensor:
    """Edge padding of (B, H, W, C) to even H and W."""
    h, w = tf.shape(x)[1], tf.shape(x)[2]
    x = tf.concat([x, x[:, h - 1 :][:, : h % 2]], axis=1)
    return tf.concat([x, x[:, :, w - 1 :][:, :, : w % 2]], axis=2)


def absolute_outputs(outputs: tf.Tensor, x_l: tf.Tensor) -> tf.Tensor:
    """Lossless C3's outputs from the residual model's: means (x_l + d) / 255."""
    means = (x_l + outputs[..., 0:3]) / 255.0
    return tf.concat([means, outputs[..., 3:]], axis=-1)


@register_model(*RC_MODELS, family="residual")
def build_residual_model(model_config):
    """The residual CNN of `config.model` (channels, blocks, mixtures), variables created."""
    model = ResidualModel(
        model_config.channels,
        model_config.blocks,
        model_config.get("mixtures", 0),
        name=model_config.name,
    )
    model(tf.zeros([1, 2, 2, 3]))
    return model
