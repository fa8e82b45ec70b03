"""The k-armed bandit testbed and epsilon-greedy agents with incremental value estimates
(Sutton & Barto, 2018, section 2.3; the lectures' first picture of exploration).

Each run draws true action values q*(a) ~ N(0, 1); pulling arm a pays N(q*(a), 1). The agent
keeps Q(a), the average reward of arm a so far, updated incrementally,

    N(a) <- N(a) + 1,    Q(a) <- Q(a) + (R - Q(a)) / N(a),

and pulls argmax Q (ties broken at random) except with probability epsilon, when it pulls an
arm uniformly at random. All runs are simulated at once, as numpy arrays [runs, arms].
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class BanditConfig:
    """The testbed and the agents compared on it."""

    arms: int = 10
    """Number of arms (k)."""
    steps: int = 1_000
    """Pulls per run."""
    runs: int = 2_000
    """Independent bandit problems averaged over."""
    epsilons: tuple[float, ...] = (0.0, 0.01, 0.1)
    """Exploration rates compared."""
    seed: int = 0
    """Seed of the problems and of the agents' choices."""

    def __post_init__(self):
        for name in ("arms", "steps", "runs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not all(0 <= e <= 1 for e in self.epsilons):
            raise ValueError(f"epsilons must be in [0, 1], got {self.epsilons}")


def incremental_mean(estimate: np.ndarray, count: np.ndarray, reward: np.ndarray) -> np.ndarray:
    """Q_{n+1} = Q_n + (R_n - Q_n) / n: the sample average without storing the rewards (count includes R_n)."""
    return estimate + (reward - estimate) / count


def epsilon_greedy(q_star: np.ndarray, epsilon: float, steps: int,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Play `steps` pulls on every problem in `q_star` [runs, arms].

    Returns the reward and whether the optimal arm was pulled, averaged over runs, per step.
    """
    runs, arms = q_star.shape
    rows = np.arange(runs)
    estimate, count = np.zeros((runs, arms)), np.zeros((runs, arms))
    best = q_star.argmax(axis=1)
    reward_curve, optimal_curve = np.zeros(steps), np.zeros(steps)
    for t in range(steps):
        # argmax with random tie-breaking: the largest estimate, a uniform draw among equals
        greedy = np.argmax(estimate + 1e-9 * rng.random((runs, arms)) * (estimate == estimate.max(1, keepdims=True)),
                           axis=1)
        action = np.where(rng.random(runs) < epsilon, rng.integers(0, arms, runs), greedy)
        reward = rng.normal(q_star[rows, action], 1.0)
        count[rows, action] += 1
        estimate[rows, action] = incremental_mean(estimate[rows, action], count[rows, action], reward)
        reward_curve[t] = reward.mean()
        optimal_curve[t] = (action == best).mean()
    return {"average_reward": reward_curve, "optimal_action": optimal_curve}


def compare_epsilons(config: BanditConfig) -> dict[float, dict[str, np.ndarray]]:
    """Every epsilon of `config` on the same `runs` problems: epsilon -> its curves."""
    problems = np.random.default_rng(config.seed).normal(size=(config.runs, config.arms))
    return {epsilon: epsilon_greedy(problems, epsilon, config.steps, np.random.default_rng([config.seed, i]))
            for i, epsilon in enumerate(config.epsilons)}
