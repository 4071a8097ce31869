"""Where images come from: a local folder, Kodak (downloaded and verified),
tensorflow-datasets, or scipy's bundled raccoon face for the offline quickstart.

`list_images(data_config)` returns named loaders so that only the selected image
(`data.index`) is decoded.
"""

import dataclasses
import os
import warnings
from collections.abc import Callable

import numpy as np

from common import kodak
from common.errors import DatasetError, ImageError
from common.images import IMAGE_EXTENSIONS, image_files, image_name, read_image

__all__ = ["NamedImage", "list_images", "load_images", "scipy_face"]


@dataclasses.dataclass
class NamedImage:
    name: str
    load: Callable[[], np.ndarray]


def scipy_face() -> np.ndarray:
    """scipy's bundled 768x1024 photo, downsampled by 2 with area averaging: 384x512."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from scipy import misc

        face = misc.face().astype(np.float64)
    h, w = face.shape[0] // 2 * 2, face.shape[1] // 2 * 2
    small = face[:h, :w].reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    return np.clip(np.round(small), 0, 255).astype(np.uint8)


def _file_loader(path: str) -> Callable[[], np.ndarray]:
    return lambda: read_image(path)


def folder_image_paths(root: str) -> list[str]:
    """The image files of a data.root folder (`common.images.image_files`' rule);
    DatasetError for an empty field, a missing folder or a folder without images."""
    if not root:
        raise DatasetError("data.root is empty: pass --config.data.root=DIR (a folder of images).")
    if not os.path.isdir(root):
        raise DatasetError(f"data.root {root!r} is not a folder.")
    try:
        paths = image_files(root)
    except ImageError as e:
        raise DatasetError(str(e)) from None
    if not paths:
        raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {root!r}.")
    return paths


def _folder_images(root: str) -> list[NamedImage]:
    """The images of a folder, named by their path below it."""
    return [NamedImage(image_name(root, p), _file_loader(p)) for p in folder_image_paths(root)]


def _tfds_images(name: str, split: str, data_dir: str) -> list[NamedImage]:
    import tensorflow_datasets as tfds

    try:
        dataset = tfds.load(name, split=split, data_dir=data_dir or None, shuffle_files=False)
        arrays = [np.asarray(ex["image"]) for ex in tfds.as_numpy(dataset)]
    except Exception as e:  # tfds raises many types for missing or undownloadable data.
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatasetError(
            f"cannot load tensorflow-datasets {name}:{split} ({first_line})."
        ) from None
    images = []
    for i, array in enumerate(arrays):
        if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise ImageError(f"{name}:{split}[{i}]: expected uint8 RGB, got {array.shape}.")
        images.append(NamedImage(f"{name}_{split}_{i:04d}", lambda a=array: a))
    return images


def list_images(data, section: str = "data") -> list[NamedImage]:
    """All images of the configured dataset, sorted (not yet decoded). `section` is the
    config section `data` came from, for messages that name its fields."""
    if data.name == "folder":
        return _folder_images(data.root)
    if data.name == "kodak":
        root = data.root or kodak.default_cache_dir()
        paths = kodak.ensure_kodak(
            root, data.kodak_url, field=f"--config.{section}.root", given=bool(data.root)
        )
        return [
            NamedImage(os.path.splitext(os.path.basename(p))[0], _file_loader(p)) for p in paths
        ]
    if data.name == "tfds":
        if not data.tfds_name:
            raise DatasetError("data.name is 'tfds' but data.tfds_name is empty.")
        return _tfds_images(data.tfds_name, data.tfds_split, data.root)
    if data.name == "scipy_face":
        return [NamedImage("scipy_face", scipy_face)]
    raise DatasetError(f"unknown data.name {data.name!r}; use folder, kodak, tfds or scipy_face.")


def load_images(data) -> list[NamedImage]:
    """The images selected by `data.index` (-1: all of them)."""
    images = list_images(data)
    if data.index == -1:
        return images
    if not 0 <= data.index < len(images):
        raise DatasetError(
            f"data.index {data.index} is out of range: the dataset has {len(images)} images."
        )
    return [images[data.index]]
