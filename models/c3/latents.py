"""Multi-resolution latent grids of C3 / COOL-CHIC.

COOL-CHIC (Ladune et al. 2023, arXiv 2212.05458) and C3 (Kim et al. 2023, arXiv
2312.02753) represent an image of size H x W by `num_grids` single-channel grids; grid k
has shape ceil(H / 2^k) x ceil(W / 2^k), so grid 0 is full resolution. Grids start at
zero. A fixed gain 2^k multiplies grid k before quantisation (it acts as a per-grid
learning-rate multiplier: C3's); Cool-chic 5 uses one gain for all grids (16 symbols per
unit of parameter: `gain_factor` 1, `latent_gain` 16 x q_step). The gains exist only in
training: the decoder sees symbols. And the quantisation step (0.4 for C3) sets how coarse the
integer symbols are: the decoded latent value is `q_step * symbol`.
"""

import math

import tensorflow as tf


def grid_shapes(height: int, width: int, num_grids: int) -> list[tuple[int, int]]:
    """Shapes of the latent grids for an image: ceil(H / 2^k) x ceil(W / 2^k)."""
    return [(math.ceil(height / 2**k), math.ceil(width / 2**k)) for k in range(num_grids)]


def grid_levels(num_grids: int, num_hyperlatents: int = 0) -> list[int]:
    """The level (downsampling 2^level) of each grid in list order: latents 0..G-1, then
    the hyperlatents at levels G-H..G-1."""
    return list(range(num_grids)) + list(range(num_grids - num_hyperlatents, num_grids))


def all_grid_shapes(
    height: int, width: int, num_grids: int, num_hyperlatents: int = 0
) -> list[tuple[int, int]]:
    """Shapes of every coded grid (latents, then hyperlatents) in list order."""
    shapes = grid_shapes(height, width, num_grids)
    return [shapes[level] for level in grid_levels(num_grids, num_hyperlatents)]


class LatentGrids(tf.keras.layers.Layer):
    """The learnable latent grids of one image.

    `continuous_symbols()` returns the grids in *symbol units* (gain * parameter /
    q_step): quantise
    them with a function of `models.c3.quantization`, then multiply by `q_step` to get
    the values that the context model and the synthesis see.
    """

    def __init__(
        self,
        height: int,
        width: int,
        num_grids: int = 7,
        q_step: float = 0.4,
        gain_factor: float = 2.0,
        num_hyperlatents: int = 0,
        latent_gain: float = 1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if height < 1 or width < 1:
            raise ValueError(f"Image size must be positive, got {height}x{width}.")
        if num_grids < 1:
            raise ValueError(f"num_grids must be >= 1, got {num_grids}.")
        if not 0 <= num_hyperlatents <= num_grids:
            raise ValueError(f"num_hyperlatents must be in [0, num_grids], got {num_hyperlatents}.")
        if q_step <= 0:
            raise ValueError(f"q_step must be positive, got {q_step}.")
        if latent_gain <= 0 or gain_factor <= 0:
            raise ValueError(
                f"latent_gain and gain_factor must be positive, got {latent_gain}, {gain_factor}."
            )
        self._height = int(height)
        self._width = int(width)
        self._num_grids = int(num_grids)
        self._q_step = float(q_step)
        self._gain_factor = float(gain_factor)
        self._num_hyperlatents = int(num_hyperlatents)
        self._latent_gain = float(latent_gain)
        self.grid_parameters = [
            self.add_weight(
                name=f"latent_grid_{k}" if k < num_grids else f"hyperlatent_grid_{k - num_grids}",
                shape=shape,
                initializer="zeros",
                trainable=True,
            )
            for k, shape in enumerate(self.shapes)
        ]

    @property
    def num_grids(self) -> int:
        return self._num_grids

    @property
    def q_step(self) -> float:
        return self._q_step

    @property
    def num_hyperlatents(self) -> int:
        return self._num_hyperlatents

    @property
    def levels(self) -> list[int]:
        return grid_levels(self._num_grids, self._num_hyperlatents)

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """Every coded grid's shape: latents, then hyperlatents."""
        return all_grid_shapes(self._height, self._width, self._num_grids, self._num_hyperlatents)

    @property
    def gains(self) -> list[float]:
        return [self._latent_gain * self._gain_factor**level for level in self.levels]

    @property
    def num_latents(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def continuous_symbols(self) -> list[tf.Tensor]:
        """Returns the unquantised grids in symbol units, each of shape (h_k, w_k)."""
        return [
            p * (gain / self._q_step)
            for p, gain in zip(self.grid_parameters, self.gains, strict=True)
        ]

    def assign_symbols(self, symbols) -> None:
        """Sets the grids so that they round to the given integer symbols exactly."""
        for p, s, gain in zip(self.grid_parameters, symbols, self.gains, strict=True):
            p.assign(tf.cast(s, tf.float32) * (self._q_step / gain))

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            height=self._height,
            width=self._width,
            num_grids=self._num_grids,
            q_step=self._q_step,
            gain_factor=self._gain_factor,
            num_hyperlatents=self._num_hyperlatents,
            latent_gain=self._latent_gain,
        )
        return config
