"""Milliseconds per stage-1 C3 step and peak memory, Kodak config, as JSON.

  python benchmarks/fit_speed.py [--sizes 512x768,256x256] [--steps 20] [--jit both]
      [--out benchmarks/results/fit_speed.json]

Each (size, jit) runs in its own process so that its peak resident memory is its own.
Steady state: the first chunk (tracing + XLA compilation + 1 step) is timed apart, then
`--steps` steps are timed as one chunk. Random image content: speed does not depend on it.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common.files import atomic_write_json  # noqa: E402
from common.rundir import provenance  # noqa: E402


def measure(height: int, width: int, steps: int, jit: bool) -> dict:
    sys.path.insert(0, ROOT)

    import numpy as np
    import tensorflow as tf

    from configs import c3_kodak
    from models import registry
    from pipelines.per_image import make_fitter

    config = c3_kodak.get_config()
    config.fit.jit_compile = jit
    model = registry.build_model(config.model, height=height, width=width)
    fitter = make_fitter(model, config.fit)
    image = np.random.default_rng(0).uniform(size=(height, width, 3)).astype(np.float32)
    fitter.reset(image, lmbda=1e-3)
    start = time.perf_counter()
    fitter._noise_chunk(tf.constant(1, tf.int64))[1].numpy()
    first = time.perf_counter() - start
    fitter._noise_chunk(tf.constant(2, tf.int64))[1].numpy()  # warm-up
    start = time.perf_counter()
    fitter._noise_chunk(tf.constant(steps, tf.int64))[1].numpy()
    per_step = (time.perf_counter() - start) / steps
    return {
        "height": height,
        "width": width,
        "jit_compile": jit,
        "ms_per_step": 1000 * per_step,
        "compile_plus_first_step_seconds": first,
        "timed_steps": steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="512x768,256x256")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--jit", choices=["on", "off", "both"], default="both")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/fit_speed.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        h, w, jit = args.child.split(",")
        print(json.dumps(measure(int(h), int(w), args.steps, jit == "1")))
        return
    rows = []
    for size in args.sizes.split(","):
        h, w = (int(v) for v in size.split("x"))
        for jit in {"on": [True], "off": [False], "both": [True, False]}[args.jit]:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    f"{h},{w},{int(jit)}",
                    "--steps",
                    str(args.steps),
                ],
                capture_output=True,
                text=True,
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
            )
            if out.returncode != 0:
                sys.exit(f"fit_speed.py: error: {size} jit={jit} failed:\n{out.stderr[-2000:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(row))
            rows.append(row)
    report = {
        "benchmark": "C3 stage-1 step time, Kodak config (1770 MACs/pixel)",
        **provenance(ROOT),
        "seed": "none (random image content and initialisation: speed does not depend on them)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "peers_same_machine_seconds_per_step": {
            "c3_jax_512x768": 1.15,
            "c3_jax_256x256": 0.21,
            "coolchic_5.0.1_512x768": 1.33,
            "coolchic_5.0.1_256x256": 0.18,
        },
        "target_seconds_per_step": {"512x768": 0.75, "256x256": 0.12},
        "results": rows,
    }
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
