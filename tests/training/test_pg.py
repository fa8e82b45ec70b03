"""Policy-gradient training: each algorithm's smoke run learns CartPole; bad input is refused."""
import json

import pytest

from tests.helpers import run_module
from training import pg


@pytest.mark.parametrize("algorithm", pg.ALGORITHMS)
def test_smoke_runs_learn_cartpole(algorithm, tmp_path):
    metrics = pg.train(algorithm, pg.smoke(algorithm), tmp_path / "run", progress=False)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    # an untrained policy's greedy action is nearly constant (about 10 steps); random play lasts about 22
    assert max(r["eval_return"] for r in history) > 40, history
    assert metrics["steps"] >= 5_000 and (tmp_path / "run" / "learning_curves.png").exists()


def test_continuous_actions_get_a_gaussian_policy(tmp_path):
    config = pg.smoke("a2c").__class__(env="Pendulum-v1", total_steps=400, eval_episodes=1, final_eval_episodes=1)
    metrics = pg.train("a2c", config, tmp_path / "run", progress=False)
    model = json.loads((tmp_path / "run" / "model.json").read_text())
    assert model["config"]["action_kind"] == "continuous" and model["config"]["num_actions"] == 1
    assert -2000 < metrics["final_eval_return"] < 0  # Pendulum pays a cost every step


def test_cli_refuses_what_it_cannot_train(tmp_path):
    result = run_module("-m", "training", "a2c", "--env", "ALE/Pong-v5", "--out", str(tmp_path / "a"))
    assert result.returncode == 2 and "expected vectors" in result.stderr
    result = run_module("-m", "training", "reinforce_baseline", "--critic", "none", "--out", str(tmp_path / "b"))
    assert result.returncode == 2 and "needs a critic" in result.stderr
