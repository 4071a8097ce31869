import numpy as np
import pytest
from ml_collections import config_dict

from common.datasets import load_images, scipy_face
from common.errors import DatasetError


def _data(**kwargs):
    base = dict(
        name="folder",
        root="",
        index=-1,
        tfds_name="",
        tfds_split="test",
        kodak_url="http://127.0.0.1:9",
        num_images=0,
    )
    base.update(kwargs)
    return config_dict.ConfigDict(base)


def test_scipy_face_is_area_downsampled_to_384x512():
    face = scipy_face()
    assert face.shape == (384, 512, 3) and face.dtype == np.uint8


def test_tfds_images_are_listed_and_selected():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=3):
        images = load_images(_data(name="tfds", tfds_name="clic", tfds_split="validation"))
        assert [im.name for im in images] == [f"clic_validation_{i:04d}" for i in range(3)]
        array = images[1].load()
        assert array.ndim == 3 and array.shape[-1] == 3 and array.dtype == np.uint8
        one = load_images(_data(name="tfds", tfds_name="clic", tfds_split="validation", index=2))
        assert len(one) == 1


def test_unknown_tfds_dataset_and_index_out_of_range(tmp_path):
    with pytest.raises(DatasetError, match="tensorflow-datasets"):
        load_images(_data(name="tfds", tfds_name="no_such_dataset_xyz", root=str(tmp_path)))
    with pytest.raises(DatasetError, match="out of range"):
        load_images(_data(name="scipy_face", index=3))
    with pytest.raises(DatasetError, match="unknown data.name"):
        load_images(_data(name="imagenet"))
