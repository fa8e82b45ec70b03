"""REINFORCE on the short corridor (Sutton & Barto, Example 13.1), many runs at once, for
their Figures 13.1 and 13.2 (`python -m training pg_compare --env ShortCorridor-v0`).

Every state of the corridor shows the same feature vector, so the policy is one softmax over
two logits theta = (theta_left, theta_right), the same in every state (the book's features
x(s, left) = (1, 0), x(s, right) = (0, 1)), and grad log pi(a) = onehot(a) - pi. The book's
algorithm (REINFORCE, Section 13.3; with a baseline, Section 13.4), undiscounted as in its
figures: play an episode, then for each step t in order

    delta = G_t - w                  (w = 0 and no update of w without a baseline)
    w     = w + alpha_w delta        (the state-value baseline: one weight, the feature is 1)
    theta = theta + alpha delta (onehot(A_t) - pi(theta))

with pi recomputed after every step's update. Runs are independent; they share nothing but
the loop: each line below steps all runs together (arrays [runs] and [runs, steps]), so 100
runs cost little more than one. As the book's companion code (Zhang) does, the policy starts
at P(right) = 0.05 (near the "epsilon-greedy left" policy) and never goes below 0.05 or above
0.95, so every episode ends; the environment's own 1,000-step limit then never binds.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from zoo.tabular import transition_model

FLOOR = 0.05
"""The smallest probability the policy gives an action (Zhang's code), so episodes end."""


def deterministic_model(env: gym.Env) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(next state [S, A], reward [S, A], terminal [S, A], start-state distribution [S]) of a deterministic world."""
    probability, reward, terminal = transition_model(env)
    if not np.all(probability.max(axis=2) == 1):
        raise ValueError(f"{env.spec.id if env.spec else env} is not deterministic")
    following = probability.argmax(axis=2)

    def at_following(table: np.ndarray) -> np.ndarray:
        return np.take_along_axis(table, following[..., None], axis=2)[..., 0]

    return following, at_following(reward), at_following(terminal) > 0, np.asarray(env.unwrapped.initial_state_distrib)


def right_probability(preference: np.ndarray) -> np.ndarray:
    """P(right) [runs] of the softmax over (theta_left, theta_right), from preference = theta_right - theta_left
    (all the softmax depends on), kept within [FLOOR, 1 - FLOOR]."""
    return np.clip(1.0 / (1.0 + np.exp(-preference)), FLOOR, 1.0 - FLOOR)


def play(model: tuple, p_right: np.ndarray, limit: int, rng: np.random.Generator
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One episode of every run, all runs stepped together: (actions [T, runs], rewards [T, runs], lengths [runs])
    with T the longest episode; a run's steps after its end are zero."""
    following, reward, terminal, starts = model
    runs = len(p_right)
    state = rng.choice(len(starts), size=runs, p=starts)
    actions, rewards = np.zeros((limit, runs), np.int64), np.zeros((limit, runs))
    lengths, active = np.zeros(runs, np.int64), np.ones(runs, bool)
    for t in range(limit):
        actions[t] = rng.random(runs) < p_right  # 1 = right
        action = actions[t]
        rewards[t] = reward[state, action] * active
        lengths += active
        active &= ~terminal[state, action]
        state = following[state, action]
        if not active.any():
            break
    steps = lengths.max()
    return actions[:steps], rewards[:steps], lengths


def learn(preference: np.ndarray, w: np.ndarray, actions: np.ndarray, rewards: np.ndarray, lengths: np.ndarray,
          step_size: float, baseline_step_size: float | None) -> None:
    """REINFORCE's updates after one episode of every run, in place: preference [runs] (theta_right -
    theta_left) and the baseline w [runs], from actions and rewards [T, runs] and lengths [runs]."""
    # ALGO LOGIC: G_t = R_{t+1} + ... + R_T, then one update per step, in order. With
    # onehot(a) - pi = (-(a - p), a - p) for a in {0: left, 1: right}, theta's update moves
    # theta_right - theta_left by 2 alpha delta (a - p).
    to_go = np.cumsum(rewards[::-1], axis=0)[::-1]  # [T, runs]
    live = np.arange(len(actions))[:, None] < lengths  # [T, runs]
    for t in range(len(actions)):
        delta = to_go[t] - w
        if baseline_step_size is not None:
            w += baseline_step_size * live[t] * delta
        preference += (2 * step_size) * live[t] * delta * (actions[t] - right_probability(preference))


def reinforce_runs(env: gym.Env, runs: int, episodes: int, step_size: float, baseline_step_size: float | None = None,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """`runs` independent REINFORCE learners on `env`, `episodes` each, with a baseline if
    `baseline_step_size` is given: {"returns": [runs, episodes] (each episode's total reward),
    "p_right": [runs, episodes + 1] (P(right) before each episode, and after the last)}."""
    model, limit = deterministic_model(env), env.spec.max_episode_steps
    rng = np.random.default_rng(seed)
    preference = np.full(runs, np.log(FLOOR / (1 - FLOOR)))  # theta_right - theta_left: P(right) = 0.05 at the start
    w = np.zeros(runs)
    returns, p_right = np.zeros((runs, episodes)), np.zeros((runs, episodes + 1))
    for episode in range(episodes):
        p_right[:, episode] = right_probability(preference)
        actions, rewards, lengths = play(model, p_right[:, episode], limit, rng)
        returns[:, episode] = rewards.sum(axis=0)
        learn(preference, w, actions, rewards, lengths, step_size, baseline_step_size)
    p_right[:, episodes] = right_probability(preference)
    return {"returns": returns, "p_right": p_right}
