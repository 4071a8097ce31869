"""Per-image fitting of C3: the "encoder" is gradient descent on one image.

The recipe of Kim et al. 2023 (C3, arXiv 2312.02753, Sec. 3 and App. A):

1. Stage 1, `num_noise_steps` steps with soft-rounding + Kumaraswamy noise: Adam
   (0.9, 0.999, 1e-8) on all parameters, global gradient-norm clip 0.1, learning rate
   cosine-decayed from 1e-2 to 0, soft-round temperature 0.3 -> 0.1 and Kumaraswamy `a`
   2 -> 1, both linear.
2. Stage 2, up to `max_ste_steps` steps with straight-through rounding (soft-round
   gradient at temperature 1e-4): Adam at 1e-4 with its moments carried over; after
   `ste_patience` steps without a lower loss the learning rate is multiplied by 0.8 and
   parameters and optimiser state are reset to the best so far; stop below 1e-8.
3. Network quantisation: a grid search over (weight step, bias step) pairs, one pair for
   all networks, minimising distortion (8-bit reconstruction) + lmbda * (latent bits +
   network bits) / pixels.

Every step is compiled: a chunk of `log_every` steps runs as one `tf.function`
(optionally XLA-compiled) with schedules, Adam, clipping and stage-2 bookkeeping
in-graph. A NaN or inf loss or gradient stops the chunk; the fitter then restores the
state from the start of the chunk, halves the learning rate and retries, and logs it.
A fit that is not learning (its hard-rounded RD loss above 1.5x that of a flat
mean-colour image, lossless: above the bits of one Laplace per channel, or down by less
than 10 %, after `stall_check_steps` stage-1 steps or at the end of stage 1) restarts
from another seed at a lower learning rate, and fails with a `FitError` after
`max_restarts` restarts; nothing is written for it.

A lossless model (`C3Model(output="lossless")`, `models.c3.lossless`) has no distortion:
its loss is lmbda x (pixel bits + latent bits) / pixels, lmbda only scaling the loss (so
that the lossy recipe's learning rates and clipping apply), and its quantised networks are
scored the same way with their bits added, RDOQ's too.

Differences from C3's code, on purpose: the stage-2 "best" parameters are the ones whose
loss was measured (C3 stores the parameters after the update that followed the
measurement), and all state lives in `tf.Variable`s so a fit can be checkpointed and
resumed mid-stage.
"""

import dataclasses
import itertools
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from absl import logging

from common import schedules
from common.errors import FitError
from common.metrics import psnr_from_mse
from common.progress import Progress
from models.c3 import lossless as lossless_pixels
from models.c3 import rate
from models.c3.model import MAX_NETWORK_INTEGER, C3Model
from models.c3.rdoq import NetworkRDOQ, RDOQReport
from models.c3.soap import Preconditioner

MAX_NAN_RETRIES = 8
# A fit is not learning if its loss stays above this many times a flat image's, or above
# this fraction of its initial loss, at the check (`C3Fitter._learning_problem`). Lossless
# fits have no slack: the flat reference is the bits of one Laplace per channel, which a
# model that has learnt anything beats. At step 100 the 24 Kodak crops (configs/
# c3_lossless.py) are at 0.48-1.00x of it but kodim20's at 1.07x; that fit went on to 2.91
# bits per sub-pixel, its restart to 2.56. An unanchored fit that went on to blow up was
# at 1.07x too (docs/c3.md).
FLAT_LOSS_MARGIN = 1.5
FLAT_LOSS_MARGIN_LOSSLESS = 1.0
STALLED_FRACTION = 0.9
RESTART_SEED_STRIDE = 1000


def is_power_of_two(step: float) -> bool:
    mantissa, _ = np.frexp(step)
    return step > 0 and mantissa == 0.5


def warmup_runs(config) -> bool:
    """Whether a fit with this `fit` config warms up: more than one candidate, and the
    winner's 2 x `warmup_steps` fit inside stage 1."""
    return config.warmup_candidates > 1 and 2 * config.warmup_steps <= config.num_noise_steps


def warmup_extra_steps(config) -> int:
    """The iterations a warm-up adds to a fit beyond its stage 1: every candidate step
    counts, and the winner's own 2 x `warmup_steps` are the start of its stage 1."""
    if not warmup_runs(config):
        return 0
    n = int(config.warmup_steps)
    return n * (int(config.warmup_candidates) + int(config.warmup_keep)) - 2 * n


def describe_steps(steps: tuple) -> str:
    """`QuantizedNetworks.steps` for a log line."""
    weight, bias, upsampling, arm, pixel, *shifts = steps
    text = f"weight {weight:g}, bias {bias:g}"
    if arm is not None or pixel is not None:
        text += " (synthesis)"
    if arm is not None:
        text += f"; context model weight {arm[0]:g}, bias {arm[1]:g}"
    if pixel is not None:
        text += f"; pixel context weight {pixel[0]:g}, bias {pixel[1]:g}"
    text += f"; upsampling {upsampling:g}" if upsampling is not None else ""
    if shifts and shifts[0]:
        text += "; per-tensor shifts " + ",".join(str(k) for k in shifts[0])
    return text


@dataclasses.dataclass(frozen=True)
class Run:
    """A fit plan's request: run `stage` ("noise" or "ste") until its step counter
    reaches `total`; `check`: with the learning check, keep-best, log lines and
    checkpoints (all off in the warm-up, whose candidates are not yet the fit)."""

    stage: str
    total: int
    check: bool = True


def drive(plan, carry_out: Callable[[Run], None]):
    """Carries out a plan's requests one by one; returns what the plan returns."""
    while True:
        try:
            request = next(plan)
        except StopIteration as stop:
            return stop.value
        carry_out(request)


@dataclasses.dataclass(frozen=True)
class QuantizedNetworks:
    """The outcome of the network quantisation search: steps, rates and distortion of the
    model with its networks quantised and its latents rounded."""

    weight_step: float
    bias_step: float
    upsampling_step: float | None  # of the learned upsampling's taps; None: bilinear
    arm_steps: tuple[float, float] | None  # the context model's own pair; None: shared
    pixel_steps: tuple[float, float] | None  # lossless C3's pixel context's; None: shared
    step_shifts: tuple[int, ...] | None  # per tensor: step x 2^-shift; None: the modules'
    bits_latents: float
    bits_networks: float
    bits_per_grid: list[float]
    bits_per_network: dict[str, float]
    mse: float  # of the 8-bit reconstruction (0 for a lossless model)
    psnr: float
    loss: float
    reconstruction: np.ndarray  # uint8 (H, W, 3)
    bits_pixels: float  # a lossless model's coded pixels (estimate); 0 for a lossy one

    @property
    def steps(self) -> tuple:
        """What `C3Model.network_steps` and `coding.c3.codec.encode` take."""
        return (
            self.weight_step,
            self.bias_step,
            self.upsampling_step,
            self.arm_steps,
            self.pixel_steps,
            self.step_shifts,
        )


@dataclasses.dataclass(frozen=True)
class FitResult(QuantizedNetworks):
    """What a fit produced: the quantised model's numbers, and the fit's steps and times."""

    noise_steps: int
    ste_steps: int
    iterations: int  # every training step taken, the warm-up candidates' included
    seconds_warmup: float
    seconds_noise: float
    seconds_ste: float
    seconds_quantization: float  # the step search and RDOQ
    rdoq: RDOQReport | None  # None without fit.rdoq
    nan_recoveries: int
    restarts: int  # fresh initialisations after a fit that was not learning
    rollbacks: int = 0  # returns to the kept parameters of a diverging fit


class C3Fitter(tf.Module):
    """Fits a `C3Model` to an image; reusable for other images and lambdas of that size.

    Example:
      fitter = C3Fitter(model, config.fit)
      fitter.reset(image, lmbda=1e-3, seed=0)
      result = fitter.fit()
    """

    def __init__(
        self,
        model: C3Model,
        config,
        code_costs: Callable[[np.ndarray], np.ndarray] | None = None,
        steps_problem: Callable[..., str | None] | None = None,
        name: str = "c3_fitter",
    ):
        """`code_costs` gives the exact bits of one quantised network tensor under each
        code the file can choose for it, the file taking the cheapest
        (`coding.weights.code_costs`, passed by `pipelines.per_image.make_fitter`;
        models/ does not import the coder). The network quantisation search counts the
        file's bits with `fit.network_rate = "file"`, else C3's Laplace estimate
        (`rate.parameter_bits`); RDOQ (`fit.rdoq`) always counts the file's.
        `steps_problem(*steps)` says what keeps network steps out of the file, or None
        (`coding.c3.networks.steps_problem`): the per-tensor search (`fit.per_tensor_steps`)
        skips such candidates."""
        super().__init__(name=name)
        self.model = model
        self.config = config
        self._validate_config(config)
        if code_costs is None and (config.network_rate == "file" or config.rdoq):
            raise FitError(
                'fit.network_rate = "file" and fit.rdoq need the coder\'s code_costs '
                "(pipelines.per_image.make_fitter)."
            )
        if steps_problem is None and config.per_tensor_steps:
            raise FitError(
                "fit.per_tensor_steps needs the coder's steps_problem "
                "(pipelines.per_image.make_fitter)."
            )
        self.code_costs = code_costs
        self.steps_problem = steps_problem
        self.tensor_bits = (
            (lambda q: float(code_costs(q).min()))
            if config.network_rate == "file"
            else rate.parameter_bits
        )
        self.rdoq_report: RDOQReport | None = None  # of the last quantize_networks
        shape = model.target_shape
        self.target = tf.Variable(tf.zeros(shape), trainable=False, name="target")
        self.lmbda = tf.Variable(0.0, trainable=False, name="lmbda")
        self.seed = tf.Variable(0, dtype=tf.int32, trainable=False, name="seed")
        self.params = list(model.trainable_variables)
        self.adam_m = [self._zeros_like(p, "adam_m") for p in self.params]
        self.adam_v = [self._zeros_like(p, "adam_v") for p in self.params]
        self.adam_count = tf.Variable(0.0, trainable=False, name="adam_count")
        # SOAP (fit.optimizer = "soap"): a preconditioner per network weight tensor; the
        # latents and the network biases keep plain Adam (Cool-chic 5).
        network = {id(v) for v in model.network_variables}
        self.is_network = [id(p) in network for p in self.params]
        # Lossless C3's pixel context learns at its own rate (`fit.pixel_context_lr_factor`
        # times the others'): at the full rate its fits blew up (see configs/c3_lossless.py).
        pixel = (
            {id(v) for v in model.pixel_context.trainable_variables}
            if model.pixel_context
            else set()
        )
        factor = float(config.pixel_context_lr_factor)
        self.lr_factors = [factor if id(p) in pixel else 1.0 for p in self.params]
        self.soap = [
            Preconditioner(p.shape, config.soap_shampoo_beta, name=f"soap_{i}")
            if config.optimizer == "soap" and id(p) in network and len(p.shape) >= 2
            else None
            for i, p in enumerate(self.params)
        ]
        soap_state = [v for pre in self.soap if pre is not None for v in pre.state]
        self.noise_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="noise_step")
        self.ste_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="ste_step")
        self.ste_lr = tf.Variable(0.0, trainable=False, name="ste_lr")
        self.ste_done = tf.Variable(False, trainable=False, name="ste_done")
        self.best_loss = tf.Variable(np.inf, dtype=tf.float32, trainable=False, name="best_loss")
        self.not_improved = tf.Variable(0, dtype=tf.int64, trainable=False, name="not_improved")
        self.lr_scale = tf.Variable(1.0, trainable=False, name="lr_scale")
        self.nan_recoveries = tf.Variable(0, dtype=tf.int64, trainable=False, name="nans")
        self.rollbacks = tf.Variable(0, dtype=tf.int64, trainable=False, name="rollbacks")
        # Restarts after a fit that was not learning (`_learning_problem`), and the losses
        # the check compares with: the initial one and that of a flat mean-colour image.
        self.restarts = tf.Variable(0, dtype=tf.int64, trainable=False, name="restarts")
        self.initial_loss = tf.Variable(np.inf, trainable=False, name="initial_loss")
        self.flat_loss = tf.Variable(np.inf, trainable=False, name="flat_loss")
        # Iterations spent on warm-up candidates beyond the winner's own stage-1 steps.
        self.warmup_extra = tf.Variable(0, dtype=tf.int64, trainable=False, name="warmup_extra")
        self.warmup_done = tf.Variable(False, trainable=False, name="warmup_done")
        # What stage 2 resets to, and what a NaN recovery restores.
        self._state = self.params + self.adam_m + self.adam_v + [self.adam_count] + soap_state
        self.best_state = [self._copy_of(v, "best") for v in self._state]
        counters = [self.noise_step, self.ste_step, self.ste_lr, self.not_improved]
        self._recoverable = self._state + counters
        self.good_state = [self._copy_of(v, "good") for v in self._recoverable]
        # Keep-best (Cool-chic 5): the stage-1 parameters with the lowest hard-rounded RD
        # loss seen at the checks every `keep_best_every` steps, restored when it ends.
        self.kept_params = [self._copy_of(v, "kept") for v in self.params]
        self.kept_loss = tf.Variable(np.inf, trainable=False, name="kept_loss")
        self._nan_retries = 0  # NaN recoveries in a row (`after_chunk`)
        jit = bool(config.jit_compile)
        self._noise_chunk = tf.function(self._noise_chunk_fn, jit_compile=jit)
        self._ste_chunk = tf.function(self._ste_chunk_fn, jit_compile=jit)
        self._evaluate = tf.function(self._evaluate_fn, jit_compile=jit)

    @staticmethod
    def _validate_config(config) -> None:
        problems = []
        if config.num_noise_steps < 0 or config.max_ste_steps < 0:
            problems.append("step counts must be >= 0")
        if config.log_every < 1:
            problems.append("fit.log_every must be >= 1")
        if config.noise not in ("kumaraswamy", "gaussian"):
            problems.append(f"fit.noise must be kumaraswamy or gaussian, not {config.noise!r}")
        if config.noise == "gaussian" and not (
            0 < config.noise_std_start and 0 < config.noise_std_end
        ):
            problems.append("fit.noise_std_start and fit.noise_std_end must be positive")
        if config.network_rate not in ("laplace", "file"):
            problems.append(
                f"fit.network_rate must be laplace or file, not {config.network_rate!r}"
            )
        if config.optimizer not in ("adam", "soap"):
            problems.append(f"fit.optimizer must be adam or soap, not {config.optimizer!r}")
        if config.max_restarts < 0 or not 0 < config.restart_lr_factor <= 1:
            problems.append("fit.max_restarts must be >= 0 and fit.restart_lr_factor in (0, 1]")
        if not config.upsampling_steps or not all(
            is_power_of_two(s) for s in config.upsampling_steps
        ):
            problems.append("fit.upsampling_steps must be powers of two, at least one")
        if not config.weight_steps or not config.bias_steps:
            problems.append("fit.weight_steps and fit.bias_steps must not be empty")
        elif not all(is_power_of_two(s) for s in (*config.weight_steps, *config.bias_steps)):
            # The bitstream's integer decoder needs parameters that are fixed-point numbers.
            problems.append("fit.weight_steps and fit.bias_steps must be powers of two")
        if config.mean_anchor < 0:
            problems.append("fit.mean_anchor must be >= 0")
        if config.rdoq_max_delta < 1 or config.rdoq_passes < 1:
            problems.append("fit.rdoq_max_delta and fit.rdoq_passes must be >= 1")
        if config.per_tensor_steps and config.tensor_step_sweeps < 1:
            problems.append("fit.tensor_step_sweeps must be >= 1 with fit.per_tensor_steps")
        if config.warmup_candidates > 1 and not (
            1 <= config.warmup_keep <= config.warmup_candidates and config.warmup_steps >= 1
        ):
            problems.append("fit.warmup_keep must be in [1, warmup_candidates], warmup_steps >= 1")
        if problems:
            raise FitError("invalid fit config: " + "; ".join(problems) + ".")

    @staticmethod
    def _zeros_like(v: tf.Variable, prefix: str) -> tf.Variable:
        return tf.Variable(tf.zeros_like(v), trainable=False, name=f"{prefix}_{v.name[:-2]}")

    @staticmethod
    def _copy_of(v: tf.Variable, prefix: str) -> tf.Variable:
        return tf.Variable(v, trainable=False, name=f"{prefix}_{v.name.split(':')[0]}")

    # Setting up a fit.

    def reset(self, image: np.ndarray, lmbda: float, seed: int = 0) -> None:
        """Starts a new fit: fresh initialisation (from `seed`), new image and lambda."""
        self._set_target(image, lmbda)
        self.warmup_done.assign(False)
        self._initialise(seed, lr_scale=1.0)

    def warm_start(self, image: np.ndarray, lmbda: float) -> None:
        """Starts a fit from the model's current parameters (rate control's refinement:
        the model of a nearby lambda): new image and lambda, zero optimiser state, both
        stages from step 0, no warm-up. Fit it with a config whose learning check is off
        (`fit.stall_check_steps = 0`): a warm start has little left to learn."""
        self._set_target(image, lmbda)
        self.warmup_done.assign(True)
        self._restart_schedules(lr_scale=1.0)

    def _set_target(self, image: np.ndarray, lmbda: float) -> None:
        image = np.asarray(image, np.float32)
        if image.shape != tuple(self.target.shape):
            raise ValueError(f"Image shape {image.shape} != model's {self.target.shape}.")
        self.target.assign(image)
        self.lmbda.assign(lmbda)
        # A flat image of the mean colour costs (almost) no latent bits: a fit whose loss
        # stays above it has learnt nothing. Lossless: its pixels' bits under one Laplace
        # per channel.
        mean_colour = image.reshape(-1, image.shape[-1]).mean(axis=0)
        flat = float(np.mean(np.square(image - mean_colour)))
        if self.model.lossless:
            flat = lmbda * lossless_pixels.flat_bits_per_pixel(image)
        self.flat_loss.assign(flat)
        self.restarts.assign(0)
        self.nan_recoveries.assign(0)
        self.rollbacks.assign(0)
        self.warmup_extra.assign(0)

    def _reset_optimiser(self) -> None:
        """Zero optimiser state: Adam's moments and count, SOAP's preconditioners."""
        for v in self.adam_m + self.adam_v:
            v.assign(tf.zeros_like(v))
        for pre in self.soap:
            if pre is not None:
                pre.reset()
        self.adam_count.assign(0.0)

    def _initialise(self, seed: int, lr_scale: float) -> None:
        """Fresh parameters from `seed`, zero optimiser state, both stages from step 0."""
        tf.keras.utils.set_random_seed(seed)
        fresh = type(self.model)(**self.model.get_config())  # C3Model or C3VideoModel
        for variable, initial in zip(self.params, fresh.trainable_variables, strict=True):
            variable.assign(initial)
        self.seed.assign(seed)
        self._restart_schedules(lr_scale)

    def _restart_schedules(self, lr_scale: float) -> None:
        """Zero optimiser state, both stages from step 0, from the current parameters."""
        self._nan_retries = 0
        self._reset_optimiser()
        self.noise_step.assign(0)
        self.ste_step.assign(0)
        self.ste_lr.assign(self.config.ste_learning_rate)
        self.ste_done.assign(False)
        self.best_loss.assign(np.inf)
        self.not_improved.assign(0)
        self.lr_scale.assign(lr_scale)
        self.kept_loss.assign(np.inf)
        self.initial_loss.assign(self._hard_loss())

    @property
    def _pixels(self) -> float:
        return float(self.model.num_pixels)

    def _rd_loss(self, mse, pixel_bits, bits, lmbda):
        """MSE + lmbda x bits / pixels; lossless: lmbda x (pixel bits + bits) / pixels.
        In the compiled steps `lmbda` is the variable; outside them a Python float, so
        that the comparisons between candidates (warm-up, keep-best, step search) are
        made in float64."""
        if self.model.lossless:
            return lmbda * (pixel_bits + bits) / self._pixels
        return mse + lmbda * bits / self._pixels

    def _hard_loss_and_mse(self) -> tuple[float, float]:
        """The RD loss with hard-rounded latents (float networks) and its MSE on [0, 1]
        (a lossless model's: of its predicted mean)."""
        mse, bits, _, _, pixel_bits = self._evaluate()
        mse, bits, pixel_bits = float(mse), float(bits), float(pixel_bits)
        return self._rd_loss(mse, pixel_bits, bits, float(self.lmbda.numpy())), mse

    def _hard_loss(self) -> float:
        return self._hard_loss_and_mse()[0]

    # Compiled pieces.

    def _loss(self, mode: str, temperature=None, kumaraswamy_a=None, seed=None, **noise):
        out = self.model(self.target, mode, temperature, kumaraswamy_a, seed, **noise)
        loss = self._rd_loss(out["mse"], out.get("pixel_bits"), out["bits"], self.lmbda)
        if self.config.mean_anchor and self.model.pixel_context is not None:
            loss += self.config.mean_anchor * out["mse_synthesis"]
        return loss, out

    def _loss_and_grads(self, mode, temperature, kumaraswamy_a=None, seed=None, **noise):
        with tf.GradientTape() as tape:
            loss, out = self._loss(mode, temperature, kumaraswamy_a, seed, **noise)
        grads = tape.gradient(loss, self.params)
        norm = tf.linalg.global_norm(grads)
        finite = tf.math.is_finite(loss) & tf.math.is_finite(norm)
        return loss, out, grads, norm, finite

    def _adam_update(self, grads, norm, learning_rate) -> None:
        """Adam with global-norm clipping (optax.clip_by_global_norm + optax.adam); with
        fit.optimizer = "soap", SOAP on the network weights and Adam with SOAP's betas on
        the network biases (Cool-chic 5), the latents keeping Adam. C3 clips the global
        norm of all gradients; with fit.grad_clip_latents = False, Cool-chic 5's: the
        norm of the network gradients alone, the latents' gradients left unclipped."""
        c = self.config
        if not c.grad_clip_latents:
            networks = zip(grads, self.is_network, strict=True)
            norm = tf.linalg.global_norm([g for g, network in networks if network])
        clip = tf.minimum(1.0, c.grad_clip / tf.maximum(norm, 1e-12))
        self.adam_count.assign_add(1.0)
        t = self.adam_count
        soap = c.optimizer == "soap"
        for i, (p, g, m, v) in enumerate(
            zip(self.params, grads, self.adam_m, self.adam_v, strict=True)
        ):
            if c.grad_clip_latents or self.is_network[i]:
                g = g * clip
            b1, b2 = (
                (c.soap_b1, c.soap_b2) if soap and self.is_network[i] else (c.adam_b1, c.adam_b2)
            )
            pre = self.soap[i]
            if pre is None:
                correction1, correction2 = 1.0 - tf.pow(b1, t), 1.0 - tf.pow(b2, t)
                m.assign(b1 * m + (1.0 - b1) * g)
                v.assign(b2 * v + (1.0 - b2) * tf.square(g))
                update = (m / correction1) / (tf.sqrt(v / correction2) + c.adam_eps)
                p.assign_sub(learning_rate * self.lr_factors[i] * update)
                continue
            # SOAP's reference order: its first step only sets up the preconditioner (no
            # moments, no update), so its own count is t - 1; after that the gradient is
            # rotated by the basis of the previous steps' statistics, and accumulated into
            # them after the update.
            first = tf.equal(t, 1.0)
            ts = tf.maximum(t - 1.0, 1.0)
            correction1, correction2 = 1.0 - tf.pow(b1, ts), 1.0 - tf.pow(b2, ts)
            m.assign(tf.where(first, m, b1 * m + (1.0 - b1) * g))
            v.assign(tf.where(first, v, b2 * v + (1.0 - b2) * tf.square(pre.rotate(g))))
            rotated = (pre.rotate(m) / correction1) / (tf.sqrt(v / correction2) + c.soap_eps)
            update = pre.rotate(rotated, back=True) + c.soap_weight_decay * p
            p.assign_sub(tf.where(first, 0.0, learning_rate * self.lr_factors[i]) * update)
            pre.accumulate(g)
            if first or tf.equal(tf.math.floormod(ts, float(c.soap_precondition_every)), 0.0):
                pre.refresh(first, v)

    @staticmethod
    def _copy(destination, source) -> None:
        for d, s in zip(destination, source, strict=True):
            d.assign(s)

    def _metrics(self, loss, out):
        pixel_bits = out["pixel_bits"] if self.model.lossless else 0.0
        return tf.stack([loss, out["mse"], out["bits"], pixel_bits])

    def _noise_step_fn(self):
        """One stage-1 step: (finite, metrics). A step whose loss or gradient is not
        finite changes nothing (the chunk stops there and the fitter recovers)."""
        c = self.config
        total = c.num_noise_steps
        step = self.noise_step
        learning_rate = self.lr_scale * schedules.cosine_decay(
            step, total, c.learning_rate, c.learning_rate_end
        )
        temperature = schedules.linear(step, total - 1, c.temperature_start, c.temperature_end)
        seed = tf.stack([self.seed, tf.cast(step, tf.int32)])
        if c.noise == "gaussian":  # Cool-chic 5's proxy
            std = schedules.linear(step, total, c.noise_std_start, c.noise_std_end)
            loss, out, grads, norm, finite = self._loss_and_grads(
                "gaussian", temperature, None, seed, noise_std=std
            )
        else:
            a = schedules.linear(step, total, c.kumaraswamy_start, c.kumaraswamy_end)
            loss, out, grads, norm, finite = self._loss_and_grads("noise", temperature, a, seed)
        if finite:
            self._adam_update(grads, norm, learning_rate)
            self.noise_step.assign_add(1)
        return finite, self._metrics(loss, out)

    def _ste_step_fn(self):
        """One stage-2 step with its bookkeeping: (finite, metrics); a non-finite step
        changes nothing."""
        c = self.config
        loss, out, grads, norm, finite = self._loss_and_grads("ste", c.ste_temperature)
        if finite:
            # The loss was measured at the current parameters: keep those if best.
            if loss < self.best_loss:
                self._copy(self.best_state, self._state)
                self.best_loss.assign(loss)
                self.not_improved.assign(0)
            else:
                self.not_improved.assign_add(1)
            self._adam_update(grads, norm, self.ste_lr * self.lr_scale)
            self.ste_step.assign_add(1)
            if self.not_improved >= c.ste_patience:
                self.ste_lr.assign(self.ste_lr * c.ste_lr_decay)
                self.not_improved.assign(0)
                self._copy(self._state, self.best_state)
                if self.ste_lr < c.ste_min_learning_rate:
                    self.ste_done.assign(True)
        return finite, self._metrics(loss, out)

    def _chunk_fn(self, stage: str, num_steps):
        """Up to `num_steps` steps of `stage`, after saving the state a NaN recovery
        restores; stops at a non-finite step (and when stage 2 is done). Returns
        (finite, metrics of the last finite step)."""
        self._copy(self.good_state, self._recoverable)
        step_fn = self._noise_step_fn if stage == "noise" else self._ste_step_fn
        finite = tf.constant(True)
        metrics = tf.zeros(4)
        for _ in tf.range(num_steps):
            if stage == "ste" and self.ste_done:
                break
            finite, step_metrics = step_fn()
            if not finite:
                break
            metrics = step_metrics
        return finite, metrics

    def _noise_chunk_fn(self, num_steps):
        return self._chunk_fn("noise", num_steps)

    def _ste_chunk_fn(self, num_steps):
        return self._chunk_fn("ste", num_steps)

    def _evaluate_fn(self):
        out = self.model(self.target, "round")
        reconstruction = tf.round(out["reconstruction"] * 255.0)
        mse = tf.reduce_mean(tf.square(reconstruction / 255.0 - self.target))
        pixel_bits = out["pixel_bits"] if self.model.lossless else tf.constant(0.0)
        return mse, out["bits"], out["bits_per_grid"], reconstruction, pixel_bits

    # The fit.

    def _step(self, stage: str) -> int:
        return int((self.noise_step if stage == "noise" else self.ste_step).numpy())

    def stage_finished(self, request: Run) -> bool:
        """Whether `request` is carried out: its stage's step counter reached its total
        (stage 2 also when its learning rate fell below the minimum)."""
        if request.stage == "ste" and bool(self.ste_done.numpy()):
            return True
        return self._step(request.stage) >= request.total

    def chunk_steps(self, request: Run) -> int:
        """The steps of the next compiled chunk for `request`."""
        return min(int(self.config.log_every), request.total - self._step(request.stage))

    def after_chunk(self, request: Run, before: int, finite: bool, metrics, log_fn) -> bool:
        """The host's part after a compiled chunk of `request` that started at step
        `before`: NaN recovery (the chunk's starting state back, half the learning rate),
        and for a request of the fit proper (`request.check`) the log line, learning
        check (a restart) and keep-best. Returns whether a checkpoint may be taken:
        nothing was rewound and the chunk belongs to the fit proper (a warm-up
        candidate's does not)."""
        stage = request.stage
        if not finite:
            self._nan_retries += 1
            if self._nan_retries > MAX_NAN_RETRIES:
                raise FitError(
                    f"{stage} stage: loss or gradient still NaN/inf after "
                    f"{MAX_NAN_RETRIES} recoveries at step {self._step(stage)}."
                )
            failed_at = self._step(stage)
            self._copy(self._recoverable, self.good_state)
            self.lr_scale.assign(self.lr_scale * 0.5)
            self.nan_recoveries.assign_add(1)
            logging.warning(
                "%s stage: NaN/inf loss or gradient at step %d; restored the state "
                "of step %d and halved the learning rate (scale now %.3g).",
                stage,
                failed_at,
                self._step(stage),
                float(self.lr_scale.numpy()),
            )
            return False
        self._nan_retries = 0
        if not request.check:
            return False
        loss, mse, bits, pixel_bits = (float(x) for x in metrics)
        after = self._step(stage)
        if log_fn is not None:
            values = {
                "loss": loss,
                "psnr": psnr_from_mse(mse, peak=1.0),
                "bpp_latents": bits / self.model.num_pixels,
            }
            if self.model.lossless:  # its PSNR is the predicted mean's
                values["bpp_pixels"] = pixel_bits / self.model.num_pixels
            log_fn(stage, after, values)
        if stage == "noise":
            if self._check_due(before, after, request.total):
                problem = self._learning_problem()
                if problem:
                    self._restart(problem)
                    return False
            self._keep_best(before, after, request.total)
        return True

    def _run_chunks(
        self, stage: str, total: int, log_fn=None, checkpoint_fn=None, check: bool = True
    ) -> None:
        """Carries out `Run(stage, total, check)` alone, chunk by chunk."""
        request = Run(stage, int(total), check)
        chunk_fn = self._noise_chunk if stage == "noise" else self._ste_chunk
        while not self.stage_finished(request):
            before = self._step(stage)
            finite, metrics = chunk_fn(tf.constant(self.chunk_steps(request), tf.int64))
            counted = self.after_chunk(
                request, before, bool(finite.numpy()), metrics.numpy(), log_fn
            )
            if counted and checkpoint_fn is not None:
                checkpoint_fn()

    # Fits that do not learn.

    def _check_due(self, before: int, after: int, total: int) -> bool:
        """The learning check runs once stage 1 passes `stall_check_steps`, and at its end
        (stage 1 shorter than that is not checked: too few steps to judge)."""
        at = int(self.config.stall_check_steps)
        if at <= 0 or total < at:
            return False
        return before < at <= after or after == total

    def _learning_problem(self) -> str | None:
        """Why the fit is not learning, or None: its hard-rounded RD loss is still above
        that of a flat image of the mean colour (which needs almost no latent bits;
        lossless: the bits of one Laplace per channel), or has fallen by less than 10 %
        from where it started."""
        loss, mse = self._hard_loss_and_mse()
        flat, initial = float(self.flat_loss.numpy()), float(self.initial_loss.numpy())
        step = int(self.noise_step.numpy())
        margin = FLAT_LOSS_MARGIN_LOSSLESS if self.model.lossless else FLAT_LOSS_MARGIN
        if not np.isfinite(loss) or loss > margin * flat:
            if self.model.lossless:  # the losses are lmbda x bits per pixel
                lmbda = float(self.lmbda.numpy())
                return (
                    f"{loss / lmbda:.3f} bits per pixel at step {step}, not below the "
                    f"{flat / lmbda:.3f} of one Laplace per channel at the mean colour"
                )
            return (
                f"RD loss {loss:.4g} at step {step} is above {margin:g}x that of "
                f"a flat mean-colour image ({flat:.4g}; PSNR {psnr_from_mse(mse, 1.0):.2f}"
                f" dB against {psnr_from_mse(flat, 1.0):.2f} dB)"
            )
        if loss > STALLED_FRACTION * initial:
            return f"RD loss {loss:.4g} at step {step} has barely moved from {initial:.4g}"
        return None

    def _restart(self, problem: str) -> None:
        """A fresh initialisation from another seed at a lower learning rate, or FitError."""
        c = self.config
        restarts = int(self.restarts.numpy())
        if restarts >= c.max_restarts:
            raise FitError(
                f"the fit is not learning: {problem}, after {restarts} restart(s) from other "
                f"seeds at lower learning rates; try a lower fit.learning_rate or another seed."
            )
        self.restarts.assign(restarts + 1)
        seed = int(self.seed.numpy()) + RESTART_SEED_STRIDE
        lr_scale = float(c.restart_lr_factor) ** (restarts + 1)
        logging.warning(
            "The fit is not learning (%s): restart %d of %d from seed %d at %.3g x the "
            "learning rate.",
            problem,
            restarts + 1,
            c.max_restarts,
            seed,
            lr_scale,
        )
        self._initialise(seed, lr_scale)

    # Keep-best (Cool-chic 5, training/train.py).

    def _keep_best(self, before: int, after: int, total: int) -> None:
        """Every `keep_best_every` stage-1 steps (and at its last), keeps a copy of the
        parameters if their hard-rounded RD loss is the lowest so far; rolls a diverging
        fit back to them (`fit.rollback_tolerance`)."""
        every = int(self.config.keep_best_every)
        if every <= 0 or not (after // every > before // every or after == total):
            return
        loss = self._hard_loss()
        kept = float(self.kept_loss.numpy())
        if np.isfinite(loss) and loss < kept:
            self._copy(self.kept_params, self.params)
            self.kept_loss.assign(loss)
            return
        tolerance = float(self.config.rollback_tolerance)
        if tolerance > 0 and np.isfinite(kept) and not loss <= kept * (1.0 + tolerance):
            self._rollback(after, loss, kept)

    def _rollback(self, step: int, loss: float, kept: float) -> None:
        """Back to the kept parameters with fresh optimiser state (Adam's second moments,
        inflated by the divergence's gradients, would otherwise freeze the next steps)
        and half the learning rate."""
        self._copy(self.params, self.kept_params)
        self._reset_optimiser()
        self.lr_scale.assign(self.lr_scale * 0.5)
        self.rollbacks.assign_add(1)
        logging.warning(
            "noise stage: the RD loss rose to %.5g at step %d, %.0f %% above the kept %.5g "
            "(diverging); back to the kept parameters, fresh optimiser state, half the "
            "learning rate (scale now %.3g).",
            loss,
            step,
            100.0 * (loss / kept - 1.0) if np.isfinite(loss) else np.inf,
            kept,
            float(self.lr_scale.numpy()),
        )

    def _restore_kept(self) -> None:
        """At the end of stage 1: back to the kept parameters, if the last ones are worse."""
        if int(self.config.keep_best_every) <= 0 or not np.isfinite(self.kept_loss.numpy()):
            return
        current = self._hard_loss()
        if current > float(self.kept_loss.numpy()):
            logging.info(
                "Keep-best: restored the stage-1 parameters with RD loss %.5g (last %.5g).",
                float(self.kept_loss.numpy()),
                current,
            )
            self._copy(self.params, self.kept_params)

    # Warm-up: several initialisations, the best kept (Cool-chic 5, training/warmup.py).

    def _snapshot(self) -> list[np.ndarray]:
        return [v.numpy() for v in self._recoverable]

    def _restore(self, snapshot: list[np.ndarray]) -> None:
        for v, value in zip(self._recoverable, snapshot, strict=True):
            v.assign(value)

    def warm_up(self) -> list[dict]:
        """Runs the warm-up alone (see `_warm_up_plan`); returns its records."""
        return drive(
            self._warm_up_plan(), lambda r: self._run_chunks(r.stage, r.total, check=r.check)
        )

    def _warm_up_plan(self):
        """Cool-chic 5's warm-up, before stage 1 of a fresh fit: `warmup_candidates`
        initialisations (seeds C seed, C seed + 1, ..., C seed + C - 1 for C candidates:
        disjoint for different fit seeds, so that fits with seeds 0, 1, 2 are three
        samples, not one) each take `warmup_steps` stage-1
        steps; the `warmup_keep` best by hard-rounded RD loss take `warmup_steps` more;
        the best of those continues as the fit. The candidates' steps run the start of
        the stage-1 schedule; all of them count as iterations (`FitResult.iterations`).
        A plan (yields `Run`s, see `plan`); returns one record per candidate and round
        (seed, round, loss)."""
        c = self.config
        n, keep = int(c.warmup_steps), int(c.warmup_keep)
        if c.warmup_candidates <= 1 or self.warmup_done.numpy() or self.noise_step.numpy() > 0:
            return []  # off, or done
        if not warmup_runs(c):  # on, but longer than stage 1
            logging.warning(
                "Warm-up skipped: its winner's %d steps would exceed stage 1's %d "
                "(fit.warmup_steps x 2 > fit.num_noise_steps); lower fit.warmup_steps.",
                2 * n,
                c.num_noise_steps,
            )
            return []
        base_seed = int(self.seed.numpy()) * int(c.warmup_candidates)
        lr_scale = float(self.lr_scale.numpy())
        records, candidates = [], []
        for k in range(int(c.warmup_candidates)):
            self._initialise(base_seed + k, lr_scale)
            yield Run("noise", n, check=False)
            candidates.append((self._hard_loss(), base_seed + k, self._snapshot()))
            records.append({"seed": base_seed + k, "round": 1, "loss": candidates[-1][0]})
        finalists = []
        for _, seed, snapshot in sorted(candidates, key=lambda t: t[0])[:keep]:
            self._restore(snapshot)
            self.seed.assign(seed)
            yield Run("noise", 2 * n, check=False)
            finalists.append((self._hard_loss(), seed, self._snapshot()))
            records.append({"seed": seed, "round": 2, "loss": finalists[-1][0]})
        loss, seed, snapshot = min(finalists, key=lambda t: t[0])
        self._restore(snapshot)
        self.seed.assign(seed)
        self.warmup_extra.assign(warmup_extra_steps(c))
        self.warmup_done.assign(True)
        logging.info(
            "Warm-up: %d candidates x %d steps, best %d x %d more; kept seed %d (RD loss "
            "%.4g; candidates %s).",
            c.warmup_candidates,
            n,
            keep,
            n,
            seed,
            loss,
            ", ".join(f"{r['loss']:.4g}" for r in records if r["round"] == 1),
        )
        return records

    def fit(
        self,
        log_fn: Callable[[str, int, dict], None] | None = None,
        checkpoint_fn: Callable[[], None] | None = None,
    ) -> FitResult:
        """Runs (or resumes) the warm-up, both stages and the network quantisation search."""
        return drive(
            self.plan(),
            lambda r: self._run_chunks(r.stage, r.total, log_fn, checkpoint_fn, r.check),
        )

    def plan(self):
        """The fit as a plan: a generator that yields `Run` requests (run a stage's
        compiled chunks until its step counter reaches a total) and does the host's work
        in between (warm-up choices, keep-best, stage-2 restore, the network quantisation
        search); it returns the `FitResult`. `fit` carries the requests out for this
        fitter alone; `models.c3.batched.BatchedFit` for several fitters at once, one
        compiled chunk running a step of every member. The seconds are wall-clock times
        of the plan's phases (shared by the members of a batched fit)."""
        c = self.config
        start = time.perf_counter()
        yield from self._warm_up_plan()
        seconds_warmup = time.perf_counter() - start
        start = time.perf_counter()
        yield Run("noise", int(c.num_noise_steps))
        self._restore_kept()
        seconds_noise = time.perf_counter() - start
        start = time.perf_counter()
        yield Run("ste", int(c.max_ste_steps))
        if np.isfinite(self.best_loss.numpy()):
            self._copy(self._state, self.best_state)
        seconds_ste = time.perf_counter() - start
        start = time.perf_counter()
        quantized = self.quantize_networks()
        noise_steps, ste_steps = int(self.noise_step.numpy()), int(self.ste_step.numpy())
        return FitResult(
            noise_steps=noise_steps,
            ste_steps=ste_steps,
            iterations=noise_steps + ste_steps + int(self.warmup_extra.numpy()),
            seconds_warmup=seconds_warmup,
            seconds_noise=seconds_noise,
            seconds_ste=seconds_ste,
            seconds_quantization=time.perf_counter() - start,
            rdoq=self.rdoq_report,
            nan_recoveries=int(self.nan_recoveries.numpy()),
            restarts=int(self.restarts.numpy()),
            rollbacks=int(self.rollbacks.numpy()),
            **{f.name: getattr(quantized, f.name) for f in dataclasses.fields(quantized)},
        )

    def network_bits(self, integers: list[np.ndarray]) -> dict[str, float]:
        """The bits of each network's quantised parameters (`tensor_bits` per tensor:
        C3's Laplace estimate, or what the file spends with `fit.network_rate = "file"`)."""
        tensor_bits = [self.tensor_bits(q) for q in integers]
        bits = {}
        sizes = [len(layer.trainable_variables) for layer in self.model.network_layers]
        parts = np.split(np.arange(len(integers)), np.cumsum(sizes)[:-1])
        for layer, idx in zip(self.model.network_layers, parts, strict=True):
            bits[layer.name] = float(sum(tensor_bits[i] for i in idx))
        return bits

    def _quantized(self, steps: tuple, float_params: list[np.ndarray]):
        """The model with its networks quantised at `steps` (as `C3Model.network_steps`
        takes them: weight, bias, upsampling, context model pair, pixel context pair,
        per-tensor shifts): (QuantizedNetworks, integers), the float parameters restored
        afterwards; None if the integers are beyond the format's range or the loss is
        not finite."""
        integers = self.model.network_integers(*steps)
        if max(np.abs(q).max(initial=0) for q in integers) > MAX_NETWORK_INTEGER:
            return None  # too fine a step for these parameters
        return self._measured(integers, steps, float_params)

    def _measured(self, integers: list[np.ndarray], steps: tuple, float_params):
        """(QuantizedNetworks, integers) of the model with its networks at `integers`
        x `steps`, the float parameters restored afterwards; None if the loss is not
        finite."""
        bits_per_network = self.network_bits(integers)
        self.model.set_network_integers(integers, *steps)
        mse, bits, bits_per_grid, reconstruction, pixel_bits = self._evaluate()
        for v, value in zip(self.model.network_variables, float_params, strict=True):
            v.assign(value)
        bits_networks = sum(bits_per_network.values())
        mse, bits, pixel_bits = float(mse), float(bits), float(pixel_bits)
        loss = self._rd_loss(mse, pixel_bits, bits + bits_networks, float(self.lmbda.numpy()))
        if self.model.lossless:  # the file holds the image itself
            mse, reconstruction = 0.0, tf.round(self.target * 255.0)
        if not np.isfinite(loss):
            return None
        quantized = QuantizedNetworks(
            weight_step=steps[0],
            bias_step=steps[1],
            upsampling_step=steps[2],
            arm_steps=steps[3],
            pixel_steps=steps[4],
            step_shifts=steps[5] if len(steps) > 5 and any(steps[5] or ()) else None,
            bits_latents=bits,
            bits_networks=bits_networks,
            bits_per_grid=[float(b) for b in bits_per_grid.numpy()],
            bits_per_network=bits_per_network,
            mse=mse,
            psnr=psnr_from_mse(mse, peak=1.0),
            loss=loss,
            reconstruction=reconstruction.numpy().astype(np.uint8),
            bits_pixels=pixel_bits,
        )
        return quantized, integers

    def _search(self, what: str, candidates: list[tuple], float_params, best=None):
        """The best of `best` and the quantised models at each of `candidates` (tuples
        of steps, see `_quantized`), by RD loss."""
        progress = Progress(len(candidates))
        for k, steps in enumerate(candidates, 1):
            found = self._quantized(steps, float_params)
            progress.update(k)
            if found is None:
                logging.info(
                    "Network quantisation: %s %s (%s: integers beyond the format's range "
                    "or a non-finite loss, skipped).",
                    what,
                    progress,
                    describe_steps(steps),
                )
                continue
            if best is None or found[0].loss < best[0].loss:
                best = found
            logging.info(
                "Network quantisation: %s %s (%s: RD loss %.5g).",
                what,
                progress,
                describe_steps(steps),
                found[0].loss,
            )
        return best

    def _search_tensor_steps(self, best, float_params):
        """Per-tensor steps (`fit.per_tensor_steps`; ours, neither C3 nor Cool-chic 5):
        from the module steps found, each tensor's step in turn times 1/4, 1/2, 2 and 4
        (a shift of 2, 1, -1, -2), kept when the RD loss falls; sweeps over all tensors
        until one changes nothing (at most `fit.tensor_step_sweeps`). A module's kernels
        (and its biases) share one step, but its first and last layers want different
        ones: on a c3_plus crop the synthesis's first kernel and the context model's took
        steps 2x coarser than their module's, one residual bias 4x finer (docs/c3.md)."""
        start, steps = best, best[0].steps
        shifts = list(steps[5] or (0,) * len(self.model.network_variables))
        progress = Progress(int(self.config.tensor_step_sweeps) * len(shifts))
        for _ in range(int(self.config.tensor_step_sweeps)):
            changed = False
            for i in range(len(shifts)):
                for delta in (2, 1, -1, -2):
                    trial = list(shifts)
                    trial[i] += delta
                    candidate = (*steps[:5], tuple(trial))
                    if self.steps_problem(*candidate):
                        continue  # steps the file cannot carry
                    found = self._quantized(candidate, float_params)
                    if found is not None and found[0].loss < best[0].loss:
                        best, shifts, changed = found, trial, True
                progress.update(progress.done + 1)
            logging.info(
                "Network quantisation: per-tensor steps %s (shifts %s: RD loss %.5g).",
                progress,
                ",".join(map(str, shifts)),
                best[0].loss,
            )
            if not changed:
                break
        # The shifts cost 4 bits per tensor in the header: kept only if they pay for it.
        header = float(self.lmbda.numpy()) * 4 * len(shifts) / self._pixels
        return best if best[0].loss + header < start[0].loss else start

    def _rdoq(self, quantized: QuantizedNetworks, integers, float_params):
        """Cool-chic 5's RDOQ of the chosen integers (`models.c3.rdoq`), scored with the
        file's bits; kept only if it lowers the RD loss it measures."""
        rdoq = NetworkRDOQ(
            self.model,
            self.target,
            float(self.lmbda.numpy()),
            self.code_costs,
            max_delta=self.config.rdoq_max_delta,
            seed=int(self.seed.numpy()),
            passes=self.config.rdoq_passes,
        )
        refined, report = rdoq(integers, quantized.steps)
        self.rdoq_report = report
        logging.info(
            "RDOQ: %d of %d integers changed in %d passes, %.1f s (%d evaluations); RD loss "
            "%.6g -> %.6g, network bits (file) %.0f -> %.0f.",
            report.changed,
            sum(q.size for q in integers),
            report.passes,
            report.seconds,
            report.evaluations,
            report.loss_before,
            report.loss_after,
            report.network_bits_before,
            report.network_bits_after,
        )
        if not report.loss_after < report.loss_before:
            return quantized, integers
        found = self._measured(refined, quantized.steps, float_params)
        return (quantized, integers) if found is None else found

    def quantize_networks(self) -> QuantizedNetworks:
        """Grid search over one (weight step, bias step) pair for all networks (C3);
        with `fit.per_module_steps` (Cool-chic 5, nnquant/quantizemodel.py), then a pair
        for the context model with the synthesis at the shared pair, and a pair for the
        synthesis with the context model at its own; lossless C3's pixel context is held
        at the shared pair during the synthesis's search and then gets a pair of its own
        (it needs steps 8-16x finer than the synthesis: docs/c3.md); with learned
        upsampling, then the taps' own step (`fit.upsampling_steps`; held at the middle
        one before). Greedy: each search starts from the best so far, so it can only
        lower the RD loss. Leaves the best networks in place."""
        c = self.config
        self.rdoq_report = None
        float_params = [v.numpy() for v in self.model.network_variables]
        learned = bool(self.model.upsampling.trainable_variables)
        upsampling_steps = tuple(c.upsampling_steps) if learned else (None,)
        held = upsampling_steps[len(upsampling_steps) // 2]
        pairs = list(itertools.product(c.weight_steps, c.bias_steps))
        candidates = [(w, b, held, None, None) for w, b in pairs]
        best = self._search("step pair", candidates, float_params)
        if best is None:
            raise FitError("Every network quantisation step gave a non-finite loss.")
        if c.per_module_steps:
            shared = best[0].steps[:2]
            arm_candidates = [(*shared, held, p, None) for p in pairs if p != shared]
            best = self._search("context model pair", arm_candidates, float_params, best)
            arm = best[0].arm_steps or shared
            pixel = shared if self.model.pixel_context is not None else None
            synthesis = [(*p, held, arm, pixel) for p in pairs if p != best[0].steps[:2]]
            best = self._search("synthesis pair", synthesis, float_params, best)
            if pixel is not None:
                steps = best[0].steps
                current = steps[4] or steps[:2]
                others = [(*steps[:4], p) for p in pairs if p != current]
                best = self._search("pixel context pair", others, float_params, best)
        if learned:  # the held step was measured in the searches above
            steps = best[0].steps
            others = [(*steps[:2], s, *steps[3:]) for s in upsampling_steps if s != held]
            best = self._search("upsampling step", others, float_params, best)
        if c.per_tensor_steps:
            best = self._search_tensor_steps(best, float_params)
        quantized, integers = best
        # A module at the synthesis's pair needs no header bytes of its own.
        if quantized.arm_steps == quantized.steps[:2]:
            quantized = dataclasses.replace(quantized, arm_steps=None)
        if quantized.pixel_steps == quantized.steps[:2]:
            quantized = dataclasses.replace(quantized, pixel_steps=None)
        if c.rdoq:
            quantized, integers = self._rdoq(quantized, integers, float_params)
        self.model.set_network_integers(integers, *quantized.steps)
        logging.info(
            "Network quantisation: %s, %.0f network bits.",
            describe_steps(quantized.steps),
            quantized.bits_networks,
        )
        return quantized
