"""Runs classical codecs on a folder of images and writes their RD curves.

    python -m bench.classical --codecs jpeg,webp,jpeg2000,avif,jxl,hevc444,hevc420 \\
        --images DIR --out DIR [--jobs N] [--qualities 30,50,70]
    python -m bench.classical --codecs png,webp_lossless,jpeg2000_lossless,\\
        jxl_lossless_e7,jxl_lossless_e9 --images DIR --out DIR

Lossless codecs (`bench.codecs.LOSSLESS_CODECS`) have one setting: each file must decode
to exactly the original (else an error, no row), and their aggregate is one point in
bits per sub-pixel (`common.results.aggregate_lossless`), without a CSV.

For every codec, image and quality setting: encode to a real file, decode it, and record
bpp = 8 * file bytes / pixels and PSNR / MS-SSIM of the decoded 8-bit RGB against the
original. Writes OUT/<codec>/results/<image>_q<quality>.json (the project's results
rows, each as soon as it is measured: a rerun with the same --out resumes), OUT/<codec>.json
(the aggregate in CompressAI's layout: one point per quality setting, means over images;
codec versions in the description) and OUT/<codec>.csv (bpp,psnr) for the BD-rate and
plot tools. Every row and aggregate records the git `commit` of the code that measured it.
"""

import argparse
import multiprocessing
import os
import sys
import time

from bench.codecs import CODECS, LOSSLESS_CODECS
from common.cli import exit_code
from common.errors import ConfigError
from common.progress import Progress

DEFAULT_CODECS = "jpeg,webp,jpeg2000,avif,jxl,hevc444,hevc420"
LOSSLESS_DEFAULT_CODECS = ",".join(LOSSLESS_CODECS)
ALL_CODECS = {**CODECS, **LOSSLESS_CODECS}


def _measure(task) -> dict:
    """One (codec, image path, quality, name) point: runs in a worker process."""
    from common.images import read_image

    codec_name, path, quality, name = task
    return measure(codec_name, read_image(path), quality, name)


def measure(codec_name: str, image, quality, name: str) -> dict:
    """The results row of one image (8-bit RGB array) coded by one codec at one setting:
    a real file, decoded; a lossless codec's decode must be exact."""
    from common import results

    codec = ALL_CODECS[codec_name].at(quality)
    start = time.perf_counter()
    data = codec.encode(image)
    encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    decoded = codec.decode(data, image.shape[:2])
    decode_seconds = time.perf_counter() - start
    return results.row_from_file(
        image=name,
        model=codec_name,
        original=image,
        data=data,
        decoded=decoded,
        encode_seconds=encode_seconds,
        decode_seconds=decode_seconds,
        lossless=codec_name in LOSSLESS_CODECS,
        quality=quality,
        bytes=len(data),
    )


def _commit_of(rows: list[dict]):
    """The commit that measured the rows, a sorted list if they were measured by several
    (a resumed run), None for rows from before the rows recorded it."""
    commits = sorted({row.get("commit") or "unknown" for row in rows})
    if commits == ["unknown"]:
        return None
    return commits[0] if len(commits) == 1 else commits


def _worker_init() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # MS-SSIM imports TensorFlow


def run(codec_names, image_paths, out_dir, jobs=1, qualities=None, root=None) -> dict:
    """Measures every codec; returns {codec: aggregate} and writes the files above.
    Images are named by their path below `root` (`common.images.image_name`), or by
    their file name without `root`."""
    from common import results
    from common.images import image_name

    def name_of(path):
        return image_name(root, path) if root else os.path.splitext(os.path.basename(path))[0]

    from common.rundir import git_revision

    codecs = [ALL_CODECS[name] for name in codec_names]
    for codec in codecs:
        codec.check()
    commit = git_revision()  # of the code that measures: in every row and aggregate

    def row_path(codec_name, path, quality, name):
        if codec_name in LOSSLESS_CODECS:
            return os.path.join(out_dir, codec_name, "results", f"{name}.json")
        return os.path.join(out_dir, codec_name, "results", f"{name}_q{quality}.json")

    tasks = [
        (codec.name, path, quality, name_of(path))
        for codec in codecs
        for quality in (qualities or codec.qualities)
        for path in image_paths
    ]
    # Each row is written as soon as it is measured; a rerun skips what exists (resume).
    todo = [task for task in tasks if not os.path.exists(row_path(*task))]
    progress = Progress(len(tasks), done=len(tasks) - len(todo))

    def record(task, row) -> None:
        results.write_result(row_path(*task), {**row, "commit": commit})
        progress.update(progress.done + 1)
        codec_name, _, quality, name = task
        print(f"{codec_name} q={quality} {name}: {progress} (image x setting)")

    if jobs > 1 and len(todo) > 1:
        context = multiprocessing.get_context("spawn")
        with context.Pool(jobs, initializer=_worker_init) as pool:
            for task, row in zip(todo, pool.imap(_measure, todo, chunksize=1), strict=True):
                record(task, row)
    else:
        _worker_init()
        for task in todo:
            record(task, _measure(task))
    summaries = {}
    for codec in codecs:
        codec_rows = [
            results.read_results(row_path(*task))[0] for task in tasks if task[0] == codec.name
        ]
        lossless = codec.name in LOSSLESS_CODECS
        if lossless:  # `write_aggregate` gives lossless rows their one-point aggregate
            what = f"lossless, over {len(image_paths)} images; every file decoded to exactly "
            what += "the original."
        else:
            what = f"one quality setting per point over {len(image_paths)} images; bpp from "
            what += "the file size, PSNR on decoded 8-bit RGB."
        summary = results.write_aggregate(
            os.path.join(out_dir, f"{codec.name}.json"),
            codec_rows,
            codec.name,
            f"{codec.name} ({codec.version()}), {what}",
            point_key="quality",
            commit=_commit_of(codec_rows),
        )
        summaries[codec.name] = summary
        if lossless:  # one point: no curve
            continue
        points = summary["results"]
        # The aggregate's points are sorted by bpp already.
        results.write_curve_csv(
            os.path.join(out_dir, f"{codec.name}.csv"), points["bpp"], points["psnr-rgb"]
        )
    return summaries


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.classical", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--codecs", default=DEFAULT_CODECS, help="comma-separated")
    parser.add_argument("--images", required=True, help="folder of PNG images")
    parser.add_argument("--out", required=True)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--qualities", default="", help="comma-separated (one codec only)")
    args = parser.parse_args(argv)
    return exit_code(lambda: _run_cli(args), "bench.classical")


def _run_cli(args) -> None:
    from common.images import IMAGE_EXTENSIONS, image_files

    names = [n.strip() for n in args.codecs.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_CODECS]
    if unknown or not names:
        raise ConfigError(f"unknown codec(s) {unknown}; choose from {', '.join(ALL_CODECS)}.")
    if not os.path.isdir(args.images):
        raise ConfigError(f"--images {args.images!r} is not a folder.")
    paths = image_files(args.images)
    if not paths:
        raise ConfigError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {args.images!r}.")
    qualities = None
    if args.qualities and names[0] in LOSSLESS_CODECS:
        raise ConfigError(f"--qualities: {names[0]} is lossless and has no quality settings.")
    if args.qualities:
        if len(names) != 1:
            raise ConfigError("--qualities applies to one codec at a time.")
        try:
            qualities = [float(q) if "." in q else int(q) for q in args.qualities.split(",")]
        except ValueError:
            message = f"--qualities {args.qualities!r}: numbers, comma-separated."
            raise ConfigError(message) from None
    summaries = run(names, paths, args.out, max(1, args.jobs), qualities, root=args.images)
    for name, summary in summaries.items():
        points = summary["results"]
        if summary.get("lossless"):
            print(f"{name}: {points['bpsp']:.4f} bpsp (lossless) -> {args.out}/{name}.json")
            continue
        span = f"{min(points['bpp']):.3f} .. {max(points['bpp']):.3f} bpp"
        print(f"{name}: {len(points['bpp'])} points, {span} -> {args.out}/{name}.json")


if __name__ == "__main__":
    sys.exit(main())
