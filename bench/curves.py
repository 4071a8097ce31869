"""Rate-distortion curves from the project's results JSON or from CSV files (bpp,psnr).

A curve is a name, a kind (learned or classical, for plotting) and points sorted by rate,
with MS-SSIM and the decoder's MACs per pixel where the source has them. Results JSON is
CompressAI's layout (`results.bpp`, `results.psnr-rgb`, `results.ms-ssim-rgb`,
`results.macs_per_pixel`); CSV files have a header with `bpp` and `psnr` columns, as the
published anchors do (`is_curve_csv` tells curves from the index and per-image tables
that sit beside them).
"""

import csv
import dataclasses
import json
import math
import os

from common.errors import ZooError


class CurveError(ZooError, ValueError):
    """A file that is not a readable RD curve."""


@dataclasses.dataclass
class Curve:
    name: str
    bpp: list[float]
    psnr: list[float]
    classical: bool = False
    ms_ssim: list[float] | None = None  # per point, where the source has it
    macs_per_pixel: float | None = None  # the decoder's, mean over points

    def __post_init__(self):
        if len(self.bpp) != len(self.psnr):
            raise CurveError(f"{self.name}: {len(self.bpp)} rates but {len(self.psnr)} PSNRs.")
        if self.ms_ssim is not None and len(self.ms_ssim) != len(self.bpp):
            self.ms_ssim = None
        order = sorted(range(len(self.bpp)), key=lambda i: self.bpp[i])
        self.bpp = [float(self.bpp[i]) for i in order]
        self.psnr = [float(self.psnr[i]) for i in order]
        if self.ms_ssim is not None:
            self.ms_ssim = [float(self.ms_ssim[i]) for i in order]
        if any(b <= 0 for b in self.bpp):
            raise CurveError(f"{self.name}: rates must be positive.")

    def ms_ssim_db(self) -> list[float] | None:
        """MS-SSIM as the field plots it: -10 log10(1 - MS-SSIM)."""
        if self.ms_ssim is None:
            return None
        return [-10 * math.log10(max(1e-12, 1 - v)) for v in self.ms_ssim]

    def with_quality(self, metric: str) -> "Curve":
        """The curve with `psnr` holding the chosen quality (psnr, or ms-ssim in dB), so
        that plots and BD-rates work on either; CurveError if it has no such values."""
        if metric == "psnr":
            return self
        values = self.ms_ssim_db()
        if values is None:
            raise CurveError(f"{self.name}: no MS-SSIM values.")
        return dataclasses.replace(self, psnr=values, ms_ssim=None)


# Names of the classical codecs and of published classical anchors (drawn dashed).
CLASSICAL_NAMES = (
    "jpeg", "webp", "jpeg2000", "avif", "jxl", "hevc", "bpg", "vtm", "hm", "av1", "png", "flif",
)  # fmt: skip


def is_classical(name: str) -> bool:
    lower = name.lower()
    return any(key in lower for key in CLASSICAL_NAMES)


def is_curve_csv(path: str) -> bool:
    """Whether a CSV file is an RD curve: bpp and psnr columns, no per-image column."""
    try:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return False
    columns = {c.strip().lower() for c in header}
    return {"bpp", "psnr"} <= columns and not columns & {"image", "file"}


def _mean(values) -> float | None:
    values = [v for v in values or [] if v is not None]
    return sum(values) / len(values) if values else None


@dataclasses.dataclass
class LosslessResult:
    """A lossless codec's aggregate (`common.results.aggregate_lossless`): one number."""

    name: str
    bpsp: float  # mean over images of file bits / (3 H W)
    classical: bool = False
    encoding_time: float | None = None
    decoding_time: float | None = None


def _load_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise CurveError(f"{path}: no such file.")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CurveError(f"{path}: not a results JSON ({e}).") from None
    if not isinstance(data, dict):
        raise CurveError(f"{path}: not a results JSON (not an object).")
    return data


def is_lossless_json(path: str) -> bool:
    """Whether a file is a lossless aggregate (a JSON object with `"lossless": true`)."""
    if not path.lower().endswith(".json"):
        return False
    return bool(_load_json(path).get("lossless"))


def read_lossless(path: str) -> LosslessResult:
    """Reads a lossless aggregate (`common.results.aggregate_lossless`)."""
    data = _load_json(path)
    name = data.get("name", os.path.splitext(os.path.basename(path))[0])
    if not data.get("lossless"):
        raise CurveError(f'{path}: not a lossless result (no "lossless": true).')
    try:
        results = data["results"]
        bpsp = float(results["bpsp"])
    except (KeyError, TypeError, ValueError) as e:
        raise CurveError(f"{path}: a lossless result needs results.bpsp ({e}).") from None
    return LosslessResult(
        name,
        bpsp,
        data.get("classical", is_classical(name)),
        results.get("encoding_time"),
        results.get("decoding_time"),
    )


def read_curve(path: str) -> Curve:
    """Reads a results JSON (CompressAI layout) or a CSV with bpp and psnr columns."""
    if not os.path.isfile(path):
        raise CurveError(f"{path}: no such file.")
    name = os.path.splitext(os.path.basename(path))[0]
    try:
        if path.lower().endswith(".json"):
            with open(path) as f:
                data = json.load(f)
            if isinstance(data, dict) and data.get("lossless"):
                raise CurveError(
                    f"{path}: a lossless result (bits per sub-pixel), not an RD curve: plot it "
                    "with other lossless results."
                )
            name = data.get("name", name)
            results = data["results"]
            bpp, psnr = results["bpp"], results["psnr-rgb"]
            classical = data.get("classical", is_classical(name))
            ms_ssim = results.get("ms-ssim-rgb")
            if ms_ssim is not None and any(v is None for v in ms_ssim):
                ms_ssim = None
            macs = _mean(results.get("macs_per_pixel"))
        else:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            bpp = [float(r["bpp"]) for r in rows]
            psnr = [float(r["psnr"]) for r in rows]
            classical = is_classical(name)
            ms_ssim, macs = None, None
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise CurveError(f"{path}: not an RD curve (need bpp and psnr; {e}).") from None
    if not bpp:
        raise CurveError(f"{path}: the curve has no points.")
    return Curve(name, bpp, psnr, classical, ms_ssim, macs)
