"""What the RL training loops (dqn.py, pg.py) share: greedy evaluation on a schedule with the
training clock paused, early stopping once a return is reached and confirmed, the final
metrics, history.json and learning curves, and numbered checkpoints that resume a run."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import tensorflow as tf

from training import plots
from training.envs import play_episodes
from training.runtime import read_json, write_json


@dataclasses.dataclass(frozen=True)
class RLOptions:
    """When and how an RL run is evaluated, and how often it is checkpointed."""

    eval_every: int = 1_000
    """Environment steps between greedy evaluations."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    final_eval_episodes: int = 20
    """Episodes of the final evaluation (metrics.json)."""
    stop_return: float | None = None
    """Stop early once an evaluation reaches this mean return and the final evaluation (fresh episodes) confirms it."""
    checkpoint_every: int = 10_000
    """Environment steps between checkpoints (one is also written at the end)."""

    def __post_init__(self):
        for name in ("eval_every", "eval_episodes", "final_eval_episodes", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


class Evaluator:
    """Evaluates `act` (a batch of observations -> actions, read at call time) on `env`.

    Episodes of the periodic evaluations start from seed + 10,000, those of the final one
    from seed + 20,000, so every evaluation of a run plays the same starts. Training time
    is counted between evaluations only.
    """

    def __init__(self, options: RLOptions, env: gym.Env, act: Callable[[np.ndarray], np.ndarray], seed: int,
                 epsilon: float = 0.0, history: list[dict] | None = None, train_seconds: float = 0.0):
        self.options, self.env, self.act, self.seed, self.epsilon = options, env, act, seed, epsilon
        self.history = history if history is not None else []
        self.train_seconds, self.started = train_seconds, time.perf_counter()
        self.threshold = env.spec.reward_threshold if env.spec else None
        self.final: list[float] | None = None  # the final evaluation's returns, once taken

    @property
    def stopped(self) -> bool:
        """Whether stop_return was reached and confirmed."""
        return self.final is not None

    def due(self, previous: int, step: int, total_steps: int) -> bool:
        return step // self.options.eval_every > previous // self.options.eval_every or step >= total_steps

    def state(self) -> dict:
        """What a checkpoint keeps of the evaluator: training seconds and the history."""
        return {"train_seconds": self.train_seconds, "history": self.history}

    def _play(self, episodes: int, seed: int) -> list[float]:
        return play_episodes(self.env, self.act, episodes, seed, self.epsilon, np.random.default_rng(seed))

    def evaluate(self, step: int, writer=None, **extra) -> dict:
        """One evaluation (clock paused): its record, also appended to the history and logged."""
        self.train_seconds += time.perf_counter() - self.started
        returns = self._play(self.options.eval_episodes, self.seed + 10_000)
        record = {"step": step, "train_seconds": self.train_seconds, "eval_return": float(np.mean(returns)),
                  "eval_return_std": float(np.std(returns)),
                  "steps_per_second": step / self.train_seconds if self.train_seconds else None, **extra}
        if self.options.stop_return is not None and record["eval_return"] >= self.options.stop_return:
            final = self._play(self.options.final_eval_episodes, self.seed + 20_000)
            record["confirm_return"] = float(np.mean(final))
            if record["confirm_return"] >= self.options.stop_return:
                self.final = final
        self.history.append(record)
        if writer is not None:
            with writer.as_default(step=step):
                for name, value in record.items():
                    if name != "step" and isinstance(value, (int, float)) and np.isfinite(value):
                        tf.summary.scalar(name, value)
        self.started = time.perf_counter()
        return record

    def finish(self, run_dir: Path, step: int, total_steps: int, episode_returns: list[float], title: str,
               **extra) -> dict:
        """The final evaluation (unless stop_return's confirmation was it) beside a uniformly
        random policy's return on the same starts, metrics.json, history.json and
        learning_curves.png; returns the metrics."""
        final = self.final or self._play(self.options.final_eval_episodes, self.seed + 20_000)
        self.env.action_space.seed(self.seed)
        random = play_episodes(self.env, self.act, self.options.final_eval_episodes, self.seed + 20_000, epsilon=1.0)
        solved = next((r for r in self.history if self.threshold is not None and r["eval_return"] >= self.threshold),
                      None)
        metrics = {
            **extra, "steps": step, "train_seconds": self.train_seconds,
            "steps_per_second": step / self.train_seconds if self.train_seconds else None,
            "stopped_early": step < total_steps,
            "final_eval_return": float(np.mean(final)), "final_eval_return_std": float(np.std(final)),
            "final_eval_episodes": len(final), "random_policy_return": float(np.mean(random)),
            "reward_threshold": self.threshold,
            "first_solved_step": solved["step"] if solved else None,
            "first_solved_seconds": solved["train_seconds"] if solved else None,
            "best_eval_return": max(r["eval_return"] for r in self.history),
            "training_episodes": len(episode_returns),
        }
        write_json(run_dir / "metrics.json", metrics)
        write_json(run_dir / "history.json", self.history)
        threshold = f" (threshold {self.threshold:g})" if self.threshold is not None else ""
        plots.learning_curves(self.history, ["eval_return", "train_return"], run_dir / "learning_curves.png",
                              f"{title}: greedy evaluation over {self.options.eval_episodes} episodes{threshold}")
        return metrics


class Checkpoints:
    """Numbered checkpoints of an RL run in run_dir/checkpoints, the last two kept.

    Variables go through tf.train.Checkpoint (`objects`); the rest of the loop's state (a
    numpy generator's, and what the caller passes: the evaluator's `state()`, recent episode
    returns) goes to state-STEP.json beside it. Files the caller writes as
    NAME-STEP.* (`path`) are pruned with their checkpoint.
    """

    def __init__(self, run_dir: Path, every: int, **objects):
        self.run_dir, self.directory, self.every = run_dir, run_dir / "checkpoints", every
        self.directory.mkdir(parents=True, exist_ok=True)
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=2)

    def due(self, previous: int, step: int) -> bool:
        """Whether a checkpoint falls between environment steps `previous` and `step`."""
        return step // self.every > previous // self.every

    def path(self, name: str, step: int, suffix: str) -> Path:
        return self.directory / f"{name}-{step}{suffix}"

    def restore(self, rng: np.random.Generator | None = None) -> tuple[int, dict]:
        """Restore the latest checkpoint, if any, and `rng`'s state: (its step, its state), or (0, {})."""
        latest = self.manager.latest_checkpoint
        if not latest:
            return 0, {}
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        step = int(latest.rsplit("-", 1)[1])
        state = read_json(self.path("state", step, ".json"))
        if rng is not None:
            rng.bit_generator.state = state["rng"]
        return step, state

    def finished_metrics(self, step: int) -> dict | None:
        """The metrics of a run that already finished (or stopped early) at `step`, else None."""
        metrics = self.run_dir / "metrics.json"
        if metrics.exists() and read_json(metrics)["steps"] == step:
            print(f"{self.run_dir} is already trained ({step} steps); its metrics.json and pictures stand")
            return read_json(metrics)
        return None

    def save(self, step: int, rng: np.random.Generator | None = None, **state) -> None:
        """Save the variables, `rng`'s state and `state` (JSON values) at `step`."""
        write_json(self.path("state", step, ".json"),
                   {"step": step, **({"rng": rng.bit_generator.state} if rng is not None else {}), **state})
        self.manager.save(checkpoint_number=step)
        kept = {int(p.rsplit("-", 1)[1]) for p in self.manager.checkpoints}
        for path in self.directory.glob("*-*.*"):
            name, _, number = path.name.split(".")[0].rpartition("-")
            if name != "ckpt" and number.isdigit() and int(number) not in kept:
                path.unlink()
