"""Iterative inference: refine one image's latents of a trained hyperprior model with SGA
(models/amortised/sga.py), then code them with the unchanged codec
(coding/amortised/codec.py).

For each image of the shard: encode it with the amortised encoder (analysis transforms)
and measure that file; start from its y and z and take `itinf.num_steps` Adam steps on

    loss = -log2 p(z~) / pixels - log2 p(y~ | z~) / pixels + lambda * MSE(0..255)

with y~, z~ SGA samples at the annealed temperature (the rate under the same densities
the model was trained with, the distortion through the float synthesis); then round
hard, encode the refined latents, decode that file with the unchanged decoder and
measure it. The results row reports the refined file, plus the RD loss (file bpp +
lambda * MSE of the decoded image) before and after refinement.
"""

import math
import os
import time

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc
from absl import logging

from coding.amortised.codec import AmortisedCodec
from common import metrics, preemption, results, schedules
from common.config import config_hash
from common.datasets import list_images
from common.errors import ConfigError
from common.files import atomic_write_bytes
from common.images import to_float
from models.amortised import hyperprior, sga
from pipelines.trained_run import TrainedRun, load_trained_run


def refine(
    codec: AmortisedCodec, image: np.ndarray, lmbda: float, itinf, seed: int = 0, log_fn=None
):
    """SGA on one image; returns the refined (y, z) and the per-chunk loss history."""
    model = codec.model
    height, width = image.shape[:2]
    x = tf.constant(to_float(image))[None]
    x_pad = hyperprior.edge_pad_batch(x, codec.stride)
    y = tf.Variable(model.analysis(x_pad))
    z = tf.Variable(model.hyper_analysis(y))
    steps = int(itinf.num_steps)

    optimizer = tf.keras.optimizers.Adam(
        schedules.WarmupStepDecay(
            steps, itinf.learning_rate, 0.0, itinf.decay_after, itinf.decay_factor
        )
    )
    optimizer.build([y, z])
    pixels = float(height * width)
    ln2 = math.log(2.0)

    @tf.function(jit_compile=bool(itinf.jit_compile))
    def step(t):
        tau = sga.temperature(t, itinf.max_tau, itinf.min_tau, itinf.tau_rate, itinf.tau_start)
        seed_t = tf.stack([tf.cast(seed, tf.int64), tf.cast(t, tf.int64)])
        with tf.GradientTape() as tape:
            z_tilde = sga.sga_sample(z, tau, seed=seed_t)
            bits_z = -tf.reduce_sum(model.prior.log_prob(z_tilde)) / ln2
            mu, log_scale = model.hyper_synthesis(z_tilde)
            indexes = tf.clip_by_value(
                hyperprior.scale_index(log_scale), 0.0, hyperprior.NUM_SCALES - 1.0
            )
            y_tilde = sga.sga_sample(y, tau, loc=mu, seed=seed_t + 1)
            density = tfc.NoisyNormal(loc=mu, scale=hyperprior.scale_from_index(indexes))
            bits_y = -tf.reduce_sum(density.log_prob(y_tilde)) / ln2
            x_hat = model.synthesis(y_tilde)[:, :height, :width]
            mse = tf.reduce_mean(tf.math.squared_difference(x_hat * 255.0, x * 255.0))
            bpp = (bits_y + bits_z) / pixels
            loss = bpp + lmbda * mse
        gradients = tape.gradient(loss, [y, z])
        optimizer.apply_gradients(zip(gradients, [y, z], strict=True))
        return loss, bpp, mse, tau

    history = []
    for t in range(steps):
        loss, bpp, mse, tau = step(tf.constant(t, tf.int64))
        if (t + 1) % itinf.log_every == 0 or t + 1 == steps:
            history.append([t + 1, float(loss)])
            if log_fn:
                log_fn(t + 1, float(loss), float(bpp), float(mse), float(tau))
        if preemption.requested():
            raise preemption.Preempted(f"stopped during SGA at step {t + 1}; rerun to redo it.")
    return y, z, history


def _measure(codec: AmortisedCodec, encoded, image, lmbda: float, what: str) -> dict:
    """The file's measured bpp, distortion and RD loss (decoded by the unchanged decoder)."""
    decoded = codec.decompress(encoded.data, what)
    bpp = 8 * len(encoded.data) / (image.shape[0] * image.shape[1])
    mse = metrics.mse(decoded.image, image)
    return {
        "bpp": bpp,
        "psnr": metrics.psnr(decoded.image, image),
        "rd_loss": bpp + lmbda * mse,
        "decoded": decoded,
    }


def _shard(config) -> list:
    images = list_images(config.data)
    if config.data.shard < 0:
        return images
    return [im for i, im in enumerate(images) if i % config.data.num_shards == config.data.shard]


def load_warm_start(config) -> TrainedRun:
    """The trained hyperprior run that `config.warm_start` names."""
    if not config.warm_start or not os.path.isdir(config.warm_start):
        raise ConfigError(
            f"config.warm_start {config.warm_start!r} is not a run directory; pass "
            "--config.warm_start=RUN (a trained mbt2018_mean, jpegl or two_layer_syn[2])."
        )
    run = load_trained_run(config.warm_start)
    if not run.codec.hyper:
        raise ConfigError(
            f"SGA here refines hyperprior models; {run.codec.name} has no hyperprior."
        )
    return run


def refine_one(config, run: TrainedRun, item, workdir: str) -> dict:
    """Codes one image before and after SGA; writes the refined file and its results row."""
    codec, lmbda = run.codec, float(run.config.model.lmbda)
    image = item.load()
    height, width = image.shape[:2]
    before = _measure(codec, codec.compress(image), image, lmbda, item.name)
    start = time.perf_counter()

    def log_fn(step, loss, bpp, mse, tau):
        logging.info(
            "%s step %d: loss %.4f, %.4f bpp, MSE %.2f, tau %.3g", item.name, step, loss, bpp,
            mse, tau,
        )  # fmt: skip

    y, z, history = refine(codec, image, lmbda, config.itinf, config.seed, log_fn)
    refined = codec.compress_latents(
        tf.convert_to_tensor(y), tf.convert_to_tensor(z), height, width, start=start
    )
    path = os.path.join(workdir, "bitstreams", f"{item.name}.lz")
    atomic_write_bytes(path, refined.data)
    after = _measure(codec, refined, image, lmbda, path)
    pixels = height * width
    row = results.row_from_file(
        image=item.name,
        model=f"{codec.name}+sga",
        original=image,
        data=refined.data,
        decoded=after["decoded"].image,
        encode_seconds=refined.seconds,
        decode_seconds=after["decoded"].seconds,
        lmbda=lmbda,
        bpp_estimated=sum(refined.bits_estimated.values()) / pixels,
        bpp_latents=sum(refined.bits_estimated.values()) / pixels,
        bpp_networks=0.0,
        steps=int(config.itinf.num_steps),
        macs_per_pixel=sum(codec.model.decoder_macs(height, width).values()) / pixels,
        bitstream=os.path.relpath(path, workdir),
        config_hash=config_hash(config),
        warm_start=os.path.abspath(config.warm_start),
        rd_loss_before=before["rd_loss"],
        rd_loss_after=after["rd_loss"],
        bpp_before=before["bpp"],
        psnr_before=before["psnr"],
        decoded_matches_encoder=bool(
            np.array_equal(after["decoded"].image, refined.reconstruction)
        ),
        sga_loss_history=history,
    )
    results.write_result(results.result_path(workdir, item.name), row)
    logging.info(
        "%s: RD loss %.4f -> %.4f (%.4f -> %.4f bpp, %.2f -> %.2f dB) in %.0f s",
        item.name,
        before["rd_loss"],
        after["rd_loss"],
        before["bpp"],
        after["bpp"],
        before["psnr"],
        after["psnr"],
        refined.seconds,
    )
    return row


def run(config, workdir: str, trained: TrainedRun | None = None) -> list[dict]:
    """Refines every image of the configured shard; writes bitstreams and results.
    `trained` is the warm start, if already loaded (`load_warm_start`)."""
    trained = trained or load_warm_start(config)
    rows = []
    for item in _shard(config):
        result_path = results.result_path(workdir, item.name)
        if os.path.exists(result_path):  # done before a preemption
            rows.append(results.read_results(result_path)[0])
            continue
        rows.append(refine_one(config, trained, item, workdir))
    name = f"{trained.codec.name}+sga"
    results.write_aggregate(
        os.path.join(workdir, "results.json"),
        rows,
        name,
        f"{trained.codec.name} ({os.path.abspath(config.warm_start)}) with SGA-refined "
        "latents; bpp from file sizes, PSNR of the decoded images.",
    )
    return rows
