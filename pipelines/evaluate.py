"""Measuring bitstreams as a receiver would: decode each file, compare with the original.

bpp comes from the file size (8 * bytes / pixels), PSNR and MS-SSIM from the decoded
8-bit image against the original, and the decode time from the decoder. Rows follow the
results format (docs/results.md); the aggregate uses CompressAI's layout with both
averaging conventions (mean per-image PSNR, and PSNR of the mean MSE).
"""

import dataclasses
import glob
import os

import numpy as np

from coding import container
from coding.c3 import codec as c3_codec
from coding.c3.networks import compiled_key
from common import results
from common.config import config_hash
from common.datasets import NamedImage, list_images
from common.errors import BitstreamError, EvaluationError
from common.files import atomic_write_bytes
from common.images import image_files, image_name, read_image
from common.rundir import git_revision, read_run_config
from pipelines.trained_run import TrainedRun, load_trained_run

# What only the encoder knows: copied from its results row into the evaluation's.
ENCODER_FIELDS = (
    "lmbda",
    "bpp_estimated",
    "bpp_latents",
    "bpp_networks",
    "bpp_header",
    "steps",
    "macs_per_pixel",
    "config_hash",
)


@dataclasses.dataclass(frozen=True)
class Item:
    name: str
    bitstream: str
    original: NamedImage
    encoder_row: dict | None = None  # the encoder's results row, when known


def _original_folder(folder: str) -> dict[str, NamedImage]:
    """The originals of a folder by name (`common.images.image_files`' rule)."""
    if not os.path.isdir(folder):
        raise EvaluationError(f"originals folder {folder!r} does not exist.")
    originals = {}
    for path in image_files(folder):
        name = image_name(folder, path)
        originals[name] = NamedImage(name, lambda p=path: read_image(p))
    return originals


def items_from_glob(pattern: str, originals_folder: str) -> list[Item]:
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise EvaluationError(f"no bitstreams match {pattern!r}.")
    originals = _original_folder(originals_folder)
    items = []
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        if name not in originals:
            raise EvaluationError(f"{path}: no original named {name}.* in {originals_folder!r}.")
        items.append(Item(name, path, originals[name]))
    return items


def items_from_workdir(workdir: str, originals_folder: str | None = None) -> list[Item]:
    """The bitstreams of a run directory, with originals from its config (or a folder)."""
    rows = results.read_results(os.path.join(workdir, "results", "*.json"))
    rows = [r for r in rows if r.get("bitstream")]
    if not rows:
        raise EvaluationError(f"{workdir}: no results with a bitstream (is it a run directory?).")
    if originals_folder:
        originals = _original_folder(originals_folder)
    else:
        data = read_run_config(workdir).data
        originals = {item.name: item for item in list_images(data)}
    items = []
    for row in rows:
        if row["image"] not in originals:
            raise EvaluationError(f"{workdir}: original of {row['image']} not found.")
        path = os.path.join(workdir, row["bitstream"])
        items.append(Item(row["image"], path, originals[row["image"]], row))
    return items


def evaluate(item: Item, jit: bool = True, warm: set | None = None) -> dict:
    """Decodes one C3 file and returns its results row (BitstreamError if invalid).

    The decode time is warm: the decoder of each architecture (image size included) is
    compiled by an untimed first decode, as a deployed decoder would be. `warm` holds
    the architectures already compiled.
    """
    if not os.path.isfile(item.bitstream):
        raise BitstreamError(f"{item.bitstream}: no such file.")
    with open(item.bitstream, "rb") as f:
        data = f.read()
    warm = set() if warm is None else warm
    declared = c3_codec.architecture(data, item.bitstream)
    arch = compiled_key(declared)
    if arch not in warm:
        c3_codec.decode(data, jit=jit, what=item.bitstream)
        warm.add(arch)
    decoded = c3_codec.decode(data, jit=jit, what=item.bitstream)
    encoder = item.encoder_row or {}
    return results.row_from_file(
        image=item.name,
        model=encoder.get("model", "c3"),
        original=item.original.load(),
        data=data,
        decoded=decoded.image,
        encode_seconds=encoder.get("encode_seconds"),
        decode_seconds=decoded.seconds,
        bitstream=item.bitstream,
        lossless=declared.lossless,
        **{k: encoder.get(k) for k in ENCODER_FIELDS},
        decode_seconds_parts={
            "networks": decoded.seconds_networks,
            "latents": decoded.seconds_latents,
            "synthesis": decoded.seconds_synthesis,
        },
    )


def evaluate_all(items: list[Item], out_dir: str, name: str, jit: bool = True) -> list[dict]:
    """Evaluates every item; writes out_dir/results/<image>.json and out_dir/results.json."""
    warm = set()
    return _write_results(
        out_dir,
        (evaluate(item, jit, warm) for item in items),
        name,
        f"{name}: decoded bitstreams; bpp from file sizes, PSNR of the decoded images.",
    )


def _write_results(
    out_dir: str, rows, name: str, description: str, per_lmbda: bool = False
) -> list[dict]:
    """Writes each row as it comes (out_dir/results/<image>.json, or <image>@<lambda>.json
    for several rates of one model), then the aggregate; both record the commit of the
    code that measured them (as the bench's rows do)."""
    commit = git_revision()
    written = []
    for row in rows:
        row = {**row, "commit": commit}
        key = results.lambda_name(row["image"], row["lmbda"]) if per_lmbda else row["image"]
        results.write_result(results.result_path(out_dir, key), row)
        written.append(row)
    extra = {"commit": commit}
    if any("progressive" in row for row in written):
        extra["progressive"] = progressive_means(written)
    results.write_aggregate(
        os.path.join(out_dir, "results.json"), written, name, description, **extra
    )
    return written


def progressive_means(rows: list[dict]) -> dict:
    """Per lambda, the mean over images of each prefix's bpp and PSNR (and the PSNR of
    the mean MSE): the progressive RD curve of a hierarchical VAE."""
    curves = {}
    for lmbda in sorted({row["lmbda"] for row in rows}):
        points = [row["progressive"] for row in rows if row["lmbda"] == lmbda]
        layers = [p["layers"] for p in points[0]]
        curves[f"{lmbda:g}"] = {
            "layers": layers,
            "bpp": [float(np.mean([p[k]["bpp"] for p in points])) for k in range(len(layers))],
            "psnr": [float(np.mean([p[k]["psnr"] for p in points])) for k in range(len(layers))],
            "num_images": len(points),
        }
    return curves


def evaluate_trained(
    workdir: str,
    dataset: str,
    out_dir: str,
    name: str | None = None,
    lossy_qualities=None,
    lmbdas=None,
    progressive: bool = True,
) -> list:
    """Codes every image of the folder `dataset` with the trained run `workdir`.

    For each image: encode to out_dir/bitstreams/<image>.lz, decode that file, measure.
    Encode time covers analysis, hyper-synthesis and range coding; decode time is warm
    (one untimed decode first, as a deployed decoder would be). `decoded_matches_encoder`
    says whether the file decoded to the encoder's quantised forward pass. An RC run
    searches `lossy_qualities` if given (else its config's). A hierarchical VAE codes at
    each of `lmbdas` (QARV, variable rate; else its own lambda) and, with `progressive`,
    also decodes every prefix of each file (rows' "progressive": bpp of the prefix, PSNR).
    """
    from ml_collections import config_dict

    run = load_trained_run(workdir)
    images = list_images(config_dict.ConfigDict({"name": "folder", "root": dataset}))
    name = name or run.codec.name
    hvae = hasattr(run.codec, "num_layers")
    if lmbdas and not (hvae and run.codec.model.variable_rate):
        raise EvaluationError(f"--lmbdas needs a variable-rate model (QARV), not {name}.")
    rates = list(lmbdas) if lmbdas else [None]

    def rows():
        for i, item in enumerate(images):
            for j, lmbda in enumerate(rates):
                if hvae:
                    yield _code_hvae(run, item, out_dir, i == j == 0, lmbda, progressive)
                else:
                    yield _code_one(run, item, out_dir, i == 0, lossy_qualities)

    return _write_results(
        out_dir,
        rows(),
        name,
        f"{name} ({os.path.abspath(workdir)}): files written and decoded; bpp from file sizes, "
        "PSNR of the decoded images.",
        per_lmbda=len(rates) > 1,
    )


def _write_and_decode(codec, data: bytes, path: str, warm_up: bool):
    """Writes the file, reads it back and decodes it (after an untimed decode when
    `warm_up`, as a deployed decoder would be warm): (the file's bytes, decoded)."""
    atomic_write_bytes(path, data)
    with open(path, "rb") as f:
        data = f.read()
    if warm_up:
        codec.decompress(data, path)
    return data, codec.decompress(data, path)


def _code_hvae(run, item: NamedImage, out_dir: str, warm_up: bool, lmbda, progressive: bool):
    """Codes one image with a hierarchical VAE at `lmbda` (None: the model's), decodes the
    file (and each prefix of its layers), measures."""
    from common.metrics import psnr

    codec = run.codec
    original = item.load()
    pixels = original.shape[0] * original.shape[1]
    encoded = codec.compress(original, lmbda)
    stem = item.name if lmbda is None else results.lambda_name(item.name, encoded.lmbda)
    path = os.path.join(out_dir, "bitstreams", f"{stem}.lz")
    data, decoded = _write_and_decode(codec, encoded.data, path, warm_up)
    extra = {}
    if progressive:
        curve = []
        for layers in range(1, codec.num_layers + 1):
            prefix = codec.decompress(data, path, layers=layers)
            curve.append(
                {
                    "layers": layers,
                    "bpp": 8 * prefix.prefix_bytes / pixels,
                    "psnr": psnr(prefix.image, original),
                    "decode_seconds": prefix.seconds,
                }
            )
        extra["progressive"] = curve
    measured = dict(
        image=item.name,
        model=codec.name,
        original=original,
        data=data,
        decoded=decoded.image,
        encode_seconds=encoded.seconds,
        decode_seconds=decoded.seconds,
    )
    bits = {f"z{k}": b for k, b in enumerate(encoded.bits_estimated)}
    container_bytes = len(data) - sum(encoded.section_bytes)
    return _lossy_row(
        run, measured, encoded, encoded.lmbda, bits, container_bytes, path, out_dir, **extra
    )


def _code_one(run: TrainedRun, item: NamedImage, out_dir: str, warm_up: bool, qualities=None):
    """Encodes one image to out_dir/bitstreams/<image>.lz, decodes the file, measures."""
    codec = run.codec
    original = item.load()
    height, width = original.shape[:2]
    pixels = height * width
    lossless = getattr(codec, "lossless", False)  # RC
    encoded = codec.compress(original, qualities) if lossless else codec.compress(original)
    path = os.path.join(out_dir, "bitstreams", f"{item.name}.lz")
    data, decoded = _write_and_decode(codec, encoded.data, path, warm_up)
    container_bytes = len(data) - sum(len(s) for s in container.parse(data, path).sections)
    measured = dict(
        image=item.name,
        model=codec.name,
        original=original,
        data=data,
        decoded=decoded.image,
        encode_seconds=encoded.seconds,
        decode_seconds=decoded.seconds,
    )
    if lossless:
        return results.row_from_file(
            **measured,
            lossless=True,
            bpp_header=8 * container_bytes / pixels,
            bpp_lossy=8 * encoded.bytes_lossy / pixels,
            bpp_residual=8 * encoded.bytes_residual / pixels,
            lossy_quality=encoded.quality,
            lossy_psnr=encoded.lossy_psnr,
            lossy_tries=encoded.tries,
            tau=list(encoded.tau),
            steps=run.steps,
            macs_per_pixel=codec.model.macs_per_pixel(),
            bitstream=os.path.relpath(path, out_dir),
            config_hash=config_hash(run.config),
            checkpoint=run.checkpoint,
        )
    bits = encoded.bits_estimated
    lmbda = run.config.model.lmbda
    return _lossy_row(run, measured, encoded, lmbda, bits, container_bytes, path, out_dir)


def _lossy_row(run, measured, encoded, lmbda, bits: dict, container_bytes, path, out_dir, **extra):
    """The results row of a lossy file of a trained run (amortised codec or hierarchical
    VAE): `measured` as `row_from_file` takes it, `bits` the estimate per part,
    `extra` more fields (a hierarchical VAE's progressive curve)."""
    height, width = measured["original"].shape[:2]
    pixels = height * width
    estimated = sum(bits.values())
    return results.row_from_file(
        **measured,
        **extra,
        lmbda=lmbda,
        bpp_estimated=estimated / pixels,
        bpp_latents=estimated / pixels,
        bpp_networks=0.0,
        bpp_header=8 * container_bytes / pixels,
        steps=run.steps,
        macs_per_pixel=sum(run.codec.model.decoder_macs(height, width).values()) / pixels,
        bitstream=os.path.relpath(path, out_dir),
        config_hash=config_hash(run.config),
        bpp_parts_estimated={k: v / pixels for k, v in bits.items()},
        decoded_matches_encoder=bool(np.array_equal(measured["decoded"], encoded.reconstruction)),
        checkpoint=run.checkpoint,
    )
