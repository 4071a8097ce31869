"""Lossless coding on the 24 Kodak images: bits per sub-pixel of every lossless codec.

  python benchmarks/lossless_kodak.py --kodak DIR [--jobs 2]
      [--codecs png,webp_lossless,jpeg2000_lossless,jxl_lossless_e7,jxl_lossless_e9]
      [--out benchmarks/results/lossless_kodak]

Runs `bench.classical` with the lossless codecs (each file decoded and checked to equal
the original; per-image rows resume) and writes, beside their aggregates, `summary.json`:
each codec's mean bpsp (file bits / (3 H W), mean over images), its distance from WebP
lossless (the issue's bar) and from JPEG XL lossless at effort 9 (the goal beyond it),
and the mean encode and decode seconds on this machine. `bpsp.png` is the bar chart.
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import classical, plot  # noqa: E402
from bench.curves import read_lossless  # noqa: E402
from common.files import atomic_write_json  # noqa: E402
from common.images import image_files  # noqa: E402
from common.rundir import provenance  # noqa: E402

REFERENCES = ("webp_lossless", "jxl_lossless_e9")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--codecs", default=classical.LOSSLESS_DEFAULT_CODECS)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/lossless_kodak"))
    args = parser.parse_args()
    paths = image_files(args.kodak)
    names = args.codecs.split(",")
    start = time.perf_counter()
    classical.run(names, paths, args.out, args.jobs, root=args.kodak)
    seconds = time.perf_counter() - start
    found = {n: read_lossless(os.path.join(args.out, f"{n}.json")) for n in names}
    report = {**provenance(ROOT), "images": len(paths), "seconds": seconds, "codecs": {}}
    for name, result in found.items():
        entry = {
            "bpsp": result.bpsp,
            "encode_seconds": result.encoding_time,
            "decode_seconds": result.decoding_time,
        }
        for reference in REFERENCES:
            if reference in found:
                change = result.bpsp / found[reference].bpsp - 1
                entry[f"vs_{reference}_percent"] = 100 * change
        report["codecs"][name] = entry
        print(f"{name}: {result.bpsp:.4f} bpsp")
    atomic_write_json(os.path.join(args.out, "summary.json"), report)
    plot.plot_lossless(list(found.values()), os.path.join(args.out, "bpsp.png"), "Kodak, lossless")


if __name__ == "__main__":
    main()
