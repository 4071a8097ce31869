"""SGA iterative inference on a few images with a trained run: RD change and seconds/image.

python benchmarks/itinf_sga.py --warm_start RUN --images DIR [--num_images 4]
       [--steps 3000] [--out benchmarks/results/itinf_sga.json]

Copies the first `num_images` images of DIR (sorted) to a temporary folder, runs
itinf.py on them (configs/itinf_sga.py, the full schedule unless --steps says otherwise)
and writes one JSON: per image the measured bpp, PSNR and RD loss (bpp + lambda * MSE,
from the files) of the amortised encoding and of the SGA-refined one, and the seconds
spent refining; plus the means.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common.images import image_files  # noqa: E402
from common.rundir import provenance  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warm_start", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--num_images", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--workdir", default=None)
    parser.add_argument(
        "--args", default="", help="more itinf.py flags, e.g. '--config.itinf.tau_start=0'"
    )
    parser.add_argument(
        "--out", default=os.path.join(ROOT, "benchmarks", "results", "itinf_sga.json")
    )
    args = parser.parse_args()
    paths = image_files(args.images)[: args.num_images]
    folder = tempfile.mkdtemp(prefix="itinf-images-")
    for path in paths:
        shutil.copy(path, folder)
    workdir = args.workdir or tempfile.mkdtemp(prefix="itinf-run-")
    command = [
        sys.executable,
        "itinf.py",
        "--config=configs/itinf_sga.py",
        f"--config.warm_start={args.warm_start}",
        f"--config.data.root={folder}",
        f"--config.itinf.num_steps={args.steps}",
        f"--workdir={workdir}",
        *args.args.split(),
    ]
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"itinf.py failed ({result.returncode}):\n{result.stderr[-3000:]}")
    means = (
        "bpp_before",
        "bpp",
        "psnr_before",
        "psnr",
        "rd_loss_before",
        "rd_loss_after",
        "encode_seconds",
    )
    rows = []
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        with open(os.path.join(workdir, "results", name + ".json")) as f:
            row = json.load(f)
        rows.append({k: row[k] for k in ("image", "lmbda", "decoded_matches_encoder") + means})
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in means}
    report = {
        **provenance(ROOT),
        "itinf_args": args.args,
        "warm_start": os.path.abspath(args.warm_start),
        "steps": args.steps,
        "cpu_count": os.cpu_count(),
        "images": rows,
        "mean": mean,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(json.dumps(mean, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
