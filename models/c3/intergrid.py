"""Inter-grid context and hyperlatents for C3's context model (Cool-chic 5).

Cool-chic 5.0 (Ladune et al., arXiv 2605.02726; "IFCE", inter-feature context
extraction) decodes the latent grids from coarse to fine and lets the context model of
each of the finest grids see the grids already decoded, not only the causal window of its
own grid. It also adds *hyperlatents*: extra coarse grids that are coded like latents but
feed only the entropy model (the synthesis never sees them).

The grids of a model, in their list order (the order of `flatten_grids`, the symbols and
the bitstream's tensors):

    latent grids 0 .. G-1 (level k = downsampling 2^k), then
    hyperlatent grids at levels G-H .. G-1 (H = num_hyperlatents),

so the coarsest H levels hold two grids each. A grid's *level* fixes its shape.

Inter-grid features of latent grid k (only for the `num_feature_grids` finest latents,
k < num_feature_grids): every grid of a coarser level (latent or hyperlatent, list order)
is brought to level k + 1 by nearest-neighbour upsampling (row y of level k + 1 reads row
y >> (level - k - 1), which is Cool-chic's cascade of nearest x2 steps cropped to each
grid's size), one linear layer maps these inputs to F features at level k + 1, and the
features are upsampled to level k by nearest neighbour (y >> 1). They join the F last
inputs of the context model; grids without them see F zeros. Computing the layer at the
coarser level costs a quarter of computing it at level k and gives the same function,
since its inputs are constant on 2x2 blocks there.

Causality: the features of grid k read only coarser levels, so a decoder that decodes
coarser levels first (any order within them), then grid k in wavefronts, has them.
"""

import math

import tensorflow as tf

from models.c3.latents import grid_levels, grid_shapes


def feature_inputs(levels: list[int], k: int) -> list[int]:
    """Indices of the grids that feed grid k's inter-grid features: coarser levels."""
    return [j for j, level in enumerate(levels) if level > levels[k]]


def nearest_from_level(grid: tf.Tensor, shift: int, shape) -> tf.Tensor:
    """`grid` (h, w[, c]) at a level `shift` coarser, upsampled to `shape` by nearest
    neighbour: output (y, x) reads (y >> shift, x >> shift)."""
    if shift == 0:
        return grid
    rows = tf.range(shape[0]) // 2**shift
    cols = tf.range(shape[1]) // 2**shift
    return tf.gather(tf.gather(grid, rows, axis=0), cols, axis=1)


def stacked_inputs(grids: list[tf.Tensor], levels: list[int], k: int, shape) -> tf.Tensor:
    """The inputs of grid k's features at level k + 1 (`shape`): (h, w, num_inputs)."""
    target = levels[k] + 1
    return tf.stack(
        [
            nearest_from_level(grids[j], levels[j] - target, shape)
            for j in feature_inputs(levels, k)
        ],
        axis=-1,
    )


class InterGridContext(tf.keras.layers.Layer):
    """Per-grid linear layers: coarser grids -> F context features of a fine grid.

    Args:
      num_grids: latent grids G.
      num_hyperlatents: hyperlatent grids H (at the coarsest H levels).
      num_features: F, the features each of the fine grids gets (Cool-chic 5: 6).
      num_feature_grids: how many of the finest latent grids get features (CC5: 3).

    Call with the grid values of every coded grid (list order); returns one (h_k, w_k, F)
    tensor per grid, zeros for grids without features.
    """

    def __init__(
        self,
        num_grids: int,
        num_hyperlatents: int,
        num_features: int,
        num_feature_grids: int,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0 <= num_hyperlatents <= num_grids:
            raise ValueError(f"num_hyperlatents must be in [0, {num_grids}].")
        if num_features < 1:
            raise ValueError(f"inter-grid features must be >= 1, got {num_features}.")
        if not 1 <= num_feature_grids <= num_grids - 1:
            raise ValueError(
                f"inter-grid feature grids must be in [1, num_grids - 1 = {num_grids - 1}], "
                f"got {num_feature_grids}."
            )
        self.num_grids = int(num_grids)
        self.num_hyperlatents = int(num_hyperlatents)
        self.num_features = int(num_features)
        self.num_feature_grids = int(num_feature_grids)
        self.levels = grid_levels(self.num_grids, self.num_hyperlatents)
        # Cool-chic 5: weights N(0, (1 / F^2)^2), biases zero. One initializer per
        # layer: an unseeded Keras initializer repeats its values when reused.
        self.projections = [
            tf.keras.layers.Dense(
                self.num_features,
                kernel_initializer=tf.keras.initializers.RandomNormal(
                    stddev=1.0 / self.num_features**2
                ),
                name=f"grid_{k}",
            )
            for k in range(self.num_feature_grids)
        ]

    def input_sizes(self) -> list[int]:
        return [len(feature_inputs(self.levels, k)) for k in range(self.num_feature_grids)]

    def build(self, input_shape=None):
        for layer, size in zip(self.projections, self.input_sizes(), strict=True):
            layer.build((None, size))
        super().build(input_shape)

    def call(self, grids: list[tf.Tensor]) -> list[tf.Tensor]:
        features = []
        for k, grid in enumerate(grids):
            shape = tf.shape(grid)
            if k >= self.num_feature_grids:
                features.append(tf.zeros([shape[0], shape[1], self.num_features], grid.dtype))
                continue
            coarse_shape = tf.shape(grids[k + 1])  # latent grid k + 1: level k + 1
            inputs = stacked_inputs(grids, self.levels, k, coarse_shape)
            coarse = self.projections[k](inputs)
            features.append(nearest_from_level(coarse, 1, shape))
        return features

    def macs_per_pixel(self, height: int, width: int) -> int:
        """One linear layer per feature grid, at the next coarser level."""
        shapes = grid_shapes(height, width, self.num_grids)
        macs = sum(
            size * self.num_features * shapes[k + 1][0] * shapes[k + 1][1]
            for k, size in enumerate(self.input_sizes())
        )
        return math.ceil(macs / (height * width))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            num_grids=self.num_grids,
            num_hyperlatents=self.num_hyperlatents,
            num_features=self.num_features,
            num_feature_grids=self.num_feature_grids,
        )
        return config
