"""Hierarchical VAEs (QRes-VAE, QARV): size, speed and progressive RD from real files, as JSON.

  python benchmarks/hvae.py speed --image DIR/kodim23.png [--repeats 2]
      [--out benchmarks/results/hvae_speed.json]
  python benchmarks/hvae.py rd --workdir RUN --kodak DIR [--lmbdas 16,64,256,1024]
      [--out benchmarks/results/hvae_rd.json]

speed: the published configs (configs/qres_vae.py = qres34m, configs/qarv.py =
qarv_base) with random weights (timing does not depend on their values): parameters
against the published counts, decoder MACs per pixel (prior path and the rest), and the
seconds of a real encode (float encoder, fixed-point top-down path, range coding) and
decode (fixed-point top-down path, range decoding) of the image, median of `--repeats`
after one warm-up.

rd: the trained run codes every Kodak image at each lambda (QARV) or at its own (QRes),
decodes each file and each prefix of its layers (`pipelines.evaluate.evaluate_trained`):
the mean RD point per lambda and the mean progressive curve, with the run's training
summary (steps, seconds per step, batch, crop) as the budget, and `rate_by_lambda`:
whether the files grow with lambda, on the mean and image by image.
"""

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common.files import atomic_write_json  # noqa: E402
from common.rundir import provenance  # noqa: E402

PUBLISHED = {  # ../shared/reference/vae.md: parameters; CPU seconds at 768x512 (i7-10700K)
    "qres_vae": {"parameters": 34e6, "encode_seconds": 0.899, "decode_seconds": 0.441},
    "qarv": {"parameters": 93.4e6, "encode_seconds": 0.757, "decode_seconds": 0.295},
}


def speed(args) -> dict:
    import tensorflow as tf

    from coding.vae.codec import HvaeCodec
    from common.config import load_module
    from common.images import read_image
    from models import registry
    from models.vae import hvae

    image = read_image(args.image)
    height, width = image.shape[:2]
    out = {}
    for name in ("qres_vae", "qarv"):
        config = load_module(os.path.join(ROOT, "configs", f"{name}.py")).get_config()
        tf.keras.utils.set_random_seed(0)
        model = registry.build_model(config.model)
        parameters = sum(int(tf.size(v)) for v in model.trainable_variables)
        macs = model.decoder_macs(height, width)
        codec = HvaeCodec(model, hvae.latent_entropy_model(compression=True))
        codec.decompress(codec.compress(image).data)  # warm-up
        encode, decode = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            encoded = codec.compress(image)
            encode.append(time.perf_counter() - start)
            decoded = codec.decompress(encoded.data)
            decode.append(decoded.seconds)
        out[name] = {
            "config": f"configs/{name}.py",
            "parameters": parameters,
            "parameters_published": PUBLISHED[name]["parameters"],
            "latent_layers": codec.num_layers,
            "decoder_macs_per_pixel": {k: v / (height * width) for k, v in macs.items()},
            "decoder_macs_per_pixel_total": sum(macs.values()) / (height * width),
            "encode_seconds": statistics.median(encode),
            "decode_seconds": statistics.median(decode),
            "encode_seconds_all": encode,
            "decode_seconds_all": decode,
            "published_cpu_seconds": {
                k: PUBLISHED[name][k] for k in ("encode_seconds", "decode_seconds")
            },
            "decoded_matches_encoder": bool((decoded.image == encoded.reconstruction).all()),
        }
        print(
            f"{name}: {parameters / 1e6:.1f}M parameters, "
            f"{out[name]['decoder_macs_per_pixel_total']:.0f} MACs/pixel, encode "
            f"{out[name]['encode_seconds']:.2f} s, decode {out[name]['decode_seconds']:.2f} s"
        )
    return {"image": os.path.basename(args.image), "size": [height, width], "models": out}


def rd(args) -> dict:
    from common.rundir import read_run_config, training_record
    from pipelines.evaluate import evaluate_trained

    lmbdas = [float(v) for v in args.lmbdas.split(",")] if args.lmbdas else None
    out_dir = args.eval_dir or os.path.join(args.workdir, "eval", "kodak_benchmark")
    rows = evaluate_trained(args.workdir, args.kodak, out_dir, lmbdas=lmbdas)
    with open(os.path.join(out_dir, "results.json")) as f:
        aggregate = json.load(f)
    training = training_record(args.workdir)
    config = read_run_config(args.workdir)  # the run itself was loaded by evaluate_trained
    return {
        "rate_by_lambda": rate_by_lambda(rows),
        "workdir": os.path.abspath(args.workdir),
        "model": config.model.name,
        "seed": config.seed,
        "checkpoint": os.path.basename(rows[0]["checkpoint"]),
        "training": training,
        "images": len({r["image"] for r in rows}),
        "results": aggregate["results"],
        "progressive": aggregate["progressive"],
        "all_decoded_match_encoder": all(r["decoded_matches_encoder"] for r in rows),
        "rows": [
            {
                k: r[k]
                for k in (
                    "image",
                    "lmbda",
                    "bpp",
                    "psnr",
                    "bpp_estimated",
                    "encode_seconds",
                    "decode_seconds",
                    "progressive",
                )
            }
            for r in rows
        ],  # fmt: skip
    }


def rate_by_lambda(rows: list[dict]) -> dict:
    """Does the file size grow with lambda (a variable-rate model's promise)? The mean
    bpp per lambda from the files, and per image whether its bpp rises with lambda."""
    lmbdas = sorted({r["lmbda"] for r in rows})
    by_image = {}
    for r in rows:
        by_image.setdefault(r["image"], {})[r["lmbda"]] = r["bpp"]
    rising = [
        all(sizes[a] < sizes[b] for a, b in itertools.pairwise(lmbdas))
        for sizes in by_image.values()
        if len(sizes) == len(lmbdas)
    ]
    means = [statistics.fmean(s[m] for s in by_image.values() if m in s) for m in lmbdas]
    return {
        "lmbdas": lmbdas,
        "mean_bpp": means,
        "mean_rises": all(a < b for a, b in itertools.pairwise(means)),
        "images_rising": sum(rising),
        "images": len(rising),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("speed")
    p.add_argument("--image", required=True)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "hvae_speed.json"))
    p = sub.add_parser("rd")
    p.add_argument("--workdir", required=True)
    p.add_argument("--kodak", required=True)
    p.add_argument("--lmbdas", default="")
    p.add_argument("--eval-dir", default="")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "hvae_rd.json"))
    args = parser.parse_args()
    start = time.perf_counter()
    result = speed(args) if args.mode == "speed" else rd(args)
    result.update(provenance(ROOT))
    result["machine"] = {"cpu_count": os.cpu_count(), "platform": platform.platform()}
    result["wall_seconds"] = time.perf_counter() - start
    atomic_write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
