"""C3 for video: 3-D latent grids, a causal spatio-temporal context model, trilinear
upsampling and the per-pixel synthesis, for one spatio-temporal patch.

Kim et al. 2023, "C3: High-performance and low-complexity neural compression from a
single image or video" (arXiv 2312.02753), Sec. 4. A video patch (T, H, W, 3) is coded
by latent grids of shape (ceil(T / f^k), ceil(H / 2^k), ceil(W / 2^k)) for levels
k = 0..G-1, with f the temporal downsampling factor (C3: `downsampling_factor` (2, 2, 2),
so f = 2; f = 1 keeps every latent frame). The grids are upsampled to (T, H, W) by
separable linear interpolation along time, rows and columns (C3's 3-D
`jax.image.resize`, half-pixel centres, edge clamp), stacked and mapped to RGB by the
image codec's synthesis: the per-pixel MLP, then residual convolutions run per frame
(C3's `per_frame_conv=True`).

The context model predicts each latent from the causal window in its own latent frame
(the image model's raster window of `context_rows_cols` rows and columns) and a full
`prev_kernel_size` x `prev_kernel_size` window of the previous latent frame of the same
grid, zeros before the first: C3's masked 3-D convolution with context (1, r, r), whose
3 x (2r+1) x (2r+1) kernel sees the previous frame entirely and the current one causally
(its "next frame" third is masked). One MLP serves every grid, as in C3's default.
Gathering exactly these inputs is the image model's `ContextModel` with its
"previous grid" input fed by the previous latent frame; so the fixed-point decoder of the
image codec evaluates it unchanged (`coding.c3.video`).

Not here (yet): C3's per-grid context models and its learned 4x4 window in the previous
frame (the "EfficientConv" masks), and 3-D residual convolutions.
"""

import math

import tensorflow as tf

from models.c3.context import ContextModel, gather_window
from models.c3.latents import LatentGrids
from models.c3.model import C3Model
from models.c3.synthesis import Synthesis
from models.c3.upsampling import BILINEAR_MACS_PER_PIXEL, linear_resize_axis
from models.registry import register_model

# C3 counts 16 MACs per pixel for each trilinearly upsampled grid (the paper's count).
TRILINEAR_MACS_PER_PIXEL = 2 * BILINEAR_MACS_PER_PIXEL
TIME_FACTORS = (1, 2)


def video_grid_shapes(
    frames: int, height: int, width: int, num_grids: int, time_factor: int = 2
) -> list[tuple[int, int, int]]:
    """Shapes of the 3-D latent grids: (ceil(T / f^k), ceil(H / 2^k), ceil(W / 2^k))."""
    return [
        (math.ceil(frames / time_factor**k), math.ceil(height / 2**k), math.ceil(width / 2**k))
        for k in range(num_grids)
    ]


class VideoLatentGrids(LatentGrids):
    """The learnable 3-D latent grids of one video patch (see `LatentGrids`: the same
    per-grid gains and symbol units)."""

    def __init__(self, frames: int, height: int, width: int, num_grids: int, time_factor, *args):
        if frames < 1:
            raise ValueError(f"A video patch needs at least one frame, got {frames}.")
        if time_factor not in TIME_FACTORS:
            raise ValueError(f"time_factor must be one of {TIME_FACTORS}, got {time_factor}.")
        self._frames = int(frames)
        self._time_factor = int(time_factor)
        super().__init__(height, width, num_grids, *args)

    @property
    def shapes(self) -> list[tuple[int, int, int]]:
        return video_grid_shapes(
            self._frames, self._height, self._width, self._num_grids, self._time_factor
        )


class TrilinearUpsampling(tf.keras.layers.Layer):
    """Resizes every 3-D grid to (T, H, W), time first, and stacks them as channels."""

    def __init__(self, frames: int, height: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self._size = (int(frames), int(height), int(width))

    def call(self, grids: list[tf.Tensor]) -> tf.Tensor:
        """Grids (t_k, h_k, w_k) -> one tensor (T, H, W, num_grids)."""
        upsampled = []
        for grid in grids:
            for axis, n_out in enumerate(self._size):
                grid = linear_resize_axis(grid, n_out, axis)
            upsampled.append(grid)
        return tf.stack(upsampled, axis=-1)

    def macs_per_pixel(self, num_grids: int) -> int:
        """C3's count: every grid but the full-resolution one costs 16 MACs per pixel."""
        return TRILINEAR_MACS_PER_PIXEL * (num_grids - 1)


class VideoContextModel(ContextModel):
    """The causal spatio-temporal context model: `ContextModel` whose "previous grid"
    input is the previous latent frame of the same grid (see the module docstring)."""

    def __init__(self, hidden, context_rows_cols, prev_kernel_size, shift_log_scale, *args):
        super().__init__(hidden, context_rows_cols, True, prev_kernel_size, shift_log_scale, *args)

    def context_features(self, grid: tf.Tensor, prev_grid=None) -> tf.Tensor:
        """Context of every latent of a 3-D grid (t, h, w): (t, h, w, num_inputs)."""
        frames = tf.transpose(grid, [1, 2, 0])  # (h, w, t): gather_window's layout
        previous = tf.concat([tf.zeros_like(frames[..., :1]), frames[..., :-1]], axis=-1)
        current = gather_window(frames, self.offsets)  # (h, w, n, t)
        before = gather_window(previous, self.prev_offsets)
        return tf.transpose(tf.concat([current, before], axis=2), [3, 0, 1, 2])

    def call(self, grids: list[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """(loc, scale) of every latent, flat in `flatten_grids` order."""
        features = [tf.reshape(self.context_features(g), (-1, self.num_inputs)) for g in grids]
        return self.distribution_params(tf.concat(features, axis=0))

    def macs_per_latent(self) -> int:
        # The previous latent frame needs no resizing (the image model counts one).
        return super().macs_per_latent() - BILINEAR_MACS_PER_PIXEL


class C3VideoModel(C3Model):
    """Overfitted codec model of one video patch (C3 video).

    The image model's methods apply unchanged (quantisation modes, `call` with a target
    (T, H, W, 3), symbols, network steps and integers); only the parts are 3-D. Workflow:
    fit with `models.c3.fit.C3Fitter` (`target_shape` is the patch's), then write its file
    with `coding.c3.video`.
    """

    def __init__(
        self,
        frames: int,
        height: int,
        width: int,
        num_grids: int = 5,
        time_factor: int = 2,
        q_step: float = 0.2,
        gain_factor: float = 2.0,
        latent_gain: float = 1.0,
        synthesis_hidden: tuple[int, ...] = (32, 32),
        num_residual_layers: int = 2,
        residual_kernel_size: int = 3,
        arm_hidden: tuple[int, ...] = (16, 16),
        context_rows_cols: int = 2,
        prev_kernel_size: int = 5,
        shift_log_scale: float = 8.0,
        scale_range: tuple[float, float] = (1e-3, 150.0),
        gelu_approximate: bool = True,
        output_clip: str = "straight_through",
        **kwargs,
    ):
        # The parts are built here, not by C3Model.__init__ (whose are 2-D): Keras's
        # initialisation only, then every attribute C3Model's methods read.
        tf.keras.Model.__init__(self, **kwargs)
        self._arch = dict(
            frames=int(frames),
            height=int(height),
            width=int(width),
            num_grids=int(num_grids),
            time_factor=int(time_factor),
            q_step=float(q_step),
            gain_factor=float(gain_factor),
            latent_gain=float(latent_gain),
            synthesis_hidden=tuple(int(w) for w in synthesis_hidden),
            num_residual_layers=int(num_residual_layers),
            residual_kernel_size=int(residual_kernel_size),
            arm_hidden=tuple(int(w) for w in arm_hidden),
            context_rows_cols=int(context_rows_cols),
            prev_kernel_size=int(prev_kernel_size),
            shift_log_scale=float(shift_log_scale),
            scale_range=tuple(float(s) for s in scale_range),
            gelu_approximate=bool(gelu_approximate),
            output_clip=str(output_clip),
        )
        self.lossless = False
        self.pixel_context = None
        self.latent_grids = VideoLatentGrids(
            frames, height, width, num_grids, time_factor, q_step, gain_factor, 0, latent_gain
        )
        self.upsampling = TrilinearUpsampling(frames, height, width)
        self.synthesis = Synthesis(
            num_grids,
            synthesis_hidden,
            3,
            num_residual_layers,
            residual_kernel_size,
            gelu_approximate,
            output_clip,
        )
        self.context_model = VideoContextModel(
            arm_hidden,
            context_rows_cols,
            prev_kernel_size,
            shift_log_scale,
            scale_range,
            gelu_approximate,
            num_grids,
        )
        self.synthesis.build((None, None, None, num_grids))
        self.context_model.build()

    @property
    def frames(self) -> int:
        return self._arch["frames"]

    @property
    def num_pixels(self) -> int:
        return self.frames * self.height * self.width

    @property
    def target_shape(self) -> tuple[int, ...]:
        """The shape of the patch it fits: (T, H, W, 3)."""
        return (self.frames, self.height, self.width, 3)

    def frame_config(self) -> dict:
        """The equivalent image model's config (`C3Model`) of one frame: what the image
        codec's fixed-point decoder and header describe (`coding.c3.video`)."""
        config = {k: v for k, v in self._arch.items() if k not in ("frames", "time_factor")}
        config.update(use_prev_grid=True)
        return config

    def macs_per_pixel(self) -> dict[str, int]:
        """Decoder MACs per pixel, counted as C3 does (utils/macs.py): the context model
        once per latent, divided by the pixels; 16 per upsampled grid; the synthesis per
        pixel."""
        latents = self.latent_grids.num_latents
        arm = math.ceil(self.context_model.macs_per_latent() * latents / self.num_pixels)
        synthesis = self.synthesis.macs_per_pixel()
        upsampling = self.upsampling.macs_per_pixel(self.num_grids)
        return {
            "context_model": arm,
            "inter_grid": 0,
            "synthesis": synthesis,
            "upsampling": upsampling,
            "total": arm + synthesis + upsampling,
        }


@register_model("c3_video", family="video")
def build_c3_video(model_config, frames: int, height: int, width: int) -> C3VideoModel:
    """The C3 video model of `config.model` for a patch of the given size."""
    kwargs = {k: v for k, v in model_config.items() if k not in ("name", "lmbda")}
    return C3VideoModel(frames=frames, height=height, width=width, **kwargs)
