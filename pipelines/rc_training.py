"""Training RC's residual network (configs/rc_hevc.py, rc_c3.py) in a run directory.

    training images (config.data.root) -> their lossy reconstructions x_l at each of
    config.lossy.train_qualities, made once and cached as PNGs in RUN/lossy/<quality>/
    -> random crops of (x, x_l) pairs, batched -> tf.function step (loss = bits per
    sub-pixel of x given x_l, Adam with warm-up and decay, global clip-norm) ->
    TensorBoard, checkpoints, validation and resume as for the amortised models
    (`pipelines.amortised_training`, whose loop parts this reuses).

The training log's "bpp" is the residual's bits per pixel (3 x the loss), its "psnr" that
of the lossy layer's x_l: what the network is given.
"""

import concurrent.futures
import copy
import functools
import os

import numpy as np
import tensorflow as tf
from absl import logging

from coding.rc.lossy import lossy_layer
from common import device, preemption
from common.crops import folder_images
from common.errors import DatasetError
from common.files import atomic_write_json
from common.images import read_image, write_png
from common.metrics import psnr_from_mse, psnr_from_mse_tensor
from pipelines import amortised_training as loop
from pipelines.registry import register_pipeline
from pipelines.trained_run import build_model

LOSSY_DIR = "lossy"


def _cached_name(path: str, root: str) -> str:
    relative = os.path.relpath(path, root) if root else os.path.basename(path)
    return os.path.splitext(relative.replace(os.sep, "__"))[0] + ".png"


def make_lossy_layer(config):
    """The lossy layer of an RC config, able to encode (rc_c3: fits `config.lossy.c3`)."""

    @functools.cache
    def c3_codec():
        """One C3 codec for every image and lambda: its graphs traced once per size."""
        from pipelines.per_image import C3Codec

        return C3Codec(copy.deepcopy(config.lossy.c3))

    def fit_c3(image: np.ndarray, lmbda: float) -> bytes:
        return c3_codec().fit_and_encode(image, what="lossy layer", lmbda=lmbda).encoded.data

    return lossy_layer(config.model.name, fit_c3)


def central_crop(image: np.ndarray, max_side: int) -> np.ndarray:
    """The central max_side x max_side (at most) part of an image; 0: the whole image."""
    if not max_side:
        return image
    h, w = image.shape[:2]
    top, left = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
    return image[top : top + max_side, left : left + max_side]


def lossy_pairs(config, workdir: str, paths: list[str], root: str = "") -> list[tuple[str, str]]:
    """(image path, x_l path) for every image and training quality; the x_l PNGs are made
    by the lossy layer once and kept in RUN/lossy/ (a rerun reuses them). Images larger
    than `lossy.train_max_side` are cut to their central part first (kept in
    RUN/lossy/original/): x265 veryslow takes about a minute per 2048x2048 photo."""
    layer = make_lossy_layer(config)
    layer.check()
    max_side = int(config.lossy.train_max_side)
    originals = os.path.join(workdir, LOSSY_DIR, "original")
    jobs = []
    for quality in config.lossy.train_qualities:
        directory = os.path.join(workdir, LOSSY_DIR, f"{layer.quality_name}{quality:g}")
        for path in paths:
            name = _cached_name(path, root)
            source = os.path.join(originals, name) if max_side else path
            jobs.append((path, source, os.path.join(directory, name), quality))
    todo = [j for j in jobs if not os.path.isfile(j[2])]
    if todo:
        logging.info("Making %d lossy reconstructions (%s) in %s.", len(todo), layer.name,
                     os.path.join(workdir, LOSSY_DIR))  # fmt: skip

    def make(job):
        if preemption.requested():  # SIGTERM: stop between pictures (all kept are whole)
            raise preemption.Preempted("stopped while making training pairs; rerun resumes.")
        path, source, target, quality = job
        image = central_crop(read_image(path), max_side)
        if source != path and not os.path.isfile(source):
            write_png(source, image)
        x_l = layer.decode(layer.encode(image, quality), image.shape[:2], path)
        write_png(target, x_l)

    # x265 is a process of its own (threads serve it); a C3 fit runs here, one at a time.
    workers = (os.cpu_count() or 1) if layer.name == "hevc" else 1
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(make, todo))
    return [(source, target) for _, source, target, _ in jobs]


def read_pair(path, lossy) -> np.ndarray:
    """(H, W, 6) uint8: the image (0:3) and its x_l (3:6); paths as str or bytes."""
    path, lossy = os.fsdecode(path), os.fsdecode(lossy)
    x, x_l = read_image(path), read_image(lossy)
    if x.shape != x_l.shape:
        raise DatasetError(f"{lossy}: not the size of {path}.")
    return np.concatenate([x, x_l], axis=-1)


def pair_crops(pairs: list[tuple[str, str]], patch: int, batch: int, seed: int):
    """Batches (B, patch, patch, 6) uint8 of random crops: x in 0:3, x_l in 3:6.

    The decoded pairs are cached in memory (a few hundred MB for a few hundred photos)."""
    paths, lossy = (list(p) for p in zip(*pairs, strict=True))
    dataset = tf.data.Dataset.from_tensor_slices((paths, lossy))
    dataset = dataset.map(
        lambda p, q: tf.ensure_shape(
            tf.numpy_function(read_pair, [p, q], tf.uint8, stateful=False), [None, None, 6]
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    ).cache()
    dataset = dataset.shuffle(len(pairs), seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = dataset.map(lambda x: tf.image.random_crop(x, [patch, patch, 6]))
    return dataset.batch(batch, drop_remainder=True).prefetch(2)


def split(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(x, x_l) as float 8-bit values from a batch of `pair_crops`."""
    batch = tf.cast(batch, tf.float32)
    return batch[..., 0:3], batch[..., 3:6]


def make_train_step(model, optimizer, config):
    variables = model.trainable_variables

    @tf.function(jit_compile=bool(config.train.jit_compile))
    def train_step(batch):
        x, x_l = split(batch)
        with tf.GradientTape() as tape:
            loss = model.bits_per_subpixel(x, x_l)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        mse = tf.reduce_mean(tf.square(x - x_l))
        return {
            "loss": loss,
            "bpp": 3.0 * loss,
            "psnr": psnr_from_mse_tensor(mse),
        }

    return train_step


class Validation(loop.ValidationHistory):
    """Estimated bits per sub-pixel of whole validation pairs (at the first training
    quality), in validation.json and TensorBoard as the amortised models' history."""

    scalars = ("bpsp", "lossy_psnr")

    def measure(self, model) -> dict:
        bpsp, mse = [], []
        for path, lossy in self._images:
            x, x_l = split(tf.constant(read_pair(path, lossy)[None]))
            bpsp.append(float(model.bits_per_subpixel(x, x_l)))
            mse.append(float(tf.reduce_mean(tf.square(x - x_l))))
        psnr = float(np.mean([psnr_from_mse(m) for m in mse]))
        return {"bpsp": float(np.mean(bpsp)), "lossy_psnr": psnr}

    def describe(self, record: dict) -> str:
        return f"{record['bpsp']:.4f} bpsp (estimate; x_l at {record['lossy_psnr']:.2f} dB)"


def _validation_pairs(config, workdir: str) -> list[tuple[str, str]]:
    """Pairs of the validation folder (config.val.name = folder) at the first training
    quality, cached in RUN/val/lossy/; none for any other validation set."""
    if config.val.name != "folder" or not config.val.root:
        if config.val.name != "none":
            logging.warning("RC validates on a folder only (config.val.name=folder, val.root).")
        return []
    paths = folder_images(config.val.root)[: config.val.max_images]
    first = config.lossy.train_qualities[:1]
    val_config = config.copy_and_resolve_references()
    val_config.lossy.train_qualities = first
    return lossy_pairs(val_config, os.path.join(workdir, "val"), paths)


@register_pipeline("residual")
def train(config, workdir: str) -> dict:
    """Trains (or resumes) the residual network of `config` in `workdir`."""
    t = config.train
    if not config.lossy.train_qualities:
        raise DatasetError("config.lossy.train_qualities is empty: no training pairs.")
    device.log_once()
    tf.keras.utils.set_random_seed(config.seed)
    paths = folder_images(config.data.root, config.data.patch_size)
    pairs = lossy_pairs(config, workdir, paths, config.data.root)
    dataset = pair_crops(pairs, config.data.patch_size, t.batch_size, config.seed)
    validation = Validation(workdir, _validation_pairs(config, workdir))
    model = build_model(config.model)
    optimizer = loop.make_optimizer(t)
    optimizer.build(model.trainable_variables)
    manager = loop.checkpoint_manager(workdir, model, optimizer, t.keep_checkpoints)
    loop._restore(manager, optimizer)
    train_step = make_train_step(model, optimizer, config)
    log = loop.TrainingLog(workdir, t)
    step = loop.run_steps(train_step, iter(dataset), model, optimizer, manager, log, validation, t)
    summary = {
        "model": config.model.name,
        "steps": step,
        "seconds_per_step": float(np.median(log.step_seconds)) if log.step_seconds else None,
        "batch_size": t.batch_size,
        "patch_size": config.data.patch_size,
        "training_pairs": len(pairs),
        "checkpoint": manager.latest_checkpoint,
        "validation": validation.records[-1] if validation.records else None,
        "loss_history": log.losses,
        "decoder_macs_per_pixel": model.macs_per_pixel(),
    }
    atomic_write_json(os.path.join(workdir, "train_summary.json"), summary)
    logging.info("Trained %d steps (%s s/step).", step, summary["seconds_per_step"])
    return summary
