"""Sutton & Barto's short corridor (Example 13.1; Figures 13.1 and 13.2): REINFORCE's update by
hand, REINFORCE reaching v* on the median of 100 runs, a baseline getting there sooner, and
`pg_compare --env ShortCorridor-v0` drawing both figures."""
import json
import math

import gymnasium as gym
import numpy as np
import pytest

from training import corridor, pg_compare
from zoo.worlds import ShortCorridor


def test_one_episodes_updates_by_hand():
    """P(right) = 0.5 (preference 0); the episode right, left (in the switched state: forward), right:
    rewards -1, -1, -1, so G = -3, -2, -1. Step size 0.25, no baseline; each step moves the preference
    theta_right - theta_left by 2 alpha G_t (a_t - p):
        t = 0, a = 1, p = 0.5:                          0      + 0.5 (-3) (1 - 0.5)     = -0.75
        t = 1, a = 0, p = sigmoid(-0.75) = 0.32082:    -0.75    + 0.5 (-2) (0 - 0.32082) = -0.42918
        t = 2, a = 1, p = sigmoid(-0.42918) = 0.39432: -0.42918 + 0.5 (-1) (1 - 0.39432) = -0.73202
    A second run in the same batch played one step (length 1, G_0 = -1): 0.5 (-1) (1 - 0.5) = -0.25."""
    preference, w = np.zeros(2), np.zeros(2)
    actions = np.array([[1, 1], [0, 1], [1, 1]])  # [T, runs]
    rewards = np.array([[-1.0, -1.0], [-1.0, 0.0], [-1.0, 0.0]])
    corridor.learn(preference, w, actions, rewards, np.array([3, 1]), 0.25, None)
    p1 = 1 / (1 + math.exp(0.75))
    p2 = 1 / (1 + math.exp(0.75 - p1))
    assert preference[0] == pytest.approx(-0.75 + p1 - 0.5 * (1 - p2))
    assert preference[0] == pytest.approx(-0.73202, abs=1e-5)
    assert preference[1] == -0.25 and not w.any()

    # With a baseline, alpha_w = 0.5: delta = G_t - w, then w += 0.5 delta, then the preference moves by
    # 2 alpha delta (a - p): delta_0 = -3, w = -1.5; delta_1 = -2 + 1.5 = -0.5, w = -1.75;
    # delta_2 = -1 + 1.75 = 0.75, w = -1.375. Preference: -0.75, then + 0.5 (-0.5) (0 - q1), then
    # + 0.5 (0.75) (1 - q2), with q1 = sigmoid(-0.75) and q2 = sigmoid(-0.75 + 0.25 q1).
    preference, w = np.zeros(1), np.zeros(1)
    corridor.learn(preference, w, actions[:, :1], rewards[:, :1], np.array([3]), 0.25, 0.5)
    assert w[0] == -1.375
    q2 = 1 / (1 + math.exp(0.75 - 0.25 * p1))
    assert preference[0] == pytest.approx(-0.75 + 0.25 * p1 + 0.375 * (1 - q2))


@pytest.fixture(scope="module")
def learning_curves():
    """The median over 100 runs of v(S) of each run's policy after every episode: REINFORCE at
    alpha = 2^-12 (600 episodes) and with a baseline at alpha_theta = 2^-9, alpha_w = 2^-6 (200)."""
    env = gym.make("ShortCorridor-v0")
    plain = corridor.reinforce_runs(env, 100, 600, 2.0 ** -12, seed=0)
    baseline = corridor.reinforce_runs(env, 100, 200, 2.0 ** -9, 2.0 ** -6, seed=0)
    return {name: np.median(ShortCorridor.start_value(runs["p_right"]), axis=0)
            for name, runs in (("plain", plain), ("baseline", baseline))}


def test_reinforce_reaches_the_optimum_and_a_baseline_gets_there_sooner(learning_curves):
    optimum = ShortCorridor.OPTIMAL_VALUE  # -(6 + 4 sqrt 2) = -11.657, tests/zoo/test_worlds.py
    # every run starts at P(right) = 0.05: v = (0.1 - 4) / (0.05 * 0.95) = -82.1
    assert learning_curves["plain"][0] == pytest.approx(-82.105, abs=1e-3)
    within = {name: np.flatnonzero(np.abs(curve - optimum) < 0.5) for name, curve in learning_curves.items()}
    assert len(within["plain"]) and len(within["baseline"]), learning_curves
    assert within["baseline"][0] < within["plain"][0] / 2, (within["baseline"][0], within["plain"][0])
    assert abs(learning_curves["plain"][-1] - optimum) < 0.5 and abs(learning_curves["baseline"][-1] - optimum) < 0.5


def test_pg_compare_draws_figures_13_1_and_13_2(tmp_path, capsys):
    assert pg_compare.main(["--env", "ShortCorridor-v0", "--runs", "10", "--episodes", "30",
                            "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["optimal_value"] == pytest.approx(-11.657, abs=1e-3)
    labels = ["alpha = 2^-12", "alpha = 2^-13", "alpha = 2^-14", "REINFORCE, alpha = 2^-13",
              "with baseline, alpha_theta = 2^-9, alpha_w = 2^-6"]
    assert all(-90 < summary[label]["final_average_return"] < -3 for label in labels), summary
    assert summary["alpha = 2^-13"] == summary["REINFORCE, alpha = 2^-13"]  # the same runs, drawn in both figures
    assert (tmp_path / "pg_compare.png").stat().st_size > 0
    assert "with baseline, alpha_theta = 2^-9, alpha_w = 2^-6: mean total reward" in capsys.readouterr().out
