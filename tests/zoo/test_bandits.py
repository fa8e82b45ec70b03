"""The k-armed testbed: incremental averages, and the lectures' ordering of epsilon-greedy agents."""
import json

import numpy as np
import pytest

from zoo.bandits import BanditConfig, compare_epsilons, epsilon_greedy, incremental_mean


def test_incremental_mean_is_the_sample_average():
    rewards = [2.0, 4.0, 9.0]
    estimate = 0.0
    for n, reward in enumerate(rewards, start=1):
        estimate = incremental_mean(np.float64(estimate), np.float64(n), np.float64(reward))
    # 0 + (2-0)/1 = 2; 2 + (4-2)/2 = 3; 3 + (9-3)/3 = 5 = (2+4+9)/3
    assert estimate == pytest.approx(5.0)


def test_greedy_agent_on_a_known_problem_settles_on_the_first_arm_that_pays():
    # arm 1 is best, but a greedy agent keeps the first arm whose running average stays above 0
    q_star = np.array([[1.0, 5.0]])
    curves = epsilon_greedy(q_star, 0.0, 200, np.random.default_rng(0))
    assert curves["optimal_action"][-100:].mean() in (0.0, 1.0)  # it commits to one arm
    exploring = epsilon_greedy(np.repeat(q_star, 200, 0), 0.1, 300, np.random.default_rng(0))
    assert exploring["optimal_action"][-100:].mean() > 0.9  # 1 - 0.1 / 2 = 0.95 once arm 1 is known


def test_the_lectures_ordering_of_epsilons():
    """Sutton & Barto's Figure 2.2, on the numbers: 0.1 explores fastest, 0.01 ends highest
    over long runs, greedy (0) plateaus lowest."""
    curves = compare_epsilons(BanditConfig(runs=500, steps=6_000, seed=1))
    reward = {e: c["average_reward"] for e, c in curves.items()}
    early = {e: r[50:500].mean() for e, r in reward.items()}
    late = {e: r[-1_000:].mean() for e, r in reward.items()}
    assert early[0.1] > early[0.01] and early[0.1] > early[0.0]
    assert late[0.01] > late[0.1] > late[0.0]
    # greedy's plateau: about 1.0 of the best possible ~1.54 (the mean of the max of 10 normals)
    assert late[0.0] < 1.2 < late[0.01]


def test_bandits_command_draws_the_picture_and_keeps_its_run(tmp_path, capsys):
    from training import bandits

    assert bandits.main(["--runs=50", "--steps=200", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "bandits.png").stat().st_size > 0
    assert set(json.loads((tmp_path / "metrics.json").read_text())) == {"0", "0.01", "0.1"}
    assert "epsilon 0.1: average reward" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # the directory holds this comparison: another is refused
        bandits.main(["--runs=60", "--steps=200", "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "differs in: runs" in capsys.readouterr().err
