"""Decodes bitstreams and measures them: bpp from file sizes, PSNR / MS-SSIM, decode time.

python eval.py --workdir RUN [--originals DIR] [--out DIR]       # C3 run: its bitstreams
python eval.py --workdir RUN --dataset DIR [--out DIR]           # trained model: code DIR
python eval.py --bitstreams "DIR/*.c3" --originals DIR --out DIR
python eval.py --collect ROOT/XID --out DIR   # merge a sweep's results

Writes one results JSON per image (OUT/results/<image>.json) and the aggregate in
CompressAI's layout (OUT/results.json); OUT defaults to RUN/eval.
"""

import os
import sys

from absl import app, flags, logging

from common.config import ConfigError, parse_flags, quiet_tensorflow
from common.datasets import DatasetError
from common.images import ImageError

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory whose bitstreams to evaluate.")
_BITSTREAMS = flags.DEFINE_string("bitstreams", None, "Glob of bitstream files.")
_DATASET = flags.DEFINE_string(
    "dataset", None, "Folder of images to code with the trained model of --workdir."
)
_ORIGINALS = flags.DEFINE_string("originals", None, "Folder of the original images (PNG).")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: RUN/eval).")
_NAME = flags.DEFINE_string("name", None, "Name of the curve in the aggregate.")
_COLLECT = flags.DEFINE_string(
    "collect", None, "Experiment directory (ROOT/XID): merge its work units' results."
)
_JIT = flags.DEFINE_bool("jit", True, "Run the fixed-point networks through XLA (same output).")


def main(argv):
    if len(argv) > 1:
        raise ConfigError(f"unexpected arguments {argv[1:]}.")
    from coding import evaluate

    if sum(bool(v) for v in (_WORKDIR.value, _BITSTREAMS.value, _COLLECT.value)) != 1:
        raise ConfigError("pass exactly one of --workdir RUN, --bitstreams GLOB, --collect DIR.")
    if _COLLECT.value:
        if not _OUT.value:
            raise ConfigError("--collect needs --out DIR.")
        from common.results import collect

        try:
            summary = collect(_COLLECT.value, _OUT.value, _NAME.value)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        points = summary["results"]
        print(
            f"{len(points['bpp'])} rate points from {sum(points['num_images'])} results; "
            f"{os.path.join(_OUT.value, 'results.json')} and results.csv"
        )
        return
    if _WORKDIR.value and not os.path.isdir(_WORKDIR.value):
        raise ConfigError(f"--workdir {_WORKDIR.value!r} is not a folder.")
    if _WORKDIR.value and _is_trained_model(_WORKDIR.value):
        if not _DATASET.value:
            raise ConfigError("--workdir of a trained model needs --dataset DIR (images to code).")
        out = _OUT.value or os.path.join(_WORKDIR.value, "eval")
        rows = evaluate.evaluate_trained(_WORKDIR.value, _DATASET.value, out, _NAME.value)
        _log_rows(rows)
        results = os.path.join(out, "results.json")
        print(f"{len(rows)} images coded and decoded; results in {results}")
        return
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


def _is_trained_model(workdir: str) -> bool:
    from coding.amortised_codec import read_run_config
    from models.registry import AMORTISED_MODELS

    if not os.path.isfile(os.path.join(workdir, "config.json")):
        return False
    return read_run_config(workdir).model.name in AMORTISED_MODELS


def _log_rows(rows: list[dict]) -> None:
    for row in rows:
        logging.info(
            "%s: %.4f bpp, PSNR %.3f dB, decoded in %.3f s",
            row["image"],
            row["bpp"],
            row["psnr"],
            row["decode_seconds"],
        )


def run() -> None:
    quiet_tensorflow()
    from coding.amortised_codec import CodecError
    from coding.container import BitstreamError
    from coding.evaluate import EvaluationError

    try:
        app.run(main, flags_parser=parse_flags)
    except (
        BitstreamError,
        CodecError,
        ConfigError,
        DatasetError,
        EvaluationError,
        ImageError,
    ) as e:
        print(f"eval.py: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()
