"""Which device TensorFlow fits and trains on, logged once per process."""

import functools

from absl import logging


@functools.lru_cache(maxsize=1)
def describe() -> str:
    """'GPU (name, ...)' for the GPUs TensorFlow sees, else 'CPU (no GPU visible ...)'."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return (
            "CPU (no GPU visible to TensorFlow; for one, install tensorflow[and-cuda]==2.14.1, "
            "see the README)"
        )
    names = []
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        names.append(details.get("device_name", gpu.name))
    return f"GPU ({', '.join(names)})"


@functools.lru_cache(maxsize=1)
def log_once() -> None:
    logging.info("Running on %s.", describe())
