"""Small rate-distortion runs of C3 on Kodak, measured from real files, as JSON.

  python benchmarks/rd_small.py --kodak DIR [--protocols crop23,full23,crops4]
      [--seeds 0,1,2] [--config configs/c3_kodak.py] [--set fit.num_noise_steps=1800 ...]
      [--out benchmarks/results/rd_small.json]

- crop23: kodim23 cropped to 256x256 at (x=256, y=128), lambda 1e-3, 1800 stage-1 steps
  (all schedules scaled to that budget) + up to 200 stage-2 steps: 2000 iterations in
  all, Cool-chic 5's budget in its published comparison (warm-up included).
- crop01: the same crop of kodim01 (the issue's second ablation crop), 1800 + 200 steps.
- full23_2k: the whole kodim23, 1800 + 200 steps (Cool-chic 5.0.1: 2000 iterations).
- full23: the whole kodim23 with 500 + 50 steps (a quick check).
- crops4: the same crop of kodim01-04 at lambda 1e-3 and 4e-3 (1800 + 200 steps).

Every row is a file: the encoder (`pipelines.per_image.C3Codec`) fits, writes the
bitstream and decodes it; bpp is 8 * file bytes / pixels and PSNR that of the decoded
8-bit image. `rd_loss` = MSE on the [0, 1] scale + lambda * bpp (the issue's measure).
The fit's estimate stays beside it, labelled. Rows are written as they finish; a rerun
with the same --out, commit and settings skips the rows it already has.

Peers on this machine (reference docs): C3's JAX code 34.98 dB at 0.503 bpp (estimate)
on crop23 and 34.17 dB at 0.323 bpp on full23; Cool-chic 5.0.1 36.19 dB at 0.470 bpp
(real file, RD loss 7.11e-4) on crop23 with 2000 iterations in all.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common.files import atomic_write_json  # noqa: E402

CROP = (128, 256, 256, 256)  # y, x, height, width
# protocol -> (images, lambdas, stage-1 steps, stage-2 steps)
PROTOCOLS = {
    "crop23": (("kodim23_crop",), (1e-3,), 1800, 200),
    "crop01": (("kodim01_crop",), (1e-3,), 1800, 200),
    "full23_2k": (("kodim23",), (1e-3,), 1800, 200),
    "full23": (("kodim23",), (1e-3,), 500, 50),
    "crops4": (tuple(f"kodim{i:02d}_crop" for i in range(1, 5)), (1e-3, 4e-3), 1800, 200),
}
PEERS = {
    "c3_jax_crop23": {"psnr": 34.98, "bpp": 0.503, "rate": "estimate"},
    "c3_jax_full23": {"psnr": 34.17, "bpp": 0.323, "rate": "estimate"},
    "coolchic_5.0.1_crop23": {"psnr": 36.19, "bpp": 0.470, "rd_loss": 7.11e-4, "rate": "file"},
    "coolchic_5.0.1_full23_2000_iterations": {
        "psnr": 36.70,
        "bpp": 0.270,
        "rd_loss": 4.84e-4,
        "rate": "file",
    },
}


def load_image(kodak: str, name: str):
    from common.images import read_image

    image = read_image(os.path.join(kodak, name.replace("_crop", "") + ".png"))
    if name.endswith("_crop"):
        y, x, h, w = CROP
        image = image[y : y + h, x : x + w]
    return image


def make_config(path: str, overrides: list[str]):
    from common.config import load_module, set_dotted

    config = load_module(path).get_config()
    for item in overrides:
        key, value = item.split("=", 1)
        set_dotted(config, key, _value(value))
    return config


def _value(text: str):
    """A --set value: JSON (numbers, lists, true/false), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run_one(config, image, name, lmbda, noise_steps, ste_steps, seed, overridden=()):
    """One fit -> file -> decode. The protocol's steps apply unless --set gave them; a
    warm-up's extra candidate steps come out of the protocol's stage 1, so that every
    row has the protocol's iterations in all."""
    from models.c3.fit import warmup_extra_steps
    from pipelines.per_image import C3Codec, c3_row

    config = config.copy_and_resolve_references()
    config.model.lmbda, config.seed = lmbda, seed
    if "fit.num_noise_steps" not in overridden:
        config.fit.num_noise_steps = noise_steps  # what the warm-up is checked against
        config.fit.num_noise_steps -= warmup_extra_steps(config.fit)
    if "fit.max_ste_steps" not in overridden:
        config.fit.max_ste_steps = ste_steps
    start = time.perf_counter()
    encoding = C3Codec(config).fit_and_encode(image, what=name)
    seconds = time.perf_counter() - start
    row = c3_row(config, name, image, encoding, bitstream=None)
    mse01 = row["mse"] / 255.0**2
    keep = (
        "image", "lmbda", "bpp", "psnr", "mse", "bpp_estimated", "bpp_latents", "bpp_networks",
        "bpp_header", "bpp_latents_coded", "bpp_networks_coded", "psnr_fit", "noise_steps",
        "ste_steps", "iterations", "seconds_warmup", "seconds_noise", "seconds_ste",
        "seconds_quantization", "entropy_coding_seconds", "decode_seconds", "macs_per_pixel",
        "weight_step", "bias_step", "upsampling_step", "arm_steps", "step_shifts",
        "nan_recoveries", "restarts", "config_hash",
    )  # fmt: skip
    out = {k: row[k] for k in keep}
    out["rdoq"] = row["rdoq"]  # what RDOQ changed (None when off)
    out.update(
        seed=seed,
        bytes=len(encoding.encoded.data),
        rd_loss=mse01 + lmbda * row["bpp"],
        rd_loss_estimated=mse01 + lmbda * row["bpp_estimated"],
        seconds=seconds,
    )
    print(json.dumps(out), flush=True)
    return out


def summarise(rows: list[dict]) -> dict:
    """Means over seeds per (protocol, image, lambda), and per protocol."""
    import numpy as np

    groups = {}
    for row in rows:
        groups.setdefault((row["protocol"], row["image"], row["lmbda"]), []).append(row)
    per_point = []
    for (protocol, image, lmbda), group in sorted(groups.items()):
        per_point.append(
            {
                "protocol": protocol,
                "image": image,
                "lmbda": lmbda,
                "seeds": [r["seed"] for r in group],
                **{
                    f"mean_{k}": float(np.mean([r[k] for r in group]))
                    for k in ("rd_loss", "psnr", "bpp", "bpp_estimated", "seconds")
                },
                "min_rd_loss": float(min(r["rd_loss"] for r in group)),
                "restarts": int(sum(r["restarts"] for r in group)),
                "nan_recoveries": int(sum(r["nan_recoveries"] for r in group)),
            }
        )
    return {"per_point": per_point}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kodak", required=True, help="folder with kodim01.png ... kodim24.png")
    parser.add_argument("--protocols", default="crop23,full23,crops4")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated fit seeds")
    parser.add_argument("--config", default=os.path.join(ROOT, "configs/c3_kodak.py"))
    parser.add_argument("--set", nargs="*", default=[], help="config overrides KEY=VALUE")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/rd_small.json"))
    args = parser.parse_args()
    from common.rundir import provenance

    recorded = provenance(ROOT)
    commit = recorded["commit"]
    config = make_config(args.config, args.set)
    settings = {"config": os.path.relpath(args.config, ROOT), "overrides": args.set}
    rows = []
    if os.path.exists(args.out):  # resume: keep rows of the same commit and settings
        with open(args.out) as f:
            old = json.load(f)
        if old.get("commit") == commit and old.get("settings") == settings:
            rows = old["results"]
    done = {(r["protocol"], r["image"], r["lmbda"], r["seed"]) for r in rows}
    report = {
        "benchmark": "C3 small RD runs on Kodak, bpp and PSNR measured from real files",
        **recorded,
        "settings": settings,
        "machine": "2-core CPU, no GPU",
        "rd_loss": "MSE of the decoded 8-bit image on the [0, 1] scale + lambda * file bpp",
        "peers": PEERS,
    }
    seeds = [int(s) for s in args.seeds.split(",")]
    for protocol in args.protocols.split(","):
        names, lambdas, noise_steps, ste_steps = PROTOCOLS[protocol]
        for seed in seeds:
            for name in names:
                for lmbda in lambdas:
                    if (protocol, name, lmbda, seed) in done:
                        continue
                    image = load_image(args.kodak, name)
                    overridden = [item.split("=", 1)[0] for item in args.set]
                    row = run_one(
                        config, image, name, lmbda, noise_steps, ste_steps, seed, overridden
                    )
                    rows.append(row | {"protocol": protocol})
                    atomic_write_json(
                        args.out, report | {"summary": summarise(rows), "results": rows}
                    )
    atomic_write_json(args.out, report | {"summary": summarise(rows), "results": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
