"""The lectures' comparison: REINFORCE, REINFORCE with a learned baseline, and A2C learning the
same task, in one picture.

    python -m training pg_compare --out runs/pg-compare      # CartPole-v1, seeds 0, 1, 2: about 3 minutes

Each algorithm trains with its `cartpole` preset for the same number of environment steps
(no early stop), evaluated greedily every `eval_every` steps; REINFORCE runs twice, on raw
returns and on returns normalised per batch (its preset), since normalising is itself a
crude baseline. Writes pg_compare.png (mean over seeds, with the range between the worst
and best seed shaded) and summary.json.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from training import pg  # noqa: E402
from training.runtime import read_json, write_json  # noqa: E402

VARIANTS = {  # label -> (algorithm, changes to its cartpole preset)
    "REINFORCE": ("reinforce", {"normalize_returns": False}),
    "REINFORCE, normalised returns": ("reinforce", {}),
    "REINFORCE with baseline": ("reinforce_baseline", {}),
    "A2C": ("a2c", {}),
}


def run_all(out: Path, env: str, seeds: list[int], total_steps: int, eval_every: int) -> dict[str, list[list[dict]]]:
    """Train every variant for every seed (each into out/NAME-SEED, resumable); their histories."""
    histories = {}
    for label, (algorithm, changes) in VARIANTS.items():
        histories[label] = []
        for seed in seeds:
            config = dataclasses.replace(pg.cartpole(algorithm), env=env, seed=seed, total_steps=total_steps,
                                         eval_every=eval_every, stop_return=None, **changes)
            run_dir = out / f"{label.lower().replace(',', '').replace(' ', '-')}-{seed}"
            metrics = pg.train(algorithm, config, run_dir, progress=False)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training pg_compare", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the runs, pg_compare.png, summary.json")
    parser.add_argument("--env", default="CartPole-v1", help="gymnasium id with discrete actions (default: %(default)s)")
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=[0, 1, 2],
                        help="comma-separated seeds (default: 0,1,2)")
    parser.add_argument("--total_steps", type=int, default=30_000, help="environment steps per run (default: %(default)s)")
    parser.add_argument("--eval_every", type=int, default=1_000, help="steps between evaluations (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        histories = run_all(args.out, args.env, args.seeds, args.total_steps, args.eval_every)
    except pg.UserError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    threshold = gym.spec(args.env).reward_threshold  # 475 for CartPole-v1
    summary = summarize(histories, threshold)
    write_json(args.out / "summary.json", {"env": args.env, "seeds": args.seeds, "threshold": threshold, **summary})
    draw(histories, args.out / "pg_compare.png",
         f"{args.env}: greedy return, mean of seeds {','.join(map(str, args.seeds))} (shaded: their range)")
    for label, s in summary.items():
        print(f"{label}: average greedy return over training {s['average_eval_return']:.1f}; "
              f"first evaluation at {threshold}: {s['first_reaching_step']}")
    print(f"picture: {args.out / 'pg_compare.png'}")
    return 0
