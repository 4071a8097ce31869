"""C3's auto-regressive context model (ARM): a Laplace distribution for every latent.

COOL-CHIC (Ladune et al. 2023, arXiv 2212.05458) and C3 (Kim et al. 2023, arXiv
2312.02753, Sec. 3) predict each latent from the latents before it in raster order
within a (2r+1) x (2r+1) window: for r = 3 these are the 24 latents of the three rows
above (7 columns each) and the three to the left, zero padded at the borders. One MLP
(24 -> 18 -> 18 -> 2, GELU) is shared by all grids and outputs (mu, log_scale);
following COOL-CHIC, log_scale is shifted by +8 and mapped to
scale = exp(-0.5 * clip(log_scale, -2 ln 150, -2 ln 1e-3)), so scale lies in [1e-3, 150].

C3's CLIC2020 configuration additionally conditions grid k on a 3x3 window of grid k - 1
(the next finer grid; grid 0 sees zeros), resized to grid k's size with antialiased
bilinear interpolation. Grids are then decoded fine-to-coarse.

Cool-chic 5's inter-grid context (`inter_grid_features` F > 0, `models.c3.intergrid`)
goes the other way: the finest grids also see F features computed from the coarser
grids (and hyperlatents), which are decoded first.

Cool-chic 5's context model ("14,2/stabiliser", `neighbours` N > 0 and `residual`)
reads N causal neighbours in its priority order inside a 9x9 window instead of the raster
window, uses hidden layers x <- ReLU(x + W x + b) of the input's width (zero at init), and
adds a linear "stabiliser" from the inputs to the output (both N(0, 1/4^2) at init).

Instead of C3's masked 7x7 convolution we gather exactly the causal context values and
apply dense layers: the same function, half the multiplications in training, no mask to
get wrong, and the same context features can be evaluated for any set of positions, which
is what wavefront decoding needs.
"""

import math

import tensorflow as tf

from models.c3.intergrid import InterGridContext
from models.c3.mlp import dense_stack, gelu_fn, mlp_macs
from models.c3.upsampling import BILINEAR_MACS_PER_PIXEL

# Cool-chic 5's causal neighbours (dy, dx) in priority order (its ARM takes the first N).
PRIORITY_OFFSETS = (
    (0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0), (-3, 0),
    (0, -3), (-1, -2), (-2, 1), (-2, -1), (-1, 2), (-2, -2), (-1, -3),
)  # fmt: skip


def causal_offsets(rows_cols: int) -> list[tuple[int, int]]:
    """(dy, dx) of the context positions, in raster order of the window."""
    r = rows_cols
    return [(dy, dx) for dy in range(-r, 1) for dx in range(-r, r + 1) if (dy, dx) < (0, 0)]


def context_offsets(rows_cols: int, neighbours: int = 0) -> list[tuple[int, int]]:
    """The context: C3's raster window (neighbours = 0) or Cool-chic 5's first
    `neighbours` positions in priority order."""
    if neighbours:
        return list(PRIORITY_OFFSETS[:neighbours])
    return causal_offsets(rows_cols)


def wavefront_slope(offsets: list[tuple[int, int]]) -> int:
    """The smallest integer s such that every context (dy, dx) of (y, x) has a smaller
    t = s y + x: s > dx / -dy for every row above (C3's window: r + 1; CC5's: 3)."""
    return 1 + max([dx // -dy for dy, dx in offsets if dy < 0] + [0])


def window_offsets(kernel_size: int) -> list[tuple[int, int]]:
    """(dy, dx) of every position of a centred kernel_size x kernel_size window."""
    r = kernel_size // 2
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]


def gather_window(grid: tf.Tensor, offsets: list[tuple[int, int]]) -> tf.Tensor:
    """Values of `grid` (h, w, ...) at each position plus each offset, zero outside.

    Returns a tensor of shape (h, w, len(offsets), ...): (h, w, len(offsets)) for a grid.
    """
    top = max(0, -min(dy for dy, _ in offsets))
    bottom = max(0, max(dy for dy, _ in offsets))
    left = max(0, -min(dx for _, dx in offsets))
    right = max(0, max(dx for _, dx in offsets))
    h, w = tf.shape(grid)[0], tf.shape(grid)[1]
    channels = [[0, 0]] * (len(grid.shape) - 2)
    padded = tf.pad(grid, [[top, bottom], [left, right], *channels])
    columns = [padded[top + dy : top + dy + h, left + dx : left + dx + w] for dy, dx in offsets]
    return tf.stack(columns, axis=2)


def flatten_grids(grids: list[tf.Tensor]) -> tf.Tensor:
    """Concatenates grids into one vector: grid by grid, each in raster order."""
    return tf.concat([tf.reshape(g, (-1,)) for g in grids], axis=0)


def unflatten_grids(flat: tf.Tensor, shapes: list[tuple[int, int]]) -> list[tf.Tensor]:
    """Inverse of `flatten_grids` for grids of the given static shapes."""
    parts = tf.split(flat, [math.prod(s) for s in shapes])
    return [tf.reshape(p, shape) for p, shape in zip(parts, shapes, strict=True)]


def resize_to(grid: tf.Tensor, shape) -> tf.Tensor:
    """Antialiased bilinear resize of a (h, w) grid, as C3's `jax.image.resize`."""
    return tf.image.resize(grid[None, :, :, None], shape, method="bilinear", antialias=True)[
        0, :, :, 0
    ]


class ContextModel(tf.keras.layers.Layer):
    """Predicts (loc, scale) of a Laplace for every latent from its causal context.

    Inputs and outputs are in latent *value* units (q_step * symbol), as in C3: the rate
    is evaluated after dividing values, loc and scale by the quantisation step.
    """

    def __init__(
        self,
        hidden: tuple[int, ...] = (18, 18),
        context_rows_cols: int = 3,
        use_prev_grid: bool = False,
        prev_kernel_size: int = 3,
        shift_log_scale: float = 8.0,
        scale_range: tuple[float, float] = (1e-3, 150.0),
        gelu_approximate: bool = True,
        num_grids: int = 7,
        num_hyperlatents: int = 0,
        inter_grid_features: int = 0,
        inter_grid_grids: int = 3,
        neighbours: int = 0,
        residual: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0 <= neighbours <= len(PRIORITY_OFFSETS):
            limit = len(PRIORITY_OFFSETS)
            raise ValueError(f"neighbours must be in [0, {limit}], got {neighbours}.")
        if inter_grid_features and use_prev_grid:
            raise ValueError(
                "use_prev_grid (C3, fine-to-coarse) and inter-grid features (Cool-chic 5, "
                "coarse-to-fine) decode in opposite orders: choose one."
            )
        if num_hyperlatents and not inter_grid_features:
            raise ValueError("Hyperlatents need inter-grid features (inter_grid_features > 0).")
        if context_rows_cols < 1:
            raise ValueError(f"context_rows_cols must be >= 1, got {context_rows_cols}.")
        if prev_kernel_size < 1 or prev_kernel_size % 2 == 0:
            raise ValueError(f"prev_kernel_size must be odd, got {prev_kernel_size}.")
        if not 0 < scale_range[0] < scale_range[1]:
            raise ValueError(f"Invalid scale_range {scale_range}.")
        if any(w < 1 for w in hidden):
            raise ValueError(f"Hidden widths must be positive, got {hidden}.")
        self._hidden = tuple(int(w) for w in hidden)
        self._context_rows_cols = int(context_rows_cols)
        self._use_prev_grid = bool(use_prev_grid)
        self._prev_kernel_size = int(prev_kernel_size)
        self._shift_log_scale = float(shift_log_scale)
        self._scale_range = (float(scale_range[0]), float(scale_range[1]))
        self._gelu_approximate = bool(gelu_approximate)
        self._activation = gelu_fn(gelu_approximate)
        self._neighbours = int(neighbours)
        self._residual = bool(residual)
        self.offsets = context_offsets(self._context_rows_cols, self._neighbours)
        self.prev_offsets = window_offsets(self._prev_kernel_size) if use_prev_grid else []
        # C3 initialises its first layer like a dense layer over the causal context
        # ("init_like_linear"); with prev-grid conditioning it keeps the masked conv's
        # default fan-in, the full kernel over two input channels.
        kernel = 2 * self._context_rows_cols + 1
        first_fan_in = 2 * kernel * kernel if use_prev_grid else None
        self._num_grids = int(num_grids)
        self._num_hyperlatents = int(num_hyperlatents)
        self._inter_grid_features = int(inter_grid_features)
        self._inter_grid_grids = int(inter_grid_grids)
        if self._residual and any(w != self.num_inputs for w in self._hidden):
            raise ValueError(
                f"Residual context layers keep the input width {self.num_inputs}: "
                f"arm_hidden must repeat it, got {self._hidden}."
            )
        self.stabiliser = None
        if self._residual:  # Cool-chic 5: residual layers zero, the others N(0, 1/4^2)
            self.mlp = [self._dense(w, "zeros", f"arm_{i}") for i, w in enumerate(self._hidden)]
            self.mlp.append(self._dense(2, _output_init(), f"arm_{len(self._hidden)}"))
            self.stabiliser = self._dense(2, _output_init(), "arm_stabiliser")
        else:
            self.mlp = dense_stack(self._hidden + (2,), self.num_inputs, "arm", first_fan_in)
        # After the MLP: the bitstream's tensor order is the variables' order.
        self.inter_grid = None
        if self._inter_grid_features:
            self.inter_grid = InterGridContext(
                num_grids, num_hyperlatents, inter_grid_features, inter_grid_grids
            )

    @staticmethod
    def _dense(width: int, kernel_initializer, name: str) -> tf.keras.layers.Dense:
        return tf.keras.layers.Dense(
            width, kernel_initializer=kernel_initializer, bias_initializer="zeros", name=name
        )

    @property
    def num_inputs(self) -> int:
        """Context size: causal latents of the same grid (+ window of the finer grid, or
        + the inter-grid features)."""
        return len(self.offsets) + len(self.prev_offsets) + self._inter_grid_features

    @property
    def use_prev_grid(self) -> bool:
        return self._use_prev_grid

    def build(self, input_shape=None):
        widths = (self.num_inputs,) + self._hidden
        for layer, width in zip(self.mlp, widths, strict=True):
            layer.build((None, width))
        if self.stabiliser is not None:
            self.stabiliser.build((None, self.num_inputs))
        if self.inter_grid is not None:
            self.inter_grid.build()
        super().build(input_shape)

    def context_features(self, grid: tf.Tensor, prev_grid: tf.Tensor | None) -> tf.Tensor:
        """Context of every latent of `grid` (h, w): a tensor (h, w, num_inputs).

        `prev_grid` is the next finer grid (any size; zeros for grid 0) and is used only
        when the model conditions on it.
        """
        features = gather_window(grid, self.offsets)
        if self._use_prev_grid:
            prev = resize_to(prev_grid, tf.shape(grid)[:2])
            features = tf.concat([features, gather_window(prev, self.prev_offsets)], axis=-1)
        return features

    def distribution_params(self, features: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(loc, scale) for context features of shape (..., num_inputs)."""
        x = features
        if self._residual:
            for layer in self.mlp[:-1]:
                x = tf.nn.relu(x + layer(x))
            x = self.mlp[-1](x) + self.stabiliser(features)
        else:
            for i, layer in enumerate(self.mlp):
                x = layer(x)
                if i < len(self.mlp) - 1:
                    x = self._activation(x)
        loc = x[..., 0]
        log_scale = x[..., 1] + self._shift_log_scale
        low, high = self._scale_range
        log_scale = -0.5 * tf.clip_by_value(log_scale, -2 * math.log(high), -2 * math.log(low))
        return loc, tf.exp(log_scale)

    def call(self, grids: list[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """(loc, scale) of every latent: grid values (finest first, then the
        hyperlatents) -> two flat tensors.

        The outputs follow the order of `flatten_grids`: grid by grid, raster order.
        """
        inter_grid = self.inter_grid(grids) if self.inter_grid is not None else None
        features = []
        for k, grid in enumerate(grids):
            prev = grids[k - 1] if k > 0 else tf.zeros_like(grid)
            context = self.context_features(grid, prev)
            if inter_grid is not None:
                context = tf.concat([context, inter_grid[k]], axis=-1)
            features.append(tf.reshape(context, (-1, self.num_inputs)))
        # One MLP evaluation over all latents of all grids: fewer, larger matmuls.
        return self.distribution_params(tf.concat(features, axis=0))

    def macs_per_latent(self) -> int:
        macs = mlp_macs((self.num_inputs,) + self._hidden + (2,))
        if self._residual:
            macs += 2 * self.num_inputs  # the stabiliser
        if self._use_prev_grid:
            macs += BILINEAR_MACS_PER_PIXEL  # resizing the finer grid to this one
        return macs

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            hidden=self._hidden,
            context_rows_cols=self._context_rows_cols,
            use_prev_grid=self._use_prev_grid,
            prev_kernel_size=self._prev_kernel_size,
            shift_log_scale=self._shift_log_scale,
            scale_range=self._scale_range,
            gelu_approximate=self._gelu_approximate,
            num_grids=self._num_grids,
            num_hyperlatents=self._num_hyperlatents,
            inter_grid_features=self._inter_grid_features,
            inter_grid_grids=self._inter_grid_grids,
            neighbours=self._neighbours,
            residual=self._residual,
        )
        return config


def _output_init() -> tf.keras.initializers.Initializer:
    """Cool-chic 5's output and stabiliser init, N(0, (1 / out^2)^2) for 2 outputs; a new
    instance per layer (an unseeded Keras initializer repeats its values when reused)."""
    return tf.keras.initializers.RandomNormal(stddev=0.25)
