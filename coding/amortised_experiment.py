"""Training an amortised codec (bls2017, mbt2018_mean, jpegl, two_layer_syn[2]) in a run
directory, with the shallow-ntc recipe (configs/amortised_base.py).

    crops of a dataset -> tf.function train step (loss = bpp + lambda * MSE, Adam with
    warm-up and decay, global clip-norm) -> TensorBoard scalars every `log_every` steps
    -> checkpoints every `checkpoint_every` steps (and on SIGTERM) -> validation on whole
    images every `validate_every` steps -> final checkpoint and train_summary.json.

A rerun (or a requeued Slurm task) restores the latest checkpoint: weights, optimizer
moments and the step, so the schedules continue where they stopped. The data order is
not restored (a fresh shuffle); for random crops of a large dataset that is immaterial.
"""

import json
import math
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from common import preemption, schedules
from common.datasets import NamedImage, list_images
from common.files import atomic_write_json
from common.images import to_float
from common.kodak import DatasetError
from models.hyperprior import edge_pad_batch
from models.registry import build_amortised_model

CHECKPOINT_DIR = "checkpoints"


class TrainingError(RuntimeError):
    """Training cannot continue (a NaN loss, an undecodable training image)."""


def build_model(model_config):
    """The amortised model of `config.model`, with its variables created."""
    model = build_amortised_model(model_config)
    model(tf.zeros([1, model.total_stride, model.total_stride, 3]))
    return model


def learning_rate(train) -> schedules.WarmupStepDecay:
    """The recipe's schedule with the fields of `config.train`."""
    return schedules.WarmupStepDecay(
        train.num_steps,
        train.learning_rate,
        train.warmup_fraction,
        train.decay_after,
        train.decay_factor,
    )


def make_optimizer(train) -> tf.keras.optimizers.Optimizer:
    return tf.keras.optimizers.Adam(learning_rate(train), global_clipnorm=train.clip_norm or None)


def checkpoint_manager(workdir: str, model, optimizer, keep: int = 2):
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    return tf.train.CheckpointManager(checkpoint, os.path.join(workdir, CHECKPOINT_DIR), keep)


def restore_model(workdir: str, model_config):
    """The model of a run directory with its latest weights; raises DatasetError if none."""
    model = build_model(model_config)
    directory = os.path.join(workdir, CHECKPOINT_DIR)
    latest = tf.train.latest_checkpoint(directory)
    if latest is None:
        raise DatasetError(f"{workdir}: no checkpoint in {directory} (has it been trained?).")
    tf.train.Checkpoint(model=model).restore(latest).expect_partial()
    return model, latest


def _validation_images(val) -> list[NamedImage]:
    if val.name == "none":
        return []
    from ml_collections import config_dict

    data = config_dict.ConfigDict(
        {
            "name": val.name,
            "root": val.root,
            "kodak_url": val.kodak_url,
            "index": -1,
            "tfds_name": "",
            "tfds_split": "",
        }
    )
    return list_images(data)[: val.max_images]


def validate(model, images: list[NamedImage], lmbda: float) -> dict:
    """Estimated rate and distortion of whole images (quantised latents, float decoder)."""
    totals = {"bpp": [], "mse": [], "loss": []}
    for item in images:
        image = item.load()
        x = tf.constant(to_float(image))[None]
        out = model(edge_pad_batch(x, model.total_stride), training=False)
        height, width = image.shape[:2]
        x_hat = tf.clip_by_value(out["x_hat"][:, :height, :width], 0.0, 1.0)
        bits = float(tf.add_n([tf.reduce_sum(b) for b in out["bits"].values()]))
        mse = float(tf.reduce_mean(tf.square(tf.round(x_hat * 255.0) - x * 255.0)))
        totals["bpp"].append(bits / (height * width))
        totals["mse"].append(mse)
        totals["loss"].append(bits / (height * width) + lmbda * mse)
    means = {k: float(np.mean(v)) for k, v in totals.items()}
    means["psnr"] = float(
        np.mean([10 * math.log10(255.0**2 / max(m, 1e-10)) for m in totals["mse"]])
    )
    return means


def train(config, workdir: str) -> dict:
    """Trains (or resumes) the model of `config` in `workdir`; returns the summary."""
    from common.crops import training_crops

    t = config.train
    tf.keras.utils.set_random_seed(config.seed)
    dataset = training_crops(config.data, t.batch_size, config.seed)
    val_images = _validation_images(config.val)
    model = build_model(config.model)
    optimizer = make_optimizer(t)
    variables = model.trainable_variables
    optimizer.build(variables)  # slots exist before restoring and before tracing
    manager = checkpoint_manager(workdir, model, optimizer, t.keep_checkpoints)
    if manager.latest_checkpoint:
        manager.checkpoint.restore(manager.latest_checkpoint)
        logging.info(
            "Resumed from %s (step %d).", manager.latest_checkpoint, int(optimizer.iterations)
        )

    @tf.function(jit_compile=bool(t.jit_compile))
    def train_step(x):
        lmbda = schedules.lambda_warmup(
            optimizer.iterations,
            t.num_steps,
            config.model.lmbda,
            t.lambda_warmup_factor,
            t.lambda_warmup_fraction,
            t.lambda_warmup_max,
        )
        with tf.GradientTape() as tape:
            terms = model.rd_terms(x, lmbda, training=True)
        optimizer.apply_gradients(
            zip(tape.gradient(terms["loss"], variables), variables, strict=True)
        )
        terms["lmbda"] = lmbda
        return terms

    writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard", "train"))
    val_writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard", "val"))
    history_path = os.path.join(workdir, "validation.json")
    history = json.load(open(history_path)) if os.path.exists(history_path) else []
    step = int(optimizer.iterations)
    sums, count, chunk_start, step_seconds, losses = {}, 0, time.perf_counter(), [], []
    iterator = iter(dataset)
    while step < t.num_steps:
        try:
            terms = train_step(next(iterator))
        except tf.errors.InvalidArgumentError as e:
            raise TrainingError(
                f"cannot use a training image: {e.message.splitlines()[0]}"
            ) from None
        step += 1
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        count += 1
        if not math.isfinite(float(terms["loss"])):
            raise TrainingError(
                f"the loss is {float(terms['loss'])} at step {step}; the last checkpoint "
                f"({manager.latest_checkpoint}) is intact: lower train.learning_rate and rerun."
            )
        if step % t.log_every == 0 or step == t.num_steps:
            seconds = (time.perf_counter() - chunk_start) / count
            if step > count:  # the first chunk includes tracing: not a speed measurement
                step_seconds.append(seconds)
            means = {k: v / count for k, v in sums.items()}
            losses.append([step, means["loss"]])
            lr = float(learning_rate(t)(step - 1))
            with writer.as_default(step=step):
                for k, v in means.items():
                    tf.summary.scalar(k, v)
                tf.summary.scalar("learning_rate", lr)
                tf.summary.scalar("seconds_per_step", seconds)
            logging.info(
                "step %d/%d: loss %.4f, %.4f bpp, PSNR %.2f dB, lr %.2e, %.3f s/step",
                step,
                t.num_steps,
                means["loss"],
                means["bpp"],
                means["psnr"],
                lr,
                seconds,
            )
            sums, count, chunk_start = {}, 0, time.perf_counter()
        if step % t.checkpoint_every == 0 or step == t.num_steps:
            manager.save(checkpoint_number=step)
        if val_images and (step % t.validate_every == 0 or step == t.num_steps):
            record = {"step": step, **validate(model, val_images, config.model.lmbda)}
            history = [h for h in history if h["step"] != step] + [record]
            atomic_write_json(history_path, history)
            with val_writer.as_default(step=step):
                for k in ("loss", "bpp", "psnr", "mse"):
                    tf.summary.scalar(k, record[k])
            logging.info(
                "validation at step %d: %.4f bpp (estimate), PSNR %.2f dB",
                step,
                record["bpp"],
                record["psnr"],
            )
            chunk_start = time.perf_counter()
        if preemption.requested():
            manager.save(checkpoint_number=step)
            raise preemption.Preempted(f"stopped at step {step}; checkpoint saved, rerun resumes.")
    writer.flush()
    summary = {
        "model": config.model.name,
        "lmbda": config.model.lmbda,
        "steps": step,
        "seconds_per_step": float(np.median(step_seconds)) if step_seconds else None,
        "batch_size": t.batch_size,
        "patch_size": config.data.patch_size,
        "checkpoint": manager.latest_checkpoint,
        "validation": history[-1] if history else None,
        "loss_history": losses,  # [step, mean training loss of the chunk] of this process
        "decoder_macs_per_pixel": decoder_macs_per_pixel(model, 512, 768),
    }
    atomic_write_json(os.path.join(workdir, "train_summary.json"), summary)
    return summary


def decoder_macs_per_pixel(model, height: int, width: int) -> dict:
    """Decoder MACs per pixel (synthesis, hyper-synthesis, total) and FLOPs = 2 x MACs."""
    parts = model.decoder_macs(height, width)
    pixels = height * width
    out = {k: v / pixels for k, v in parts.items()}
    out["total"] = sum(parts.values()) / pixels
    out["flops_total"] = 2 * out["total"]
    out["size"] = [height, width]
    return out
