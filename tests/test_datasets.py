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


def image_folder_of_every_format(root):
    """One small image per supported format, one in a subfolder, and files that are not
    images (a text file, a hidden image, an image in a hidden folder)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    formats = {"a.png": "PNG", "b.JPG": "JPEG", "c.jpeg": "JPEG", "d.bmp": "BMP",
               "e.ppm": "PPM", "f.tif": "TIFF", "g.webp": "WEBP", "sub/h.png": "PNG",
               ".hidden.png": "PNG", ".cache/i.png": "PNG"}  # fmt: skip
    for name, fmt in formats.items():
        path = root / name
        path.parent.mkdir(exist_ok=True)
        array = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(array).save(
            path, format=fmt, **({"lossless": True} if fmt == "WEBP" else {})
        )
    (root / "notes.txt").write_text("not an image")
    return ["a", "b", "c", "d", "e", "f", "g", "sub_h"]


def test_one_rule_for_the_images_of_a_folder(tmp_path):
    """Training, C3 (data.name=folder), eval's originals and bench list the same files
    under the same names: every supported format, recursively, hidden files skipped.
    (bench.classical lists its --images folder with the same `image_files`.)"""
    from common.crops import folder_images
    from common.images import image_files, image_name
    from pipelines.evaluate import _original_folder

    expected = image_folder_of_every_format(tmp_path)
    paths = image_files(str(tmp_path))
    assert [image_name(str(tmp_path), p) for p in paths] == expected
    data = config_dict.ConfigDict({"name": "folder", "root": str(tmp_path), "index": -1})
    images = load_images(data)
    assert [im.name for im in images] == expected
    assert all(im.load().shape == (40, 48, 3) for im in images)
    assert folder_images(str(tmp_path)) == paths
    assert sorted(_original_folder(str(tmp_path))) == sorted(expected)


def test_two_files_with_one_name_are_an_error(tmp_path):
    from PIL import Image

    for name in ("x.png", "x.jpg"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name)
    data = config_dict.ConfigDict({"name": "folder", "root": str(tmp_path), "index": -1})
    with pytest.raises(DatasetError, match="same name 'x'"):
        load_images(data)


def test_training_crops_read_every_format(tmp_path):
    from common.crops import training_crops

    image_folder_of_every_format(tmp_path)
    data = config_dict.ConfigDict(
        {"name": "folder", "root": str(tmp_path), "patch_size": 32, "shuffle_buffer": 1}
    )
    batch = next(iter(training_crops(data, batch_size=8)))
    assert batch.shape == (8, 32, 32, 3) and batch.dtype.name == "float32"
