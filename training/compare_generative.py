"""The lectures' comparison of generative models: a VAE, the Gated PixelCNN and both PixelRNNs on
the same held-out digits, in one table and one picture.

    python -m training compare_generative --out runs/generative     # the default --runs (docs/pixelrnn.md trains them)
    python -m training compare_generative --runs=RUN,RUN,... --out OUT

Every run is scored again here on the same held-out images (the split and the one fixed
binarization follow from the runs' data, binarize and seed, which must agree): the
autoregressive models' exact -log p(x), the VAE's importance-weighted bound (an upper bound
on -log p(x), marked as such), in nats per image and bits per dimension, beside each run's
training time and the seconds each model takes to draw an image. OUT gets comparison.png
(samples, and completions of held-out digits from their top half; the VAE, which cannot
complete, shows its reconstructions of the whole digits) and metrics.json (the table).
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from rundir import Run, UserError  # noqa: E402
from training import plots  # noqa: E402
from training.config import check_at_least_one, run_command  # noqa: E402
from training.data import load_images  # noqa: E402
from training.image_loop import held_out_images, load_finished  # noqa: E402
from training.vae import iw_nll  # noqa: E402
from zoo.pixelcnn import PixelModel  # noqa: E402
from zoo.vae import bits_per_dim  # noqa: E402

FAMILIES = ("vae", "pixelcnn", "pixelrnn")
SPLIT = ("data", "binarize", "seed")  # the run options that decide the held-out images


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """The runs to compare and how to score and picture them."""

    runs: tuple[str, ...] = ("runs/vae-demo", "runs/pixelcnn-demo", "runs/pixelrnn-row-demo", "runs/pixelrnn-row-mnist",
                             "runs/pixelrnn-demo")
    """Finished image-model run directories (vae, pixelcnn, pixelrnn) with the same data, binarize and seed."""
    iw_samples: int = 100
    """k of a VAE's importance-weighted bound (the demo VAE's own)."""
    samples: int = 8
    """Samples per model in the picture (seeds 0, 1, ...); the sampling time is taken on them."""
    completions: int = 4
    """Held-out digits per model completed from their top half in the picture."""

    def __post_init__(self):
        if not self.runs:
            raise ValueError("runs must name at least one run directory")
        check_at_least_one(self, "iw_samples", "samples", "completions")


PRESETS = {"demo": CompareConfig}


def load(run_dir: Path) -> tuple[keras.Model, Run]:
    """The trained model of a finished run of a compared family, and the run; a UserError names what is wrong."""
    model, info = load_finished(run_dir)
    run = info["run"]
    if run.family not in FAMILIES:
        raise UserError(f"{run_dir} holds a {run.family} run; the comparison takes {', '.join(FAMILIES)} runs")
    if run.family == "vae" and model.config.kind != "vae":
        raise UserError(f"{run_dir} holds a {model.config.kind} (no likelihood to score); the comparison takes VAEs")
    return model, run


def score(model: keras.Model, images: np.ndarray, labels: np.ndarray, iw_samples: int, seed: int) -> np.ndarray:
    """-log p(x) per image in nats: exact for a pixel model, the importance-weighted upper bound for a VAE."""
    if not isinstance(model, PixelModel):
        return iw_nll(model, images, labels, iw_samples, seed)
    log_prob = tf.function(lambda x, y: model.log_prob(x, y if model.config.conditional else None),
                           reduce_retracing=True)
    return -np.concatenate([log_prob(images[i:i + 250], labels[i:i + 250]).numpy() for i in range(0, len(images), 250)])


def draw(model: keras.Model, seeds: tf.Tensor, originals: np.ndarray, labels: np.ndarray) -> tuple:
    """(samples, seconds per sample, completions or reconstructions of `originals`) of one model.

    Samples come from the served sampler (a pixel model's fast one), traced on one seed before it is timed.
    """
    conditional = model.config.conditional
    spec = tf.TensorSpec([None], tf.int64)
    sample = tf.function(model.sample).get_concrete_function(spec, spec if conditional else None)
    sample_labels = [tf.constant(np.arange(len(seeds)) % model.config.num_classes, tf.int64)] if conditional else []
    sample(seeds[:1], *[labels[:1] for labels in sample_labels])  # the first call also optimizes the graph
    started = time.perf_counter()
    samples = sample(seeds, *sample_labels).numpy()
    seconds = (time.perf_counter() - started) / len(seeds)
    given_labels = tf.constant(labels, tf.int64) if conditional else None
    if isinstance(model, PixelModel):
        rows = tf.fill([len(originals)], originals.shape[1] // 2)
        completed = tf.function(model.complete_fast)(originals, rows, tf.range(len(originals), dtype=tf.int64),
                                                     given_labels)
    else:
        completed = model.decode(model.encode(originals, given_labels)[0], given_labels)
    return samples, seconds, completed.numpy()


def picture(rows: list[dict], originals: np.ndarray, path: Path) -> None:
    """One row per model: its samples, then its completions of the held-out digits (given at the top)."""
    given = originals.copy()
    given[:, originals.shape[1] // 2:] = 0.5
    samples, completions = len(rows[0]["samples"]), len(originals)
    fig, axes = plt.subplots(len(rows) + 1, 2, figsize=(1.1 * (samples + completions) + 1, 1.9 * (len(rows) + 1)),
                             gridspec_kw={"width_ratios": [samples, completions]}, squeeze=False)
    axes[0, 0].set_axis_off()
    axes[0, 0].text(0.5, 0.5, f"samples (seeds 0 to {samples - 1})\n-log p(x): nats per held-out image, averaged",
                    ha="center", va="center", fontsize=11)
    plots.show(axes[0, 1], plots.tile(given, completions))
    axes[0, 1].set_title("held-out digits, top half given", fontsize=10)
    for (left, right), row in zip(axes[1:], rows):
        plots.show(left, plots.tile(row["samples"], samples))
        figure = f"≤ {row['test_nll']:.2f} nats (a bound)" if row["bound"] else f"{row['test_nll']:.2f} nats"
        left.set_title(f"{row['title']}\n-log p(x) {figure}, {row['sample_seconds']:.3g} s per sample", fontsize=10)
        plots.show(right, plots.tile(row["completed"], completions))
        right.set_title("reconstructions (sees the whole digit)" if row["bound"] else "completions", fontsize=10)
    fig.savefig(path, bbox_inches="tight", dpi=80)
    plt.close(fig)


def compare(config: CompareConfig, out: str | Path, *, progress: bool = False) -> dict:
    """Score, sample and picture every run; the table (also metrics.json)."""
    loaded = [(Path(run_dir), *load(Path(run_dir))) for run_dir in config.runs]  # every run checked before work
    split = {key: loaded[0][2].config.get(key) for key in SPLIT}
    for run_dir, _, run in loaded[1:]:
        if {key: run.config.get(key) for key in SPLIT} != split:
            raise UserError(f"{run_dir} was trained with other held-out images than {loaded[0][0]} (data, binarize "
                            f"and seed must agree: {split} there)")
    run = Run.open(out, config, family="compare_generative", kind="comparison")
    if run.finished:
        return run.metrics
    data = load_images(split["data"])
    images = held_out_images(data, split["binarize"], split["seed"])
    originals = images[:config.completions].astype(np.float32)
    seeds = tf.range(config.samples, dtype=tf.int64)

    rows = []
    for run_dir, model, trained in loaded:
        nll = float(np.mean(score(model, images, data.test_labels, config.iw_samples, split["seed"]),
                            dtype=np.float64))
        samples, seconds, completed = draw(model, seeds, originals, data.test_labels[:config.completions])
        bound = not isinstance(model, PixelModel)
        rows.append({"run": str(run_dir), "family": trained.family, "parameters": model.count_params(),
                     "title": ("VAE" if bound else model.config.title), "bound": bound,
                     "iw_samples": config.iw_samples if bound else None,
                     "train_seconds": trained.metrics.get("train_seconds"), "epochs": trained.metrics.get("epochs"),
                     "test_nll": nll, "test_bits_per_dim": bits_per_dim(-nll, math.prod(images.shape[1:])),
                     "sample_seconds": seconds, "samples": samples, "completed": completed})
        print(table_row(rows[-1]), flush=True)
    picture(rows, originals, run.directory / "comparison.png")
    return run.finish({"data": data.source, "test_images": len(images), "split": split,
                       "load_average": os.getloadavg()[0],
                       "models": [{k: v for k, v in row.items() if k not in ("samples", "completed")}
                                  for row in rows]})


TABLE_HEAD = ("| model | run | parameters | training | held-out -log p(x), nats | bits/dim | seconds per sample |\n"
              "|---|---|---|---|---|---|---|")


def table_row(row: dict) -> str:
    """One model's line of the markdown table."""
    nll = f"≤ {row['test_nll']:.2f} (bound, k = {row['iw_samples']})" if row["bound"] else f"{row['test_nll']:.2f}"
    bits = f"≤ {row['test_bits_per_dim']:.3f}" if row["bound"] else f"{row['test_bits_per_dim']:.3f}"
    seconds = row.get("train_seconds")
    training = f"{seconds:.0f} s, {row['epochs']} epochs" if seconds else f"{row['epochs']} epochs"
    return (f"| {row['title']} | {row['run']} | {row['parameters']:,} | {training} | {nll} | {bits} | "
            f"{row['sample_seconds']:.3g} |")


def main(argv: list[str] | None = None) -> int:
    metrics, out = run_command(argv, "compare_generative", __doc__.splitlines()[0], PRESETS, "demo", compare)
    split = ", ".join(f"{key}={value}" for key, value in metrics["split"].items())
    print(f"{metrics['test_images']} held-out images of {metrics['data']} ({split}); load average "
          f"{metrics['load_average']:.1f} at the end")
    print(TABLE_HEAD)
    print("\n".join(table_row(row) for row in metrics["models"]))
    print(f"picture: {out / 'comparison.png'}")
    return 0
