"""Lossless coding on Kodak: bits per sub-pixel of every lossless codec, from real files.

  python benchmarks/lossless_kodak.py --kodak DIR [--jobs 2]
      [--codecs png,webp_lossless,jpeg2000_lossless,jxl_lossless_e7,jxl_lossless_e9]
      [--c3-images kodim23,kodim01] [--c3-full] [--c3-steps 2000] [--seed 0]
      [--c3-set fit.rdoq=true ...]
      [--rc-workdir [NAME=]RUN ...] [--rc-qualities 12,16,20] [--crops]
      [--out benchmarks/results/lossless_kodak]

1. The 24 images with the classical lossless codecs (`bench.classical`; each file decoded
   and checked to equal the original; per-image rows resume).
2. With --c3-images: lossless C3 (`configs/c3_lossless.py`, 1800 stage-1 + 200 stage-2
   steps by default) on the 256x256 crops at (x=256, y=128) of those images (the issue 13
   crops: a full 768x512 fit is ~8x the time), and the classical codecs on the same
   crops, like for like (part 1's files when --crops or --c3-full had it code those very
   images). Each C3 row is a file decoded and compared with the crop.
   With --c3-full, the same on the whole 768x512 images instead (about 6x the fit time
   of a crop; the networks' bits spread over 6x the pixels). --c3-set overrides fields
   of the C3 config (e.g. fit.rdoq=true: RDOQ of the network integers on the total bits).
   Each image's entry is kept in OUT/c3_lossless/ when done: a rerun with the same
   steps, seed, overrides and resolved config (its hash: a changed configs/c3_lossless.py
   refits) resumes after it (a long list can span sessions).

3. With --rc-workdir RUN (repeatable): RC with the trained residual network of that run
   (train.py with configs/rc_hevc.py or rc_c3.py) codes the 24 images (`eval.py
   --workdir RUN`: each file written, decoded and compared with the original; rows in
   OUT/<name>/results/, the name NAME= or <model>_<distribution> (rc_hevc_mixture5,
   rc_hevc_laplace);
   --rc-qualities: the lossy qualities searched, if not the run config's). The run's
   training budget (steps, seconds per step, pairs) and command are copied into the
   summary.

With --crops, parts 1 and 3 code the 256x256 crops at (x=256, y=128) of the 24 images
(written to OUT/crops/) instead of the whole images: RC with a C3 lossy layer fits C3 to
every image at every quality tried, which on a CPU is affordable on crops only.

`summary.json`: each codec's mean bpsp (file bits / (3 H W), mean over images), its
distance from WebP lossless (the issue's bar) and from JPEG XL lossless at effort 9 (the
goal beyond it), mean encode and decode seconds, and the crop table with C3's fits
(restarts, NaN recoveries, fit and decode seconds). `bpsp.png` is the bar chart of 1.
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import rd_small  # noqa: E402

from bench import classical, plot  # noqa: E402
from bench.curves import read_lossless  # noqa: E402
from common.config import config_hash  # noqa: E402
from common.files import atomic_write_json  # noqa: E402
from common.images import image_files  # noqa: E402
from common.rundir import provenance  # noqa: E402

REFERENCES = ("webp_lossless", "jxl_lossless_e9")
C3_CONFIG = "configs/c3_lossless.py"


def distances(bpsp: dict[str, float]) -> dict[str, dict]:
    """Each codec's bpsp and its distance (%) from the references present."""
    out = {}
    for name, value in bpsp.items():
        entry = {"bpsp": value}
        for reference in REFERENCES:
            if reference in bpsp:
                entry[f"vs_{reference}_percent"] = 100 * (value / bpsp[reference] - 1)
        out[name] = entry
    return out


def c3_config(steps: int, seed: int, overrides=()):
    """The lossless C3 config of a run: `C3_CONFIG`, the overrides, seed and steps."""
    config = rd_small.make_config(os.path.join(ROOT, C3_CONFIG), list(overrides))
    config.seed = seed
    config.fit.num_noise_steps = steps - steps // 10
    config.fit.max_ste_steps = steps // 10
    return config


def c3_on(image, name: str, steps: int, seed: int, overrides=()) -> dict:
    """Lossless C3 fitted to one crop, its file decoded and checked: the results row."""
    from pipelines.per_image import C3Codec, c3_row

    config = c3_config(steps, seed, overrides)
    encoding = C3Codec(config).fit_and_encode(image, what=name)
    row = c3_row(config, name, image, encoding, bitstream=None)
    keep = (
        "image", "bpp", "bpsp", "bpp_estimated", "bpp_latents", "bpp_networks", "bpp_header",
        "bpp_pixels", "bpp_pixels_coded", "encode_seconds", "decode_seconds", "iterations",
        "restarts", "nan_recoveries", "rollbacks", "weight_step", "bias_step", "arm_steps",
        "pixel_steps", "seconds_quantization", "rdoq", "macs_per_pixel", "config_hash",
    )  # fmt: skip
    out = {k: row[k] for k in keep}
    out.update(seed=seed, bytes=len(encoding.encoded.data))
    print(f"{name}: c3_lossless {row['bpsp']:.4f} bpsp", flush=True)
    return out


def part1_bpsp(out: str, codec_name: str, image_name: str) -> float:
    """The bpsp of part 1's file of one image (`bench.classical.run`'s row)."""
    from common.results import read_results

    return read_results(os.path.join(out, codec_name, "results", f"{image_name}.json"))[0]["bpsp"]


def crops(args, names: list[str]) -> dict:
    """Part 2: C3 and the classical codecs on the same crops (or whole images)."""
    table = {"crop": None if args.c3_full else list(rd_small.CROP), "images": {}}
    commit = provenance(ROOT)["commit"]  # recorded in each kept entry
    # A kept entry resumes only under the very same settings, the resolved config's hash
    # among them (a changed configs/c3_lossless.py refits).
    settings = {
        "steps": args.c3_steps,
        "seed": args.seed,
        "set": list(args.c3_set),
        "config_hash": config_hash(c3_config(args.c3_steps, args.seed, args.c3_set)),
    }
    for image_name in args.c3_images.split(","):
        crop_name = image_name if args.c3_full else f"{image_name}_crop"
        image = rd_small.load_image(args.kodak, crop_name)
        # Each image's entry is kept in OUT/c3_lossless/ as it is done: a rerun with the
        # same settings (a later session, a requeued job) resumes after the last one.
        done = os.path.join(args.out, "c3_lossless", f"{crop_name}.json")
        kept = None
        if os.path.isfile(done):
            with open(done) as f:
                kept = json.load(f)
        if kept and kept.get("settings") == settings and set(names) <= set(kept["bpsp"]):
            table["images"][crop_name] = {k: kept[k] for k in ("bpsp", "c3_lossless_row")}
            print(f"{crop_name}: kept from {done}", flush=True)
            continue
        if args.crops or args.c3_full:  # part 1 coded these very images: its rows
            entry = {n: part1_bpsp(args.out, n, image_name) for n in names}
        else:
            entry = {n: classical.measure(n, image, "lossless", crop_name)["bpsp"] for n in names}
        c3 = c3_on(image, crop_name, args.c3_steps, args.seed, args.c3_set)
        entry["c3_lossless"] = c3["bpsp"]
        table["images"][crop_name] = {"bpsp": entry, "c3_lossless_row": c3}
        atomic_write_json(done, {**table["images"][crop_name], "settings": settings,
                                 "commit": commit})  # fmt: skip
    codecs = [*names, "c3_lossless"]
    means = {
        n: sum(v["bpsp"][n] for v in table["images"].values()) / len(table["images"])
        for n in codecs
    }
    table["mean"] = distances(means)
    return table


def write_crops(kodak: str, directory: str) -> str:
    """The crop (`rd_small.CROP`) of every image of `kodak`, as PNGs in `directory`."""
    from common.images import write_png

    os.makedirs(directory, exist_ok=True)
    for path in image_files(kodak):
        name = os.path.splitext(os.path.basename(path))[0]
        target = os.path.join(directory, f"{name}.png")
        if not os.path.isfile(target):
            write_png(target, rd_small.load_image(kodak, f"{name}_crop"))
    return directory


def rc_runs(args, images: str) -> tuple[dict, list]:
    """Part 3: each RC run on the images; (summary entries, lossless results)."""
    import numpy as np

    from common.rundir import read_run_config, training_record
    from pipelines.evaluate import evaluate_trained

    entries, found = {}, []
    for spec in args.rc_workdir:
        label, _, workdir = spec.rpartition("=")
        model = read_run_config(workdir).model
        # The distribution in the name: a Laplace and a mixture run compare side by side.
        mixtures = model.get("mixtures", 0)
        name = label or model.name + (f"_mixture{mixtures}" if mixtures else "_laplace")
        if name in entries:
            raise SystemExit(f"two RC runs named {name}: label them, --rc-workdir NAME=RUN.")
        out = os.path.join(args.out, name)
        qualities = [float(q) for q in args.rc_qualities.split(",")] if args.rc_qualities else None
        rows = evaluate_trained(workdir, images, out, name, lossy_qualities=qualities)
        trained = training_record(workdir) or {}
        keep = ("steps", "seconds_per_step", "batch_size", "patch_size", "training_pairs",
                "validation", "decoder_macs_per_pixel", "checkpoint", "run")  # fmt: skip
        chosen = [row["lossy_quality"] for row in rows]
        entries[name] = {
            "workdir": os.path.abspath(workdir),
            "mixtures": mixtures,
            "training": {k: trained.get(k) for k in keep},
            "bpp_lossy": float(np.mean([row["bpp_lossy"] for row in rows])),
            "bpp_residual": float(np.mean([row["bpp_residual"] for row in rows])),
            "lossy_psnr": float(np.mean([row["lossy_psnr"] for row in rows])),
            "lossy_quality_chosen": {f"{q:g}": chosen.count(q) for q in sorted(set(chosen))},
        }
        found.append(read_lossless(os.path.join(out, "results.json")))
        print(f"{name}: {found[-1].bpsp:.4f} bpsp", flush=True)
    return entries, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--codecs", default=classical.LOSSLESS_DEFAULT_CODECS)
    parser.add_argument("--c3-images", default="", help="e.g. kodim23,kodim01 (crops)")
    parser.add_argument("--c3-full", action="store_true", help="whole images, not crops")
    parser.add_argument("--c3-steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--c3-set", nargs="*", default=[], help="C3 config overrides KEY=VALUE")
    parser.add_argument(
        "--rc-workdir", action="append", default=[], help="a trained RC run: RUN or NAME=RUN"
    )
    parser.add_argument("--rc-qualities", default="", help="e.g. 12,16,20 (HEVC QPs)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/lossless_kodak"))
    parser.add_argument("--crops", action="store_true", help="parts 1 and 3 on 256x256 crops")
    args = parser.parse_args()
    images = write_crops(args.kodak, os.path.join(args.out, "crops")) if args.crops else args.kodak
    paths = image_files(images)
    names = args.codecs.split(",")
    start = time.perf_counter()
    classical.run(names, paths, args.out, args.jobs, root=images)
    seconds = time.perf_counter() - start
    found = {n: read_lossless(os.path.join(args.out, f"{n}.json")) for n in names}
    rc, rc_found = rc_runs(args, images)
    found.update({r.name: r for r in rc_found})
    report = {
        **provenance(ROOT),
        "images": len(paths),
        "image_size": "256x256 crops at (x=256, y=128)" if args.crops else "whole",
        "seconds": seconds,
        "codecs": distances({n: r.bpsp for n, r in found.items()}),
    }
    if rc:
        report["rc"] = rc
    for name, result in found.items():
        report["codecs"][name].update(
            encode_seconds=result.encoding_time, decode_seconds=result.decoding_time
        )
        print(f"{name}: {result.bpsp:.4f} bpsp")
    plot.plot_lossless(list(found.values()), os.path.join(args.out, "bpsp.png"), "Kodak, lossless")
    if args.c3_images:
        report["full_images" if args.c3_full else "crops"] = crops(args, names)
    atomic_write_json(os.path.join(args.out, "summary.json"), report)


if __name__ == "__main__":
    main()
