"""Rate control for C3: the file of an image at a target size.

A per-image codec is steered by lambda, and the size a lambda gives depends on the
image. `encode_to_target` finds a lambda whose *file* lands within `tolerance` (2 %) of a
target number of bytes:

1. Bracket: one batched fit (`models.c3.batched`) at the lambdas of
   `fit.rate_control_lambdas` (C3's sweep range by default), each written to a real file.
2. Fresh fits: whole fits from scratch at the lambda of the log-log secant (regula
   falsi) through the fits from scratch so far, bracket included, up to
   `fit.rate_control_fresh_fits`. Fits from scratch lie on one smooth size-lambda curve,
   so they close in on the target quickly, and each file is a whole fit's.
3. Refine (if no fresh fit landed): warm-started fits from the fresh model nearest the
   target, which continues at a new lambda for `fit.rate_control_refine_fraction` of the
   schedule at `rate_control_refine_lr_factor` times the learning rate (no warm-up, no
   learning check), lambda moving along the secant through the two refined files
   nearest the target, each from the same state (so the refined size is a function of
   lambda alone). A warm start moves the file only so far from where its model was, and
   restarting the schedule costs quality: if the refinements stall, they go on from the
   nearest bracket model, then from the nearest on the target's other side. Every fresh
   fit or refinement counts against `fit.rate_control_max_refinements`.

The file kept is the closest to the target (the first within the tolerance); the result
records every trial (lambda, bytes, PSNR, iterations, seconds) and how close it got. No
public per-image codec (C3's code, Cool-chic) hits a target size; classical codecs do it
with their rate control loops, which this mirrors with fits for encoder passes.
"""

import copy
import dataclasses
import math
import time

import numpy as np
from absl import logging

from common import metrics
from common.errors import ConfigError
from common.images import to_float
from models.c3.fit import FitResult
from pipelines.per_image import (
    C3Codec,
    C3Encoding,
    FitLog,
    encoding_of,
    make_fitter,
    parse_lambdas,
)

# Lambda moves at most by this factor per refinement (a flat log-log secant would
# otherwise send it out of range).
MAX_LAMBDA_FACTOR = 8.0


@dataclasses.dataclass(frozen=True)
class Trial:
    """One fitted file of the search."""

    kind: str  # "bracket", "fresh" (a whole fit from scratch) or "refine" (warm started)
    lmbda: float
    bytes: int
    psnr: float
    iterations: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RateControlResult:
    """The file kept, its lambda, the target, and every trial."""

    encoding: C3Encoding
    lmbda: float
    target_bytes: int
    trials: list[Trial]
    seconds: float

    @property
    def bytes(self) -> int:
        return len(self.encoding.encoded.data)

    @property
    def relative_error(self) -> float:
        """(file bytes - target) / target."""
        return self.bytes / self.target_bytes - 1.0

    @property
    def iterations(self) -> int:
        """Every training step taken, the bracket's members and refinements included."""
        return sum(t.iterations for t in self.trials)

    def count(self, kind: str) -> int:
        """How many trials of this kind ("bracket", "fresh", "refine") were made."""
        return sum(t.kind == kind for t in self.trials)


def _lambdas(text: str) -> list[float]:
    field = "fit.rate_control_lambdas"
    values = sorted(parse_lambdas(str(text), field, ConfigError))
    if len(values) < 2:
        raise ConfigError(f"{field} must hold two or more lambdas, got {text!r}.")
    return values


def next_lambda(points: list[tuple[float, int]], target: float) -> float | None:
    """The lambda predicted to give `target` bytes from measured (lambda, bytes) points,
    or None if the search is stuck (the prediction was tried already).

    With files on both sides of the target: the log-log secant (regula falsi) between the
    nearest file above and the nearest below, or their geometric mean if the secant gives
    a lambda already tried. Otherwise: extrapolation along the slope of the two files
    nearest the target (slope -1 if those say that bytes grow with lambda), the step
    bounded by MAX_LAMBDA_FACTOR."""
    logt = math.log(target)
    tried = [p[0] for p in points]

    def is_new(lmbda: float) -> bool:
        return all(abs(math.log(lmbda / t)) > 1e-3 for t in tried)

    ranked = sorted(points, key=lambda p: abs(math.log(p[1]) - logt))
    above = [p for p in ranked if p[1] >= target]
    below = [p for p in ranked if p[1] < target]
    if above and below:
        (la, ba), (lb, bb) = above[0], below[0]
        candidates = [math.sqrt(la * lb)]
        if ba != bb:
            fraction = (logt - math.log(ba)) / (math.log(bb) - math.log(ba))
            candidates.insert(0, la * (lb / la) ** fraction)
        return next((c for c in candidates if is_new(c)), None)
    (l0, b0), (l1, b1) = ranked[0], ranked[1]
    slope = -1.0
    if l0 != l1 and b0 != b1:
        fitted = (math.log(b1) - math.log(b0)) / (math.log(l1) - math.log(l0))
        if fitted < 0:
            slope = fitted
    limit = math.log(MAX_LAMBDA_FACTOR)
    step = float(np.clip((logt - math.log(b0)) / slope, -limit, limit))
    for _ in range(4):  # further along the same direction if that lambda was tried
        lmbda = l0 * math.exp(step)
        if is_new(lmbda):
            return lmbda
        step *= 2.0
    return None


def _refine_config(fit_config, start: FitResult):
    """The warm-started refinement's fit config: a fraction of the schedule, no warm-up,
    no learning check (a warm start's loss starts low), and the network quantisation
    steps of the model it starts from: a change of step moves the network bits by
    hundreds of bytes at once, which lambda alone cannot undo."""
    config = copy.deepcopy(fit_config)
    arm = start.arm_steps or (start.weight_step, start.bias_step)
    config.weight_steps = tuple(sorted({start.weight_step, arm[0]}))
    config.bias_steps = tuple(sorted({start.bias_step, arm[1]}))
    if start.upsampling_step is not None:
        config.upsampling_steps = (start.upsampling_step,)
    fraction = float(fit_config.rate_control_refine_fraction)
    config.num_noise_steps = max(1, round(fraction * fit_config.num_noise_steps))
    config.max_ste_steps = round(fraction * fit_config.max_ste_steps)
    config.warmup_candidates = 0
    config.stall_check_steps = 0
    config.learning_rate = fit_config.learning_rate * float(
        fit_config.rate_control_refine_lr_factor
    )
    return config


def encode_to_target(
    codec: C3Codec, image: np.ndarray, target_bytes: int, what: str = "bitstream"
) -> RateControlResult:
    """The file of `image` nearest `target_bytes` (see the module docstring)."""
    config = codec.config.fit
    tolerance = float(config.rate_control_tolerance)
    if target_bytes <= 0:
        raise ConfigError(f"the target size must be positive, got {target_bytes} bytes.")
    if (
        not 0 < tolerance < 1
        or int(config.rate_control_max_refinements) < 0
        or int(config.rate_control_fresh_fits) < 0
    ):
        raise ConfigError(
            "fit.rate_control_tolerance must be in (0, 1) and "
            "fit.rate_control_max_refinements and fit.rate_control_fresh_fits >= 0."
        )
    start = time.perf_counter()
    lambdas = _lambdas(config.rate_control_lambdas)
    logs = [FitLog(f"lambda {lmbda:g}", config) for lmbda in lambdas]
    encodings = codec.fit_and_encode_lambdas(image, lambdas, logs, whats=[what] * len(lambdas))
    trials, kept = [], []
    for lmbda, encoding in zip(lambdas, encodings, strict=True):
        trials.append(_trial("bracket", lmbda, encoding, image))
        kept.append((lmbda, encoding))
    logging.info(
        "Rate control: target %d bytes; bracket %s.",
        target_bytes,
        ", ".join(f"lambda {t.lmbda:g}: {t.bytes} B" for t in trials),
    )

    def error(item) -> float:
        return abs(len(item[1].encoded.data) / target_bytes - 1.0)

    def fit_and_keep(kind: str, fitter, lmbda: float, label: str) -> FitResult:
        """Runs the fitter (reset or warm started), writes its file, records the trial."""
        fit_start = time.perf_counter()
        fit = fitter.fit()
        encoding = encoding_of(fitter, fit, time.perf_counter() - fit_start, what, image)
        trials.append(_trial(kind, lmbda, encoding, image))
        kept.append((lmbda, encoding))
        trial = trials[-1]
        logging.info(
            "Rate control: %s at lambda %.4g: %d bytes (%+.2f %% of the target).",
            label,
            lmbda,
            trial.bytes,
            100.0 * (trial.bytes / target_bytes - 1.0),
        )
        return fit

    height, width = image.shape[:2]
    fitters = codec.fitters(height, width, len(lambdas) + 1)
    bracket_models = [f.model for f in fitters[: len(lambdas)]]
    fresh_fitter = fitters[-1]  # the fresh fit's own model: the bracket's stay intact
    fresh_points = [(t.lmbda, t.bytes) for t in trials]  # fits from scratch
    budget = int(config.rate_control_max_refinements)
    # Fresh fits first: whole fits from scratch along the secant of the fits from scratch
    # (bracket included), which lie on one smooth curve; each file is a whole fit's.
    nearest_fresh = None  # (its error, its fit, its parameters)
    for _ in range(int(config.rate_control_fresh_fits)):
        lmbda = next_lambda(fresh_points, target_bytes)
        if budget <= 0 or min(error(item) for item in kept) <= tolerance or lmbda is None:
            break
        budget -= 1
        fresh_fitter.reset(to_float(image), lmbda, codec.config.seed)
        fit = fit_and_keep("fresh", fresh_fitter, lmbda, "a fresh fit")
        fresh_points.append((lmbda, trials[-1].bytes))
        if nearest_fresh is None or error(kept[-1]) < nearest_fresh[0]:
            nearest_fresh = (error(kept[-1]), fit, [v.numpy() for v in fresh_fitter.params])
    # Then refinements: from the fresh fit nearest the target, then (if those stall) from
    # the nearest bracket model, then from the nearest on the target's other side.
    starts = _starts(trials[: len(lambdas)], target_bytes)
    if nearest_fresh is not None:
        starts.insert(0, "fresh")
    for start_at in starts:
        if budget <= 0 or min(error(item) for item in kept) <= tolerance:
            break
        if start_at == "fresh":
            _, start_fit, values = nearest_fresh
            for variable, value in zip(fresh_fitter.params, values, strict=True):
                variable.assign(value)
            model, start_points = fresh_fitter.model, list(fresh_points)
            origin = "the nearest fresh fit"
        else:
            model, start_fit = bracket_models[start_at], kept[start_at][1].fit
            start_points = fresh_points[: len(lambdas)]
            origin = f"the bracket's lambda {lambdas[start_at]:g}"
        # Every refinement from one start begins at the same state and keeps its network
        # steps, so that its file size is a function of lambda alone.
        refiner = make_fitter(model, _refine_config(config, start_fit))
        start_state = [v.numpy() for v in refiner.params]
        refined: list[tuple[float, int]] = []
        while budget > 0 and min(error(item) for item in kept) > tolerance:
            points = refined if len(refined) >= 2 else refined + start_points
            lmbda = next_lambda(points, target_bytes)
            if lmbda is None or _stalled(refined, target_bytes):
                break  # this start cannot reach the target: the next one
            budget -= 1
            for variable, value in zip(refiner.params, start_state, strict=True):
                variable.assign(value)
            refiner.warm_start(to_float(image), lmbda)
            fit_and_keep("refine", refiner, lmbda, f"a refinement from {origin}")
            refined.append((lmbda, trials[-1].bytes))
    within = [item for item in kept if error(item) <= tolerance]
    lmbda, encoding = within[0] if within else min(kept, key=error)
    return RateControlResult(encoding, lmbda, target_bytes, trials, time.perf_counter() - start)


def _starts(bracket: list[Trial], target: int) -> list[int]:
    """The bracket files to refine from, in order: the nearest to the target (in log
    bytes), then the nearest on the target's other side, if any."""
    order = sorted(range(len(bracket)), key=lambda i: abs(math.log(bracket[i].bytes / target)))
    first = order[0]
    side = bracket[first].bytes >= target
    other = [i for i in order if (bracket[i].bytes >= target) != side]
    return [first] + other[:1]


def _stalled(refined: list[tuple[float, int]], target: int) -> bool:
    """Whether the last two refinements from one start moved the file by less than 1 %
    of the target while lambda moved: that start's sizes have hit their floor or
    ceiling (its network steps are fixed)."""
    if len(refined) < 2:
        return False
    return abs(refined[-1][1] - refined[-2][1]) < 0.01 * target


def _trial(kind: str, lmbda: float, encoding: C3Encoding, image: np.ndarray) -> Trial:
    return Trial(
        kind=kind,
        lmbda=float(lmbda),
        bytes=len(encoding.encoded.data),
        psnr=float(metrics.psnr(encoding.decoded.image, image)),
        iterations=int(encoding.fit.iterations),
    )
