"""Bjontegaard delta rate and delta PSNR between two RD curves.

G. Bjontegaard, "Calculation of average PSNR differences between RD-curves" (VCEG-M33,
2001): fit log(rate) as a function of PSNR for each curve, integrate both over the PSNR
interval they share, and BD-rate = exp(mean difference of log-rates) - 1. The fit is a
cubic polynomial (the original) or piecewise cubic Hermite interpolation (PCHIP, as in
the JVET common-test-conditions spreadsheet). BD-PSNR swaps the axes: PSNR as a function
of log-rate, over the shared log-rate interval.

    python -m bench.bdrate ANCHOR TEST [--method cubic|pchip]

ANCHOR and TEST are results JSON files (CompressAI layout) or CSV files (bpp,psnr).
"""

import argparse
import math
import sys

import numpy as np
from scipy.interpolate import PchipInterpolator

from bench.curves import Curve, read_curve
from common.cli import exit_code
from common.errors import ZooError

METHODS = ("cubic", "pchip")


class BDRateError(ZooError, ValueError):
    """Curves that cannot be compared (too few points, no overlap)."""


def _integral(x: np.ndarray, y: np.ndarray, low: float, high: float, method: str) -> float:
    """Integral over [low, high] of the fit of y as a function of x."""
    order = np.argsort(x)
    x, y = x[order], y[order]
    if method == "cubic":
        if len(x) < 4:
            raise BDRateError(f"the cubic fit needs at least 4 points, got {len(x)}.")
        antiderivative = np.polyint(np.polyfit(x, y, 3))
        return float(np.polyval(antiderivative, high) - np.polyval(antiderivative, low))
    if method == "pchip":
        if len(x) < 2 or len(np.unique(x)) != len(x):
            raise BDRateError("PCHIP needs at least 2 points with distinct abscissae.")
        return float(PchipInterpolator(x, y).integrate(low, high))
    raise BDRateError(f"unknown method {method!r}; use one of {METHODS}.")


def _delta(xa, ya, xt, yt, method: str, what: str) -> float:
    """Mean of fit_test - fit_anchor over the shared range of x."""
    xa, ya, xt, yt = (np.asarray(v, np.float64) for v in (xa, ya, xt, yt))
    low, high = max(xa.min(), xt.min()), min(xa.max(), xt.max())
    if not high > low:
        raise BDRateError(
            f"the curves do not overlap in {what} ([{xa.min():.3f}, {xa.max():.3f}] vs "
            f"[{xt.min():.3f}, {xt.max():.3f}])."
        )
    difference = _integral(xt, yt, low, high, method) - _integral(xa, ya, low, high, method)
    return difference / (high - low)


def bd_rate(anchor: Curve, test: Curve, method: str = "cubic") -> float:
    """Average rate difference of `test` vs `anchor` at equal PSNR (0.05 = 5 % more bits)."""
    log_a, log_t = np.log(anchor.bpp), np.log(test.bpp)
    return math.exp(_delta(anchor.psnr, log_a, test.psnr, log_t, method, "PSNR")) - 1.0


def bd_psnr(anchor: Curve, test: Curve, method: str = "cubic") -> float:
    """Average PSNR difference (dB) of `test` vs `anchor` at equal rate."""
    log_a, log_t = np.log(anchor.bpp), np.log(test.bpp)
    return _delta(log_a, anchor.psnr, log_t, test.psnr, method, "log-rate")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bdrate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("anchor")
    parser.add_argument("test")
    parser.add_argument("--method", choices=METHODS + ("both",), default="both")
    args = parser.parse_args(argv)

    def work():
        anchor, test = read_curve(args.anchor), read_curve(args.test)
        methods = METHODS if args.method == "both" else (args.method,)
        for method in methods:
            rate = bd_rate(anchor, test, method)
            psnr = bd_psnr(anchor, test, method)
            print(
                f"{test.name} vs {anchor.name} ({method}): BD-rate {100 * rate:+.2f} %, "
                f"BD-PSNR {psnr:+.3f} dB"
            )

    return exit_code(work, "bench.bdrate")


if __name__ == "__main__":
    sys.exit(main())
