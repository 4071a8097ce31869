"""Classical codecs on the 24 Kodak images: RD curves and BD-rates against published anchors.

  python benchmarks/classical_kodak.py --kodak DIR --anchors DIR [--jobs 2]
      [--out benchmarks/results/classical_kodak]

Runs `bench.classical` (every codec, its full quality sweep) and writes, beside the
curves, `bdrate.json`: the BD-rate (cubic and PCHIP) and BD-PSNR of each codec against
the published VTM curve (`compressai_vtm.csv`), and of our HEVC 4:4:4 intra against the
published BPG 4:4:4 curve (`compressai_bpg444.csv`), which it stands in for.
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import classical  # noqa: E402
from bench.bdrate import bd_psnr, bd_rate  # noqa: E402
from bench.curves import read_curve  # noqa: E402
from common.files import atomic_write_json  # noqa: E402
from common.images import image_files  # noqa: E402
from common.rundir import provenance  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", required=True)
    parser.add_argument("--anchors", required=True, help="folder with compressai_vtm.csv")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--codecs", default=classical.DEFAULT_CODECS)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/classical_kodak"))
    args = parser.parse_args()
    paths = image_files(args.kodak)
    start = time.perf_counter()
    names = args.codecs.split(",")
    classical.run(names, paths, args.out, args.jobs, root=args.kodak)
    seconds = time.perf_counter() - start
    vtm = read_curve(os.path.join(args.anchors, "compressai_vtm.csv"))
    bpg444 = read_curve(os.path.join(args.anchors, "compressai_bpg444.csv"))
    report = {
        **provenance(ROOT),
        "images": len(paths),
        "seconds": seconds,
        "vs_vtm": {},
        "vs_bpg444": {},
    }
    for name in names:
        curve = read_curve(os.path.join(args.out, f"{name}.json"))
        report["vs_vtm"][name] = {
            "bd_rate_cubic": bd_rate(vtm, curve, "cubic"),
            "bd_rate_pchip": bd_rate(vtm, curve, "pchip"),
            "bd_psnr_cubic": bd_psnr(vtm, curve, "cubic"),
            "bpp_range": [curve.bpp[0], curve.bpp[-1]],
        }
        print(f"{name}: BD-rate vs VTM {100 * report['vs_vtm'][name]['bd_rate_cubic']:+.1f} %")
    if "hevc444" in names:
        ours = read_curve(os.path.join(args.out, "hevc444.json"))
        report["vs_bpg444"]["hevc444"] = {
            "bd_rate_cubic": bd_rate(bpg444, ours, "cubic"),
            "bd_rate_pchip": bd_rate(bpg444, ours, "pchip"),
        }
        report["vs_vtm"]["published_bpg444"] = {"bd_rate_cubic": bd_rate(vtm, bpg444, "cubic")}
    atomic_write_json(os.path.join(args.out, "bdrate.json"), report)


if __name__ == "__main__":
    main()
