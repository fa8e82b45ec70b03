"""`python -m training tabular`, in-process: value iteration's V* on the star grid, exact;
Q-learning's greedy policy optimal in every cell; FrozenLake too; what it cannot do, refused."""
import json

import pytest

from tests.helpers import exits_2
from training import tabular


def run(argv: list[str], out, capsys) -> tuple[dict, str]:
    assert tabular.main([*argv, "--out", str(out)]) == 0
    return json.loads((out / "metrics.json").read_text()), capsys.readouterr().out


def test_value_iteration_on_the_star_grid_is_exact(tmp_path, capsys):
    """Undiscounted, a cell d moves from the nearest star is worth -(d - 1) + 10 = 11 - d. By hand
    (zoo/worlds.py's layout, stars at (0, 4) and (3, 0)): (0, 3) one move E: 10; (0, 0) S, S, S: 8;
    (2, 2) W, W, S: 8; (4, 4) N, W, N, N, N, E round the walls at (4, 3) and (2, 4): 5."""
    metrics, printed = run(["--env", "StarGrid-v0", "--method", "value_iteration"], tmp_path / "vi", capsys)
    from zoo.worlds import StarGrid

    state = StarGrid().state_of
    for cell, value in {(0, 3): 10, (0, 0): 8, (2, 2): 8, (4, 4): 5}.items():
        assert metrics["values"][state(*cell)] == value
    assert metrics["greedy_actions"][state(4, 4)] == 0  # N, the only move towards a star
    assert metrics["greedy_optimal_states"] == metrics["states"] == 20
    # the printed grid, row 4: (4, 0) one move N to the star at (3, 0), then W, W to it, a wall, then (4, 4) going N
    assert " 10.00↑   9.00←   8.00←    #      5.00↑" in printed
    # the optimal policy's return from a uniform start: the mean of 11 - d over the 18 free cells
    assert metrics["greedy_return"] == pytest.approx(sum(metrics["values"]) / 18)
    assert metrics["random_return"] < 0 < metrics["greedy_return"]
    assert (tmp_path / "vi" / "tabular.png").stat().st_size > 0


def test_q_learnings_greedy_policy_matches_value_iteration(tmp_path, capsys):
    metrics, printed = run(["--method", "q_learning"], tmp_path / "q", capsys)  # 3,000 episodes, the preset's
    assert metrics["greedy_optimal_states"] == metrics["states"]  # an optimal action in every cell
    assert metrics["greedy_return"] == pytest.approx(metrics["optimal_return"])
    assert "greedy action optimal in 20 of 20 states" in printed


def test_frozen_lake_slippery(tmp_path, capsys):
    metrics, printed = run(["--preset", "frozen_lake"], tmp_path / "lake", capsys)
    assert printed.splitlines()[1].split()[1] == "H"  # the hole at (1, 1)
    # the optimal policy reaches the goal about three times in four within the 100-step limit
    assert 0.7 < metrics["greedy_return"] < 0.8 and metrics["random_return"] < 0.05


@pytest.mark.parametrize("argv, message", [
    (["--env", "ShortCorridor-v0", "--method", "q_learning"],
     "q_learning learns a table over observations, and ShortCorridor-v0's are Box"),
    (["--env", "CartPole-v1"], "CartPole-v1 exposes no model (env.unwrapped.P)"),
])
def test_what_it_cannot_do_is_refused(argv, message, tmp_path, capsys):
    err = exits_2(lambda: tabular.main([*argv, "--out", str(tmp_path / "run")]), capsys)
    assert message in err
