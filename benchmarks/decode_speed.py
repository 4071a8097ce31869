"""Decode time of a C3 bitstream and the encoder's entropy-coding time, as JSON.

  python benchmarks/decode_speed.py --image DIR/kodim23.png [--config configs/c3_plus.py]
      [--steps 300] [--lmbda 1e-3] [--repeats 5] [--out benchmarks/results/decode_speed.json]

Fits the config (default: C3's Kodak config) to the image for `--steps` stage-1 steps
(plus a tenth in stage 2; the decode cost hardly depends on how long the fit ran, only on
the architecture and the image size), writes the file, then decodes it `--repeats` times
after one warm-up decode (tracing and XLA compilation, reported apart) and reports the
median, with and without XLA. The profile splits a warm decode into: networks (weight
decoding), latents (the wavefront loop: context model + range decoder), synthesis
(upsampling + MLP + residual convs); the range decoder's own share is measured by
decoding every latent in one call with the rows known, and upsampling by running it alone.
"""

import argparse
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from common.files import atomic_write_json  # noqa: E402
from common.rundir import provenance  # noqa: E402

SEED = 0  # of the fit


def fit_and_encode(config_path: str, image_path: str, steps: int, lmbda: float):
    from coding.c3 import codec as c3_codec
    from common.config import load_module
    from common.images import read_image, to_float
    from models import registry
    from pipelines.per_image import make_fitter

    config = load_module(config_path).get_config()
    config.fit.rdoq = False  # the decoder's work does not depend on it (20 min at 768x512)
    config.fit.num_noise_steps = steps
    config.fit.max_ste_steps = max(1, steps // 10)
    image = read_image(image_path)
    model = registry.build_model(config.model, height=image.shape[0], width=image.shape[1])
    fitter = make_fitter(model, config.fit)
    fitter.reset(to_float(image), lmbda, seed=SEED)
    start = time.perf_counter()
    fit = fitter.fit()
    fit_seconds = time.perf_counter() - start
    encoded = c3_codec.encode(model, *fit.steps)
    # Entropy coding alone, warm (the first call also builds the tables).
    encode_seconds = []
    for _ in range(3):
        start = time.perf_counter()
        c3_codec.encode(model, *fit.steps)
        encode_seconds.append(time.perf_counter() - start)
    networks = network_coding(model, fit)
    return image, fit, fit_seconds, encoded, statistics.median(encode_seconds), networks


def network_coding(model, fit) -> dict:
    """Bits of the network parameters under each method: C3's estimate, Laplace tables
    only, exp-Golomb only, and the per-tensor choice that the format uses."""
    from coding import weights

    integers = model.network_integers(*fit.steps)
    laplace = golomb = chosen = 0.0
    counts = {"laplace": 0, "exp_golomb": 0}
    for values in integers:
        laplace += float(weights.laplace_bits(values).min())
        golomb += float(weights.exp_golomb_orders_bits(values).min())
        code, bits = weights.choose_code(values)
        chosen += bits
        counts["laplace" if code < weights.EXP_GOLOMB_BASE else "exp_golomb"] += 1
    return {
        "c3_estimate_bits": fit.bits_networks,
        "laplace_only_bits": laplace,
        "exp_golomb_only_bits": golomb,
        "per_tensor_choice_bits": chosen,
        "tensors_per_method": counts,
        "section_bytes": len(weights.encode_networks(integers)),
        "weight_step": fit.weight_step,
        "bias_step": fit.bias_step,
    }


def profile(data: bytes, repeats: int) -> dict:
    """Range decoder alone and upsampling alone, for the split of a warm decode."""
    import tensorflow as tf
    import tensorflow_compression as tfc

    from coding import laplace_tables, weights
    from coding.c3 import codec as c3_codec
    from coding.c3.networks import C3Architecture, IntegerC3, prepare_parameters
    from coding.container import parse

    container = parse(data)
    arch = C3Architecture.from_bytes(container.header, version=container.version)
    integers = weights.decode_networks(
        container.sections[0], arch.network_shapes(), container.version
    )
    parameters = prepare_parameters(arch, integers)
    decoded = c3_codec.decode(data)
    coder = c3_codec.latent_coder(arch)
    # The rows the decoder used, in decoding order (computed as the encoder does).
    rows, _, _ = coder.coding_rows(IntegerC3(arch, parameters), decoded.symbols)
    rows = tf.constant(rows)
    tables = laplace_tables.tables()
    lookup = tf.constant(tables.coder.lookup)

    @tf.function
    def range_decode(string, rows):
        handle = tfc.create_range_decoder(string, lookup)
        return tfc.entropy_decode_index(handle, rows, tf.shape(rows), tf.int32)[1]

    upsample = tf.function(
        lambda s: IntegerC3(arch, parameters).upsample(s), jit_compile=True, autograph=False
    )
    grids = [tf.constant(s) for s in decoded.symbols]
    range_decode(container.sections[1], rows)
    upsample(grids)
    range_times, upsample_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        range_decode(container.sections[1], rows).numpy()
        range_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        upsample(grids).numpy()
        upsample_times.append(time.perf_counter() - start)
    return {
        "range_decoder_one_call_seconds": statistics.median(range_times),
        "upsampling_seconds": statistics.median(upsample_times),
        "num_latents": int(len(coder.schedule.order)),
        "num_wavefronts": coder.schedule.num_wavefronts,
    }


def decode_times(data: bytes, repeats: int, jit: bool) -> dict:
    from coding.c3 import codec as c3_codec

    start = time.perf_counter()
    c3_codec.decode(data, jit=jit)
    first = time.perf_counter() - start
    runs = [c3_codec.decode(data, jit=jit) for _ in range(repeats)]
    median = statistics.median(r.seconds for r in runs)
    return {
        "jit": jit,
        "first_decode_seconds": first,
        "median_seconds": median,
        "median_networks_seconds": statistics.median(r.seconds_networks for r in runs),
        "median_latents_seconds": statistics.median(r.seconds_latents for r in runs),
        "median_synthesis_seconds": statistics.median(r.seconds_synthesis for r in runs),
        "image": runs[0].image,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True)
    parser.add_argument("--config", default=os.path.join(ROOT, "configs/c3_kodak.py"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lmbda", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks/results/decode_speed.json"))
    args = parser.parse_args()

    import numpy as np

    from common import metrics

    image, fit, fit_seconds, encoded, encode_seconds, networks = fit_and_encode(
        args.config, args.image, args.steps, args.lmbda
    )
    height, width = image.shape[:2]
    timings = [decode_times(encoded.data, args.repeats, jit) for jit in (True, False)]
    identical = np.array_equal(timings[0].pop("image"), timings[1].pop("image"))
    decoded = timings[0]
    result = {
        **provenance(ROOT),
        "seed": SEED,
        "fit_events": {"nan_recoveries": fit.nan_recoveries, "restarts": fit.restarts},
        "image": os.path.basename(args.image),
        "height": height,
        "width": width,
        "config": os.path.relpath(os.path.abspath(args.config), ROOT),
        "fit_steps": fit.noise_steps + fit.ste_steps,
        "fit_seconds": fit_seconds,
        "lmbda": args.lmbda,
        "bytes": len(encoded.data),
        "bpp": encoded.num_bits / (height * width),
        "bpp_estimated": (fit.bits_latents + fit.bits_networks) / (height * width),
        "header_bytes": encoded.bits_header // 8,
        "bits_latents_estimated": fit.bits_latents,
        "bits_latents_coded": encoded.bits_latents,
        "networks": networks,
        "encoder_entropy_coding_seconds": encode_seconds,
        "decode": timings,
        "jit_and_nojit_identical": bool(identical),
        "decode_median_seconds": decoded["median_seconds"],
        "profile": profile(encoded.data, args.repeats),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    from coding.c3 import codec as c3_codec

    result["psnr_decoded"] = metrics.psnr(c3_codec.decode(encoded.data).image, image)
    atomic_write_json(args.out, result)
    print(
        f"decode {result['decode_median_seconds']:.3f} s (median of {args.repeats}, warm, XLA), "
        f"{timings[1]['median_seconds']:.3f} s without XLA; entropy coding at the encoder "
        f"{encode_seconds:.3f} s; {result['bpp']:.4f} bpp, {result['psnr_decoded']:.2f} dB"
    )


if __name__ == "__main__":
    main()
