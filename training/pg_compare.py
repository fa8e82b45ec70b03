"""The lectures' comparisons of policy-gradient methods, in one picture each.

    python -m training pg_compare --out runs/pg-compare      # CartPole-v1, seeds 0, 1, 2: about 3 minutes
    python -m training pg_compare --env ShortCorridor-v0 --out runs/pg-corridor   # S&B Figures 13.1, 13.2

On CartPole-v1 (or another gymnasium id): REINFORCE, REINFORCE with a learned baseline, and
A2C learning the same task. Each algorithm trains with its `cartpole` preset for the same
number of environment steps (no early stop), evaluated greedily every `eval_every` steps;
REINFORCE runs twice, on raw returns and on returns normalised per batch (its preset), since
normalising is itself a crude baseline. Each run goes to OUT/VARIANT-SEED (resumable); OUT
gets pg_compare.png (mean over seeds, with the range between the worst and best seed shaded)
and metrics.json (the summary).

On ShortCorridor-v0: Sutton & Barto's Figures 13.1 (REINFORCE at three step sizes) and 13.2
(REINFORCE against REINFORCE with a baseline), each episode's total reward averaged over
`runs` runs against episodes, the optimum v*(S) = -11.66 drawn as a line; all runs learn
together in numpy (training/corridor.py). metrics.json has, per variant, the first episode
after which the median over runs of the exact value of the runs' policies is within 0.5 of v*.
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
from training import corridor, pg  # noqa: E402
from training.config import check_at_least_one, run_command  # noqa: E402
from training.envs import make_env  # noqa: E402
from zoo.worlds import ShortCorridor  # noqa: E402

@dataclasses.dataclass(frozen=True)
class CompareConfig:
    """One task and every run's budget (ShortCorridor-v0 has options of its own)."""

    env: str = "CartPole-v1"
    """Gymnasium id with discrete actions; ShortCorridor-v0 draws Sutton & Barto's Figures 13.1 and 13.2."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds each variant trains with (ShortCorridor-v0: the first seeds all runs' generator)."""
    total_steps: int = 30_000
    """Environment steps per run (no early stop)."""
    eval_every: int = 1_000
    """Environment steps between greedy evaluations."""
    runs: int = 100
    """ShortCorridor-v0: runs averaged, as in the book."""
    episodes: int = 1_000
    """ShortCorridor-v0: episodes per run."""
    step_size_powers: tuple[int, ...] = (-12, -13, -14)
    """ShortCorridor-v0, Figure 13.1: REINFORCE's step sizes alpha = 2^k, by k."""
    baseline_powers: tuple[int, ...] = (-13, -9, -6)
    """ShortCorridor-v0, Figure 13.2: powers k of REINFORCE's alpha, then of alpha_theta and alpha_w with a baseline."""

    def __post_init__(self):
        if not self.seeds:
            raise ValueError("seeds must name at least one seed")
        check_at_least_one(self, "runs", "episodes", "total_steps", "eval_every")
        if len(self.baseline_powers) != 3:
            raise ValueError(f"baseline_powers takes three powers (REINFORCE's, then alpha_theta's and "
                             f"alpha_w's with a baseline), got {self.baseline_powers}")


PRESETS = {"cartpole": CompareConfig, "short_corridor": lambda: CompareConfig(env="ShortCorridor-v0")}

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
    if config.env == "ShortCorridor-v0":
        return run.finish(corridor_figures(config, run.directory / "pg_compare.png"))
    histories = run_all(run.directory, config)
    threshold = gym.spec(config.env).reward_threshold  # 475 for CartPole-v1
    draw(histories, run.directory / "pg_compare.png",
         f"{config.env}: greedy return, mean of seeds {','.join(map(str, config.seeds))} (shaded: their range)")
    return run.finish({"env": config.env, "seeds": list(config.seeds), "threshold": threshold,
                       **summarize(histories, threshold)})


def corridor_figures(config: CompareConfig, path: Path) -> dict:
    """Sutton & Barto's Figures 13.1 and 13.2 side by side in `path`; per variant, the mean
    total reward of the last tenth of the episodes and the first episode after which the
    median over runs of v(S) of the runs' policies is within 0.5 of v*."""
    env = make_env(config.env)
    plain, with_theta, with_w = config.baseline_powers
    panels = {  # figure -> {label: (alpha, alpha_w or None)}
        "Figure 13.1: REINFORCE": {f"alpha = 2^{k}": (2.0 ** k, None) for k in config.step_size_powers},
        "Figure 13.2: REINFORCE with baseline": {
            f"REINFORCE, alpha = 2^{plain}": (2.0 ** plain, None),
            f"with baseline, alpha_theta = 2^{with_theta}, alpha_w = 2^{with_w}": (2.0 ** with_theta, 2.0 ** with_w)},
    }
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    optimum, tenth, learned_by = ShortCorridor.OPTIMAL_VALUE, max(1, config.episodes // 10), {}
    summary = {"env": config.env, "runs": config.runs, "episodes": config.episodes, "optimal_value": optimum}
    episodes = np.arange(1, config.episodes + 1)
    for ax, (figure, variants) in zip(axes, panels.items()):
        ax.axhline(optimum, color="grey", linestyle="--", label=f"v*(S) = {optimum:.2f}")
        for label, (alpha, alpha_w) in variants.items():
            if (alpha, alpha_w) not in learned_by:  # Figure 13.2's REINFORCE is one of Figure 13.1's
                learned_by[alpha, alpha_w] = corridor.reinforce_runs(env, config.runs, config.episodes, alpha, alpha_w,
                                                                     seed=config.seeds[0])
            learned = learned_by[alpha, alpha_w]
            ax.plot(episodes, learned["returns"].mean(axis=0), label=label, linewidth=0.8)
            median = np.median(ShortCorridor.start_value(learned["p_right"][:, 1:]), axis=0)  # after each episode
            close = np.flatnonzero(np.abs(median - optimum) < 0.5)
            summary[label] = {"final_average_return": float(learned["returns"][:, -tenth:].mean()),
                              "final_median_p_right": float(np.median(learned["p_right"][:, -1])),
                              "episodes_to_within_half": int(close[0]) + 1 if len(close) else None}
        ax.set_ylim(-90, -10)
        ax.set_xlabel("episode")
        ax.set_title(figure)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    axes[0].set_ylabel(f"total reward on episode, mean of {config.runs} runs")
    fig.savefig(path, bbox_inches="tight", dpi=80)
    plt.close(fig)
    return summary


def main(argv: list[str] | None = None) -> int:
    summary, out = run_command(argv, "pg_compare", __doc__.splitlines()[0], PRESETS, "cartpole", compare)
    if summary["env"] == "ShortCorridor-v0":
        for label, result in summary.items():
            if isinstance(result, dict):
                print(f"{label}: mean total reward over the last tenth {result['final_average_return']:.2f}; "
                      f"median v(S) within 0.5 of v* after episode {result['episodes_to_within_half']}")
    else:
        for label in VARIANTS:
            print(f"{label}: average greedy return over training {summary[label]['average_eval_return']:.1f}; "
                  f"first evaluation at {summary['threshold']}: {summary[label]['first_reaching_step']}")
    print(f"picture: {out / 'pg_compare.png'}")
    return 0
