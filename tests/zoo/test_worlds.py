"""The lectures' small worlds: gymnasium's checker, their pictures, and the numbers the lectures
quote, in closed form, from the exact model and from Monte-Carlo rollouts of the environments."""
import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from training.envs import make_env
from zoo import worlds
from zoo.tabular import evaluate_policy, q_learning, value_iteration

WORLDS = ["ShortCorridor-v0", "AliasedGridWorld-v0", "StarGrid-v0"]


@pytest.mark.parametrize("env_id", WORLDS)
def test_worlds_pass_gymnasiums_checker_and_draw_their_grid(env_id):
    for render_mode in (None, "rgb_array", "ansi"):
        check_env(gym.make(env_id, render_mode=render_mode).unwrapped)
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    world = env.unwrapped
    frame = env.render()
    rows, columns = len(world.layout), len(world.layout[0])
    assert frame.shape == (rows * worlds.CELL, columns * worlds.CELL, 3) and frame.dtype == np.uint8
    row, column = world.cells[world.s]
    centre = frame[row * worlds.CELL + worlds.CELL // 2, column * worlds.CELL + worlds.CELL // 2]
    assert tuple(centre) == (40, 80, 220)  # the agent's disc, in its cell
    text = gym.make(env_id, render_mode="ansi")
    text.reset(seed=0)
    assert text.render().count("A") == 1 and text.render().count("\n") == rows
    assert gym.spec(env_id).max_episode_steps == worlds.REGISTRATIONS[env_id][1]
    assert make_env(env_id).unwrapped.__class__ is world.__class__  # the training code finds the ids


def monte_carlo_returns(env_id: str, act, episodes: int, seed: int) -> np.ndarray:
    """Returns of `episodes` episodes of the registered environment (its time limit included),
    `act(observation, rng)` choosing each action."""
    env, rng = gym.make(env_id), np.random.default_rng(seed)
    returns = np.zeros(episodes)
    for episode in range(episodes):
        observation, _ = env.reset(seed=seed * 100_000 + episode)
        done = False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(act(observation, rng))
            returns[episode] += reward
            done = terminated or truncated
    return returns


def test_short_corridor_optimum_in_closed_form_in_the_model_and_by_monte_carlo():
    """Sutton & Barto, Example 13.1. With p = P(right) in every state:
        v0 = -1 + p v1 + (1-p) v0,  v1 = -1 + p v0 + (1-p) v2,  v2 = -1 + (1-p) v1  (+ p * 0 at the goal)
    give v1 = (p - 3) / (p (1-p)) and v0 = v1 - 1/p = (2p - 4) / (p (1-p)). Setting dv0/dp = 0:
    2 p (1-p) - (2p - 4)(1 - 2p) = 0  <=>  p^2 - 4p + 2 = 0  <=>  p* = 2 - sqrt 2 = 0.5858,
    and v0(p*) = -2 sqrt 2 / (3 sqrt 2 - 4) = -(6 + 4 sqrt 2) = -11.657. S&B: "about 0.59" and "-11.6"."""
    p_star = 2 - math.sqrt(2)
    v_star = -(6 + 4 * math.sqrt(2))
    assert p_star == pytest.approx(0.5858, abs=1e-4) and v_star == pytest.approx(-11.657, abs=1e-3)

    def closed_form(p):
        return (2 * p - 4) / (p * (1 - p))

    assert closed_form(p_star) == pytest.approx(v_star)
    # the environment's own model, evaluated exactly over its 1,000-step limit, gives the same curve
    env = gym.make("ShortCorridor-v0")
    for p in (0.1, 0.3, p_star, 0.8):
        policy = np.tile([1 - p, p], (4, 1))  # the same distribution in every state: they look alike
        assert evaluate_policy(env, policy, horizon=1_000)[0] == pytest.approx(closed_form(p), abs=1e-4)
    grid = np.linspace(0.01, 0.99, 981)  # steps of 0.001
    assert grid[np.argmax(closed_form(grid))] == pytest.approx(p_star, abs=1e-3)
    # best deterministic: always right or always left never reach the goal: -1,000 at the limit
    assert evaluate_policy(env, np.tile([0.0, 1.0], (4, 1)), horizon=1_000)[0] == -1_000
    # Monte-Carlo at p*: 4,000 episodes; the mean return within 4 standard errors of v*
    returns = monte_carlo_returns("ShortCorridor-v0", lambda obs, rng: int(rng.random() < p_star), 4_000, seed=0)
    standard_error = returns.std() / math.sqrt(len(returns))
    assert abs(returns.mean() - v_star) < 4 * standard_error < 0.6
