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


N, E, S, W = range(4)


def observation_policy(world, choose) -> np.ndarray:
    """[S, A]: the policy that acts by `choose(observation) -> distribution over actions` in every state."""
    return np.array([choose(tuple(world.observe(s))) for s in range(len(world.cells))], np.float64)


def test_aliased_grid_world_best_deterministic_policy_gets_stuck_and_a_coin_in_the_grey_cells_wins():
    """Top cells 0-4 (1 and 3 grey), the money under cell 2, skulls under 0 and 4. Exact returns
    over the 50-step limit, for all 4^4 = 256 deterministic policies of the four observations
    the top cells make (walls N+W, N+S for both grey cells, N, N+E).

    Best deterministic: E in both grey cells, E in cell 0, S in cell 2. From cells 0, 1, 2 it
    reaches the money in 3, 2, 1 moves: -1 a move and +10 for the last, 8, 9, 10. From cells 3
    and 4 it is stuck until the limit (shuttling between them, or bumping into cell 4's walls
    N or E): -50 each; a skull (-100) is worse. Mean over the 5 starts: (8 + 9 + 10 - 50 - 50)
    / 5 = -14.6. The mirror image (W in the grey cells and in cell 4) does as well.

    A fair coin in the grey cells (the rest as above): expected moves to the money from cell i,
    t2 = 1, t1 = 1 + (t2 + t0)/2 and t0 = 1 + t1, so t1 = 4, t0 = 5 (t3 = 4, t4 = 5 by symmetry);
    the return is 11 - t, on average 11 - (5 + 4 + 1 + 4 + 5)/5 = 7.2 (less a truncation
    effect below 1e-5: the coin fails 24 times running with probability 2^-24)."""
    env = gym.make("AliasedGridWorld-v0")
    world, horizon = env.unwrapped, gym.spec("AliasedGridWorld-v0").max_episode_steps
    top = [tuple(world.observe(s)) for s in range(5)]
    kinds = list(dict.fromkeys(top))  # the distinct observations of the top cells, in order
    assert len(kinds) == 4 and top[1] == top[3] == (1.0, 0.0, 1.0, 0.0)  # the grey cells alias

    best_return, best = -np.inf, {}
    for actions in np.ndindex(4, 4, 4, 4):  # the action of each kind of top cell
        policy = observation_policy(world, lambda o: np.eye(4)[actions[kinds.index(o)] if o in kinds else 0])
        values = evaluate_policy(env, policy, horizon)
        expected = world.initial_state_distrib @ values
        if expected > best_return + 1e-9:
            best_return, best = expected, {}
        if expected > best_return - 1e-9:
            best[actions] = values[:5]
    assert best_return == pytest.approx(-14.6)
    # the best: (cell 0, grey, cell 2, cell 4) = (E, E, S, any but S) or (any but S, W, S, W)
    assert set(best) == {(E, E, S, a) for a in (N, E, W)} | {(a, W, S, W) for a in (N, E, W)}
    np.testing.assert_allclose(best[E, E, S, N], [8, 9, 10, -50, -50])  # stuck right of the money
    np.testing.assert_allclose(best[W, W, S, W], [-50, -50, 10, 9, 8])  # stuck left of it

    choice = {kinds[0]: np.eye(4)[E], kinds[1]: np.array([0, 0.5, 0, 0.5]), kinds[2]: np.eye(4)[S],
              kinds[3]: np.eye(4)[W]}
    coin = observation_policy(world, lambda o: choice.get(o, np.eye(4)[N]))
    values = evaluate_policy(env, coin, horizon)
    np.testing.assert_allclose(values[:5], [11 - 5, 11 - 4, 11 - 1, 11 - 4, 11 - 5], atol=1e-5)
    assert world.initial_state_distrib @ values == pytest.approx(7.2, abs=1e-5)

    # Monte-Carlo on the environment itself: 2,000 episodes each, within 4 standard errors
    def act(policy_of_observation):
        return lambda obs, rng: int(rng.choice(4, p=policy_of_observation[tuple(obs)]))

    for policy_of_observation, exact in ((choice, 7.2), ({**choice, kinds[1]: np.eye(4)[E]}, -14.6)):
        returns = monte_carlo_returns("AliasedGridWorld-v0", act(policy_of_observation), 2_000, seed=1)
        assert abs(returns.mean() - exact) < 4 * returns.std() / math.sqrt(len(returns)) + 1e-9


def test_star_grid_value_iteration_is_exact_and_q_learning_finds_an_optimal_policy():
    """Layout (zoo/worlds.py): stars at (0, 4) and (3, 0). A cell d moves from the nearest star is
    worth -1 for each of the first d - 1 moves and +10 for the last, discounted:
    V(d) = -(1 + gamma + ... + gamma^(d-2)) + 10 gamma^(d-1). Shortest paths, by hand:
    (0, 3) and (2, 0): 1 move; (0, 0): S, S, S = 3; (2, 2): W, W, S = 3; (4, 2): W, W, N = 3;
    (4, 4): N, W, N, N, N, E = 6 (round the walls at (4, 3), (2, 4); the star at (3, 0) is 7 away)."""
    env = gym.make("StarGrid-v0")
    world = env.unwrapped
    cells = {(0, 3): 1, (2, 0): 1, (0, 0): 3, (2, 2): 3, (4, 2): 3, (4, 4): 6}
    undiscounted, _, _ = value_iteration(env, gamma=1.0)
    for cell, d in cells.items():
        assert undiscounted[world.state_of(*cell)] == 11 - d  # -(d - 1) + 10: 10, 8, 5
    values, q_star, _ = value_iteration(env, gamma=0.9)
    hand = {1: 10.0,
            3: -1 - 0.9 + 10 * 0.81,  # 6.2
            6: -(1 + 0.9 + 0.81 + 0.729 + 0.6561) + 10 * 0.59049}  # -4.0951 + 5.9049 = 1.8098
    for cell, d in cells.items():
        assert values[world.state_of(*cell)] == pytest.approx(hand[d], abs=1e-9)
    assert q_star[world.state_of(4, 4)].argmax() == N  # the only move towards a star

    q_values = q_learning(env, episodes=3_000, gamma=0.9, alpha=0.5, epsilon=0.2, seed=0)
    free = [s for s, (r, c) in enumerate(world.cells) if world.layout[r][c] != "*"]
    greedy = q_values[free].argmax(axis=1)
    np.testing.assert_allclose(q_star[free, greedy], values[free], atol=1e-9)  # optimal in every cell
