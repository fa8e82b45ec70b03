"""Tabular dynamic programming and Q-learning, exact on small gymnasium grid tasks (FrozenLake,
and the worlds of zoo/worlds.py).

- `value_iteration`: V(s) <- max_a sum_{s'} p(s'|s,a) [r + gamma (1 - done) V(s')] until the
  largest change is below `tolerance`; needs the model, which toy-text environments expose
  as `env.unwrapped.P[s][a] = [(probability, next_state, reward, terminated), ...]`.
- `evaluate_policy`: the exact expected return of a given (stochastic) policy over a fixed
  number of steps, e.g. an environment's time limit.
- `q_learning`: model-free, from experience: Q(s,a) <- Q(s,a) + alpha [r + gamma (1 - done)
  max_a' Q(s',a') - Q(s,a)], acting epsilon-greedily.
- `greedy_success`: how often the greedy policy of a table reaches a rewarding end.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np


def transition_model(env: gym.Env) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities [S, A, S'], expected rewards [S, A, S'], terminal [S, A, S']) from env.unwrapped.P."""
    model = env.unwrapped.P
    states, actions = len(model), len(model[0])
    probability = np.zeros((states, actions, states))
    reward = np.zeros((states, actions, states))
    terminal = np.zeros((states, actions, states))
    for s in range(states):
        for a in range(actions):
            for p, s_next, r, done in model[s][a]:
                probability[s, a, s_next] += p
                reward[s, a, s_next] = r
                terminal[s, a, s_next] = float(done)
    return probability, reward, terminal


def bellman_backup(values: np.ndarray, probability: np.ndarray, reward: np.ndarray, terminal: np.ndarray,
                   gamma: float) -> np.ndarray:
    """Q(s, a) = sum_{s'} p(s'|s,a) [r + gamma (1 - terminal) V(s')], as [S, A]."""
    return (probability * (reward + gamma * (1.0 - terminal) * values[None, None, :])).sum(axis=2)


def value_iteration(env: gym.Env, gamma: float = 0.99, tolerance: float = 1e-10,
                    max_sweeps: int = 100_000) -> tuple[np.ndarray, np.ndarray, int]:
    """(V* [S], Q* [S, A], sweeps taken) by synchronous value-iteration sweeps."""
    probability, reward, terminal = transition_model(env)
    values = np.zeros(probability.shape[0])
    for sweep in range(1, max_sweeps + 1):
        q_values = bellman_backup(values, probability, reward, terminal, gamma)
        new_values = q_values.max(axis=1)
        change = np.abs(new_values - values).max()
        values = new_values
        if change < tolerance:
            return values, bellman_backup(values, probability, reward, terminal, gamma), sweep
    raise RuntimeError(f"value iteration did not converge to {tolerance} in {max_sweeps} sweeps")


def evaluate_policy(env: gym.Env, policy: np.ndarray, horizon: int, gamma: float = 1.0) -> np.ndarray:
    """V [S]: the expected return of `horizon` steps from each state acting by `policy` [S, A]
    (each row a distribution over actions), exactly, by `horizon` backups from V = 0:
    V(s) <- sum_a pi(a|s) sum_{s'} p(s'|s,a) [r + gamma (1 - done) V(s')].

    With an environment's time limit as `horizon` this is what its episodes return on average
    from each start state, truncation included.
    """
    probability, reward, terminal = transition_model(env)
    values = np.zeros(probability.shape[0])
    for _ in range(horizon):
        values = (policy * bellman_backup(values, probability, reward, terminal, gamma)).sum(axis=1)
    return values


def q_learning(env: gym.Env, episodes: int, gamma: float = 0.99, alpha: float = 0.1, epsilon: float = 0.1,
               seed: int = 0) -> np.ndarray:
    """A Q-table [S, A] learned from `episodes` epsilon-greedy episodes (ties broken at random)."""
    rng = np.random.default_rng(seed)
    q_values = np.zeros((env.observation_space.n, env.action_space.n))
    for episode in range(episodes):
        state, _ = env.reset(seed=seed * 1_000_003 + episode)
        done = False
        while not done:
            if rng.random() < epsilon:
                action = int(rng.integers(env.action_space.n))
            else:
                best = np.flatnonzero(q_values[state] == q_values[state].max())
                action = int(rng.choice(best))
            next_state, reward, terminated, truncated, _ = env.step(action)
            target = reward + gamma * (0.0 if terminated else q_values[next_state].max())
            q_values[state, action] += alpha * (target - q_values[state, action])
            state, done = next_state, terminated or truncated
    return q_values


def greedy_success(env: gym.Env, q_values: np.ndarray, episodes: int, seed: int = 0) -> float:
    """Fraction of `episodes` in which argmax_a Q(s, a) collects a positive reward."""
    successes = 0
    for episode in range(episodes):
        state, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            state, reward, terminated, truncated, _ = env.step(int(q_values[state].argmax()))
            total += reward
            done = terminated or truncated
        successes += total > 0
    return successes / episodes
