"""Training data for the amortised codecs: batches of random crops, as a tf.data pipeline.

Sources: a local folder of images (the project's one rule, `common.images.image_files`:
PNG, JPEG, BMP, PPM, TIFF, WebP, searched recursively), or a tensorflow-datasets dataset
with an `image` feature (e.g. `clic`, CLIC 2020). Images smaller than the crop are
skipped. Every file of a folder is opened once up front (header only), so a missing,
empty or unreadable folder or file is reported before training starts, by name. Files
are decoded by `common.images.read_image` (Pillow), as everywhere else: the same formats
and the same policy (grayscale to RGB; transparency and 16 bits refused, naming the file).
"""

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image, UnidentifiedImageError

from common.datasets import folder_image_paths
from common.errors import DatasetError
from common.images import read_image


def folder_images(root: str, min_size: int = 1) -> list[str]:
    """Image files under `root` (the one rule, sorted) at least min_size x min_size."""
    paths = folder_image_paths(root)
    usable, small = [], 0
    for path in paths:
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (OSError, UnidentifiedImageError) as e:
            raise DatasetError(f"{path}: cannot be read as an image ({e}).") from None
        if min(width, height) >= min_size:
            usable.append(path)
        else:
            small += 1
    if small:
        logging.warning(
            "%d of %d images under %s are smaller than %dx%d: skipped.",
            small,
            len(paths),
            root,
            min_size,
            min_size,
        )
    if not usable:
        raise DatasetError(f"no image under {root!r} is at least {min_size}x{min_size} pixels.")
    return usable


def _read(path: bytes) -> np.ndarray:
    return read_image(path.decode())


def _decode(path):
    image = tf.numpy_function(_read, [path], tf.uint8, stateful=False)
    return tf.ensure_shape(image, [None, None, 3])


def _source(data) -> tf.data.Dataset:
    """Decoded uint8 images, repeated and shuffled."""
    if data.name == "folder":
        paths = folder_images(data.root, data.patch_size)
        dataset = tf.data.Dataset.from_tensor_slices(paths)
        dataset = dataset.shuffle(len(paths), reshuffle_each_iteration=True).repeat()
        return dataset.map(_decode, num_parallel_calls=tf.data.AUTOTUNE)
    if data.name == "tfds":
        import tensorflow_datasets as tfds

        try:
            dataset = tfds.load(
                data.tfds_name,
                split=data.tfds_split,
                data_dir=data.root or None,
                shuffle_files=True,
            )
        except Exception as e:  # tfds raises many types for missing or undownloadable data.
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DatasetError(
                f"cannot load tensorflow-datasets {data.tfds_name}:{data.tfds_split} ({first})."
            ) from None
        return dataset.map(lambda ex: ex["image"]).repeat()
    raise DatasetError(f"unknown data.name {data.name!r} for training; use folder or tfds.")


def training_crops(data, batch_size: int, seed: int = 0) -> tf.data.Dataset:
    """Batches (B, P, P, 3) of float32 crops in [0, 1], P = data.patch_size."""
    size = int(data.patch_size)
    if size < 1 or batch_size < 1:
        raise DatasetError("data.patch_size and train.batch_size must be positive.")
    tf.random.set_seed(seed)
    dataset = _source(data)
    dataset = dataset.filter(lambda im: tf.reduce_min(tf.shape(im)[:2]) >= size)
    dataset = dataset.map(
        lambda im: tf.cast(tf.image.random_crop(im, [size, size, 3]), tf.float32) / 255.0,
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if data.shuffle_buffer > 1:
        dataset = dataset.shuffle(int(data.shuffle_buffer))
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
