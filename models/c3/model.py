"""The C3 image model: latent grids, context model, upsampling and synthesis together.

Kim et al. 2023, "C3: High-performance and low-complexity neural compression from a
single image or video" (arXiv 2312.02753), built on COOL-CHIC (Ladune et al. 2023, arXiv
2212.05458). For one image, the model holds the latent grids and three tiny networks and
computes, for a quantisation mode,

    loss = MSE(x, x_hat) + lmbda * (bits of the latents) / (H * W),

with x in [0, 1]. The bits of the quantised networks are added after fitting (see
`models.c3.fit`), as in C3.

Quantisation modes: "noise" (stage 1: soft-round + Kumaraswamy noise), "gaussian"
(Cool-chic 5's stage 1: Gaussian noise between two soft-roundings), "ste" (stage 2:
rounding with soft-round gradients) and "round" (evaluation and coding).
"""

import math

import numpy as np
import tensorflow as tf

from models.c3 import lossless as lossless_pixels
from models.c3 import quantization, rate
from models.c3.context import ContextModel, flatten_grids, unflatten_grids
from models.c3.latents import LatentGrids
from models.c3.synthesis import Synthesis
from models.c3.upsampling import build_upsampling
from models.registry import register_model

QUANTIZATION_MODES = ("noise", "gaussian", "ste", "round")
# "image": the synthesis outputs the image (lossy C3); "lossless": each pixel's
# distribution, and the pixels are coded with it (`models.c3.lossless`).
OUTPUTS = ("image", "lossless")
# The bitstream format's limit on a quantised network parameter (`coding.fixed_point`).
MAX_NETWORK_INTEGER = 2**19


class C3Model(tf.keras.Model):
    """Overfitted per-image codec model (C3 / COOL-CHIC architecture).

    Workflow: build one model per image (`height`, `width`), fit it with
    `models.c3.fit.fit_image`, quantise its networks, then code `symbols()` with the
    context model's (loc, scale) and the network integers.
    """

    def __init__(
        self,
        height: int,
        width: int,
        num_grids: int = 7,
        q_step: float = 0.4,
        gain_factor: float = 2.0,
        latent_gain: float = 1.0,
        synthesis_hidden: tuple[int, ...] = (18, 18),
        num_residual_layers: int = 2,
        residual_kernel_size: int = 3,
        arm_hidden: tuple[int, ...] = (18, 18),
        context_rows_cols: int = 3,
        use_prev_grid: bool = False,
        prev_kernel_size: int = 3,
        shift_log_scale: float = 8.0,
        scale_range: tuple[float, float] = (1e-3, 150.0),
        gelu_approximate: bool = True,
        output_clip: str = "straight_through",
        upsampling: str = "bilinear",
        synthesis_activation: str = "gelu",
        synthesis_stabiliser: bool = False,
        synthesis_init: str = "fan_in",
        num_hyperlatents: int = 0,
        inter_grid_features: int = 0,
        inter_grid_grids: int = 3,
        context_neighbours: int = 0,
        arm_residual: bool = False,
        output: str = "image",
        pixel_neighbours: int = 0,
        pixel_hidden: tuple[int, ...] = (16, 16),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}.")
        self._arch = dict(
            height=int(height),
            width=int(width),
            num_grids=int(num_grids),
            q_step=float(q_step),
            gain_factor=float(gain_factor),
            latent_gain=float(latent_gain),
            synthesis_hidden=tuple(synthesis_hidden),
            num_residual_layers=int(num_residual_layers),
            residual_kernel_size=int(residual_kernel_size),
            arm_hidden=tuple(arm_hidden),
            context_rows_cols=int(context_rows_cols),
            use_prev_grid=bool(use_prev_grid),
            prev_kernel_size=int(prev_kernel_size),
            shift_log_scale=float(shift_log_scale),
            scale_range=tuple(float(s) for s in scale_range),
            gelu_approximate=bool(gelu_approximate),
            output_clip=str(output_clip),
            upsampling=str(upsampling),
            synthesis_activation=str(synthesis_activation),
            synthesis_stabiliser=bool(synthesis_stabiliser),
            synthesis_init=str(synthesis_init),
            num_hyperlatents=int(num_hyperlatents),
            inter_grid_features=int(inter_grid_features),
            inter_grid_grids=int(inter_grid_grids),
            context_neighbours=int(context_neighbours),
            arm_residual=bool(arm_residual),
            output=str(output),
            pixel_neighbours=int(pixel_neighbours),
            pixel_hidden=tuple(int(w) for w in pixel_hidden),
        )
        self.lossless = output == "lossless"
        if pixel_neighbours and not self.lossless:
            raise ValueError("pixel_neighbours (a causal pixel context) is for lossless C3.")
        self.latent_grids = LatentGrids(
            height, width, num_grids, q_step, gain_factor, num_hyperlatents, latent_gain
        )
        self.upsampling = build_upsampling(upsampling, height, width, num_grids)
        self.synthesis = Synthesis(
            num_grids,
            synthesis_hidden,
            lossless_pixels.NUM_OUTPUTS if self.lossless else 3,
            num_residual_layers,
            residual_kernel_size,
            gelu_approximate,
            "none" if self.lossless else output_clip,
            synthesis_activation,
            synthesis_stabiliser,
            synthesis_init,
        )
        self.context_model = ContextModel(
            arm_hidden,
            context_rows_cols,
            use_prev_grid,
            prev_kernel_size,
            shift_log_scale,
            scale_range,
            gelu_approximate,
            num_grids,
            num_hyperlatents,
            inter_grid_features,
            inter_grid_grids,
            context_neighbours,
            arm_residual,
        )
        self.pixel_context = None
        if pixel_neighbours:
            self.pixel_context = lossless_pixels.PixelContext(pixel_neighbours, pixel_hidden)
            self.pixel_context.build()
        self.synthesis.build((None, None, num_grids))
        self.context_model.build()

    @property
    def height(self) -> int:
        return self._arch["height"]

    @property
    def width(self) -> int:
        return self._arch["width"]

    @property
    def num_pixels(self) -> int:
        return self.height * self.width

    @property
    def target_shape(self) -> tuple[int, ...]:
        """The shape of the image it fits: (H, W, 3)."""
        return (self.height, self.width, 3)

    @property
    def q_step(self) -> float:
        return self._arch["q_step"]

    @property
    def num_grids(self) -> int:
        """Latent grids, the synthesis's inputs (hyperlatents aside)."""
        return self._arch["num_grids"]

    @property
    def grid_shapes(self) -> list[tuple[int, int]]:
        """Every coded grid's shape: latents, then hyperlatents."""
        return self.latent_grids.shapes

    def reconstruct(self, grids: list[tf.Tensor]) -> tf.Tensor:
        """The image from the grid values (hyperlatents, if any, are not used)."""
        return self.synthesis(self.upsampling(grids[: self.num_grids]))

    def get_config(self) -> dict:
        return dict(self._arch)

    @property
    def network_layers(self) -> list[tf.keras.layers.Layer]:
        """The layers whose parameters are quantised and sent: synthesis, the pixel
        context if any (lossless C3), ARM, then the learned upsampling if there is one
        (bilinear has no parameters)."""
        layers = [self.synthesis]
        layers += [self.pixel_context] if self.pixel_context is not None else []
        layers += [self.context_model]
        return layers + ([self.upsampling] if self.upsampling.trainable_variables else [])

    @property
    def network_variables(self) -> list[tf.Variable]:
        return [v for layer in self.network_layers for v in layer.trainable_variables]

    def quantized_symbols(
        self, mode: str, temperature=None, kumaraswamy_a=None, seed=None, noise_std=None
    ) -> tf.Tensor:
        """All latents in symbol units (flat, grid by grid), quantised as `mode` says."""
        y = flatten_grids(self.latent_grids.continuous_symbols())
        if mode == "noise":
            return quantization.noisy_soft_round(y, temperature, kumaraswamy_a, seed)
        if mode == "gaussian":
            return quantization.gaussian_soft_round(y, temperature, noise_std, seed)
        if mode == "ste":
            return quantization.ste_soft_round(y, temperature)
        if mode == "round":
            return quantization.hard_round(y)
        raise ValueError(f"Unknown quantisation mode {mode!r}; use one of {QUANTIZATION_MODES}.")

    def call(
        self,
        target: tf.Tensor,
        mode: str = "round",
        temperature=None,
        kumaraswamy_a=None,
        seed=None,
        noise_std=None,
    ) -> dict[str, tf.Tensor]:
        """Forward pass for an image `target` (H, W, 3) in [0, 1].

        Returns a dict with `reconstruction` (H, W, 3), `bits_per_grid` (num_grids,),
        `bits` (total latent bits) and `mse`. A lossless model's `reconstruction` is its
        predicted mean (clipped to [0, 1]) and `pixel_bits` the bits of the image's 8-bit
        values under its predicted distributions.
        """
        symbols = self.quantized_symbols(mode, temperature, kumaraswamy_a, seed, noise_std)
        grids = unflatten_grids(symbols * self.q_step, self.grid_shapes)
        loc, scale = self.context_model(grids)
        bits = rate.latent_bits(symbols, loc, scale, self.q_step)
        sizes = [math.prod(s) for s in self.grid_shapes]
        bits_per_grid = tf.stack([tf.reduce_sum(b) for b in tf.split(bits, sizes)])
        reconstruction = self.reconstruct(grids)
        out = {"bits_per_grid": bits_per_grid, "bits": tf.reduce_sum(bits_per_grid)}
        if self.lossless:
            pixels = tf.round(target * 255.0)
            # The synthesis's own means, before the pixel context corrects them (what
            # `fit.mean_anchor` holds to the image).
            out["mse_synthesis"] = tf.reduce_mean(tf.square(reconstruction[..., :3] - target))
            if self.pixel_context is not None:
                reconstruction = self.pixel_context(reconstruction, pixels)
            out["pixel_bits"] = tf.reduce_sum(lossless_pixels.pixel_bits(reconstruction, pixels))
            reconstruction = tf.clip_by_value(reconstruction[..., :3], 0.0, 1.0)
        out["reconstruction"] = reconstruction
        out["mse"] = tf.reduce_mean(tf.square(reconstruction - target))
        return out

    def symbols(self) -> list[np.ndarray]:
        """The integer latent symbols of every grid (what the coder sends)."""
        flat = self.quantized_symbols("round").numpy().astype(np.int32)
        shapes = self.grid_shapes
        parts = np.split(flat, np.cumsum([math.prod(s) for s in shapes])[:-1])
        return [p.reshape(s) for p, s in zip(parts, shapes, strict=True)]

    # Network quantisation (C3 Sec. 3: one (weight step, bias step) pair for all
    # networks; Cool-chic 5: a pair per module; ours: then a power of two per tensor).
    # `steps` below are what `network_steps` takes:
    # (weight, bias[, upsampling[, arm_steps[, pixel_steps[, step_shifts]]]]).

    def network_steps(
        self,
        weight_step: float,
        bias_step: float,
        upsampling_step=None,
        arm_steps: tuple[float, float] | None = None,
        pixel_steps: tuple[float, float] | None = None,
        step_shifts: tuple[int, ...] | None = None,
    ):
        """The quantisation step of each of `network_variables`: kernels the weight
        step, biases the bias step, learned-upsampling taps their own step (the weight
        step when None), the context model's kernels and biases `arm_steps` (weight,
        bias) when given, lossless C3's pixel context's `pixel_steps` when given; then,
        with `step_shifts` (one int per variable), variable i's step times
        2^-step_shifts[i] (the file's per-tensor steps)."""
        taps = {id(v) for v in self.upsampling.trainable_variables}
        own = {}
        if arm_steps:
            own.update((id(v), arm_steps) for v in self.context_model.trainable_variables)
        if pixel_steps and self.pixel_context is not None:
            own.update((id(v), pixel_steps) for v in self.pixel_context.trainable_variables)
        upsampling_step = weight_step if upsampling_step is None else upsampling_step
        steps = []
        for v in self.network_variables:
            weight, bias = own.get(id(v), (weight_step, bias_step))
            steps.append(upsampling_step if id(v) in taps else weight if len(v.shape) > 1 else bias)
        if step_shifts:
            steps = [s * 2.0 ** -int(k) for s, k in zip(steps, step_shifts, strict=True)]
        return steps

    def network_integers(self, *steps) -> list[np.ndarray]:
        """Each network parameter divided by its step and rounded (`network_steps`)."""
        return [
            np.round(v.numpy() / step).astype(np.int64)
            for v, step in zip(self.network_variables, self.network_steps(*steps), strict=True)
        ]

    def set_network_integers(self, integers: list[np.ndarray], *steps) -> None:
        """Sets the network parameters to integers * step (the decoder's parameters)."""
        for v, q, step in zip(
            self.network_variables, integers, self.network_steps(*steps), strict=True
        ):
            v.assign(np.asarray(q, np.float32) * np.float32(step))

    def macs_per_pixel(self) -> dict[str, int]:
        """Decoder multiply-accumulates per pixel, counted as C3 does (utils/macs.py).

        The context model runs once per latent; its total is divided by the number of
        pixels and rounded up. Grids have ceil(H / 2^k) rows here (C3 floors), which is
        identical when H and W are multiples of 2^(num_grids - 1).
        """
        num_latents = self.latent_grids.num_latents
        arm = math.ceil(self.context_model.macs_per_latent() * num_latents / self.num_pixels)
        synthesis = self.synthesis.macs_per_pixel()
        if self.pixel_context is not None:  # counted with the synthesis: per pixel
            synthesis += self.pixel_context.macs_per_pixel()
        upsampling = self.upsampling.macs_per_pixel(self._arch["num_grids"])
        inter_grid = self.context_model.inter_grid
        inter = inter_grid.macs_per_pixel(self.height, self.width) if inter_grid else 0
        return {
            "context_model": arm,
            "inter_grid": inter,
            "synthesis": synthesis,
            "upsampling": upsampling,
            "total": arm + inter + synthesis + upsampling,
        }


@register_model("c3", family="per_image")
def build_c3(model_config, height: int, width: int) -> C3Model:
    """The C3 / COOL-CHIC model of `config.model` for an image of the given size."""
    kwargs = {k: v for k, v in model_config.items() if k not in ("name", "lmbda")}
    return C3Model(height=height, width=width, **kwargs)
