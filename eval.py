"""Decodes bitstreams and measures them: bpp from file sizes, PSNR / MS-SSIM, decode time.

python eval.py --workdir RUN [--originals DIR] [--out DIR]       # C3 run: its bitstreams
python eval.py --workdir RUN --dataset DIR [--out DIR]           # trained model: code DIR
python eval.py --bitstreams "DIR/*.c3" --originals DIR --out DIR
python eval.py --collect ROOT/XID --out DIR [--dataset NAME]   # merge a sweep's results

Writes one results JSON per image (OUT/results/<image>.json) and the aggregate in
CompressAI's layout (OUT/results.json). OUT defaults to RUN/eval for a C3 run and to
RUN/eval/<dataset folder name> for a trained model, so that evaluating a second dataset
does not overwrite the first. --collect merges the units' own results (per-image runs)
or, for trained models, their evaluations on one dataset (--dataset NAME if several).
"""

import os

from absl import flags, logging

from common.cli import run_main
from common.errors import ConfigError

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory whose bitstreams to evaluate.")
_BITSTREAMS = flags.DEFINE_string("bitstreams", None, "Glob of bitstream files.")
_DATASET = flags.DEFINE_string(
    "dataset",
    None,
    "Folder of images to code with the trained model of --workdir; with --collect, the "
    "name of the evaluated dataset to merge (its folder name, e.g. kodak).",
)
_ORIGINALS = flags.DEFINE_string("originals", None, "Folder of the original images (PNG).")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: RUN/eval).")
_NAME = flags.DEFINE_string("name", None, "Name of the curve in the aggregate.")
_COLLECT = flags.DEFINE_string(
    "collect", None, "Experiment directory (ROOT/XID): merge its work units' results."
)
_JIT = flags.DEFINE_bool("jit", True, "Run the fixed-point networks through XLA (same output).")
_LMBDAS = flags.DEFINE_list(
    "lmbdas", None, "--workdir of a variable-rate model (QARV): code at each of these lambdas."
)
_PROGRESSIVE = flags.DEFINE_bool(
    "progressive", True, "--workdir of a hierarchical VAE: also decode every prefix of layers."
)


def collect() -> None:
    from common.results import collect, dataset_name

    if not _OUT.value:
        raise ConfigError("--collect needs --out DIR.")
    dataset = dataset_name(_DATASET.value) if _DATASET.value else None
    try:
        summary = collect(_COLLECT.value, _OUT.value, _NAME.value, dataset)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    points = summary["results"]
    print(
        f"{len(points['bpp'])} rate points from {sum(points['num_images'])} results; "
        f"{os.path.join(_OUT.value, 'results.json')} and results.csv"
    )


def evaluate_trained() -> None:
    from common.results import dataset_name
    from pipelines import evaluate

    if not _DATASET.value:
        raise ConfigError("--workdir of a trained model needs --dataset DIR (images to code).")
    out = _OUT.value or os.path.join(_WORKDIR.value, "eval", dataset_name(_DATASET.value))
    try:
        lmbdas = [float(v) for v in _LMBDAS.value] if _LMBDAS.value else None
    except ValueError:
        raise ConfigError(f"--lmbdas {','.join(_LMBDAS.value)}: numbers, please.") from None
    rows = evaluate.evaluate_trained(
        _WORKDIR.value, _DATASET.value, out, _NAME.value, lmbdas=lmbdas,
        progressive=_PROGRESSIVE.value,
    )  # fmt: skip
    _log_rows(rows)
    print(f"{len(rows)} images coded and decoded; results in {os.path.join(out, 'results.json')}")


def evaluate_files() -> None:
    from pipelines import evaluate

    if _WORKDIR.value:
        items = evaluate.items_from_workdir(_WORKDIR.value, _ORIGINALS.value)
        out = _OUT.value or os.path.join(_WORKDIR.value, "eval")
        name = _NAME.value or (items[0].encoder_row or {}).get("model", "c3")
    else:
        if not _ORIGINALS.value or not _OUT.value:
            raise ConfigError("--bitstreams needs --originals DIR and --out DIR.")
        items = evaluate.items_from_glob(_BITSTREAMS.value, _ORIGINALS.value)
        out, name = _OUT.value, _NAME.value or "c3"
    rows = evaluate.evaluate_all(items, out, name, _JIT.value)
    _log_rows(rows)
    print(f"{len(rows)} bitstreams evaluated; results in {os.path.join(out, 'results.json')}")


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments {argv[1:]}.")
    if sum(bool(v) for v in (_WORKDIR.value, _BITSTREAMS.value, _COLLECT.value)) != 1:
        raise ConfigError("pass exactly one of --workdir RUN, --bitstreams GLOB, --collect DIR.")
    if _COLLECT.value:
        return collect()
    if _WORKDIR.value and not os.path.isdir(_WORKDIR.value):
        raise ConfigError(f"--workdir {_WORKDIR.value!r} is not a folder.")
    from pipelines.trained_run import is_trained_run

    if _WORKDIR.value and is_trained_run(_WORKDIR.value):
        return evaluate_trained()
    return evaluate_files()


def _log_rows(rows: list[dict]) -> None:
    for row in rows:
        quality = "lossless" if row.get("lossless") else f"PSNR {row['psnr']:.3f} dB"
        logging.info(
            "%s: %.4f bpp, %s, decoded in %.3f s",
            row["image"],
            row["bpp"],
            quality,
            row["decode_seconds"],
        )


if __name__ == "__main__":
    run_main(main, "eval.py")
