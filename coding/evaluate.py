"""Measuring bitstreams as a receiver would: decode each file, compare with the original.

bpp comes from the file size (8 * bytes / pixels), PSNR and MS-SSIM from the decoded
8-bit image against the original, and the decode time from the decoder. Rows follow the
results format (docs/results.md); the aggregate uses CompressAI's layout with both
averaging conventions (mean per-image PSNR, and PSNR of the mean MSE).
"""

import dataclasses
import glob
import json
import os

import numpy as np

from coding import c3_codec, container
from coding.c3_networks import compiled_key
from coding.container import BitstreamError
from common import metrics, results
from common.datasets import IMAGE_EXTENSIONS, NamedImage, list_images
from common.images import read_image


class EvaluationError(ValueError):
    """Inputs that cannot be evaluated (no files, no original, size mismatch)."""


@dataclasses.dataclass
class Item:
    name: str
    bitstream: str
    original: NamedImage
    encoder_row: dict | None = None  # the encoder's results row, when known


def _original_folder(folder: str) -> dict[str, NamedImage]:
    if not os.path.isdir(folder):
        raise EvaluationError(f"originals folder {folder!r} does not exist.")
    originals = {}
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() in IMAGE_EXTENSIONS:
            path = os.path.join(folder, name)
            originals[stem] = NamedImage(stem, lambda p=path: read_image(p))
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
        from ml_collections import config_dict

        with open(os.path.join(workdir, "config.json")) as f:
            data = config_dict.ConfigDict(json.load(f)["data"])
        originals = {item.name: item for item in list_images(data)}
    items = []
    for row in rows:
        if row["image"] not in originals:
            raise EvaluationError(f"{workdir}: original of {row['image']} not found.")
        path = os.path.join(workdir, row["bitstream"])
        items.append(Item(row["image"], path, originals[row["image"]], row))
    return items


def evaluate(item: Item, jit: bool = True, warm: set | None = None) -> dict:
    """Decodes one file and returns its results row (raises BitstreamError if invalid).

    The decode time is warm: the decoder of each architecture (image size included) is
    compiled by an untimed first decode, as a deployed decoder would be. `warm` holds
    the architectures already compiled.
    """
    if not os.path.isfile(item.bitstream):
        raise BitstreamError(f"{item.bitstream}: no such file.")
    with open(item.bitstream, "rb") as f:
        data = f.read()
    warm = set() if warm is None else warm
    arch = compiled_key(c3_codec.architecture(data, item.bitstream))
    if arch not in warm:
        c3_codec.decode(data, jit=jit, what=item.bitstream)
        warm.add(arch)
    decoded = c3_codec.decode(data, jit=jit, what=item.bitstream)
    original = item.original.load()
    if original.shape != decoded.image.shape:
        raise EvaluationError(
            f"{item.bitstream}: decodes to {decoded.image.shape[:2]} but the original "
            f"{item.name} is {original.shape[:2]}."
        )
    height, width = original.shape[:2]
    encoder = item.encoder_row or {}
    return results.result_row(
        image=item.name,
        model=encoder.get("model", "c3"),
        lmbda=encoder.get("lmbda"),
        bpp=8 * len(data) / (height * width),
        bpp_estimated=encoder.get("bpp_estimated"),
        bpp_latents=encoder.get("bpp_latents"),
        bpp_networks=encoder.get("bpp_networks"),
        bpp_header=encoder.get("bpp_header"),
        psnr=metrics.psnr(decoded.image, original),
        mse=metrics.mse(decoded.image, original),
        ms_ssim=metrics.ms_ssim(decoded.image, original),
        encode_seconds=encoder.get("encode_seconds"),
        decode_seconds=decoded.seconds,
        steps=encoder.get("steps"),
        macs_per_pixel=encoder.get("macs_per_pixel"),
        height=height,
        width=width,
        bitstream=item.bitstream,
        config_hash=encoder.get("config_hash"),
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


def _write_results(out_dir: str, rows, name: str, description: str) -> list[dict]:
    """Writes each row as it comes (out_dir/results/<image>.json), then the aggregate."""
    written = []
    for row in rows:
        results.write_result(results.result_path(out_dir, row["image"]), row)
        written.append(row)
    results.write_aggregate(os.path.join(out_dir, "results.json"), written, name, description)
    return written


def evaluate_trained(workdir: str, dataset: str, out_dir: str, name: str | None = None) -> list:
    """Codes every image of the folder `dataset` with the trained run `workdir`.

    For each image: encode to out_dir/bitstreams/<image>.lz, decode that file, measure.
    Encode time covers analysis, hyper-synthesis and range coding; decode time is warm
    (one untimed decode first, as a deployed decoder would be). `decoded_matches_encoder`
    says whether the file decoded to the encoder's quantised forward pass.
    """
    from ml_collections import config_dict

    from coding.amortised_codec import TrainedCodec

    codec = TrainedCodec(workdir)
    config = codec.config
    images = list_images(config_dict.ConfigDict({"name": "folder", "root": dataset}))
    name = name or codec.name

    def rows():
        for i, item in enumerate(images):
            yield _code_one(codec, config, item, out_dir, warm_up=i == 0)

    return _write_results(
        out_dir,
        rows(),
        name,
        f"{name} ({os.path.abspath(workdir)}): files written and decoded; bpp from file sizes, "
        "PSNR of the decoded images.",
    )


def _code_one(codec, config, item: NamedImage, out_dir: str, warm_up: bool) -> dict:
    """Encodes one image to out_dir/bitstreams/<image>.lz, decodes the file, measures."""
    from common.config import config_hash
    from common.files import atomic_write_bytes

    original = item.load()
    height, width = original.shape[:2]
    pixels = height * width
    encoded = codec.encode(original)
    path = os.path.join(out_dir, "bitstreams", f"{item.name}.lz")
    atomic_write_bytes(path, encoded.data)
    with open(path, "rb") as f:
        data = f.read()
    if warm_up:
        codec.decode(data, path)  # untimed
    decoded = codec.decode(data, path)
    macs = codec.model.decoder_macs(height, width)
    container_bytes = len(data) - sum(len(s) for s in container.parse(data, path).sections)
    estimated = sum(encoded.bits_estimated.values())
    return results.result_row(
        image=item.name,
        model=codec.name,
        lmbda=config.model.lmbda,
        bpp=8 * len(data) / pixels,
        bpp_estimated=estimated / pixels,
        bpp_latents=estimated / pixels,
        bpp_networks=0.0,
        bpp_header=8 * container_bytes / pixels,
        psnr=metrics.psnr(decoded.image, original),
        mse=metrics.mse(decoded.image, original),
        ms_ssim=metrics.ms_ssim(decoded.image, original),
        encode_seconds=encoded.seconds,
        decode_seconds=decoded.seconds,
        steps=_trained_steps(codec.checkpoint),
        macs_per_pixel=sum(macs.values()) / pixels,
        height=height,
        width=width,
        bitstream=os.path.relpath(path, out_dir),
        config_hash=config_hash(config),
        bpp_parts_estimated={k: v / pixels for k, v in encoded.bits_estimated.items()},
        decoded_matches_encoder=bool(np.array_equal(decoded.image, encoded.reconstruction)),
        checkpoint=codec.checkpoint,
    )


def _trained_steps(checkpoint: str) -> int | None:
    suffix = checkpoint.rsplit("-", 1)[-1]
    return int(suffix) if suffix.isdigit() else None
