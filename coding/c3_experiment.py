"""The per-image encoder: fit C3 to each selected image, write its bitstream, measure.

For a per-image codec, fitting is encoding. For every image: fit (resuming from a
checkpoint if the run was interrupted), write the bitstream (`bitstreams/<image>.c3`),
decode it as a receiver would, and record the measured bpp (file size) and the PSNR of
the *decoded* image, beside the fitting estimates; also the decoded PNG, a checkpoint of
the fitted model, TensorBoard scalars and one results JSON; finally the aggregate over
images. A finished image (its results JSON exists) is skipped on rerun.
"""

import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from coding import c3_codec
from common import metrics, preemption, results
from common.config import config_hash
from common.datasets import load_images
from common.files import atomic_write_bytes
from common.images import to_float, write_png
from models.c3.fit import C3Fitter, FitError
from models.registry import build_per_image_model

BITSTREAM_SUFFIX = ".c3"


class _FitterCache:
    """One model + compiled fitter per image shape, reused across images."""

    def __init__(self, config):
        self._config = config
        self._fitters = {}

    def get(self, height: int, width: int) -> C3Fitter:
        key = (height, width)
        if key not in self._fitters:
            model = build_per_image_model(self._config.model, height, width)
            self._fitters[key] = C3Fitter(model, self._config.fit)
        return self._fitters[key]


def fitter_steps(fitter: C3Fitter) -> int:
    """Steps done so far in both stages."""
    return int(fitter.noise_step.numpy()) + int(fitter.ste_step.numpy())


def encode_and_verify(fitter: C3Fitter, fit, what: str):
    """Writes the bitstream of a fitted model and decodes it as a receiver would.

    Returns (EncodedC3, DecodedC3); the image to report is the decoded one.
    """
    encoded = c3_codec.encode(fitter.model, fit.weight_step, fit.bias_step)
    decoded = c3_codec.decode(encoded.data, what=what)
    sent = fitter.model.symbols()
    same = all(np.array_equal(a, b) for a, b in zip(decoded.symbols, sent, strict=True))
    if not same and not encoded.clipped_latents:
        raise FitError(f"{what}: the decoder's latents differ from the encoder's (a bug).")
    return encoded, decoded


def fit_one(config, name: str, image: np.ndarray, fitter: C3Fitter, workdir: str) -> dict:
    """Fits one image and writes its outputs; returns its results row."""
    height, width = image.shape[:2]
    lmbda = float(config.model.lmbda)
    fitter.reset(to_float(image), lmbda, config.seed)
    checkpoint = tf.train.Checkpoint(fitter=fitter)
    manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(workdir, "checkpoints", name), max_to_keep=1
    )
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).expect_partial()
        logging.info(
            "%s: resuming from %s (noise step %d, ste step %d).",
            name,
            manager.latest_checkpoint,
            int(fitter.noise_step.numpy()),
            int(fitter.ste_step.numpy()),
        )
    writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard", name))
    num_pixels = height * width
    total_noise = config.fit.num_noise_steps

    def log_fn(stage: str, step: int, values: dict) -> None:
        global_step = step if stage == "noise" else total_noise + step
        logging.info(
            "%s %s step %d: loss %.6g, PSNR %.3f dB, latents %.4f bpp",
            name,
            stage,
            step,
            values["loss"],
            values["psnr"],
            values["bpp_latents"],
        )
        with writer.as_default(step=global_step):
            for key, value in values.items():
                tf.summary.scalar(f"{stage}/{key}", value)

    every = int(config.fit.checkpoint_every)
    last_saved = [fitter_steps(fitter)]

    def checkpoint_fn() -> None:
        if preemption.requested():
            manager.save()
            writer.flush()
            raise preemption.Preempted(
                f"{name}: stop requested (SIGTERM); saved a checkpoint at step "
                f"{fitter_steps(fitter)}. A rerun resumes from it."
            )
        if every > 0 and fitter_steps(fitter) - last_saved[0] >= every:
            manager.save()
            last_saved[0] = fitter_steps(fitter)

    start = time.perf_counter()
    fit = fitter.fit(log_fn, checkpoint_fn)
    fit_seconds = time.perf_counter() - start
    manager.save()
    writer.flush()

    bitstream = os.path.join("bitstreams", name + BITSTREAM_SUFFIX)
    encoded, decoded = encode_and_verify(fitter, fit, bitstream)
    atomic_write_bytes(os.path.join(workdir, bitstream), encoded.data)
    reconstruction = decoded.image
    write_png(os.path.join(workdir, "reconstructions", f"{name}.png"), reconstruction)
    macs = fitter.model.macs_per_pixel()
    bpp_latents = fit.bits_latents / num_pixels
    bpp_networks = fit.bits_networks / num_pixels
    bpp = encoded.num_bits / num_pixels
    coded_over_estimate = (encoded.bits_latents + encoded.bits_networks) / max(
        fit.bits_latents + fit.bits_networks, 1e-9
    )
    row = results.result_row(
        image=name,
        model=config.name,
        lmbda=lmbda,
        bpp=bpp,
        bpp_estimated=bpp_latents + bpp_networks,
        bpp_latents=bpp_latents,
        bpp_networks=bpp_networks,
        bpp_header=encoded.bits_header / num_pixels,
        psnr=metrics.psnr(reconstruction, image),
        mse=metrics.mse(reconstruction, image),
        ms_ssim=metrics.ms_ssim(reconstruction, image),
        encode_seconds=fit_seconds + encoded.seconds,
        decode_seconds=decoded.seconds,
        steps=fit.noise_steps + fit.ste_steps,
        macs_per_pixel=macs["total"],
        height=height,
        width=width,
        bitstream=bitstream,
        config_hash=config_hash(config),
        bpp_latents_coded=encoded.bits_latents / num_pixels,
        bpp_networks_coded=encoded.bits_networks / num_pixels,
        coded_over_estimate=coded_over_estimate,
        psnr_fit=fit.psnr,
        entropy_coding_seconds=encoded.seconds,
        macs_per_pixel_parts=macs,
        noise_steps=fit.noise_steps,
        ste_steps=fit.ste_steps,
        seconds_noise=fit.seconds_noise,
        seconds_ste=fit.seconds_ste,
        seconds_quantization=fit.seconds_quantization,
        weight_step=fit.weight_step,
        bias_step=fit.bias_step,
        bits_per_grid=fit.bits_per_grid,
        bits_per_network=fit.bits_per_network,
        nan_recoveries=fit.nan_recoveries,
        clipped_latents=encoded.clipped_latents,
    )
    results.write_result(results.result_path(workdir, name), row)
    logging.info(
        "%s: PSNR %.3f dB at %.4f bpp measured (%d bytes; estimate %.4f bpp: latents "
        "%.4f + networks %.4f; coded/estimated %.4f, header %d bytes), %d steps in %.1f s, "
        "decoded in %.2f s.",
        name,
        row["psnr"],
        bpp,
        len(encoded.data),
        row["bpp_estimated"],
        bpp_latents,
        bpp_networks,
        coded_over_estimate,
        encoded.bits_header // 8,
        row["steps"],
        fit_seconds,
        decoded.seconds,
    )
    return row


def run(config, workdir: str) -> list[dict]:
    """Fits every selected image; returns the results rows (also of skipped images)."""
    images = load_images(config.data)
    fitters = _FitterCache(config)
    rows = []
    for i, item in enumerate(images):
        path = results.result_path(workdir, item.name)
        if os.path.exists(path):
            logging.info("%s: already finished (%s), skipping.", item.name, path)
            rows.extend(results.read_results(path))
            continue
        image = item.load()
        logging.info(
            "Image %d/%d: %s (%dx%d), lambda %g.",
            i + 1,
            len(images),
            item.name,
            image.shape[1],
            image.shape[0],
            config.model.lmbda,
        )
        fitter = fitters.get(*image.shape[:2])
        rows.append(fit_one(config, item.name, image, fitter, workdir))
    results.write_aggregate(
        os.path.join(workdir, "results.json"),
        rows,
        config.name,
        f"{config.name}: per-image fits; bpp measured from the bitstream files.",
    )
    return rows
