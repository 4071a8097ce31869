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
