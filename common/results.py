"""The results format: one JSON object per image and rate point, and an aggregate in
CompressAI's layout. Documented in docs/results.md.
"""

import glob
import json
import os
from collections import defaultdict

import numpy as np

from common import metrics
from common.errors import EvaluationError
from common.files import atomic_write_bytes, atomic_write_json

# Fields every per-image result has (null where they do not apply yet).
RESULT_FIELDS = (
    "image",
    "model",
    "lmbda",
    "bpp",
    "bpp_estimated",
    "bpp_latents",
    "bpp_networks",
    "bpp_header",
    "psnr",
    "mse",
    "ms_ssim",
    "encode_seconds",
    "decode_seconds",
    "steps",
    "macs_per_pixel",
    "height",
    "width",
    "bitstream",
    "config_hash",
)


def result_row(**fields) -> dict:
    """A per-image result with every standard field present (None by default)."""
    row = {k: None for k in RESULT_FIELDS}
    row.update(fields)  # extra, model-specific fields are kept beside the standard ones
    return row


def row_from_file(
    *,
    image: str,
    model: str,
    original: np.ndarray,
    data: bytes,
    decoded: np.ndarray,
    encode_seconds: float | None,
    decode_seconds: float | None,
    lossless: bool = False,
    **fields,
) -> dict:
    """The results row of one coded image, the same for every codec: `bpp` from the size
    of the file's bytes, `psnr`, `mse` and `ms_ssim` of the decoded 8-bit image against
    the original, the times, and the image size. Other standard fields (`lmbda`, the
    estimates, `steps`, `macs_per_pixel`, `bitstream`, `config_hash`) and codec-specific
    extras come in `fields`. Raises EvaluationError if the decoded image has another shape.
    A lossless codec's row (`lossless`) has `bpsp` (bits per sub-pixel, file bits /
    (3 H W), the lossless literature's unit), `lossless` true, `mse` 0 and `psnr` null
    (infinite), and the decoded image must equal the original exactly (`_check_exact`).
    """
    height, width = original.shape[:2]
    if lossless:
        _check_exact(image, model, original, decoded)
        channels = original.shape[2] if original.ndim == 3 else 1
        return result_row(
            image=image,
            model=model,
            bpp=8 * len(data) / (height * width),
            bpsp=8 * len(data) / (channels * height * width),
            lossless=True,
            mse=0.0,
            encode_seconds=encode_seconds,
            decode_seconds=decode_seconds,
            height=height,
            width=width,
            **fields,
        )
    if decoded.shape != original.shape:
        raise EvaluationError(
            f"{image}: decodes to {decoded.shape} but the original is {original.shape}."
        )
    return result_row(
        image=image,
        model=model,
        bpp=8 * len(data) / (height * width),
        psnr=metrics.psnr(decoded, original),
        mse=metrics.mse(decoded, original),
        ms_ssim=metrics.ms_ssim(decoded, original),
        encode_seconds=encode_seconds,
        decode_seconds=decode_seconds,
        height=height,
        width=width,
        **fields,
    )


def _check_exact(image: str, model: str, original: np.ndarray, decoded: np.ndarray) -> None:
    """EvaluationError unless a lossless codec's decoded image equals the original: one
    value off anywhere is a failure, and no row is written for it."""
    if decoded.shape != original.shape or decoded.dtype != original.dtype:
        raise EvaluationError(
            f"{image}: decodes to {decoded.shape} {decoded.dtype} but the original is "
            f"{original.shape} {original.dtype}."
        )
    wrong = int(np.count_nonzero(decoded != original))
    if wrong:
        raise EvaluationError(
            f"{image}: {model} is not lossless: {wrong} of {original.size} values differ."
        )


def write_result(path: str, row: dict) -> None:
    atomic_write_json(path, row)


def read_results(pattern: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            rows.append(json.load(f))
    return rows


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def aggregate(rows: list[dict], name: str, description: str = "", point_key: str = "lmbda") -> dict:
    """Means over images per rate point, in CompressAI's results layout.

    A rate point is a value of `point_key`: lambda for learned codecs, the quality
    setting for classical ones (`quality`).

    `psnr-rgb` is the mean of per-image PSNRs (C3's and CompressAI's convention);
    `psnr-rgb-of-mean-mse` is the PSNR of the mean MSE. `bpp` is the measured rate of
    the files; where no file was written yet it is the estimate (`bpp_is_estimate`).
    """
    by_point = defaultdict(list)
    for row in rows:
        by_point[row.get(point_key)].append(row)
    points = []
    for point, group in by_point.items():
        measured = all(r["bpp"] is not None for r in group)
        bpp = _mean([r["bpp"] if measured else r["bpp_estimated"] for r in group])
        mean_mse = _mean([r["mse"] for r in group])
        points.append(
            {
                point_key: point,
                "bpp": bpp,
                "bpp_is_estimate": not measured,
                "psnr-rgb": _mean([r["psnr"] for r in group]),
                "psnr-rgb-of-mean-mse": metrics.psnr_from_mse(mean_mse) if mean_mse else None,
                "ms-ssim-rgb": _mean([r["ms_ssim"] for r in group]),
                "encoding_time": _mean([r["encode_seconds"] for r in group]),
                "decoding_time": _mean([r["decode_seconds"] for r in group]),
                "macs_per_pixel": _mean([r.get("macs_per_pixel") for r in group]),
                "num_images": len(group),
            }
        )
    points.sort(key=lambda p: (p["bpp"] is None, p["bpp"]))
    keys = [
        "bpp",
        "psnr-rgb",
        "psnr-rgb-of-mean-mse",
        "ms-ssim-rgb",
        "encoding_time",
        "decoding_time",
        "macs_per_pixel",
        point_key,
        "num_images",
        "bpp_is_estimate",
    ]
    return {
        "name": name,
        "description": description
        + " Means over images per rate point; psnr-rgb is the mean per-image PSNR.",
        "results": {k: [p[k] for p in points] for k in keys},
    }


def aggregate_lossless(rows: list[dict], name: str, description: str = "") -> dict:
    """Means over images of lossless rows (`row_from_file(lossless=True)`): one point, marked
    `"lossless": true`, with `bpsp` the mean of the per-image bpsp (the convention of
    the lossless literature) and `bpsp_of_total` that of the total bits over the total
    sub-pixels (what a folder of files weighs)."""
    if not rows:
        raise EvaluationError(f"{name}: no lossless results to aggregate.")
    if not all(r.get("lossless") for r in rows):
        raise EvaluationError(f"{name}: lossy rows among lossless ones.")
    subpixels = sum(3 * r["height"] * r["width"] for r in rows)
    total_bits = sum(r["bpsp"] * 3 * r["height"] * r["width"] for r in rows)
    return {
        "name": name,
        "description": description + " Means over images; bpsp = file bits / (3 H W).",
        "lossless": True,
        "results": {
            "bpsp": _mean([r["bpsp"] for r in rows]),
            "bpsp_of_total": total_bits / subpixels,
            "bpp": _mean([r["bpp"] for r in rows]),
            "encoding_time": _mean([r["encode_seconds"] for r in rows]),
            "decoding_time": _mean([r["decode_seconds"] for r in rows]),
            "num_images": len(rows),
        },
    }


def write_aggregate(
    path: str,
    rows: list[dict],
    name: str,
    description: str = "",
    point_key: str = "lmbda",
    **extra,
) -> dict:
    """Writes the aggregate of `rows`: `aggregate_lossless`'s if they are lossless rows,
    else `aggregate`'s (lossy and lossless rows do not mix), with `extra` top-level
    fields (e.g. the commit that measured them)."""
    lossless = [bool(r.get("lossless")) for r in rows]
    if any(lossless) and not all(lossless):
        raise EvaluationError(f"{name}: lossy and lossless results in one aggregate.")
    if rows and all(lossless):
        summary = aggregate_lossless(rows, name, description)
    else:
        summary = aggregate(rows, name, description, point_key)
    summary.update(extra)
    atomic_write_json(path, summary)
    return summary


def lambda_name(image: str, lmbda: float) -> str:
    """The name of an image's file and results row at one of several lambdas of one
    run (a batched C3 fit, a variable-rate model): `<image>@<lambda>`."""
    return f"{image}@{lmbda:g}"


def result_path(directory: str, image: str) -> str:
    return os.path.join(directory, "results", f"{image}.json")


def write_curve_csv(path: str, bpp: list[float], psnr: list[float]) -> None:
    """An RD curve as CSV with `bpp,psnr` columns (the anchors' format)."""
    lines = ["bpp,psnr"] + [f"{b:.6f},{p:.4f}" for b, p in zip(bpp, psnr, strict=True)]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def dataset_name(folder: str) -> str:
    """The name of a dataset folder in evaluation paths: its base name (kodak, clic...)."""
    return os.path.basename(os.path.normpath(os.path.abspath(folder)))


def _evaluations(experiment: str) -> dict[str, str]:
    """{dataset: glob of its results} of the evaluated work units of an experiment:
    `wid=*/eval/<dataset>/results/` (eval.py --workdir RUN --dataset DIR), and the
    layout before datasets had folders, `wid=*/eval/results/` (as dataset "eval")."""
    folders = glob.glob(os.path.join(experiment, "wid=*", "eval", "*", "results"))
    datasets = sorted({os.path.basename(os.path.dirname(f)) for f in folders})
    patterns = {
        d: os.path.join(experiment, "wid=*", "eval", d, "results", "*.json") for d in datasets
    }
    if glob.glob(os.path.join(experiment, "wid=*", "eval", "results", "*.json")):
        patterns["eval"] = os.path.join(experiment, "wid=*", "eval", "results", "*.json")
    return patterns


def collect(
    experiment: str, out_dir: str, name: str | None = None, dataset: str | None = None
) -> dict:
    """Merges the per-image results of every work unit of an experiment (a sweep).

    Reads the units' own results, `<experiment>/wid=*/results/*.json` (C3 and other
    per-image runs, iterative inference), or, for trained models, their evaluations
    `<experiment>/wid=*/eval/<dataset>/results/*.json` (one dataset: `dataset`, needed
    when the units were evaluated on several). Writes `<out_dir>/results.json` (the
    aggregate in CompressAI's layout, one point per lambda) and `<out_dir>/results.csv`
    (bpp,psnr) for the BD-rate and plot tools. Raises ValueError if there is nothing.
    """
    if not os.path.isdir(experiment):
        raise ValueError(f"--collect {experiment!r} is not a folder.")
    source = os.path.join(experiment, "wid=*", "results", "*.json")
    rows = [] if dataset else read_results(source)
    if not rows:
        evaluations = _evaluations(experiment)
        if dataset:
            if dataset not in evaluations:
                raise ValueError(
                    f"{experiment}: no evaluation on {dataset!r} "
                    f"(evaluated: {', '.join(evaluations) or 'none'})."
                )
            evaluations = {dataset: evaluations[dataset]}
        if len(evaluations) > 1:
            raise ValueError(
                f"{experiment}: work units were evaluated on {', '.join(evaluations)}; "
                "pass --dataset NAME to merge one of them."
            )
        if evaluations:
            ((dataset, source),) = evaluations.items()
            rows = read_results(source)
    if not rows:
        raise ValueError(
            f"{experiment}: no finished work units (wid=*/results/*.json) and no evaluations "
            "(wid=*/eval/<dataset>/results/*.json)."
        )
    name = name or rows[0].get("model") or os.path.basename(os.path.abspath(experiment))
    where = f"{os.path.abspath(experiment)}" + (f", dataset {dataset}" if dataset else "")
    summary = write_aggregate(
        os.path.join(out_dir, "results.json"),
        rows,
        name,
        f"{name}: {len(rows)} per-image results merged from {where}.",
    )
    points = summary["results"]
    write_curve_csv(os.path.join(out_dir, "results.csv"), points["bpp"], points["psnr-rgb"])
    return summary
