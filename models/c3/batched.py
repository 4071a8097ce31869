"""Batched fitting: several C3 fits advanced by one compiled step.

A C3 model is a few thousand parameters and its step is a chain of small, memory-bound
kernels, so one fit leaves most of a machine idle. `BatchedFit` runs N independent fits
(N lambdas of one image, N images of one size, or N architectures) as one `tf.function`:
every iteration of its loop takes one step of every active member, each with its own
loss, schedules, optimiser state, stage-2 bookkeeping and NaN guard.

Workflow:

    fitters = [make_fitter(build(height, width), config.fit) for _ in lambdas]
    for fitter, lmbda in zip(fitters, lambdas):
        fitter.reset(image, lmbda, seed)
    results = BatchedFit(fitters).fit()      # one FitResult per member

Design. Each member is an ordinary `C3Fitter`, and its fit is its plan
(`C3Fitter.plan`): a generator that asks for "run stage s until step t" and does the
host's work in between (warm-up choices, keep-best, the network quantisation search).
`BatchedFit` drives the N plans in lockstep: it carries out the members' current
requests together, one compiled chunk of `log_every` iterations at a time, then hands
each member its chunk's outcome (`C3Fitter.after_chunk`: NaN recovery, learning check
and restart, keep-best, log line) exactly as a lone fit would. A member's step is the
same code as in a lone fit, with the same stateless noise seeds, so a batched member
reproduces its lone fit up to float summation order. A member whose step is not finite
stops for the rest of the chunk and is rewound alone; the others go on. Members that
finish early (stage 2 stopped) idle in a `tf.cond`.

Why a graph of N members and not one leading batch axis on every tensor: the members
keep every feature of the fitter (learned upsampling, SOAP, inter-grid context, lossless
output, warm-up, restarts) and may even differ in architecture (`pipelines.per_image`'s
architecture choice), which one stacked model could not. The N steps are independent
subgraphs of one graph: TensorFlow's executor runs them concurrently on the inter-op
threads, and XLA (`fit.jit_compile`) can fuse them horizontally on a GPU. The cost is a
graph N times larger to trace. `benchmarks/batched_fit.py` measures what it buys.
"""

import time
from collections.abc import Callable, Sequence

import tensorflow as tf

from models.c3.fit import C3Fitter, FitResult, Run

# A member's mode in a chunk: idle, stage 1 or stage 2.
IDLE, NOISE, STE = 0, 1, 2
_MODES = {"noise": NOISE, "ste": STE}


class BatchedFit:
    """Fits N `C3Fitter`s together, one compiled step advancing each of them.

    Every member must have been `reset` (image, lambda, seed) or restored from a
    checkpoint; members may differ in image, lambda, seed and architecture, not in
    `fit.log_every` or `fit.jit_compile`.
    """

    def __init__(self, fitters: Sequence[C3Fitter]):
        if not fitters:
            raise ValueError("BatchedFit needs at least one fitter.")
        configs = [(int(f.config.log_every), bool(f.config.jit_compile)) for f in fitters]
        if len(set(configs)) != 1:
            raise ValueError(
                "the members of a batched fit must share fit.log_every and fit.jit_compile."
            )
        self.members = list(fitters)
        jit = configs[0][1]
        self.chunks = 0  # compiled chunks run (each advances every active member)
        self.first_chunk_seconds = None  # the first chunk's wall time: tracing + its steps
        self._chunk = tf.function(self._chunk_fn, jit_compile=jit)

    def _chunk_fn(self, modes, num_steps):
        """Up to `num_steps[i]` steps of member i in mode `modes[i]`, all members one step
        per iteration. Returns (finite (N,), metrics (N, 4)): whether each member's steps
        were all finite, and the metrics of its last finite step."""
        members = self.members
        for member in members:  # what a NaN recovery restores (idle members: unchanged)
            member._copy(member.good_state, member._recoverable)

        def member_step(i, member, metrics):
            def step():
                # Lambdas, so that AutoGraph converts the steps' Python control flow.
                f, m = tf.cond(
                    tf.equal(modes[i], NOISE),
                    lambda: member._noise_step_fn(),
                    lambda: member._ste_step_fn(),
                )
                return f, tf.where(f, m, metrics)

            return step

        def live(t, finite):
            """Which members take a step at iteration t."""
            stopped = tf.stack([member.ste_done for member in members])
            return (
                tf.not_equal(modes, IDLE)
                & finite
                & (t < num_steps)
                & tf.logical_not(tf.equal(modes, STE) & stopped)
            )

        def body(t, finite, metrics):
            active = live(t, finite)
            new_finite, new_metrics = [], []
            for i, member in enumerate(members):
                f, m = tf.cond(
                    active[i],
                    member_step(i, member, metrics[i]),
                    lambda i=i: (finite[i], metrics[i]),
                )
                new_finite.append(f)
                new_metrics.append(m)
            return t + 1, tf.stack(new_finite), tf.stack(new_metrics)

        def more(t, finite, metrics):
            del metrics
            return tf.reduce_any(live(t, finite))

        n = len(members)
        start = (tf.constant(0, tf.int64), tf.ones([n], tf.bool), tf.zeros([n, 4]))
        _, finite, metrics = tf.while_loop(more, body, start)
        return finite, metrics

    def fit(
        self,
        log_fns: Sequence[Callable[[str, int, dict], None] | None] | None = None,
        checkpoint_fn: Callable[[], None] | None = None,
    ) -> list[FitResult]:
        """Runs (or resumes) every member's fit; returns their `FitResult`s in order.

        `log_fns[i]` gets member i's log lines (as `C3Fitter.fit`'s `log_fn`);
        `checkpoint_fn` is called after chunks in which no member was rewound or ran a
        warm-up candidate. The
        members' seconds are the batch's wall-clock times (shared)."""
        n = len(self.members)
        log_fns = list(log_fns) if log_fns is not None else [None] * n
        if len(log_fns) != n:
            raise ValueError(f"{len(log_fns)} log functions for {n} members.")
        plans = [member.plan() for member in self.members]
        requests: list[Run | None] = [None] * n
        results: list[FitResult | None] = [None] * n

        def advance(i: int) -> None:
            try:
                requests[i] = next(plans[i])
            except StopIteration as stop:
                requests[i], results[i] = None, stop.value

        for i in range(n):
            advance(i)
        while any(r is not None for r in requests):
            self.carry_out(requests, log_fns, checkpoint_fn)
            for i in range(n):
                if requests[i] is not None:
                    advance(i)
        return results

    def carry_out(self, requests, log_fns=None, checkpoint_fn=None) -> None:
        """Runs chunks until every member's current request (a `Run`, or None: idle) is
        carried out."""
        log_fns = log_fns or [None] * len(self.members)
        while True:
            pending = [
                i
                for i, (member, r) in enumerate(zip(self.members, requests, strict=True))
                if r is not None and not member.stage_finished(r)
            ]
            if not pending:
                return
            modes = [IDLE] * len(self.members)
            steps = [0] * len(self.members)
            before = {}
            for i in pending:
                member, request = self.members[i], requests[i]
                modes[i] = _MODES[request.stage]
                steps[i] = member.chunk_steps(request)
                before[i] = member._step(request.stage)
            start = time.perf_counter()
            finite, metrics = self._chunk(
                tf.constant(modes, tf.int32), tf.constant(steps, tf.int64)
            )
            finite, metrics = finite.numpy(), metrics.numpy()
            if self.first_chunk_seconds is None:
                self.first_chunk_seconds = time.perf_counter() - start
            self.chunks += 1
            may_save = [
                self.members[i].after_chunk(
                    requests[i], before[i], bool(finite[i]), metrics[i], log_fns[i]
                )
                for i in pending
            ]
            if all(may_save) and checkpoint_fn is not None:
                checkpoint_fn()
