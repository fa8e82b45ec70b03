"""Value iteration and Q-learning on FrozenLake, checked exactly where the answer is known."""
import gymnasium as gym
import numpy as np
import pytest

from zoo.tabular import bellman_backup, greedy_success, q_learning, transition_model, value_iteration


def test_value_iteration_is_exact_on_the_deterministic_lake():
    env = gym.make("FrozenLake-v1", is_slippery=False)
    values, q_values, _ = value_iteration(env, gamma=0.9)
    # The shortest safe path is 6 moves; only the last pays 1: V(start) = 0.9^5 = 0.59049.
    assert values[0] == pytest.approx(0.9 ** 5)
    # One step from the goal (state 14, moving right) is worth the reward itself: Q = 1.
    assert q_values[14, 2] == pytest.approx(1.0)
    assert greedy_success(env, q_values, 10) == 1.0


def test_value_iteration_reaches_a_fixed_point_on_the_slippery_lake():
    env = gym.make("FrozenLake-v1", is_slippery=True)
    values, q_values, sweeps = value_iteration(env, gamma=0.99)
    probability, reward, terminal = transition_model(env)
    np.testing.assert_allclose(probability.sum(axis=2), 1.0)  # a distribution per (s, a)
    residual = np.abs(bellman_backup(values, probability, reward, terminal, 0.99).max(axis=1) - values).max()
    assert residual < 1e-9 and sweeps > 10
    # The optimal policy reaches the goal about three times in four on the slippery 4x4 lake.
    assert 0.65 < greedy_success(env, q_values, 500) < 0.9


def test_q_learning_finds_the_path_without_the_model():
    env = gym.make("FrozenLake-v1", is_slippery=False)
    q_values = q_learning(env, episodes=2_000, gamma=0.9, alpha=0.5, epsilon=0.2, seed=0)
    assert greedy_success(env, q_values, 10) == 1.0
    exact, _, _ = value_iteration(env, gamma=0.9)
    assert q_values[0].max() == pytest.approx(exact[0], rel=1e-3)  # Q-learning's start value converges to V*
