"""Rate-distortion curves from the project's results JSON or from CSV files (bpp,psnr).

A curve is a name, a kind (learned or classical, for plotting) and points sorted by rate.
Results JSON is CompressAI's layout (`results.bpp`, `results.psnr-rgb`); CSV files have a
header with `bpp` and `psnr` columns, as the published anchors do.
"""

import csv
import dataclasses
import json
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

    def __post_init__(self):
        if len(self.bpp) != len(self.psnr):
            raise CurveError(f"{self.name}: {len(self.bpp)} rates but {len(self.psnr)} PSNRs.")
        points = sorted(zip(self.bpp, self.psnr, strict=True))
        self.bpp = [float(b) for b, _ in points]
        self.psnr = [float(p) for _, p in points]
        if any(b <= 0 for b in self.bpp):
            raise CurveError(f"{self.name}: rates must be positive.")


# Names of the classical codecs and of published classical anchors (drawn dashed).
CLASSICAL_NAMES = ("jpeg", "webp", "jpeg2000", "avif", "jxl", "hevc", "bpg", "vtm", "hm", "av1")


def is_classical(name: str) -> bool:
    lower = name.lower()
    return any(key in lower for key in CLASSICAL_NAMES)


def read_curve(path: str) -> Curve:
    """Reads a results JSON (CompressAI layout) or a CSV with bpp and psnr columns."""
    if not os.path.isfile(path):
        raise CurveError(f"{path}: no such file.")
    name = os.path.splitext(os.path.basename(path))[0]
    try:
        if path.lower().endswith(".json"):
            with open(path) as f:
                data = json.load(f)
            name = data.get("name", name)
            results = data["results"]
            bpp, psnr = results["bpp"], results["psnr-rgb"]
            classical = data.get("classical", is_classical(name))
        else:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            bpp = [float(r["bpp"]) for r in rows]
            psnr = [float(r["psnr"]) for r in rows]
            classical = is_classical(name)
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise CurveError(f"{path}: not an RD curve (need bpp and psnr; {e}).") from None
    if not bpp:
        raise CurveError(f"{path}: the curve has no points.")
    return Curve(name, bpp, psnr, classical)
