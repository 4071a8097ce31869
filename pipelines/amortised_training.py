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
import os
import time

import numpy as np
import tensorflow as tf
from absl import logging

from common import device, preemption, schedules
from common.datasets import NamedImage, list_images
from common.errors import DatasetError, TrainingError
from common.files import atomic_write_json
from common.images import to_float
from common.metrics import psnr_from_mse
from models.amortised.hyperprior import edge_pad_batch
from pipelines.registry import register_pipeline
from pipelines.trained_run import CHECKPOINT_DIR, build_model


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


class WeightAverage(tf.Module):
    """An exponential moving average of the trainable weights (Polyak averaging), as
    QRes-VAE and QARV train with, checkpointed with the run.

    decay_t = min(momentum, (1 + t) / (10 + t)) after step t: the average follows the
    weights closely at first (TensorFlow's `num_updates` warm-up) instead of holding on to
    the random initialisation for thousands of steps. The final checkpoint holds the
    average (`finalize`)."""

    def __init__(self, variables, momentum: float):
        super().__init__(name="weight_average")
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"train.ema_momentum must be in (0, 1), not {momentum}.")
        self.momentum = float(momentum)
        # The model's variables are checkpointed with the model: not tracked here again.
        self._self_setattr_tracking = False
        self._targets = list(variables)
        self._self_setattr_tracking = True
        self.averages = [
            tf.Variable(v, trainable=False, name=f"average_{i}")
            for i, v in enumerate(self._targets)
        ]

    def update(self, step) -> None:
        step = tf.cast(step, tf.float32)
        decay = tf.minimum(self.momentum, (1.0 + step) / (10.0 + step))
        for average, variable in zip(self.averages, self._targets, strict=True):
            average.assign(decay * average + (1.0 - decay) * variable)

    def finalize(self) -> None:
        """Writes the average into the model's weights."""
        for average, variable in zip(self.averages, self._targets, strict=True):
            variable.assign(average)


def weight_average(model, train) -> WeightAverage | None:
    """The moving average of `train.ema_momentum` (None when 0 or absent)."""
    momentum = float(train.get("ema_momentum", 0.0))
    return WeightAverage(model.trainable_variables, momentum) if momentum > 0 else None


def checkpoint_manager(workdir: str, model, optimizer, keep: int = 2, average=None):
    """Checkpoints of weights, optimizer moments, step (and the weight average, if any)
    in RUN/checkpoints."""
    extra = {"average": average} if average is not None else {}
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, **extra)
    return tf.train.CheckpointManager(checkpoint, os.path.join(workdir, CHECKPOINT_DIR), keep)


def _validation_images(val) -> list[NamedImage]:
    """The validation images of `config.val`; none (with a warning) if they cannot be had,
    since a missing validation set should not stop training."""
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
    try:
        return list_images(data, section="val")[: val.max_images]
    except DatasetError as e:
        logging.warning(
            "Training without validation: %s (or pass --config.val.name=none to silence this).",
            e,
        )
        return []


def validate(model, images: list[NamedImage], lmbda: float, rate_input=None) -> dict:
    """Estimated rate and distortion of whole images (quantised latents, float decoder).
    `rate_input`: the lambda that a variable-rate model codes at (its own if None)."""
    totals = {"bpp": [], "mse": [], "loss": []}
    kwargs = {} if rate_input is None else {"lmbda": rate_input}
    for item in images:
        image = item.load()
        x = tf.constant(to_float(image))[None]
        out = model(edge_pad_batch(x, model.total_stride), training=False, **kwargs)
        height, width = image.shape[:2]
        x_hat = tf.clip_by_value(out["x_hat"][:, :height, :width], 0.0, 1.0)
        bits = float(tf.add_n([tf.reduce_sum(b) for b in out["bits"].values()]))
        mse = float(tf.reduce_mean(tf.square(tf.round(x_hat * 255.0) - x * 255.0)))
        totals["bpp"].append(bits / (height * width))
        totals["mse"].append(mse)
        totals["loss"].append(bits / (height * width) + lmbda * mse)
    means = {k: float(np.mean(v)) for k, v in totals.items()}
    means["psnr"] = float(np.mean([psnr_from_mse(m) for m in totals["mse"]]))
    return means


def make_train_step(model, optimizer, config, average=None):
    """One compiled step: the model's loss (bpp + lambda * MSE for the amortised codecs)
    with the lambda warm-up, then Adam, then the weight average's update (if any)."""
    t = config.train
    variables = model.trainable_variables

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
        if average is not None:
            average.update(optimizer.iterations)
        terms["lmbda"] = lmbda
        return terms

    return train_step


class TrainingLog:
    """Means of the step terms over each `log_every` chunk: log lines and TensorBoard."""

    def __init__(self, workdir: str, train):
        self._train = train
        self._writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard", "train"))
        self._sums, self._count = {}, 0
        self._chunk_start = time.perf_counter()
        self.step_seconds = []  # per chunk after the first (which includes tracing)
        self.losses = []  # [step, mean training loss of the chunk] of this process

    def add(self, terms: dict) -> None:
        for k, v in terms.items():
            self._sums[k] = self._sums.get(k, 0.0) + float(v)
        self._count += 1

    def restart_clock(self) -> None:
        """Validation time is not training time."""
        self._chunk_start = time.perf_counter()

    def write(self, step: int) -> None:
        seconds = (time.perf_counter() - self._chunk_start) / self._count
        if step > self._count:  # the first chunk includes tracing: not a speed measurement
            self.step_seconds.append(seconds)
        means = {k: v / self._count for k, v in self._sums.items()}
        self.losses.append([step, means["loss"]])
        lr = float(learning_rate(self._train)(step - 1))
        with self._writer.as_default(step=step):
            for k, v in means.items():
                tf.summary.scalar(k, v)
            tf.summary.scalar("learning_rate", lr)
            tf.summary.scalar("seconds_per_step", seconds)
        logging.info(
            "step %d/%d: loss %.4f, %.4f bpp, PSNR %.2f dB, lr %.2e, %.3f s/step",
            step,
            self._train.num_steps,
            means["loss"],
            means["bpp"],
            means["psnr"],
            lr,
            seconds,
        )
        self._sums, self._count = {}, 0
        self.restart_clock()

    def flush(self) -> None:
        self._writer.flush()


class ValidationHistory:
    """validation.json (one record per validated step, kept across resumes) and the
    validation scalars in TensorBoard. Subclasses measure other models (`measure`) and
    may log more of a record (`summary_scalars`)."""

    scalars = ("loss", "bpp", "psnr", "mse")

    def __init__(self, workdir: str, images: list, lmbda: float = 0.0):
        self._images, self._lmbda = images, lmbda
        self._path = os.path.join(workdir, "validation.json")
        self._writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard", "val"))
        self.records = []
        if os.path.exists(self._path):
            with open(self._path) as f:
                self.records = json.load(f)

    def __bool__(self) -> bool:
        return bool(self._images)

    def measure(self, model) -> dict:
        return validate(model, self._images, self._lmbda)

    def describe(self, record: dict) -> str:
        return f"{record['bpp']:.4f} bpp (estimate), PSNR {record['psnr']:.2f} dB"

    def summary_scalars(self, record: dict) -> dict:
        """{TensorBoard name: value} of a record."""
        return {k: record[k] for k in self.scalars}

    def run(self, model, step: int) -> None:
        record = {"step": step, **self.measure(model)}
        self.records = [h for h in self.records if h["step"] != step] + [record]
        atomic_write_json(self._path, self.records)
        with self._writer.as_default(step=step):
            for k, v in self.summary_scalars(record).items():
                tf.summary.scalar(k, v)
        logging.info("validation at step %d: %s", step, self.describe(record))


def _restore(manager, optimizer) -> None:
    if manager.latest_checkpoint:
        manager.checkpoint.restore(manager.latest_checkpoint)
        logging.info(
            "Resumed from %s (step %d).", manager.latest_checkpoint, int(optimizer.iterations)
        )


def _checked_step(train_step, batch, step: int, manager) -> dict:
    """One training step; a bad image or a NaN loss is a TrainingError."""
    try:
        terms = train_step(batch)
    except tf.errors.InvalidArgumentError as e:
        raise TrainingError(f"cannot use a training image: {e.message.splitlines()[0]}") from None
    loss = float(terms["loss"])
    if not np.isfinite(loss):
        raise TrainingError(
            f"the loss is {loss} at step {step}; the last checkpoint "
            f"({manager.latest_checkpoint}) is intact: lower train.learning_rate and rerun."
        )
    return terms


def run_steps(train_step, iterator, model, optimizer, manager, log, validation, t) -> int:
    """The loop from the restored step to `t.num_steps`: each step checked
    (`_checked_step`), logged every `log_every`, checkpointed every `checkpoint_every` and
    on SIGTERM (then `Preempted`), validated every `validate_every` (`validation.run(model,
    step)`, when there is a validation set). Returns the last step."""
    step = int(optimizer.iterations)
    while step < t.num_steps:
        log.add(_checked_step(train_step, next(iterator), step + 1, manager))
        step += 1
        last = step == t.num_steps
        if step % t.log_every == 0 or last:
            log.write(step)
        if step % t.checkpoint_every == 0 or last:
            manager.save(checkpoint_number=step)
        if validation and (step % t.validate_every == 0 or last):
            validation.run(model, step)
            log.restart_clock()
        if preemption.requested():
            manager.save(checkpoint_number=step)
            log.flush()
            raise preemption.Preempted(f"stopped at step {step}; checkpoint saved, rerun resumes.")
    log.flush()
    return step


@register_pipeline("amortised")
def train(config, workdir: str, validation_history=ValidationHistory) -> dict:
    """Trains (or resumes) the model of `config` in `workdir`; returns the summary.
    `validation_history` measures the validation images (a `ValidationHistory` class)."""
    from common.crops import training_crops

    t = config.train
    device.log_once()
    tf.keras.utils.set_random_seed(config.seed)
    dataset = training_crops(config.data, t.batch_size, config.seed)
    validation = validation_history(workdir, _validation_images(config.val), config.model.lmbda)
    model = build_model(config.model)
    optimizer = make_optimizer(t)
    optimizer.build(model.trainable_variables)  # slots exist before restoring and tracing
    average = weight_average(model, t)
    manager = checkpoint_manager(workdir, model, optimizer, t.keep_checkpoints, average)
    _restore(manager, optimizer)
    train_step = make_train_step(model, optimizer, config, average)
    log = TrainingLog(workdir, t)
    step = run_steps(train_step, iter(dataset), model, optimizer, manager, log, validation, t)
    if average is not None and step == t.num_steps:
        # The last checkpoint holds the average (saved again at this step: a rerun
        # resumes from it and writes the same average again).
        average.finalize()
        manager.save(checkpoint_number=step)
        logging.info("The checkpoint of step %d holds the moving average of the weights.", step)
        if validation:
            validation.run(model, step)
    summary = {
        "model": config.model.name,
        "lmbda": config.model.lmbda,
        "steps": step,
        "seconds_per_step": float(np.median(log.step_seconds)) if log.step_seconds else None,
        "batch_size": t.batch_size,
        "patch_size": config.data.patch_size,
        "checkpoint": manager.latest_checkpoint,
        "validation": validation.records[-1] if validation.records else None,
        "loss_history": log.losses,
        "decoder_macs_per_pixel": decoder_macs_per_pixel(model, 512, 768),
    }
    atomic_write_json(os.path.join(workdir, "train_summary.json"), summary)
    logging.info("Trained %d steps (%s s/step).", step, summary["seconds_per_step"])
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
