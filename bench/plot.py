"""Rate-distortion plots (PSNR vs bpp) of results JSON files and anchor CSVs.

    python -m bench.plot -f a.json b.json [--anchors DIR] -o rd.png [--table]
        [--title "Kodak"] [--anchor-names compressai_vtm,compressai_bpg444]

Classical codecs are drawn dashed and learned codecs solid, as the field draws them.
`--table` prints a markdown table of the BD-rate (cubic and PCHIP) and BD-PSNR of every
curve against the first one.
"""

import argparse
import glob
import os
import sys

from bench.bdrate import BDRateError, bd_psnr, bd_rate
from bench.curves import Curve, CurveError, read_curve
from common.cli import exit_code


def load_curves(files: list[str], anchors_dir: str | None, anchor_names: str | None):
    curves = [read_curve(path) for path in files]
    if anchors_dir:
        if not os.path.isdir(anchors_dir):
            raise CurveError(f"--anchors {anchors_dir!r} is not a folder.")
        paths = sorted(glob.glob(os.path.join(anchors_dir, "*.csv")))
        if anchor_names:
            wanted = {n.strip() for n in anchor_names.split(",")}
            paths = [p for p in paths if os.path.splitext(os.path.basename(p))[0] in wanted]
        curves += [read_curve(path) for path in paths]
    if not curves:
        raise CurveError("no curves to plot: pass -f FILE ... and/or --anchors DIR.")
    return curves


def plot(curves: list[Curve], out: str, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 5), dpi=120)
    for curve in curves:
        axis.plot(
            curve.bpp,
            curve.psnr,
            linestyle="--" if curve.classical else "-",
            marker="o",
            markersize=3,
            label=curve.name,
        )
    axis.set_xlabel("bits per pixel")
    axis.set_ylabel("PSNR (dB, RGB)")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)
    if title:
        axis.set_title(title)
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, ".tmp-" + os.path.basename(out))
    figure.savefig(tmp, format="png")
    plt.close(figure)
    os.replace(tmp, out)


def bd_table(curves: list[Curve]) -> str:
    anchor = curves[0]
    lines = [
        f"| curve | BD-rate vs {anchor.name} (cubic) | (PCHIP) | BD-PSNR (cubic) |",
        "|---|---|---|---|",
    ]
    for curve in curves[1:]:
        cells = []
        for fn, method, scale, unit in (
            (bd_rate, "cubic", 100, " %"),
            (bd_rate, "pchip", 100, " %"),
            (bd_psnr, "cubic", 1, " dB"),
        ):
            try:
                cells.append(f"{scale * fn(anchor, curve, method):+.2f}{unit}")
            except BDRateError as e:
                cells.append(f"n/a ({e})")
        lines.append(f"| {curve.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.plot", description=__doc__.splitlines()[0]
    )
    parser.add_argument("-f", "--files", nargs="*", default=[])
    parser.add_argument("--anchors", default=None, help="folder of anchor CSVs (bpp,psnr)")
    parser.add_argument("--anchor-names", default=None, help="comma-separated stems to keep")
    parser.add_argument("-o", "--out", default=None, help="output PNG")
    parser.add_argument("--title", default="")
    parser.add_argument("--table", action="store_true", help="print BD-rates vs the first curve")
    args = parser.parse_args(argv)

    def work():
        curves = load_curves(args.files, args.anchors, args.anchor_names)
        if not args.out and not args.table:
            raise CurveError("nothing to do: pass -o rd.png and/or --table.")
        if args.out:
            plot(curves, args.out, args.title)
            print(f"wrote {args.out} ({len(curves)} curves)")
        if args.table:
            print(bd_table(curves))

    return exit_code(work, "bench.plot")


if __name__ == "__main__":
    sys.exit(main())
