"""Pictures a person looks at after training: sample grids, reconstructions, latent maps,
learning curves. Every function writes one PNG and returns nothing."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def tile(images: np.ndarray, columns: int) -> np.ndarray:
    """[n, H, W, C] -> one [rows*H, columns*W, C] mosaic, with blank cells at the end."""
    n, height, width, channels = images.shape
    rows = -(-n // columns)
    padded = np.zeros((rows * columns, height, width, channels), images.dtype)
    padded[:n] = images
    mosaic = padded.reshape(rows, columns, height, width, channels).swapaxes(1, 2)
    return mosaic.reshape(rows * height, columns * width, channels)


def show(ax, mosaic: np.ndarray) -> None:
    """A mosaic in [0, 1] on `ax` (grey for one channel), without axes."""
    if mosaic.shape[-1] == 1:
        ax.imshow(mosaic[..., 0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(mosaic, 0, 1))
    ax.set_axis_off()


def image_grid(images: np.ndarray, path: Path, title: str, columns: int = 8) -> None:
    """A grid of images in [0, 1]."""
    fig, ax = plt.subplots(figsize=(columns, len(images) / columns + 0.5))
    show(ax, tile(images, columns))
    ax.set_title(title)
    fig.savefig(path, bbox_inches="tight", dpi=80)
    plt.close(fig)


def reconstructions(originals: np.ndarray, reconstructed: np.ndarray, path: Path, title: str) -> None:
    """Originals (odd columns) beside their reconstructions (even columns)."""
    pairs = np.stack([originals, reconstructed], axis=1).reshape(-1, *originals.shape[1:])
    image_grid(pairs, path, title, columns=8)


def latent_map(decode: Callable[[np.ndarray], np.ndarray], path: Path, title: str, size: int = 20) -> None:
    """Decoded images over a 2-D latent grid spaced by Gaussian quantiles (Kingma & Welling,
    2014, Figure 4): equal steps in probability under the N(0, I) prior."""
    from scipy.stats import norm

    values = norm.ppf(np.linspace(0.05, 0.95, size))
    grid = np.array([[x, y] for y in values[::-1] for x in values], np.float32)  # row-major, y up
    image_grid(decode(grid), path, title, columns=size)


def latent_scatter(means: np.ndarray, labels: np.ndarray, path: Path, title: str) -> None:
    """Held-out posterior means coloured by label; projected on two principal axes if d > 2."""
    points, axes = means, ("z[0]", "z[1]")
    if means.shape[1] > 2:
        centred = means - means.mean(0)
        _, _, components = np.linalg.svd(centred, full_matrices=False)
        points, axes = centred @ components[:2].T, ("principal axis 1", "principal axis 2")
    elif means.shape[1] == 1:
        points, axes = np.stack([means[:, 0], np.zeros(len(means))], 1), ("z[0]", "")
    fig, ax = plt.subplots(figsize=(6, 5))
    scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=6)
    fig.colorbar(scatter, ax=ax, label="label")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title)
    fig.savefig(path, bbox_inches="tight", dpi=80)
    plt.close(fig)


def learning_curves(history: Sequence[dict], keys: Sequence[str], path: Path, title: str,
                    x: str = "step") -> None:
    """One line per metric key against `x`, from a list of logged records."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        points = [(r[x], r[key]) for r in history if key in r]
        if points:
            ax.plot(*zip(*points), label=key, marker="." if len(points) < 50 else None)
    ax.set_xlabel(x)
    ax.legend()
    ax.grid(alpha=0.3)
    ax.set_title(title)
    fig.savefig(path, bbox_inches="tight", dpi=80)
    plt.close(fig)


def seeds_band(curves: dict, path: Path, title: str) -> None:
    """Mean over seeds with the range (min to max) shaded, and each seed's thin line, from
    {seed: [(step, value), ...]}; the mean and range at a step use the seeds evaluated there."""
    fig, ax = plt.subplots(figsize=(7, 4))
    by_step: dict = {}
    for seed, points in curves.items():
        if points:
            ax.plot(*zip(*points), color="grey", alpha=0.35, linewidth=0.8)
        for step, value in points:
            by_step.setdefault(step, []).append(value)
    steps = sorted(by_step)
    values = [np.array(by_step[s]) for s in steps]
    ax.fill_between(steps, [v.min() for v in values], [v.max() for v in values], alpha=0.25,
                    label=f"range over {len(curves)} seeds")
    ax.plot(steps, [v.mean() for v in values], linewidth=2, label="mean")
    ax.set_xlabel("step")
    ax.legend()
    ax.grid(alpha=0.3)
    ax.set_title(title)
    fig.savefig(path, bbox_inches="tight", dpi=80)
    plt.close(fig)
