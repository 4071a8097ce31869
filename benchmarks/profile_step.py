"""Where a C3 stage-1 step spends its time: forward + backward of each part, as JSON.

  python benchmarks/profile_step.py [--size 512x768] [--out benchmarks/results/profile_step.json]

Each part is timed in isolation (its own compiled function, gradients with respect to its
inputs and parameters), so the parts add up to a little more than a full step.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common.files import atomic_write_json  # noqa: E402
from common.rundir import provenance  # noqa: E402


def timed(fn, variables, repeats: int = 5) -> float:
    import tensorflow as tf

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = fn()
        return loss, tape.gradient(loss, variables)

    step()[0].numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        step()[0].numpy()
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="512x768")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/profile_step.json"))
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    import tensorflow as tf

    from models.c3 import quantization, rate
    from models.c3.context import flatten_grids, unflatten_grids
    from models.c3.model import C3Model

    model = C3Model(height, width)
    for v in model.latent_grids.grid_parameters:
        v.assign(tf.random.normal(v.shape) * 0.5)
    target = tf.random.uniform((height, width, 3))
    seed = tf.constant([0, 1])
    latents = model.latent_grids.grid_parameters

    def quantize():
        y = flatten_grids(model.latent_grids.continuous_symbols())
        return quantization.noisy_soft_round(y, 0.3, 2.0, seed)

    symbols = quantize()
    grids = [tf.Variable(g) for g in unflatten_grids(symbols * model.q_step, model.grid_shapes)]
    loc, scale = (tf.Variable(t) for t in model.context_model(grids))
    symbols_var = tf.Variable(symbols)
    upsampled = tf.Variable(model.upsampling(grids))
    arm_vars = model.context_model.trainable_variables
    parts = {
        "quantization": timed(lambda: tf.reduce_sum(quantize()), latents),
        "context_model": timed(
            lambda: tf.add_n([tf.reduce_sum(t) for t in model.context_model(grids)]),
            grids + arm_vars,
        ),
        "rate": timed(
            lambda: tf.reduce_sum(rate.latent_bits(symbols_var, loc, scale, model.q_step)),
            [symbols_var, loc, scale],
        ),
        "upsampling": timed(lambda: tf.reduce_sum(model.upsampling(grids)), grids),
        "synthesis": timed(
            lambda: tf.reduce_sum(model.synthesis(upsampled)),
            [upsampled] + model.synthesis.trainable_variables,
        ),
    }

    def full():
        out = model(target, "noise", 0.3, 2.0, seed)
        return out["mse"] + 1e-3 * out["bits"] / (height * width)

    report = {
        **provenance(ROOT),
        "seed": "noise seed (0, 1); random image and initialisation (timing only)",
        "fit_events": "none: no fit, each part is timed on its own",
        "size": [height, width],
        "ms_forward_backward": parts,
        "ms_full_forward_backward": timed(full, model.trainable_variables),
    }
    print(json.dumps(report, indent=2))
    atomic_write_json(args.out, report)


if __name__ == "__main__":
    main()
