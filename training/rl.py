"""What the RL training loops (dqn.py, pg.py) share: vector environments stepped with what a
checkpoint needs to continue them exactly, and greedy evaluation on a schedule with the
training clock paused, early stopping once a return is reached and confirmed, the final
metrics and learning curves."""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import gymnasium as gym
import numpy as np

from rundir import Run
from training import plots
from training.config import check_at_least_one
from training.envs import play_episodes


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """When an RL run is evaluated, and when it stops early."""

    eval_every: int = 1_000
    """Environment steps between greedy evaluations."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    final_eval_episodes: int = 20
    """Episodes of the final evaluation (metrics.json)."""
    stop_return: float | None = None
    """Stop early once an evaluation reaches this mean return and the final evaluation (fresh episodes) confirms it."""

    def __post_init__(self):
        check_at_least_one(self, "eval_every", "eval_episodes", "final_eval_episodes")


@dataclasses.dataclass(frozen=True)
class RLOptions(EvalOptions):
    """When and how an RL run is evaluated, and how often it is checkpointed."""

    checkpoint_every: int = 10_000
    """Environment steps between checkpoints (one is also written at the end)."""

    def __post_init__(self):
        super().__post_init__()
        check_at_least_one(self, "checkpoint_every")


@dataclasses.dataclass
class Transition:
    """One step of every environment: arrays with one row per environment."""

    observation: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_observation: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray
    """False where the step only reset an environment (gymnasium's next-step autoreset): not a transition."""


class VectorRollout:
    """Vector environments as a training loop steps them: the current observations, which
    environments reset on their next step, and the returns of the episodes finished so far.

    A checkpoint keeps all of it (the environments pickled: classic-control environments,
    their wrappers and random generators, and ALE's emulator all pickle), so a resumed run
    continues the same episodes. Environments that do not pickle start new episodes on
    resume, said aloud, and the run then differs from an uninterrupted one.
    """

    def __init__(self, envs: gym.vector.VectorEnv, seed: int):
        self.envs, self.seed = envs, seed
        self.observation, _ = envs.reset(seed=seed)
        self.just_reset = np.zeros(envs.num_envs, bool)
        self.episode_returns: list[float] = []

    def step(self, action: np.ndarray, env_action: np.ndarray | None = None) -> Transition:
        """Step every environment with `env_action` (default: `action`, which the transition records)."""
        next_observation, reward, terminated, truncated, info = self.envs.step(action if env_action is None
                                                                                 else env_action)
        if "_episode" in info:
            self.episode_returns.extend(info["episode"]["r"][info["_episode"]].tolist())
        transition = Transition(self.observation, action, reward, next_observation, terminated, truncated,
                                ~self.just_reset)
        self.just_reset = terminated | truncated
        self.observation = next_observation
        return transition

    def checkpoint(self) -> dict:
        """What `Checkpoints.save` keeps of the rollout (as its state, arrays and pickled objects)."""
        return {"state": {"episode_returns": self.episode_returns},
                "arrays": {"rollout": {"observation": self.observation, "just_reset": self.just_reset}},
                "pickled": {"environments": self.envs}}

    def restore(self, saved, step: int) -> None:
        """Continue from a restored checkpoint (environments that were not saved start new episodes)."""
        self.episode_returns = list(saved.state["episode_returns"])
        if "environments" in saved.pickled:
            self.envs.close()
            self.envs = saved.pickled["environments"]
            self.observation = saved.arrays["rollout"]["observation"]
            self.just_reset = saved.arrays["rollout"]["just_reset"]
        else:
            self.observation, _ = self.envs.reset(seed=self.seed + step)


class Evaluator:
    """Evaluates `act` (a batch of observations -> actions, read at call time) on `env`.

    Episodes of the periodic evaluations start from seed + 10,000, those of the final one
    from seed + 20,000, so every evaluation of a run plays the same starts. Training time
    is counted between evaluations only.
    """

    def __init__(self, options: RLOptions, env: gym.Env, act: Callable[[np.ndarray], np.ndarray], seed: int,
                 run: Run, epsilon: float = 0.0):
        self.options, self.env, self.act, self.seed, self.epsilon = options, env, act, seed, epsilon
        self.run, self.history = run, run.history
        self.train_seconds, self.started = 0.0, time.perf_counter()
        self.threshold = env.spec.reward_threshold if env.spec else None
        self.final: list[float] | None = None  # the final evaluation's returns, once taken

    @property
    def stopped(self) -> bool:
        """Whether stop_return was reached and confirmed."""
        return self.final is not None

    def due(self, previous: int, step: int, total_steps: int) -> bool:
        return step // self.options.eval_every > previous // self.options.eval_every or step >= total_steps

    def state(self) -> dict:
        """What a checkpoint keeps of the evaluator (the run keeps the history)."""
        return {"train_seconds": self.train_seconds, "final": self.final}

    def restore(self, state: dict) -> None:
        self.train_seconds, self.final = state["train_seconds"], state["final"]
        self.started = time.perf_counter()

    def _play(self, episodes: int, seed: int) -> list[float]:
        if self.epsilon:  # its random actions come from the action space: seed it, as the episodes are
            self.env.action_space.seed(seed)
        return play_episodes(self.env, self.act, episodes, seed, self.epsilon, np.random.default_rng(seed))

    def evaluate(self, step: int, **extra) -> dict:
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
        self.run.log(step, {name: value for name, value in record.items() if name != "step"})
        self.started = time.perf_counter()
        return record

    def finish(self, step: int, total_steps: int, episode_returns: list[float], title: str, **extra) -> dict:
        """The final evaluation (unless stop_return's confirmation was it) beside a uniformly
        random policy's return on the same starts, and learning_curves.png; finishes the run
        with the metrics and returns them."""
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
        threshold = f" (threshold {self.threshold:g})" if self.threshold is not None else ""
        plots.learning_curves(self.history, ["eval_return", "train_return"], self.run.directory / "learning_curves.png",
                              f"{title}: greedy evaluation over {self.options.eval_episodes} episodes{threshold}")
        return self.run.finish(metrics)
