"""Train a VAE, autoencoder or denoising autoencoder on images.

    python -m training vae --preset demo --out runs/vae-demo [--key=value ...]
    python -m training vae --preset smoke --gradient_estimator=score_function --estimator_samples=4 --out runs/sf
    python -m training vae --preset grey --out runs/vae-grey      # Gaussian decoder, NLL in nats and bits/dim

The loop is training/image_loop.py's; here are the VAE's config, presets, final metrics (the
importance-weighted NLL bound) and pictures (samples, reconstructions, latent space).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from training import image_loop, plots
from training.data import ImageData
from training.image_loop import DERIVED, ImageRunOptions, make_train_step  # noqa: F401  (re-exported for tests and benchmarks)
from zoo.vae import VAE, VAEConfig, bits_per_dim


@dataclasses.dataclass(frozen=True)
class TrainConfig(ImageRunOptions):
    """A VAE training run: the shared run options, the model's fields (nested) and the NLL bound."""

    model: VAEConfig = dataclasses.field(default_factory=VAEConfig)
    """Architecture and objective (its fields are options too: --latent_dim=2, --beta=4, ...)."""
    iw_samples: int = 100
    """k of the importance-weighted NLL bound computed on the held-out images at the end."""

    def __post_init__(self):
        super().__post_init__()
        if self.iw_samples < 1:
            raise ValueError(f"iw_samples must be at least 1, got {self.iw_samples}")
        if self.binarize and self.model.likelihood == "gaussian":
            raise ValueError("likelihood=gaussian models grey levels: set binarize=false")


# Presets: with no overrides, each reproduces the figures docs/vae.md quotes beside its command.


def smoke() -> TrainConfig:
    """For tests: a small MLP VAE, 2 epochs."""
    return TrainConfig(model=VAEConfig(architecture="mlp", latent_dim=2, hidden_units=(64,)),
                       epochs=2, batch_size=100, iw_samples=8)


def demo() -> TrainConfig:
    """keras.io's conv VAE layout (encoder dense 64 where keras.io has 16) with a 2-D latent,
    so the latent map shows."""
    return TrainConfig(model=VAEConfig(architecture="conv", latent_dim=2, hidden_units=(64,)),
                       epochs=30, batch_size=128, iw_samples=100)


def mnist() -> TrainConfig:
    """The best held-out NLL found on the shipped digits within 15 minutes of training; past 100
    epochs the held-out loss stops falling."""
    return TrainConfig(model=VAEConfig(architecture="conv", latent_dim=16, hidden_units=(256,)),
                       epochs=100, batch_size=64, iw_samples=1000)


def grey() -> TrainConfig:
    """Grey levels with the Gaussian decoder on scikit-learn's 8x8 digits, the images of PixelCNN's
    `grey` preset, so that the two NLLs (nats, bits/dim of the 8-bit values) compare. On its 1,437
    training digits the encoder overfits before the decoder: the held-out -ELBO is lowest near
    epoch 75 (246) and 273 at 200, while the importance-weighted NLL bound keeps falling (230.9
    after 60 epochs, 220.8 after 200)."""
    return TrainConfig(model=VAEConfig(architecture="mlp", latent_dim=8, hidden_units=(256,), likelihood="gaussian"),
                       data="digits", binarize=False, epochs=200, batch_size=64, iw_samples=1000)


PRESETS = {"smoke": smoke, "demo": demo, "mnist": mnist, "grey": grey}


def train(config: TrainConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Train (or resume) a VAE into the run directory `out`; return the final metrics (also in metrics.json)."""
    return image_loop.train(config, out, FAMILY, progress=progress)


def final_metrics(model: VAE, config: TrainConfig, data: ImageData, test_images: np.ndarray,
                  history: list[dict]) -> dict:
    """For a VAE, the importance-weighted NLL bound on the held-out images."""
    metrics = {}
    if config.model.kind == "vae":
        bounds = iw_nll(model, test_images, data.test_labels, config.iw_samples, config.seed)
        metrics["test_iw_nll"] = float(np.mean(bounds, dtype=np.float64))
        metrics["iw_samples"] = config.iw_samples
        metrics["test_bits_per_dim"] = bits_per_dim(-metrics["test_iw_nll"], math.prod(config.model.image_shape))
        metrics["likelihood"] = config.model.likelihood
        metrics["test_negative_elbo"] = -history[-1]["test_elbo"]
    return metrics


def iw_nll(model: VAE, images: np.ndarray, labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The importance-weighted bound on -log p(x) with k samples, per image [n] (an upper bound on the NLL),
    its draws seeded by the run's `seed` and each batch's first row, so the same images get the same figure."""
    rows = max(1, 8192 // k)  # keep k * rows decoder inputs per call

    @tf.function(reduce_retracing=True)
    def bound(images, labels, seed):
        return model.importance_weighted_log_likelihood(images, labels if model.config.conditional else None, k,
                                                        seed)

    return -np.concatenate([bound(images[start:start + rows], labels[start:start + rows],
                                  tf.constant([seed + 11, start], tf.int64)).numpy()
                            for start in range(0, len(images), rows)])


def draw_pictures(model: VAE, config: TrainConfig, data: ImageData, test_images: np.ndarray,
                  history: list[dict], run_dir: Path) -> None:
    """samples.png, reconstructions.png, latent.png, learning_curves.png in the run directory."""
    conditional = config.model.conditional
    labels = np.arange(64) % data.num_classes if conditional else None
    title = f"{config.model.kind} samples" + (" (row-wise labels 0..)" if conditional else "")
    plots.image_grid(model.sample(tf.range(64, dtype=tf.int64), labels).numpy(), run_dir / "samples.png", title)
    originals, originals_labels = test_images[:32], data.test_labels[:32]
    reconstructed = model.decode(model.encode(originals, originals_labels if conditional else None)[0],
                                 originals_labels if conditional else None).numpy()
    plots.reconstructions(originals, reconstructed, run_dir / "reconstructions.png",
                          "held-out originals | reconstructions")
    if config.model.latent_dim == 2 and not conditional:
        plots.latent_map(lambda z: model.decode(z).numpy(), run_dir / "latent.png",
                         "decoded 2-D latent grid (Gaussian quantiles)")
    else:
        means = np.concatenate([model.encode(test_images[i:i + 500],
                                             data.test_labels[i:i + 500] if conditional else None)[0].numpy()
                                for i in range(0, len(test_images), 500)])
        plots.latent_scatter(means, data.test_labels, run_dir / "latent.png", "held-out posterior means")
    plots.learning_curves(history, ["train_loss", "test_loss"], run_dir / "learning_curves.png",
                          "loss (nats per image)")


FAMILY = image_loop.ImageFamily("vae", VAE, final_metrics, draw_pictures)


def main(argv: list[str] | None = None) -> int:
    metrics, run_dir = image_loop.command(argv, FAMILY, PRESETS, __doc__.split("\n")[0])
    keys = ("test_negative_elbo", "test_iw_nll", "test_bits_per_dim", "test_rate", "test_distortion",
            "images_per_second_median")
    print("\n".join(f"{key}: {metrics[key]:.2f}" for key in keys if metrics.get(key) is not None))
    if "test_iw_nll" in metrics:
        grey = " of the 8-bit values (dequantized)" if metrics.get("likelihood") == "gaussian" else ""
        print(f"(NLL bound{grey} with k={metrics['iw_samples']}, nats per image and bits/dim, {metrics['data']})")
    print(f"run directory: {run_dir} (checkpoints/, tensorboard/, metrics.json, samples.png, "
          f"reconstructions.png, latent.png, learning_curves.png)")
    return 0
