"""Small training runs of the amortised codecs, evaluated with real files.

python benchmarks/train_small.py --train_dir DIR --eval_dir DIR [--steps 2000]
       [--models mbt2018_mean,two_layer_syn] [--lmbda 0.01] [--batch_size 2]
       [--patch_size 128] [--out benchmarks/results/train_small.json]

Trains each model with train.py (the shallow-ntc recipe scaled to `--steps`: warm-up,
decay and the lambda warm-up are fractions of the run) on random crops of `train_dir`,
then evaluates it with eval.py on every image of `eval_dir`: measured bpp from the
files, PSNR of the decoded images, encode and decode milliseconds per image. Writes one
JSON with the numbers and the seconds per training step. Runs resume: rerunning after an
interruption continues training from the last checkpoint and redoes only the eval.

These runs are far from published quality (2000 steps instead of 2M, on 58 photos): they
show the pipeline works end to end and how fast it is. The full recipe is the config's
default (`python train.py --config configs/mbt2018_mean.py --hid 3`).
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from common.rundir import provenance  # noqa: E402


def run(args: list[str]) -> None:
    start = time.time()
    print("$", " ".join(args), flush=True)
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        sys.exit(
            f"failed ({result.returncode}) after {time.time() - start:.0f} s:\n"
            f"{result.stderr[-3000:]}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train_dir", required=True)
    parser.add_argument("--eval_dir", required=True)
    parser.add_argument("--models", default="mbt2018_mean,two_layer_syn")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lmbda", type=float, default=0.01)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--patch_size", type=int, default=128)
    parser.add_argument("--runs", default=os.path.join(ROOT, "runs", "train_small"))
    parser.add_argument(
        "--out", default=os.path.join(ROOT, "benchmarks", "results", "train_small.json")
    )
    args = parser.parse_args()
    report = {
        **provenance(ROOT),
        "steps": args.steps,
        "lmbda": args.lmbda,
        "batch_size": args.batch_size,
        "patch_size": args.patch_size,
        "train_dir": os.path.abspath(args.train_dir),
        "eval_dir": os.path.abspath(args.eval_dir),
        "cpu_count": os.cpu_count(),
        "models": {},
    }
    for name in args.models.split(","):
        workdir = os.path.join(args.runs, name)
        run(
            [
                "train.py",
                f"--config=configs/{name}.py",
                f"--workdir={workdir}",
                "--config.data.name=folder",
                f"--config.data.root={args.train_dir}",
                f"--config.data.patch_size={args.patch_size}",
                f"--config.train.batch_size={args.batch_size}",
                f"--config.train.num_steps={args.steps}",
                f"--config.model.lmbda={args.lmbda}",
                "--config.train.log_every=50",
                "--config.train.checkpoint_every=250",
                "--config.val.name=none",
            ]
        )
        out = os.path.join(workdir, "eval")
        run(["eval.py", f"--workdir={workdir}", f"--dataset={args.eval_dir}", f"--out={out}"])
        with open(os.path.join(workdir, "train_summary.json")) as f:
            summary = json.load(f)
        with open(os.path.join(out, "results.json")) as f:
            results = json.load(f)["results"]
        rows = []
        for path in sorted(os.listdir(os.path.join(out, "results"))):
            with open(os.path.join(out, "results", path)) as f:
                rows.append(json.load(f))
        report["models"][name] = {
            "seconds_per_step": summary["seconds_per_step"],
            "bpp": results["bpp"][0],
            "bpp_estimated": sum(r["bpp_estimated"] for r in rows) / len(rows),
            "psnr": results["psnr-rgb"][0],
            "psnr_of_mean_mse": results["psnr-rgb-of-mean-mse"][0],
            "ms_ssim": results["ms-ssim-rgb"][0],
            "encode_ms": 1000 * results["encoding_time"][0],
            "decode_ms": 1000 * results["decoding_time"][0],
            "num_images": len(rows),
            "decoder_macs_per_pixel": summary["decoder_macs_per_pixel"],
        }
        print(json.dumps(report["models"][name], indent=1), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
