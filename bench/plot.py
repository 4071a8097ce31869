"""Rate-distortion plots and BD-rate tables of results JSON files and anchor CSVs.

    python -m bench.plot -f a.json b.json [--anchors DIR] -o rd.png [--table]
        [--reference VTM] [--metric psnr|ms-ssim] [--complexity macs.png]
        [--title "Kodak"] [--anchor-names compressai_vtm,compressai_bpg444]

Classical codecs are drawn dashed and learned codecs solid, as the field draws them.
`--anchors DIR` reads every RD curve of a folder (CSV files with bpp and psnr columns;
index and per-image tables beside them are skipped). `--table` prints a markdown table
of every curve's BD-rate (cubic and PCHIP) and BD-PSNR against the reference: the curve
named by `--reference`, by default the anchor VTM curve when there is one (a curve named
VTM, else one whose name contains vtm), else the first curve. `--metric ms-ssim` plots
and tables MS-SSIM in dB (-10 log10(1 - MS-SSIM)) instead of PSNR; curves without
MS-SSIM (the anchors' CSVs) are left out, with a note. `--complexity out.png` plots each
curve with decoder MACs (results JSON) as one point: its BD-rate against the reference
versus kMAC per pixel (log scale), the rate-complexity view of C3 and Cool-chic.

Lossless results (`"lossless": true`, from `bench.classical`'s lossless codecs and the
lossless models) have one number each, bits per sub-pixel: `-o` draws them as a bar
chart and `--table` lists each one's bpsp and its difference from the reference (named
by `--reference`, else the first file). Lossless and lossy files do not mix in one call.
"""

import argparse
import glob
import os
import sys

from bench.bdrate import BDRateError, bd_psnr, bd_rate
from bench.curves import (
    Curve,
    CurveError,
    LosslessResult,
    is_curve_csv,
    is_lossless_json,
    read_curve,
    read_lossless,
)
from common.cli import exit_code

QUALITY_LABELS = {"psnr": "PSNR (dB, RGB)", "ms-ssim": "MS-SSIM (dB, RGB)"}


def load_curves(files: list[str], anchors_dir: str | None, anchor_names: str | None):
    curves = [read_curve(path) for path in files]
    if anchors_dir:
        if not os.path.isdir(anchors_dir):
            raise CurveError(f"--anchors {anchors_dir!r} is not a folder.")
        paths = sorted(glob.glob(os.path.join(anchors_dir, "*.csv")))
        skipped = [os.path.basename(p) for p in paths if not is_curve_csv(p)]
        if skipped:
            print(f"--anchors: skipped {len(skipped)} files that are not RD curves: "
                  f"{', '.join(skipped)}", file=sys.stderr)  # fmt: skip
        paths = [p for p in paths if is_curve_csv(p)]
        if anchor_names:
            wanted = {n.strip() for n in anchor_names.split(",")}
            paths = [p for p in paths if os.path.splitext(os.path.basename(p))[0] in wanted]
        curves += [read_curve(path) for path in paths]
    if not curves:
        raise CurveError("no curves to plot: pass -f FILE ... and/or --anchors DIR.")
    return curves


def select_metric(curves: list[Curve], metric: str) -> list[Curve]:
    """The curves with their `psnr` replaced by the chosen quality; those without it left
    out (with a note)."""
    chosen, missing = [], []
    for curve in curves:
        try:
            chosen.append(curve.with_quality(metric))
        except CurveError:
            missing.append(curve.name)
    if missing:
        print(f"no {metric} values, left out: {', '.join(missing)}", file=sys.stderr)
    if not chosen:
        raise CurveError(f"no curve has {metric} values.")
    return chosen


def reference_curve(curves: list[Curve], name: str | None) -> Curve:
    """The curve BD-rates are measured against (see the module docstring)."""
    if name:
        for curve in curves:
            if curve.name == name:
                return curve
        raise CurveError(
            f"--reference {name!r} is not one of the curves: {', '.join(c.name for c in curves)}."
        )
    for match in (lambda n: n.lower() == "vtm", lambda n: "vtm" in n.lower()):
        found = [c for c in curves if match(c.name)]
        if found:
            return found[0]
    return curves[0]


def _save(figure, out: str) -> None:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(out))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, ".tmp-" + os.path.basename(out))
    figure.savefig(tmp, format="png")
    plt.close(figure)
    os.replace(tmp, out)


def _axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 5), dpi=120)


def plot(curves: list[Curve], out: str, title: str = "", metric: str = "psnr") -> None:
    figure, axis = _axes()
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
    axis.set_ylabel(QUALITY_LABELS[metric])
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)
    if title:
        axis.set_title(title)
    _save(figure, out)


def complexity_points(curves: list[Curve], reference: Curve) -> list[tuple[str, float, float]]:
    """(name, kMAC/pixel, BD-rate % vs the reference) of every curve with MACs."""
    points = []
    for curve in curves:
        if curve.name == reference.name or curve.macs_per_pixel is None:
            continue
        try:
            points.append(
                (curve.name, curve.macs_per_pixel / 1000, 100 * bd_rate(reference, curve))
            )
        except BDRateError as e:
            print(f"{curve.name}: no BD-rate against {reference.name} ({e})", file=sys.stderr)
    return points


def plot_complexity(curves: list[Curve], reference: Curve, out: str, title: str = "") -> int:
    points = complexity_points(curves, reference)
    if not points:
        raise CurveError("--complexity: no curve has decoder MACs (results JSON from eval/train).")
    figure, axis = _axes()
    for name, kmacs, rate in points:
        axis.scatter([kmacs], [rate], s=20)
        axis.annotate(name, (kmacs, rate), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axis.set_xscale("log")
    axis.set_xlabel("decoder kMAC per pixel")
    axis.set_ylabel(f"BD-rate vs {reference.name} (%, lower is better)")
    axis.axhline(0, color="gray", linewidth=0.8)
    axis.grid(True, alpha=0.3, which="both")
    if title:
        axis.set_title(title)
    _save(figure, out)
    return len(points)


def bd_table(curves: list[Curve], reference: Curve | None = None, metric: str = "psnr") -> str:
    anchor = reference or curves[0]
    quality = "BD-PSNR" if metric == "psnr" else "BD-MS-SSIM (dB)"
    lines = [
        f"| curve | BD-rate vs {anchor.name} (cubic) | (PCHIP) | {quality} (cubic) |",
        "|---|---|---|---|",
    ]
    for curve in curves:
        if curve is anchor:
            continue
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


def plot_lossless(found: list[LosslessResult], out: str, title: str = "") -> None:
    """A bar chart of bits per sub-pixel, lowest first; classical codecs hatched."""
    found = sorted(found, key=lambda r: r.bpsp)
    figure, axis = _axes()
    names = [r.name for r in found]
    bars = axis.bar(names, [r.bpsp for r in found], color="tab:blue")
    for bar, result in zip(bars, found, strict=True):
        if result.classical:
            bar.set_facecolor("lightgray")
            bar.set_edgecolor("dimgray")
            bar.set_hatch("//")
        axis.annotate(
            f"{result.bpsp:.3f}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    axis.set_ylabel("bits per sub-pixel (lower is better)")
    axis.tick_params(axis="x", labelrotation=30, labelsize=7)
    axis.grid(True, axis="y", alpha=0.3)
    if title:
        axis.set_title(title)
    _save(figure, out)


def lossless_table(found: list[LosslessResult], reference: str | None = None) -> str:
    """Markdown: each result's bpsp, its difference from the reference's, and times."""
    anchor = found[0]
    if reference:
        matches = [r for r in found if r.name == reference]
        if not matches:
            names = ", ".join(r.name for r in found)
            raise CurveError(f"--reference {reference!r} is not one of the results: {names}.")
        anchor = matches[0]

    def seconds(value):
        return "n/a" if value is None else f"{value:.3g}"

    lines = [
        f"| codec | bpsp | vs {anchor.name} | encode s | decode s |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(found, key=lambda r: r.bpsp):
        change = 100 * (r.bpsp / anchor.bpsp - 1)
        lines.append(
            f"| {r.name} | {r.bpsp:.4f} | {change:+.2f} % | {seconds(r.encoding_time)} | "
            f"{seconds(r.decoding_time)} |"
        )
    return "\n".join(lines)


def _lossless_main(args) -> None:
    if args.anchors or args.complexity or args.metric != "psnr":
        raise CurveError(
            "lossless results: --anchors, --complexity and --metric apply to RD curves only."
        )
    if not args.out and not args.table:
        raise CurveError("nothing to do: pass -o bpsp.png and/or --table.")
    found = [read_lossless(path) for path in args.files]
    if args.out:
        plot_lossless(found, args.out, args.title)
        print(f"wrote {args.out} ({len(found)} lossless results)")
    if args.table:
        print(lossless_table(found, args.reference))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.plot", description=__doc__.splitlines()[0]
    )
    parser.add_argument("-f", "--files", nargs="*", default=[])
    parser.add_argument("--anchors", default=None, help="folder of anchor CSVs (bpp,psnr)")
    parser.add_argument("--anchor-names", default=None, help="comma-separated stems to keep")
    parser.add_argument("-o", "--out", default=None, help="output PNG (RD curves)")
    parser.add_argument("--title", default="")
    parser.add_argument("--table", action="store_true", help="print BD-rates vs the reference")
    parser.add_argument("--reference", default=None, help="name of the BD-rate reference curve")
    parser.add_argument("--metric", choices=sorted(QUALITY_LABELS), default="psnr")
    parser.add_argument("--complexity", default=None, help="output PNG: BD-rate vs kMAC/pixel")
    args = parser.parse_args(argv)

    def work():
        lossless = [path for path in args.files if is_lossless_json(path)]
        if lossless and len(lossless) < len(args.files):
            lossy = [p for p in args.files if p not in lossless]
            raise CurveError(
                f"lossless results ({', '.join(lossless)}) and RD curves ({', '.join(lossy)}) "
                "cannot share a plot: plot them in separate calls."
            )
        if lossless:
            return _lossless_main(args)
        curves = select_metric(
            load_curves(args.files, args.anchors, args.anchor_names), args.metric
        )
        if not args.out and not args.table and not args.complexity:
            raise CurveError("nothing to do: pass -o rd.png, --table and/or --complexity c.png.")
        reference = reference_curve(curves, args.reference)
        if args.out:
            plot(curves, args.out, args.title, args.metric)
            print(f"wrote {args.out} ({len(curves)} curves)")
        if args.complexity:
            n = plot_complexity(curves, reference, args.complexity, args.title)
            print(f"wrote {args.complexity} ({n} curves with decoder MACs)")
        if args.table:
            print(bd_table(curves, reference, args.metric))

    return exit_code(work, "bench.plot")


if __name__ == "__main__":
    sys.exit(main())
