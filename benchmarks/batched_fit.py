"""Batched C3 fits and rate control, as JSON (issue 18).

  python benchmarks/batched_fit.py --data DIR [--device /CPU:0] [--ns 1,4,8]
      [--steps 256x256:200:20,512x768:40:8] [--rate_images kodim01,kodim05,kodim15,kodim23]
      [--target_bpp 0.5] [--out benchmarks/results/batched_fit.json]

1. Batched fitting: for a 256x256 crop (the centre of kodim23) and the whole 768x512
   kodim23, N = 1, 4, 8 lambdas of C3's Kodak config fitted together by one
   `models.c3.batched.BatchedFit`, against the same N fits one after the other (one
   fitter, compiled once). Both include tracing and the network quantisation search;
   the steady-state step time per member is reported apart (`ms_per_member_step_*`, a
   timed chunk of 10 steps once traced), and the batch's first chunk (tracing its N
   members' step graphs, and that chunk's steps).
2. Rate control: `codec.py encode --target_bpp` (pipelines/rate_control.py) on the
   256x256 centre crops of four Kodak images at C3's quickstart budget: how close the
   kept file lands, iterations and seconds.

Each part runs in its own process. `--device /GPU:0` places the fits on a GPU, where
the batch should gain most: a C3 step is many small kernels, so on a GPU the N members'
kernels fill an otherwise idle device; on this 2-core CPU one member's kernels already
keep both cores busy.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common.files import atomic_write_json  # noqa: E402
from common.rundir import provenance  # noqa: E402

SEED = 0
# C3's Kodak sweep, the lambdas taken in this order for N = 1, 4, 8.
LAMBDAS = (1e-3, 1e-4, 4e-3, 2e-2, 3e-4, 2e-3, 8e-3, 5e-4)


def _image(data: str, name: str, crop: int | None):
    from common.images import read_image

    image = read_image(os.path.join(data, name + ".png"))
    if crop:
        h, w = image.shape[:2]
        top, left = (h - crop) // 2, (w - crop) // 2
        image = image[top : top + crop, left : left + crop]
    return image


def _config(noise_steps: int, ste_steps: int):
    from configs import c3_kodak

    config = c3_kodak.get_config()
    config.fit.num_noise_steps, config.fit.max_ste_steps = noise_steps, ste_steps
    config.fit.log_every = max(1, noise_steps // 2)
    config.fit.checkpoint_every = 0
    return config


def measure_batched(data: str, size: str, n: int, noise: int, ste: int, device: str) -> dict:
    import tensorflow as tf

    from common.images import to_float
    from models import registry
    from models.c3.batched import BatchedFit
    from models.c3.fit import Run
    from pipelines.per_image import make_fitter

    crop = None if size == "512x768" else int(size.split("x")[0])
    image = to_float(_image(data, "kodim23", crop))
    height, width = image.shape[:2]
    config = _config(noise, ste)
    lambdas = LAMBDAS[:n]

    def build():
        return make_fitter(
            registry.build_model(config.model, height=height, width=width), config.fit
        )

    with tf.device(device):
        # N fits one after the other, one fitter (compiled once).
        fitter = build()
        start = time.perf_counter()
        sequential = []
        for lmbda in lambdas:
            fitter.reset(image, lmbda, SEED)
            sequential.append(fitter.fit())
        sequential_seconds = time.perf_counter() - start
        # N fits together.
        fitters = [build() for _ in lambdas]
        for f, lmbda in zip(fitters, lambdas, strict=True):
            f.reset(image, lmbda, SEED)
        start = time.perf_counter()
        batch = BatchedFit(fitters)
        batched = batch.fit()
        batched_seconds = time.perf_counter() - start
        # Steady state (all traced): 10 stage-1 steps of every member in one chunk.
        for f, lmbda in zip(fitters, lambdas, strict=True):
            f.reset(image, lmbda, SEED)
        batch.carry_out([Run("noise", 1, check=False)] * n)
        start = time.perf_counter()
        batch.carry_out([Run("noise", 11, check=False)] * n)
        member_step = (time.perf_counter() - start) / 10 / n
        fitter.reset(image, lambdas[0], SEED)
        fitter._run_chunks("noise", 1, check=False)
        start = time.perf_counter()
        fitter._run_chunks("noise", 11, check=False)
        lone_step = (time.perf_counter() - start) / 10
    same = [abs(a.loss - b.loss) / abs(a.loss) for a, b in zip(sequential, batched, strict=True)]
    return {
        "size": f"{height}x{width}",
        "n": n,
        "lambdas": list(lambdas),
        "noise_steps": noise,
        "max_ste_steps": ste,
        "sequential_seconds": sequential_seconds,
        "batched_seconds": batched_seconds,
        "sequential_seconds_per_rate_point": sequential_seconds / n,
        "batched_seconds_per_rate_point": batched_seconds / n,
        "speedup": sequential_seconds / batched_seconds,
        "ms_per_member_step_batched": 1000 * member_step,
        "ms_per_step_lone": 1000 * lone_step,
        "batched_first_chunk_seconds": batch.first_chunk_seconds,
        "max_relative_loss_difference_batched_vs_sequential": max(same),
        "nan_recoveries": [r.nan_recoveries for r in batched],
        "restarts": [r.restarts for r in batched],
        "psnr_batched": [r.psnr for r in batched],
        "bpp_estimated_batched": [
            (r.bits_latents + r.bits_networks) / (height * width) for r in batched
        ],
    }


def measure_rate(data: str, name: str, target_bpp: float, device: str) -> dict:
    import tensorflow as tf

    from common import metrics
    from configs import c3_quickstart
    from pipelines.per_image import C3Codec
    from pipelines.rate_control import encode_to_target

    image = _image(data, name, 256)
    config = c3_quickstart.get_config()
    config.seed = SEED
    target = round(target_bpp * image.shape[0] * image.shape[1] / 8)
    with tf.device(device):
        result = encode_to_target(C3Codec(config), image, target)
    pixels = image.shape[0] * image.shape[1]
    return {
        "image": f"{name} (256x256 centre crop)",
        "target_bpp": target_bpp,
        "target_bytes": target,
        "bytes": result.bytes,
        "bpp": 8 * result.bytes / pixels,
        "relative_error": result.relative_error,
        "within_tolerance": abs(result.relative_error) <= config.fit.rate_control_tolerance,
        "lmbda": result.lmbda,
        "psnr": float(metrics.psnr(result.encoding.decoded.image, image)),
        "fits": len(result.trials),
        "fresh_fits": result.count("fresh"),
        "refinements": result.count("refine"),
        "iterations": result.iterations,
        "seconds": result.seconds,
        "trials": [t.to_dict() for t in result.trials],
        "nan_recoveries": result.encoding.fit.nan_recoveries,
        "restarts": result.encoding.fit.restarts,
    }


def _child(args, *spec) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--data", args.data, "--device", args.device, "--child",
         json.dumps(spec)],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )  # fmt: skip
    if out.returncode != 0:
        sys.exit(f"batched_fit.py: error: {spec} failed:\n{out.stderr[-3000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="Folder with kodimNN.png.")
    parser.add_argument("--device", default="/CPU:0")
    parser.add_argument("--ns", default="1,4,8")
    parser.add_argument("--steps", default="256x256:200:20,512x768:40:8")
    parser.add_argument("--rate_images", default="kodim01,kodim05,kodim15,kodim23")
    parser.add_argument("--target_bpp", type=float, default=0.5)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/batched_fit.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *spec = json.loads(args.child)
        if kind == "batched":
            row = measure_batched(args.data, *spec, args.device)
        else:
            row = measure_rate(args.data, *spec, args.device)
        print(json.dumps(row))
        return
    if not os.path.isfile(os.path.join(args.data, "kodim23.png")):
        sys.exit(f"batched_fit.py: error: {args.data} has no kodim23.png (--data DIR).")
    batched = []
    for item in filter(None, args.steps.split(",")):
        size, noise, ste = item.split(":")
        for n in (int(v) for v in args.ns.split(",")):
            batched.append(_child(args, "batched", size, n, int(noise), int(ste)))
    rate = [
        _child(args, "rate", name, args.target_bpp)
        for name in filter(None, args.rate_images.split(","))
    ]
    report = {
        "benchmark": "batched C3 fits (N lambdas in one compiled step) and rate control",
        **provenance(ROOT),
        "seed": SEED,
        "device": args.device,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "config": "configs/c3_kodak.py (batched), configs/c3_quickstart.py (rate control)",
        "batched": batched,
        "rate_control": rate,
    }
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
