"""The lectures' bandit picture: epsilon-greedy agents on the 10-armed testbed.

    python -m training bandits --out runs/bandits [--steps=1000 --runs=2000 --epsilons=0,0.01,0.1]

Writes bandits.png (average reward and % optimal action per step, one line per epsilon, as
in Sutton & Barto's Figure 2.2) and metrics.json (each epsilon's averages early and late).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rundir import Run  # noqa: E402
from training.config import run_command  # noqa: E402
from zoo.bandits import BanditConfig, compare_epsilons  # noqa: E402

PRESETS = {"lectures": BanditConfig, "long": lambda: BanditConfig(steps=10_000)}


def draw(curves: dict, path: Path, config: BanditConfig) -> None:
    """Two panels over steps: average reward, and the share of runs pulling the best arm."""
    fig, (reward_ax, optimal_ax) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
    for epsilon, curve in curves.items():
        label = f"epsilon = {epsilon:g}" + (" (greedy)" if epsilon == 0 else "")
        reward_ax.plot(curve["average_reward"], label=label, linewidth=0.8)
        optimal_ax.plot(100 * curve["optimal_action"], label=label, linewidth=0.8)
    reward_ax.set_ylabel("average reward")
    optimal_ax.set_ylabel("% optimal action")
    optimal_ax.set_xlabel("steps")
    reward_ax.legend()
    reward_ax.set_title(f"{config.arms}-armed testbed, {config.runs:,} runs")
    for ax in (reward_ax, optimal_ax):
        ax.grid(alpha=0.3)
    fig.savefig(path, bbox_inches="tight", dpi=80)
    plt.close(fig)


def compare(config: BanditConfig, out: str | Path, *, progress: bool = False) -> dict:
    """Run every epsilon's agents, draw bandits.png; each epsilon's averages (metrics.json)."""
    run = Run.open(out, config, family="bandits", kind="comparison")
    if run.finished:
        return run.metrics
    curves = compare_epsilons(config)
    draw(curves, run.directory / "bandits.png", config)
    tenth = max(1, config.steps // 10)
    return run.finish({f"{epsilon:g}": {"early_average_reward": float(c["average_reward"][:tenth].mean()),
                                        "final_average_reward": float(c["average_reward"][-tenth:].mean()),
                                        "final_optimal_action": float(c["optimal_action"][-tenth:].mean())}
                       for epsilon, c in curves.items()})


def main(argv: list[str] | None = None) -> int:
    metrics, out = run_command(argv, "bandits", __doc__.splitlines()[0], PRESETS, "lectures", compare)
    for epsilon, m in metrics.items():
        print(f"epsilon {epsilon}: average reward {m['final_average_reward']:.3f} over the last tenth, "
              f"optimal action {100 * m['final_optimal_action']:.1f}%")
    print(f"picture: {out / 'bandits.png'}")
    return 0
