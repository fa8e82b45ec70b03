"""Train a PixelCNN or Gated PixelCNN on images.

    python -m training pixelcnn --preset demo --out runs/pixelcnn-demo [--key=value ...]

The loop is training/image_loop.py's; here are the presets and what every autoregressive
pixel model's run shares (PixelRNN's too, training/pixelrnn.py): the final metrics (held-out
NLL in nats and bits per dimension), the pictures (samples, completions, learning curves)
and the command's report.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf

from training import image_loop, plots
from training.data import ImageData
from training.image_loop import ImageRunOptions
from zoo.pixelcnn import PixelCNN, PixelCNNConfig, PixelModel


@dataclasses.dataclass(frozen=True)
class PixelRunOptions(ImageRunOptions):
    """What a pixel model's run adds to the shared run options; a family's TrainConfig adds its `model`."""

    completions: int = 3
    """Samples per held-out image in completions.png (top half given, bottom half drawn)."""

    def __post_init__(self):
        super().__post_init__()
        if self.completions < 1:
            raise ValueError(f"completions must be at least 1, got {self.completions}")
        if self.binarize != (self.model.output == "bernoulli"):
            raise ValueError("binarize=true goes with output=bernoulli, binarize=false with output=categorical")


@dataclasses.dataclass(frozen=True)
class TrainConfig(PixelRunOptions):
    """A PixelCNN training run: the shared run options and the model's fields (nested)."""

    model: PixelCNNConfig = dataclasses.field(default_factory=PixelCNNConfig)
    """Architecture and outputs (its fields are options too: --architecture=pixelcnn, --filters=32, ...)."""


# Presets: with no overrides, each reproduces the figures docs/pixelcnn.md quotes beside its command.


def smoke() -> TrainConfig:
    """For tests: a small gated model, 1 epoch on binarized MNIST digits."""
    return TrainConfig(model=PixelCNNConfig(filters=16, layers=3), epochs=1, batch_size=64)


def demo() -> TrainConfig:
    """A gated model on binarized MNIST digits."""
    return TrainConfig(model=PixelCNNConfig(filters=32, layers=5), epochs=10, batch_size=64)


def mnist() -> TrainConfig:
    """A wider gated model on binarized MNIST digits."""
    return TrainConfig(model=PixelCNNConfig(filters=64, layers=6), epochs=10, batch_size=64)


def grey() -> TrainConfig:
    """8-bit grey levels: sklearn's 8x8 digits, a 256-way categorical per pixel."""
    return TrainConfig(model=PixelCNNConfig(filters=32, layers=5, first_kernel=5, output="categorical"),
                       data="digits", binarize=False, epochs=60, batch_size=64)


PRESETS = {"smoke": smoke, "demo": demo, "mnist": mnist, "grey": grey}


def train(config: TrainConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Train (or resume) a PixelCNN into the run directory `out`; return the final metrics (also in metrics.json)."""
    return image_loop.train(config, out, FAMILY, progress=progress)


def final_metrics(model: PixelModel, config: PixelRunOptions, data: ImageData, test_images: np.ndarray,
                  history: list[dict]) -> dict:
    """Held-out NLL in nats per image and bits per dimension (exact: no bound)."""
    last = history[-1]
    return {"test_nll": last["test_loss"], "test_bits_per_dim": last["test_bits_per_dim"]}


def draw_pictures(model: PixelModel, config: PixelRunOptions, data: ImageData, test_images: np.ndarray,
                  history: list[dict], run_dir: Path) -> None:
    """samples.png, completions.png and learning_curves.png in the run directory.

    Both pictures come from one trace of the fast sampler, for any batch (tracing its loop takes as
    long as the drawing in a short run): a sample is the completion of a blank image from row 0.
    """
    conditional = config.model.conditional
    shape = config.model.image_shape
    complete = tf.function(model.complete_fast).get_concrete_function(
        tf.TensorSpec([None, *shape], tf.float32), tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int64),
        *([tf.TensorSpec([None], tf.int64)] if conditional else []))

    def draw(images: np.ndarray, known_rows: int, labels: np.ndarray) -> np.ndarray:
        """Each image completed below its first `known_rows` rows, row i from seed i."""
        count = len(images)
        return complete(tf.constant(images, tf.float32), tf.fill([count], known_rows), tf.range(count, dtype=tf.int64),
                        *([tf.constant(labels, tf.int64)] if conditional else [])).numpy()

    samples = draw(np.zeros((32, *shape)), 0, np.arange(32) % data.num_classes)
    plots.image_grid(samples, run_dir / "samples.png",
                     f"{config.model.title}: samples" + (" (labels 0.. in turn)" if conditional else ""))

    # completions: each row is the original, the given top half, then `completions` draws
    height = shape[0]
    count, draws = 8, config.completions
    originals = test_images[:count].astype(np.float32)
    given = originals.copy()
    given[:, height // 2:] = 0.5
    completed = draw(np.repeat(originals, draws, axis=0), height // 2, np.repeat(data.test_labels[:count], draws))
    rows = np.concatenate([originals[:, None], given[:, None], completed.reshape(count, draws, *shape)], axis=1)
    plots.image_grid(rows.reshape(-1, *shape), run_dir / "completions.png",
                     "original | top half given | completions", columns=2 + draws)
    plots.learning_curves(history, ["train_loss", "test_loss"], run_dir / "learning_curves.png",
                          "-log p(x) (nats per image)")


FAMILY = image_loop.ImageFamily("pixelcnn", PixelCNN, final_metrics, draw_pictures)


def report(metrics: dict, run_dir: Path) -> int:
    """Print a pixel model run's figures and where its files are; exit status 0."""
    for key in ("test_nll", "test_bits_per_dim", "images_per_second_median", "train_seconds"):
        if metrics.get(key) is not None:  # a run finished before train_seconds was kept has none
            print(f"{key}: {metrics[key]:.3f}")
    print(f"(held-out, {metrics['data']})")
    print(f"run directory: {run_dir} (checkpoints/, tensorboard/, metrics.json, samples.png, completions.png, "
          f"learning_curves.png)")
    return 0


def main(argv: list[str] | None = None) -> int:
    return report(*image_loop.command(argv, FAMILY, PRESETS, __doc__.split("\n")[0]))
