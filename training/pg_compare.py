"""The lectures' comparison: REINFORCE, REINFORCE with a learned baseline, and A2C learning the
same task, in one picture.

    python -m training pg_compare --out runs/pg-compare      # CartPole-v1, seeds 0, 1, 2: about 3 minutes

Each algorithm trains with its `cartpole` preset for the same number of environment steps
(no early stop), evaluated greedily every `eval_every` steps; REINFORCE runs twice, on raw
returns and on returns normalised per batch (its preset), since normalising is itself a
crude baseline. Each run goes to OUT/VARIANT-SEED (resumable); OUT gets pg_compare.png (mean
over seeds, with the range between the worst and best seed shaded) and metrics.json (the
summary).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rundir import Run, read_json  # noqa: E402
from training import pg  # noqa: E402
from training.config import run_command  # noqa: E402

@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """One task, the seeds, and every run's budget."""

    env: str = "CartPole-v1"
    """Gymnasium id with discrete actions."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds each variant trains with."""
    total_steps: int = 30_000
    """Environment steps per run (no early stop)."""
    eval_every: int = 1_000
    """Environment steps between greedy evaluations."""


PRESETS = {"cartpole": CompareConfig}

VARIANTS = {  # label -> (algorithm, changes to its cartpole preset)
    "REINFORCE": ("reinforce", {"normalize_returns": False}),
    "REINFORCE, normalised returns": ("reinforce", {}),
    "REINFORCE with baseline": ("reinforce_baseline", {}),
    "A2C": ("a2c", {}),
}


def run_all(out: Path, config: CompareConfig) -> dict[str, list[list[dict]]]:
    """Train every variant for every seed (each into out/VARIANT-SEED, resumable); their histories."""
    histories = {}
    for label, (algorithm, changes) in VARIANTS.items():
        histories[label] = []
        for seed in config.seeds:
            variant = dataclasses.replace(pg.cartpole(algorithm), env=config.env, seed=seed,
                                          total_steps=config.total_steps, eval_every=config.eval_every,
                                          stop_return=None, **changes)
            run_dir = out / f"{label.lower().replace(',', '').replace(' ', '-')}-{seed}"
            metrics = pg.train(variant, run_dir, progress=False)
            print(f"{label}, seed {seed}: final greedy return {metrics['final_eval_return']:.1f} after "
                  f"{metrics['steps']} steps, {metrics['train_seconds']:.1f} s", flush=True)
            histories[label].append(read_json(run_dir / "history.json"))
    return histories


def draw(histories: dict[str, list[list[dict]]], path: Path, title: str) -> None:
    """Mean greedy return over seeds against environment steps, the seeds' range shaded."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, runs in histories.items():
        steps = sorted({r["step"] for run in runs for r in run})
        curves = np.array([np.interp(steps, [r["step"] for r in run], [r["eval_return"] for r in run]) for run in runs])
        line, = ax.plot(steps, curves.mean(0), label=label)
        ax.fill_between(steps, curves.min(0), curves.max(0), color=line.get_color(), alpha=0.15)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("greedy return (10 episodes)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    fig.savefig(path, bbox_inches="tight", dpi=80)
    plt.close(fig)


def summarize(histories: dict[str, list[list[dict]]], threshold: float | None) -> dict[str, dict]:
    """Per variant: the area under the mean curve (average return over training) and the
    median step at which an evaluation first reached `threshold`."""
    summary = {}
    for label, runs in histories.items():
        first = [next((r["step"] for r in run if threshold is not None and r["eval_return"] >= threshold), None)
                 for run in runs]
        reached = [s for s in first if s is not None]
        summary[label] = {
            "average_eval_return": float(np.mean([np.mean([r["eval_return"] for r in run]) for run in runs])),
            "first_reaching_step": first,
            "median_first_reaching_step": float(np.median(reached)) if len(reached) == len(runs) else None,
        }
    return summary


def compare(config: CompareConfig, out: str | Path, *, progress: bool = False) -> dict:
    """Train every variant (or read the runs already there) and draw them; the summary (metrics.json)."""
    run = Run.open(out, config, family="pg_compare", kind="comparison")
    if run.finished:
        return run.metrics
    histories = run_all(run.directory, config)
    threshold = gym.spec(config.env).reward_threshold  # 475 for CartPole-v1
    draw(histories, run.directory / "pg_compare.png",
         f"{config.env}: greedy return, mean of seeds {','.join(map(str, config.seeds))} (shaded: their range)")
    return run.finish({"env": config.env, "seeds": list(config.seeds), "threshold": threshold,
                       **summarize(histories, threshold)})


def main(argv: list[str] | None = None) -> int:
    summary, out = run_command(argv, "pg_compare", __doc__.splitlines()[0], PRESETS, "cartpole", compare)
    for label in VARIANTS:
        print(f"{label}: average greedy return over training {summary[label]['average_eval_return']:.1f}; "
              f"first evaluation at {summary['threshold']}: {summary[label]['first_reaching_step']}")
    print(f"picture: {out / 'pg_compare.png'}")
    return 0
