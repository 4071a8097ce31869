"""Learning-rate and annealing schedules, evaluated in-graph from a step tensor."""

import math

import tensorflow as tf


def cosine_decay(step, total_steps: int, init_value: float, final_value: float = 0.0):
    """Cosine decay from init_value (step 0) to final_value (step total_steps and after)."""
    t = tf.minimum(tf.cast(step, tf.float32) / float(max(total_steps, 1)), 1.0)
    return final_value + (init_value - final_value) * 0.5 * (1.0 + tf.cos(math.pi * t))


def linear(step, total_steps: int, start: float, end: float):
    """Linear interpolation from start (step 0) to end (step total_steps and after)."""
    t = tf.minimum(tf.cast(step, tf.float32) / float(max(total_steps, 1)), 1.0)
    return start + (end - start) * t


def warmup_step_decay(
    step,
    total_steps: int,
    base: float,
    warmup_fraction: float,
    decay_after: float,
    decay_factor: float,
):
    """Linear warm-up over the first `warmup_fraction` of steps, then `base`, then
    `base * decay_factor` from `decay_after * total_steps` on (shallow-ntc's schedule)."""
    step = tf.cast(step, tf.float32)
    warmup = max(float(warmup_fraction) * total_steps, 1.0)
    ramp = tf.minimum((step + 1.0) / warmup, 1.0)
    drop = tf.where(step >= float(decay_after) * total_steps, float(decay_factor), 1.0)
    return base * ramp * drop


def lambda_warmup(
    step, total_steps: int, lmbda: float, factor: float, fraction: float, max_lambda: float
):
    """lambda x factor for the first `fraction` of steps when lambda <= max_lambda: a
    larger distortion weight early keeps low-rate models from collapsing (shallow-ntc)."""
    if lmbda > max_lambda:
        return tf.constant(float(lmbda))
    early = tf.cast(step, tf.float32) < float(fraction) * total_steps
    return tf.where(early, float(lmbda) * float(factor), float(lmbda))


class WarmupStepDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    """`warmup_step_decay` as a Keras learning-rate schedule (evaluated at the optimizer's step)."""

    def __init__(
        self,
        total_steps: int,
        base: float,
        warmup_fraction: float,
        decay_after: float,
        decay_factor: float,
    ):
        self.args = (
            int(total_steps),
            float(base),
            float(warmup_fraction),
            float(decay_after),
            float(decay_factor),
        )

    def __call__(self, step):
        return warmup_step_decay(step, *self.args)

    def get_config(self):
        keys = ("total_steps", "base", "warmup_fraction", "decay_after", "decay_factor")
        return dict(zip(keys, self.args, strict=True))
