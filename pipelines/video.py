"""C3 video end to end: cut a video into patches, fit each, write and decode the file.

    video = common.video.read_video("clip.y4m")
    coded = encode_video(config, video.frames)        # fits every patch of config
    frames = coding.c3.video.decode(coded.data)       # needs only the file

Each patch (`config.video.patch`, or C3's size for the lambda from
`config.video.patch_by_lambda`) is a `C3VideoModel` fitted by the image codec's
`C3Fitter` (the same recipe, NaN recovery and learning check, C3's video settings in
configs/c3_video.py) and written as one section of the video's file
(`coding.c3.video`). `train.py --config configs/c3_video.py` runs the patches of
`config.video.patches` (a sweep entry: one patch, one lambda, one Slurm array task) and
writes a patch file each; when one run directory holds every patch of a lambda (a local
run of all of them) it also writes the merged file, decodes it and records the video's
results row: bpp from the file's size, PSNR (RGB and YUV 6:1:1) of the decoded frames.
"""

import dataclasses
import functools
import os
import time

import numpy as np
from absl import logging

from coding.c3 import video as video_coding
from common import results
from common import video as video_io
from common.errors import ConfigError, ImageError
from common.files import atomic_write_bytes
from models import registry
from pipelines.per_image import FitCheckpoints, FitLog, make_fitter
from pipelines.registry import register_pipeline

VIDEO_SUFFIX = ".c3v"


def patch_size(config, lmbda: float, size: tuple[int, int, int]) -> tuple[int, int, int]:
    """The config's patch, or the `patch_by_lambda` row of lambda; clipped to the video."""
    patch = tuple(int(n) for n in config.video.patch)
    if not patch:
        rows = [r for r in config.video.patch_by_lambda if lmbda >= r[0]]
        if not rows:
            raise ConfigError(f"video.patch_by_lambda has no row for lambda {lmbda:g}.")
        patch = tuple(int(n) for n in rows[0][1:])
    if len(patch) != 3 or min(patch) < 1:
        raise ConfigError(f"video.patch must be (frames, height, width) > 0, got {patch}.")
    return tuple(min(p, n) for p, n in zip(patch, size, strict=True))


def selected_patches(config, count: int) -> list[int]:
    """The patch indices `config.video.patches` names ("" all)."""
    text = str(config.video.patches).strip()
    if not text:
        return list(range(count))
    try:
        indices = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ConfigError(f"video.patches must be comma-separated indices, got {text!r}.") from None
    if not indices or indices[0] < 0 or indices[-1] >= count:
        raise ConfigError(f"video.patches {text!r}: the video has patches 0..{count - 1}.")
    return indices


@dataclasses.dataclass
class CodedVideo:
    data: bytes  # the file (all patches, or the selected ones)
    size: tuple[int, int, int]
    patch: tuple[int, int, int]
    patch_rows: list[dict]  # per patch: bits, fit numbers, seconds
    encode_seconds: float


def fit_patch(
    config, frames: np.ndarray, lmbda: float, seed: int, name: str, workdir=None, fitters=None
):
    """Fits one patch (T, H, W, 3) uint8; returns (the fitted model, FitResult). With a
    `workdir`, the fit logs to TensorBoard there and checkpoints (every
    `fit.checkpoint_every` steps and on SIGTERM), and a rerun resumes from it. `fitters`
    (a dict by patch shape) keeps one fitter per shape, so that patches of one size
    trace their step graphs once (`reset` re-initialises from the seed alone)."""
    shape = frames.shape[:3]
    fitters = {} if fitters is None else fitters
    if shape not in fitters:
        t, h, w = shape
        model = registry.build_model(config.model, frames=t, height=h, width=w)
        fitters[shape] = make_fitter(model, config.fit)
    fitter = fitters[shape]
    model = fitter.model
    fitter.reset(frames.astype(np.float32) / 255.0, lmbda, seed)
    tensorboard = os.path.join(workdir, "tensorboard", name) if workdir else None
    checkpoint_fn = None
    if workdir:
        directory = os.path.join(workdir, "checkpoints", name)
        checkpoints = FitCheckpoints(directory, config.fit.checkpoint_every, name)
        checkpoints.restore(fitter)
        checkpoint_fn = functools.partial(checkpoints.after_chunk, fitter)
    return model, fitter.fit(FitLog(name, config.fit, tensorboard), checkpoint_fn)


def encode_video(
    config, frames: np.ndarray, patches: list[int] | None = None, workdir=None, name="video"
) -> CodedVideo:
    """Fits the patches of a video (T, H, W, 3) uint8 (all, or the given indices) and
    writes its file; `workdir`: checkpoints and TensorBoard logs (`fit_patch`)."""
    if config.fit.per_module_steps or config.fit.per_tensor_steps:
        # A video patch's header carries one (weight, bias) pair (coding.c3.video).
        raise ConfigError(
            "C3 video files have one network step pair: set fit.per_module_steps and "
            "fit.per_tensor_steps to false."
        )
    start = time.perf_counter()
    size = tuple(frames.shape[:3])
    lmbda = float(config.model.lmbda)
    patch = patch_size(config, lmbda, size)
    boxes = video_coding.patch_boxes(size, patch)
    if len(boxes) > video_coding.MAX_PATCHES:
        raise ConfigError(
            f"{len(boxes)} patches of {patch} exceed a file's {video_coding.MAX_PATCHES}; "
            "use larger patches (video.patch) or cut the video."
        )  # never at 8-bit y4m sizes: 65535 frames x 65535^2 pixels
    indices = list(range(len(boxes))) if patches is None else patches
    colour = str(config.video.colour)
    if colour not in video_coding.COLOURS:
        raise ConfigError(f"video.colour must be one of {video_coding.COLOURS}, got {colour!r}.")
    # The fitted signal: the RGB frames, or their 8-bit Y'CbCr 4:4:4 planes.
    signal = frames if colour == "rgb" else video_io.rgb_to_yuv8(frames)
    sections, rows, fitters = {}, [], {}
    for n, index in enumerate(indices):
        t0, t1, y0, y1, x0, x1 = boxes[index]
        logging.info(
            "Patch %d (%d/%d): frames %d-%d, rows %d-%d, columns %d-%d, lambda %g.",
            index, n + 1, len(indices), t0, t1 - 1, y0, y1 - 1, x0, x1 - 1, lmbda,
        )  # fmt: skip
        patch_start = time.perf_counter()
        seed = int(config.seed) + index
        box = signal[t0:t1, y0:y1, x0:x1]
        model, fit = fit_patch(config, box, lmbda, seed, f"{name}.p{index}", workdir, fitters)
        encoded = video_coding.encode_patch(model, fit.weight_step, fit.bias_step)
        sections[index] = encoded.payload
        rows.append(
            dict(
                patch=index,
                box=list(boxes[index]),
                seed=seed,
                bits=8 * len(encoded.payload),
                bits_latents=encoded.bits_latents,
                bits_networks=encoded.bits_networks,
                bits_header=encoded.bits_header,
                estimated_bits=fit.bits_latents + fit.bits_networks,
                fit_psnr=fit.psnr,  # the float model's on the fitted signal (video.colour)
                iterations=fit.iterations,
                nan_recoveries=fit.nan_recoveries,
                restarts=fit.restarts,
                seconds=time.perf_counter() - patch_start,
                macs_per_pixel=model.macs_per_pixel(),
            )
        )
    data = video_coding.VideoFile(size, patch, sections, colour).to_bytes()
    return CodedVideo(data, size, patch, rows, time.perf_counter() - start)


def video_row(name: str, config, original: np.ndarray, coded: CodedVideo, jit: bool = True):
    """Decodes a complete file and measures it: bpp from its size, PSNR of the frames."""
    start = time.perf_counter()
    decoded = video_coding.decode(coded.data, jit)
    decode_seconds = time.perf_counter() - start
    t, h, w = coded.size
    row = results.result_row(
        image=name,
        model=config.name,
        lmbda=float(config.model.lmbda),
        bpp=8 * len(coded.data) / (t * h * w),
        psnr=video_io.psnr_rgb(original, decoded),
        encode_seconds=coded.encode_seconds,
        decode_seconds=decode_seconds,
        frames=t,
        height=h,
        width=w,
        patch=list(coded.patch),
        patches=coded.patch_rows,
        bytes=len(coded.data),
    )
    row.update(video_io.psnr_yuv(original, decoded))
    return row, decoded


def _video_name(path: str) -> str:
    return os.path.splitext(os.path.basename(os.path.normpath(path)))[0]


@register_pipeline("video")
def run(config, workdir: str) -> list[dict]:
    """Fits the selected patches of `config.data.video` at `config.model.lmbda`."""
    if not config.data.video:
        raise ConfigError("set config.data.video to a .y4m, a folder of PNG frames or a video.")
    video = video_io.read_video(config.data.video, int(config.data.max_frames))
    name = results.lambda_name(_video_name(config.data.video), float(config.model.lmbda))
    size = video.shape
    patch = patch_size(config, float(config.model.lmbda), size)
    count = len(video_coding.patch_boxes(size, patch))
    indices = selected_patches(config, count)
    suffix = "" if len(indices) == count else "." + "_".join(f"p{i}" for i in indices)
    path = os.path.join(workdir, "patches" if suffix else "", name + suffix + VIDEO_SUFFIX)
    if os.path.exists(path):
        logging.info("%s: already finished (%s), skipping.", name, path)
        row_path = results.result_path(workdir, name)
        return results.read_results(row_path) if os.path.exists(row_path) else []
    coded = encode_video(config, video.frames, indices, workdir, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic_write_bytes(path, coded.data)
    logging.info("Wrote %s (%d bytes, patches %s of %d).", path, len(coded.data), indices, count)
    if suffix:
        results.write_result(
            os.path.join(workdir, "patches", name + suffix + ".json"),
            {"video": name, "patches": coded.patch_rows, "file": path},
        )
        return []
    row, decoded = video_row(name, config, video.frames, coded)
    results.write_result(results.result_path(workdir, name), row)
    logging.info(
        "%s: %.4f bpp (file), PSNR %.2f dB RGB, %.2f dB YUV 6:1:1.",
        name, row["bpp"], row["psnr"], row["psnr_yuv"],
    )  # fmt: skip
    return [row]


def check_video_input(path: str) -> None:
    if not video_io.is_video_path(path):
        raise ImageError(f"{path}: not a video (.y4m, a video file or a folder of PNG frames).")
