"""Train a PixelRNN (Row LSTM or Diagonal BiLSTM) on images.

    python -m training pixelrnn --preset demo [--layer=row] --out runs/pixelrnn-demo [--key=value ...]

A PixelRNN is scored, sampled and pictured as a PixelCNN is (the same likelihood, another
network), so the run is the PixelCNN's (training/pixelcnn.py: metrics, pictures, report, on
training/image_loop.py's loop); here are its config and presets. Every preset is a Diagonal
BiLSTM; `--layer=row` swaps in the Row LSTM.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from training import image_loop
from training.pixelcnn import PixelRunOptions, draw_pictures, final_metrics, report
from zoo.pixelrnn import PixelRNN, PixelRNNConfig


@dataclasses.dataclass(frozen=True)
class TrainConfig(PixelRunOptions):
    """A PixelRNN training run: the shared run options and the model's fields (nested)."""

    model: PixelRNNConfig = dataclasses.field(default_factory=PixelRNNConfig)
    """Architecture and outputs (its fields are options too: --layer=row, --recurrent_layers=7, ...)."""


# Presets: with no overrides, each reproduces the figures docs/pixelrnn.md quotes beside its command.


def smoke() -> TrainConfig:
    """For tests: one Diagonal BiLSTM layer of 16 units, 2 epochs on the binarized 8x8 digits (seconds)."""
    return TrainConfig(model=PixelRNNConfig(recurrent_layers=1, hidden_units=16, first_kernel=5, output_units=16),
                       data="digits", epochs=2, batch_size=64)


def demo() -> TrainConfig:
    """Two Diagonal BiLSTM layers of 16 units on binarized MNIST digits: about the Gated PixelCNN demo's
    training time (the layer runs at 0.9x its speed, so 9 epochs to its 10)."""
    return TrainConfig(model=PixelRNNConfig(recurrent_layers=2, hidden_units=16), epochs=9, batch_size=64)


def mnist() -> TrainConfig:
    """The paper's binarized-MNIST size, 7 layers of 16 units (van den Oord et al., 2016, table 4: 79.20 nats
    on the full binarized MNIST), for 10 epochs of the shipped digits."""
    return TrainConfig(model=PixelRNNConfig(recurrent_layers=7, hidden_units=16), epochs=10, batch_size=64)


def grey() -> TrainConfig:
    """8-bit grey levels: sklearn's 8x8 digits, 3 Diagonal BiLSTM layers of 16 units, a 256-way softmax per pixel."""
    return TrainConfig(model=PixelRNNConfig(recurrent_layers=3, hidden_units=16, first_kernel=5,
                                            output="categorical"),
                       data="digits", binarize=False, epochs=60, batch_size=64)


PRESETS = {"smoke": smoke, "demo": demo, "mnist": mnist, "grey": grey}

FAMILY = image_loop.ImageFamily("pixelrnn", PixelRNN, final_metrics, draw_pictures)


def train(config: TrainConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Train (or resume) a PixelRNN into the run directory `out`; return the final metrics (also in metrics.json)."""
    return image_loop.train(config, out, FAMILY, progress=progress)


def main(argv: list[str] | None = None) -> int:
    return report(*image_loop.command(argv, FAMILY, PRESETS, __doc__.split("\n")[0]))
