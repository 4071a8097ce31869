"""Bilinear upsampling of the latent grids to the image resolution (C3's "image_resize").

C3 (Kim et al. 2023, arXiv 2312.02753) does not learn its upsampler: each grid is
resized to H x W with bilinear interpolation and half-pixel centres, and the grids are
stacked into an H x W x num_grids tensor that the per-pixel synthesis consumes. At the
image border the sampling position is clamped to the edge, which gives the same weights as
JAX's renormalised triangle kernel that C3 uses (and as `tf.image.resize`).

We interpolate with two gathers per axis and precomputed weights instead of calling
`tf.image.resize`: the result is the same, but under XLA the gradient of the resize op is
~20x slower than this on a CPU (measured: 165 ms vs 7 ms per step for Kodak's six grids).
"""

import math

import numpy as np
import tensorflow as tf

from models.c3.latents import grid_shapes

# C3 counts 8 MACs per output pixel for one bilinearly upsampled grid.
BILINEAR_MACS_PER_PIXEL = 8


def bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indexes (lower, upper) and weight of the upper tap for resizing n_in -> n_out.

    Half-pixel centres: output sample i sits at input coordinate (i + 1/2) n_in / n_out
    - 1/2, clamped to the first and last input samples.
    """
    x = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    lower = np.floor(x)
    weight = (x - lower).astype(np.float32)
    i0 = np.clip(lower, 0, n_in - 1).astype(np.int32)
    i1 = np.clip(lower + 1, 0, n_in - 1).astype(np.int32)
    return i0, i1, weight


def linear_resize_axis(x: tf.Tensor, n_out: int, axis: int) -> tf.Tensor:
    """Linear resize (half-pixel centres, edge clamp) of one axis of a static-shape tensor."""
    n_in = x.shape[axis]
    if n_in == n_out:
        return x
    i0, i1, weight = bilinear_taps(n_in, n_out)
    shape = [1] * len(x.shape)
    shape[axis] = n_out
    lower = tf.gather(x, i0, axis=axis)
    upper = tf.gather(x, i1, axis=axis)
    return lower + (upper - lower) * weight.reshape(shape)


def bilinear_resize(grid: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
    """Bilinear resize (half-pixel centres, edge clamp) of a (h, w) grid of static shape."""
    for axis, n_out in enumerate(size):
        grid = linear_resize_axis(grid, n_out, axis)
    return grid


class Upsampling(tf.keras.layers.Layer):
    """Resizes every grid to (height, width) and stacks them along the channel axis."""

    def __init__(self, height: int, width: int, **kwargs):
        super().__init__(**kwargs)
        if height < 1 or width < 1:
            raise ValueError(f"Image size must be positive, got {height}x{width}.")
        self._height = int(height)
        self._width = int(width)

    def call(self, grids: list[tf.Tensor]) -> tf.Tensor:
        """Maps grids of shape (h_k, w_k) to one tensor of shape (H, W, num_grids)."""
        size = (self._height, self._width)
        return tf.stack([bilinear_resize(grid, size) for grid in grids], axis=-1)

    def macs_per_pixel(self, num_grids: int) -> int:
        """C3's count: every grid but the full-resolution one costs 8 MACs per pixel."""
        return BILINEAR_MACS_PER_PIXEL * (num_grids - 1)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(height=self._height, width=self._width)
        return config


# Learned upsampling (Cool-chic 5; Ladune et al., arXiv 2411.19249 and 2605.02726).
#
# A cascade from the coarsest grid to the finest: at each level the running stack of
# channels is upsampled by 2 with a learned separable transposed filter, the next finer
# grid is filtered with a learned separable pre-concatenation filter and added to itself,
# and the two are concatenated (finest first). Each 1-D filter is symmetric:
#
#   transposed, 8 taps (a, b, c, d, d, c, b, a): a stride-2 transposed convolution is two
#     4-tap polyphase filters; output 2i reads inputs i-2..i+1 with (a, c, d, b), output
#     2i+1 reads inputs i-1..i+2 with (b, d, c, a); inputs beyond the edge repeat it
#     (replicate padding);
#   pre-concatenation, 7 taps (p0, p1, p2, p3, p2, p1, p0), zero padding.
#
# Initialised as Cool-chic 5 does: the transposed filter is bicubic (a = -0.75, half-pixel
# centres) with its sign flipped (each 1-D pass then sums to -1, the separable 2-D pass
# to +1: bicubic upsampling exactly); the pre-concatenation filter is a Dirac, so a grid
# enters the stack as 2 y at first.
TRANSPOSED_INIT = (0.03515625, 0.10546875, -0.26171875, -0.87890625)
PREFILTER_INIT = (0.0, 0.0, 0.0, 1.0)
UPSAMPLING_CHOICES = ("bilinear", "learned")


def transposed_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Input indexes (4, n_out) and parity (n_out,) of the stride-2 transposed filter.

    Output m (m < n_out <= 2 n_in) reads inputs m // 2 - 2 + t + (m odd), t = 0..3,
    clamped to the edge; parity 1 for odd outputs.
    """
    if not n_in <= n_out <= 2 * n_in:
        raise ValueError(f"cannot upsample {n_in} samples by 2 to {n_out}")
    m = np.arange(n_out)
    odd = m % 2
    index = m[None] // 2 - 2 + np.arange(4)[:, None] + odd[None]
    return np.clip(index, 0, n_in - 1).astype(np.int32), odd.astype(np.int32)


def phase_weights(half: tf.Tensor) -> tf.Tensor:
    """(4, 2): the 4 tap weights of even (column 0) and odd (column 1) outputs."""
    a, b, c, d = tf.unstack(half)
    return tf.stack([tf.stack([a, b]), tf.stack([c, d]), tf.stack([d, c]), tf.stack([b, a])])


def prefilter_taps(half: tf.Tensor) -> tf.Tensor:
    """The 7 taps (p0, p1, p2, p3, p2, p1, p0) of a pre-concatenation filter."""
    return tf.concat([half, tf.reverse(half[:3], [0])], axis=0)


def _along(x: tf.Tensor, axis: int, fn) -> tf.Tensor:
    """Applies a 1-D operation on axis 0 to `axis` of a (c, h, w) tensor."""
    if axis == 1:
        return fn(x)
    return tf.transpose(fn(tf.transpose(x, [0, 2, 1])), [0, 2, 1])


def upsample_axis(x: tf.Tensor, half: tf.Tensor, n_out: int, axis: int) -> tf.Tensor:
    """The transposed filter along `axis` (1: rows, 2: columns) of (c, h, w) to n_out."""

    def rows(x):
        index, odd = transposed_taps(int(x.shape[1]), n_out)
        weights = tf.gather(phase_weights(half), odd, axis=1)  # (4, n_out)
        weights = tf.cast(weights, x.dtype)[:, None, :, None]
        return tf.add_n([tf.gather(x, index[t], axis=1) * weights[t] for t in range(4)])

    return _along(x, axis, rows)


def prefilter_axis(x: tf.Tensor, half: tf.Tensor, axis: int) -> tf.Tensor:
    """The 7-tap pre-concatenation filter along `axis` of (c, h, w), zero padding."""

    def rows(x):
        n = int(x.shape[1])
        padded = tf.pad(x, [[0, 0], [3, 3], [0, 0]])
        taps = tf.cast(prefilter_taps(half), x.dtype)
        return tf.add_n([padded[:, t : t + n] * taps[t] for t in range(7)])

    return _along(x, axis, rows)


def learned_cascade(grids, transposed, prefilter, upsample_fn=None, prefilter_fn=None):
    """The cascade from the coarsest grid: (c, H, W) with the finest grid first.

    `transposed` and `prefilter` are (num_grids - 1, 4): the half filters of each level
    (level k joins grid k to the stack of grids k + 1 ...). `upsample_fn(x, half, n_out,
    axis)` and `prefilter_fn(x, half, axis)` default to the float filters above; the
    fixed-point decoder passes its own, rounded ones.
    """
    upsample_fn = upsample_fn or upsample_axis
    prefilter_fn = prefilter_fn or prefilter_axis
    stack = grids[-1][None]
    for k in range(len(grids) - 2, -1, -1):
        h, w = grids[k].shape
        up = upsample_fn(upsample_fn(stack, transposed[k], h, 1), transposed[k], w, 2)
        y = grids[k][None]
        filtered = prefilter_fn(prefilter_fn(y, prefilter[k], 1), prefilter[k], 2)
        stack = tf.concat([y + filtered, up], axis=0)
    return stack


class LearnedUpsampling(tf.keras.layers.Layer):
    """Cool-chic 5's learned upsampling (see above) as a layer: grids -> (H, W, grids).

    Its parameters are two (num_grids - 1, 4) matrices of half filters, quantised at
    their own step (`fit.upsampling_steps`) and sent with the networks.
    """

    def __init__(self, height: int, width: int, num_grids: int, **kwargs):
        super().__init__(**kwargs)
        if height < 1 or width < 1:
            raise ValueError(f"Image size must be positive, got {height}x{width}.")
        if num_grids < 1:
            raise ValueError(f"num_grids must be positive, got {num_grids}.")
        self._height, self._width, self._num_grids = int(height), int(width), int(num_grids)
        levels = max(self._num_grids - 1, 0)
        self.transposed = self.add_weight(
            name="transposed",
            shape=(levels, 4),
            initializer=tf.keras.initializers.Constant(np.tile(TRANSPOSED_INIT, (levels, 1))),
        )
        self.prefilter = self.add_weight(
            name="prefilter",
            shape=(levels, 4),
            initializer=tf.keras.initializers.Constant(np.tile(PREFILTER_INIT, (levels, 1))),
        )

    def call(self, grids: list[tf.Tensor]) -> tf.Tensor:
        if grids[0].shape != (self._height, self._width):
            raise ValueError(f"grid 0 must be {self._height}x{self._width}")
        stack = learned_cascade(grids, self.transposed, self.prefilter)
        return tf.transpose(stack, [1, 2, 0])

    def macs_per_pixel(self, num_grids: int) -> int:
        """Per pixel: each level's two transposed passes (4 MACs per output sample and
        channel) and two pre-concatenation passes (7 each, plus the residual add)."""
        shapes = grid_shapes(self._height, self._width, num_grids)
        total = 0
        for k in range(num_grids - 1):
            (h, w), w1 = shapes[k], shapes[k + 1][1]
            channels = num_grids - 1 - k
            total += channels * 4 * (h * w1 + h * w) + (7 * (h * w + h * w) + h * w)
        return math.ceil(total / (self._height * self._width))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(height=self._height, width=self._width, num_grids=self._num_grids)
        return config


def build_upsampling(kind: str, height: int, width: int, num_grids: int):
    """The upsampling layer a config names ("bilinear": C3's; "learned": Cool-chic 5's)."""
    if kind == "bilinear":
        return Upsampling(height, width)
    if kind == "learned":
        return LearnedUpsampling(height, width, num_grids)
    raise ValueError(f"Unknown upsampling {kind!r}; use one of {UPSAMPLING_CHOICES}.")
