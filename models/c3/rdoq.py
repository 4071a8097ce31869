"""Rate-distortion optimised quantisation (RDOQ) of C3's network integers.

Cool-chic 5 (Ladune et al., nnquant/rdoq.py; arXiv 2411.19249) refines the integers of
its quantised networks one at a time after the step search: rounding to the nearest
multiple of the step minimises the parameter error, not the RD loss, and the network
bits are a third of the rate of a 256x256 image at lambda 1e-3. Each integer q is moved
to q - k (k = 1, 2, ... up to `max_delta`) while that lowers the loss, then to q + k
likewise, and the best value is kept. Modules are visited context model, synthesis,
learned upsampling; in each, the weight tensors first, then the biases, the integers of
a tensor in a random order.

The loss is the fitter's, MSE of the 8-bit reconstruction + lmbda x (latent bits +
network bits) / pixels, with the network bits those of the code the file writes for
each tensor (exact), and only the part a module can change is recomputed:
the latent bits for the context model (the reconstruction does not depend on it), the
MSE for the synthesis (its input, the upsampled latents, is computed once), the whole
loss for the upsampling taps. For lossless C3 the MSE's place is taken by lmbda x the
pixels' bits / pixels (the loss is then lmbda x all the file's bits / pixels), and its
pixel context is a module of its own, after the synthesis (its input, the synthesis's
outputs, computed once). Sums are taken in float64 so that a change of a fraction
of a bit is not lost in float32 rounding.

Workflow:
  rdoq = NetworkRDOQ(model, target, lmbda, coding.weights.code_costs, seed=0)
  integers, report = rdoq(integers, steps)  # steps as `C3Model.network_steps` takes
  model.set_network_integers(integers, *steps)
"""

import dataclasses
import functools
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from absl import logging

from common.progress import Progress
from models.c3 import lossless as lossless_pixels
from models.c3 import rate
from models.c3.context import unflatten_grids
from models.c3.model import MAX_NETWORK_INTEGER, C3Model


@dataclasses.dataclass(frozen=True)
class RDOQReport:
    """What the passes changed: moves made (an integer moved in two passes counts
    twice), evaluations, RD loss and network bits before and after (file bits), seconds,
    passes run."""

    changed: int
    evaluations: int
    loss_before: float
    loss_after: float
    network_bits_before: float
    network_bits_after: float
    seconds: float
    passes: int  # over all integers; the last changed nothing if fewer than asked


class NetworkRDOQ:
    """Greedy per-integer RD refinement of a C3 model's quantised networks.

    Args:
      model: the fitted `C3Model`; its latents are rounded as in the file.
      target: the image (H, W, 3) in [0, 1].
      lmbda: the rate-distortion trade-off of the fit.
      code_costs: bits of one integer tensor under every code the file can choose for
        it (`coding.weights.code_costs`); the file takes the cheapest. A sum over the
        values, so a one-value change is priced without recounting the tensor.
      max_delta: the largest move k tried per direction (Cool-chic 5: 15).
      seed: of the visiting order (each pass draws a new one).
      passes: the most passes over all integers (Cool-chic 5: 1); a move changes what
        the others are worth, so a second pass finds more.
    """

    def __init__(
        self,
        model: C3Model,
        target: tf.Tensor,
        lmbda: float,
        code_costs: Callable[[np.ndarray], np.ndarray],
        max_delta: int = 15,
        seed: int = 0,
        passes: int = 1,
    ):
        if max_delta < 1:
            raise ValueError(f"max_delta must be >= 1, not {max_delta}.")
        if passes < 1:
            raise ValueError(f"passes must be >= 1, not {passes}.")
        if not lmbda > 0:
            raise ValueError(f"lmbda must be positive, not {lmbda}.")
        self.model = model
        self.target = tf.convert_to_tensor(target, tf.float32)
        self.lmbda = float(lmbda)
        self.code_costs = code_costs
        self.max_delta = int(max_delta)
        self.seed = int(seed)
        self.passes = int(passes)
        # The bits of one value under every code: the same in every pass, priced once.
        self._value_costs = functools.lru_cache(maxsize=None)(
            lambda v: self.code_costs(np.array([v], np.int64))
        )
        self._pixels = float(model.num_pixels)
        # Lossless C3 codes the image's 8-bit values (`models.c3.lossless`).
        self._levels = tf.round(self.target * 255.0) if model.lossless else None
        self._symbols = model.quantized_symbols("round")
        self._grids = unflatten_grids(self._symbols * model.q_step, model.grid_shapes)
        # Traced once: a concrete function skips tf.function's per-call dispatch, which
        # costs as much as the context model itself on a small image.
        self._latent_bits = tf.function(self._latent_bits_fn).get_concrete_function()
        self._full = tf.function(self._full_fn).get_concrete_function()
        self._module_scores = {}  # traced when a module is reached, in each pass

    # Scores, each with float64 sums.

    def _latent_bits_fn(self):
        loc, scale = self.model.context_model(self._grids)
        bits = rate.latent_bits(self._symbols, loc, scale, self.model.q_step)
        return tf.reduce_sum(tf.cast(bits, tf.float64))

    def _mse_8bit(self, reconstruction):
        levels = tf.round(reconstruction * 255.0)
        error = tf.cast(levels, tf.float64) / 255.0 - tf.cast(self.target, tf.float64)
        return tf.reduce_mean(tf.square(error))

    def _pixel_term(self, outputs):
        """Lossless C3: lmbda x the bits of the image's values under the synthesis's
        `outputs` (after the pixel context, if any) / pixels."""
        if self.model.pixel_context is not None:
            outputs = self.model.pixel_context(outputs, self._levels)
        bits = lossless_pixels.pixel_bits(outputs, self._levels)
        return self.lmbda * tf.reduce_sum(tf.cast(bits, tf.float64)) / self._pixels

    def _distortion(self, outputs):
        """The loss's first term from the synthesis's outputs: the 8-bit MSE, or
        lossless C3's pixel term."""
        return self._pixel_term(outputs) if self._levels is not None else self._mse_8bit(outputs)

    def _full_fn(self):
        if self._levels is not None:
            return self._distortion(self.model.reconstruct(self._grids)), self._latent_bits_fn()
        out = self.model(self.target, "round")
        bits = tf.reduce_sum(tf.cast(out["bits_per_grid"], tf.float64))
        return self._mse_8bit(out["reconstruction"]), bits

    def _scorer(self, module: str) -> Callable[[float, float], tuple[float, float]]:
        """(distortion, latent bits) -> the same after a change in `module`: only what
        the module changes is recomputed."""
        if module == "context_model":  # the reconstruction does not depend on it
            return lambda mse, bits: (mse, float(self._latent_bits()))
        if module in ("synthesis", "pixel_context"):  # nor the latent bits on these
            if module not in self._module_scores:
                grids = self._grids[: self.model.num_grids]
                features = tf.constant(self.model.upsampling(grids))
                if module == "synthesis":
                    fn = tf.function(lambda: self._distortion(self.model.synthesis(features)))
                else:  # lossless C3's pixel context, after the synthesis's refinement
                    outputs = tf.constant(self.model.synthesis(features))
                    fn = tf.function(lambda: self._pixel_term(outputs))
                self._module_scores[module] = fn.get_concrete_function()
            score = self._module_scores[module]
            return lambda mse, bits: (float(score()), bits)
        return lambda mse, bits: tuple(float(x) for x in self._full())

    def _order(self) -> list[tuple[int, str]]:
        """(index in `network_variables`, module) in the order they are refined."""
        variables = self.model.network_variables
        index = {id(v): i for i, v in enumerate(variables)}
        order = []
        modules = ["context_model", "synthesis", "upsampling"]
        if self.model.pixel_context is not None:
            modules.insert(2, "pixel_context")
        for module in modules:
            members = [index[id(v)] for v in getattr(self.model, module).trainable_variables]
            # Weights (kernels, taps) first, then biases, as Cool-chic 5.
            order += [(i, module) for i in members if len(variables[i].shape) > 1]
            order += [(i, module) for i in members if len(variables[i].shape) <= 1]
        return order

    def __call__(self, integers: list[np.ndarray], steps: tuple):
        """Refines `integers` (one per `network_variables`, at `steps`) in up to `passes`
        passes, stopping after one that changes nothing; returns the new integers and an
        `RDOQReport` of all passes. Leaves the model's networks at the new integers."""
        start = time.perf_counter()
        integers = [np.array(q, np.int64, copy=True) for q in integers]
        rng = np.random.default_rng(self.seed)
        reports = []
        for _ in range(self.passes):
            integers, report = self._pass(integers, steps, rng)
            reports.append(report)
            if not report.changed:
                break
        return integers, RDOQReport(
            changed=sum(r.changed for r in reports),
            evaluations=sum(r.evaluations for r in reports),
            loss_before=reports[0].loss_before,
            loss_after=reports[-1].loss_after,
            network_bits_before=reports[0].network_bits_before,
            network_bits_after=reports[-1].network_bits_after,
            seconds=time.perf_counter() - start,
            passes=len(reports),
        )

    def _pass(self, integers: list[np.ndarray], steps: tuple, rng: np.random.Generator):
        """One pass over every integer (changed in place)."""
        start = time.perf_counter()
        self._module_scores = {}  # their constant inputs are those of this pass
        variables = self.model.network_variables
        step_of = self.model.network_steps(*steps)
        self.model.set_network_integers(integers, *steps)
        costs = [self.code_costs(q) for q in integers]
        tensor_bits = [float(c.min()) for c in costs]
        mse, latent_bits = (float(x) for x in self._full())
        loss_before = self._loss(mse, latent_bits, sum(tensor_bits))
        bits_before = sum(tensor_bits)
        changed = evaluations = 0
        order = self._order()
        progress = Progress(len(order))
        for n, (i, module) in enumerate(order, 1):
            score = self._scorer(module)
            variable, step, q = variables[i], np.float32(step_of[i]), integers[i]
            flat = q.reshape(-1)
            others = sum(tensor_bits) - tensor_bits[i]
            loss = self._loss(mse, latent_bits, others + tensor_bits[i])
            for j in rng.permutation(flat.size):
                original = int(flat[j])
                best = (original, loss, mse, latent_bits)
                without = costs[i] - self._value_costs(original)
                for sign in (-1, 1):
                    for k in range(1, self.max_delta + 1):
                        value = original + sign * k
                        if abs(value) > MAX_NETWORK_INTEGER:
                            break
                        flat[j] = value
                        variable.assign(q.astype(np.float32) * step)
                        m, b = score(mse, latent_bits)
                        evaluations += 1
                        bits = float((without + self._value_costs(value)).min())
                        candidate = self._loss(m, b, others + bits)
                        if not candidate < best[1]:
                            break
                        best = (value, candidate, m, b)
                value, loss, mse, latent_bits = best
                flat[j] = value
                variable.assign(q.astype(np.float32) * step)
                if value != original:
                    changed += 1
                    costs[i] = self.code_costs(q)  # exact again, no drift
                    tensor_bits[i] = float(costs[i].min())
            progress.update(n)
            logging.info(
                "RDOQ: %s tensor %s (%s) %s, %d integers changed so far, RD loss %.6g.",
                module,
                i,
                "x".join(map(str, q.shape)),
                progress,
                changed,
                loss,
            )
        report = RDOQReport(
            changed=changed,
            evaluations=evaluations,
            loss_before=loss_before,
            loss_after=self._loss(mse, latent_bits, sum(tensor_bits)),
            network_bits_before=bits_before,
            network_bits_after=sum(tensor_bits),
            seconds=time.perf_counter() - start,
            passes=1,
        )
        return integers, report

    def _loss(self, mse: float, latent_bits: float, network_bits: float) -> float:
        return mse + self.lmbda * (latent_bits + network_bits) / self._pixels
