"""Small rate-distortion runs of C3 on Kodak with the protocol the peers ran, as JSON.

  python benchmarks/rd_small.py --kodak DIR [--protocols crop23,full23,crops4]
      [--out benchmarks/results/rd_small.json]

- crop23: kodim23 cropped to 256x256 at (x=256, y=128), lambda 1e-3, 2000 stage-1 steps
  (all schedules scaled to that budget) + 200 stage-2 steps.
- full23: the whole kodim23 with 500 + 50 steps.
- crops4: the same crop of kodim01-04 at lambda 1e-3 and 4e-3 (2000 + 200 steps).
Peers on this machine: C3's JAX code 34.98 dB at 0.503 bpp (estimate) on crop23 and
34.17 dB at 0.323 bpp on full23; Cool-chic 5.0.1 36.19 dB at 0.470 bpp (real file) on
crop23 with 2000 iterations. Our rates here are estimates (latents + networks).
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common.files import atomic_write_json  # noqa: E402

CROP = (128, 256, 256, 256)  # y, x, height, width


def run_one(image, name, lmbda, noise_steps, ste_steps, seed=0):
    from common import metrics
    from common.images import to_float
    from configs import c3_kodak
    from models import registry
    from models.c3.fit import C3Fitter

    config = c3_kodak.get_config()
    config.fit.num_noise_steps = noise_steps
    config.fit.max_ste_steps = ste_steps
    config.fit.log_every = 100
    model = registry.build_model(config.model, height=image.shape[0], width=image.shape[1])
    fitter = C3Fitter(model, config.fit)
    fitter.reset(to_float(image), lmbda, seed=seed)
    start = time.perf_counter()
    fit = fitter.fit()
    seconds = time.perf_counter() - start
    pixels = image.shape[0] * image.shape[1]
    row = {
        "image": name,
        "lmbda": lmbda,
        "seed": seed,
        "noise_steps": fit.noise_steps,
        "ste_steps": fit.ste_steps,
        "psnr": metrics.psnr(fit.reconstruction, image),
        "bpp_estimated": (fit.bits_latents + fit.bits_networks) / pixels,
        "bpp_latents": fit.bits_latents / pixels,
        "bpp_networks": fit.bits_networks / pixels,
        "seconds": seconds,
        "seconds_noise": fit.seconds_noise,
        "seconds_ste": fit.seconds_ste,
        "seconds_quantization": fit.seconds_quantization,
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kodak", required=True, help="folder with kodim01.png ... kodim24.png")
    parser.add_argument("--protocols", default="crop23,full23,crops4")
    parser.add_argument("--seeds", default="0", help="comma-separated fit seeds")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/rd_small.json"))
    args = parser.parse_args()
    from common.images import read_image

    def load(i):
        return read_image(os.path.join(args.kodak, f"kodim{i:02d}.png"))

    def crop(image):
        y, x, h, w = CROP
        return image[y : y + h, x : x + w]

    rows = []
    protocols = args.protocols.split(",")
    for seed in (int(s) for s in args.seeds.split(",")):
        if "crop23" in protocols:
            row = run_one(crop(load(23)), "kodim23_crop", 1e-3, 2000, 200, seed)
            rows.append(row | {"protocol": "crop23"})
        if "full23" in protocols:
            row = run_one(load(23), "kodim23", 1e-3, 500, 50, seed)
            rows.append(row | {"protocol": "full23"})
        if "crops4" in protocols:
            for i in range(1, 5):
                for lmbda in (1e-3, 4e-3):
                    row = run_one(crop(load(i)), f"kodim{i:02d}_crop", lmbda, 2000, 200, seed)
                    rows.append(row | {"protocol": "crops4"})
    report = {
        "benchmark": "C3 small RD runs on Kodak (estimated rates)",
        "peers": {
            "c3_jax_crop23": {"psnr": 34.98, "bpp": 0.503, "rate": "estimate"},
            "c3_jax_full23": {"psnr": 34.17, "bpp": 0.323, "rate": "estimate"},
            "coolchic_5.0.1_crop23": {"psnr": 36.19, "bpp": 0.470, "rate": "file"},
        },
        "results": rows,
    }
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
