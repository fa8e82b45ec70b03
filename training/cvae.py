"""Train the completion model (a conditional VAE with a learned prior) on binarized images, and
draw several completions of the same top halves by any models that export `complete`.

    python -m training cvae --preset demo --out runs/cvae-demo [--key=value ...]
    python -m training completions --runs runs/cvae-demo runs/pixelcnn-demo --out completions.png

The loop is training/image_loop.py's; here are the presets, the final metrics (the held-out
bound on log p(bottom half | top half)) and the pictures (completions, samples).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf

from rundir import UserError
from training import image_loop, plots
from training.data import ImageData
from training.image_loop import ImageRunOptions
from zoo.cvae import CVAE, CVAEConfig


@dataclasses.dataclass(frozen=True)
class TrainConfig(ImageRunOptions):
    """A completion model's run: the shared run options, the model's fields (nested) and the bound."""

    model: CVAEConfig = dataclasses.field(default_factory=CVAEConfig)
    """Networks and training split (its fields are options too: --latent_dim=8, --known_rows=14, ...)."""
    iw_samples: int = 100
    """k of the importance-weighted bound on log p(bottom half | top half), held-out, at the end."""
    completions: int = 5
    """Completions per held-out image in completions.png."""

    def __post_init__(self):
        super().__post_init__()
        if self.iw_samples < 1 or self.completions < 1:
            raise ValueError(f"iw_samples and completions must be at least 1, got {self.iw_samples} and "
                             f"{self.completions}")
        if self.conditional:
            raise ValueError("the completion model is conditioned on the known rows, not on a label; "
                             "train it without --conditional")
        if not self.binarize:
            raise ValueError("the completion model's pixels are Bernoulli: keep binarize=true")


# Presets: with no overrides, each reproduces the figures docs/vae.md quotes beside its command.


def smoke() -> TrainConfig:
    """For tests: small networks, 5 epochs on the 8x8 digits."""
    return TrainConfig(model=CVAEConfig(latent_dim=4, hidden_units=(64,)), data="digits", epochs=5, batch_size=50,
                       iw_samples=8, completions=3)


def demo() -> TrainConfig:
    """Any split from 0 to 27 known rows (one model completes from any of them), 100 epochs."""
    return TrainConfig(model=CVAEConfig(latent_dim=16, hidden_units=(256, 256)), epochs=100, batch_size=64)


PRESETS = {"smoke": smoke, "demo": demo}


def train(config: TrainConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Train (or resume) a completion model into the run directory `out`; return its final metrics."""
    return image_loop.train(config, out, FAMILY, progress=progress)


def evaluated_rows(config: TrainConfig) -> int:
    """The split the final figures and pictures use: the trained one, else the top half."""
    return config.model.known_rows if config.model.known_rows >= 0 else config.model.image_shape[0] // 2


def final_metrics(model: CVAE, config: TrainConfig, data: ImageData, test_images: np.ndarray,
                  history: list[dict]) -> dict:
    """Held-out -ELBO and importance-weighted bound of -log p(unknown rows | known rows) at one split."""
    rows, k = evaluated_rows(config), config.iw_samples
    chunk = max(1, 4096 // k)

    @tf.function(reduce_retracing=True)
    def terms(images, seed):
        known = tf.fill([tf.shape(images)[0]], rows)
        return (model.conditional_elbo_terms(images, known, seed)["loss"],
                model.importance_weighted_log_likelihood(images, known, k, seed))

    negative_elbo = bound = 0.0
    for start in range(0, len(test_images), chunk):
        loss, log_likelihood = terms(test_images[start:start + chunk], tf.constant([config.seed + 11, start]))
        negative_elbo += float(tf.reduce_sum(loss))
        bound += float(tf.reduce_sum(log_likelihood))
    return {"known_rows_evaluated": rows, "test_conditional_negative_elbo": negative_elbo / len(test_images),
            "test_conditional_iw_nll": -bound / len(test_images), "iw_samples": k}


def completion_rows(complete, originals: np.ndarray, known_rows: int, count: int) -> np.ndarray:
    """[n, 2 + count, H, W, C]: each original, its known rows over grey, and `count` completions
    (seeds 0..count-1 for the first image, and on) by `complete(images, known_rows, seeds)`."""
    n = len(originals)
    given = originals.copy()
    given[:, known_rows:] = 0.5
    repeated = np.repeat(originals, count, axis=0)
    completed = np.asarray(complete(repeated, np.full(n * count, known_rows, np.int64),
                                    np.arange(n * count, dtype=np.int64))).reshape(n, count, *originals.shape[1:])
    return np.concatenate([originals[:, None], given[:, None], completed], axis=1)


def draw_pictures(model: CVAE, config: TrainConfig, data: ImageData, test_images: np.ndarray,
                  history: list[dict], run_dir: Path) -> None:
    """completions.png, samples.png (when the model completes from nothing) and learning_curves.png."""
    rows = evaluated_rows(config)
    complete = tf.function(model.complete)
    grid = completion_rows(complete, test_images[:8].astype(np.float32), rows, config.completions)
    plots.image_grid(grid.reshape(-1, *grid.shape[2:]), run_dir / "completions.png",
                     f"original | first {rows} rows given | completions, z ~ p(z|x)", columns=grid.shape[1])
    if config.model.known_rows <= 0:
        plots.image_grid(tf.function(model.sample)(tf.range(64, dtype=tf.int64)).numpy(), run_dir / "samples.png",
                         "samples: z ~ p(z | no rows known)")
    plots.learning_curves(history, ["train_loss", "test_loss"], run_dir / "learning_curves.png",
                          "-ELBO of the unknown rows (nats per image)")


FAMILY = image_loop.ImageFamily("cvae", CVAE, final_metrics, draw_pictures,
                                lambda config, count: {"known_rows": np.full(count, evaluated_rows(config), np.int64)})


def main(argv: list[str] | None = None) -> int:
    metrics, run_dir = image_loop.command(argv, FAMILY, PRESETS, __doc__.split("\n")[0])
    print(f"held-out, first {metrics['known_rows_evaluated']} rows given ({metrics['data']}):")
    for key in ("test_conditional_negative_elbo", "test_conditional_iw_nll", "images_per_second_median"):
        print(f"{key}: {metrics[key]:.2f}")
    print(f"(-log p(unknown rows | known rows) bound with k={metrics['iw_samples']}, nats per image)")
    print(f"run directory: {run_dir} (checkpoints/, tensorboard/, metrics.json, completions.png, samples.png, "
          f"learning_curves.png)")
    return 0


# ---------------------------------------------------------------- completions by several models


def draw_completions(runs: list[Path], out: Path, known_rows: int, images: int, completions: int) -> None:
    """The first `images` held-out digits of the first run's data; for each, the original, its
    first `known_rows` rows, then `completions` completions by each run's `complete` signature
    (as exported: the same function the server runs), a white column between runs."""
    from rundir import Run
    from training.data import load_images

    models = []
    for run_dir in runs:
        model, info = image_loop.load_finished(run_dir)
        signatures = model.serving_signatures()
        if "complete" not in signatures or {s.name for s in signatures["complete"][1]} != {"images", "known_rows",
                                                                                          "seed"}:
            raise UserError(f"{run_dir} holds a {info['family']} model without an unconditional `complete` "
                            f"(images, known_rows, seed) signature")
        models.append((info["family"], model, tf.function(signatures["complete"][0])))
    shapes = {tuple(m.config.image_shape) for _, m, _ in models}
    if len(shapes) > 1:
        raise UserError(f"the runs' models take images of different shapes ({sorted(shapes)}); compare runs on "
                        f"the same data")
    first = Run.read(runs[0]).config
    data = load_images(first["data"])
    originals = image_loop.held_out_images(data, first["binarize"], first["seed"])[:images].astype(np.float32)
    height = originals.shape[1]
    if not 0 <= known_rows <= height:
        raise UserError(f"--known_rows must be in [0, {height}], got {known_rows}")
    blocks = []
    for index, (_, model, complete) in enumerate(models):
        grid = completion_rows(lambda x, rows, seeds: complete(images=x, known_rows=rows, seed=seeds)["images"],
                               originals, known_rows, completions)
        blocks.append(grid if index == 0 else grid[:, 2:])
    gap = np.ones((images, 1, *originals.shape[1:]), np.float32)
    grid = np.concatenate([block for b in blocks for block in (gap, b)][1:], axis=1)  # [n, columns, H, W, C]
    names = " | ".join(f"{family}: {completions} completions" for family, _, _ in models)
    plots.image_grid(grid.reshape(-1, *grid.shape[2:]), out,
                     f"original | first {known_rows} rows | {names}", columns=grid.shape[1])


def main_completions(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training completions",
                                     description="Several completions of the same held-out top halves by each run.")
    parser.add_argument("--runs", nargs="+", type=Path, required=True,
                        help="training runs of models with a `complete` signature (cvae, pixelcnn, pixelrnn)")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--known_rows", type=int, default=14, help="rows given from the top (default: %(default)s)")
    parser.add_argument("--images", type=int, default=6, help="held-out digits (default: %(default)s)")
    parser.add_argument("--completions", type=int, default=5, help="completions per digit and run "
                                                                    "(default: %(default)s)")
    args = parser.parse_args(argv)
    if args.images < 1 or args.completions < 1:
        parser.error("--images and --completions must be at least 1")
    try:
        draw_completions(args.runs, args.out, args.known_rows, args.images, args.completions)
    except UserError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"wrote {args.out}")
    return 0
