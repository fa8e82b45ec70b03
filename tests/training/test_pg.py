"""Policy-gradient training: each algorithm's smoke run learns CartPole; bad input is refused."""
import dataclasses
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
    assert 10 < metrics["random_policy_return"] < 40  # uniformly random actions, on the final evaluation's starts
    assert metrics["steps"] >= 5_000 and (tmp_path / "run" / "learning_curves.png").exists()


def test_continuous_actions_get_a_gaussian_policy(pendulum_export):
    run_dir, _ = pendulum_export  # A2C, 400 steps of Pendulum-v1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model = json.loads((run_dir / "model.json").read_text())
    assert model["config"]["action_kind"] == "continuous" and model["config"]["num_actions"] == 1
    assert -2000 < metrics["final_eval_return"] < 0  # Pendulum pays a cost every step


def test_cli_refuses_what_it_cannot_train(tmp_path):
    result = run_module("-m", "training", "a2c", "--env", "ALE/Pong-v5", "--out", str(tmp_path / "a"))
    assert result.returncode == 2 and "expected vectors" in result.stderr
    result = run_module("-m", "training", "reinforce_baseline", "--critic", "none", "--out", str(tmp_path / "b"))
    assert result.returncode == 2 and "needs a critic" in result.stderr


@pytest.mark.parametrize("algorithm", ["reinforce_baseline", "a2c"])
def test_an_interrupted_run_resumes_where_it_stopped(algorithm, tmp_path, capsys):
    config = dataclasses.replace(pg.smoke(algorithm), total_steps=3_000, checkpoint_every=1_000)
    whole = pg.train(algorithm, config, tmp_path / "run", progress=False)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    checkpoints = sorted((tmp_path / "run" / "checkpoints").glob("state-*.json"), key=lambda p: int(p.stem[6:]))
    # as if the run had died just after its next-to-last checkpoint
    kept = int(checkpoints[-2].stem[6:])
    for path in (tmp_path / "run" / "checkpoints").glob(f"*-{whole['steps']}*"):
        path.unlink()
    (tmp_path / "run" / "checkpoints" / "checkpoint").write_text(f'model_checkpoint_path: "ckpt-{kept}"\n')
    (tmp_path / "run" / "metrics.json").unlink()

    resumed = pg.train(algorithm, config, tmp_path / "run", progress=False)
    again = json.loads((tmp_path / "run" / "history.json").read_text())
    assert resumed["steps"] == whole["steps"]
    if algorithm == "reinforce_baseline":  # same episodes, same draws: the same run
        assert [r["eval_return"] for r in again] == [r["eval_return"] for r in history]
        assert resumed["final_eval_return"] == whole["final_eval_return"]
    else:  # the environments restart from fresh episodes, the rest carries over
        assert [r["step"] for r in again] == [r["step"] for r in history]
        assert again[:len(history) - 1] == history[:-1]
    assert pg.train(algorithm, config, tmp_path / "run", progress=False) == resumed
    assert "already trained" in capsys.readouterr().out


def test_compare_puts_the_algorithms_in_one_picture(tmp_path, capsys):
    from training import pg_compare

    assert pg_compare.main(["--out", str(tmp_path), "--seeds", "0", "--total_steps", "1500", "--eval_every", "500"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["threshold"] == 475 and set(pg_compare.VARIANTS) <= set(summary)
    for label in pg_compare.VARIANTS:
        assert len(summary[label]["first_reaching_step"]) == 1 and summary[label]["average_eval_return"] > 0
    assert (tmp_path / "pg_compare.png").stat().st_size > 0
    assert "A2C: average greedy return" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["reinforce_baseline", "a2c"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cartpole_preset_reaches_475(algorithm, seed, tmp_path):
    metrics = pg.train(algorithm, dataclasses.replace(pg.cartpole(algorithm), seed=seed), tmp_path, progress=False)
    assert metrics["final_eval_return"] >= 475, metrics  # 20 fresh greedy episodes


def test_annealing_takes_the_step_size_linearly_to_zero(tmp_path):
    import tensorflow as tf

    config = dataclasses.replace(pg.smoke("a2c"), total_steps=800, anneal_learning_rate=True, eval_every=400,
                                 eval_episodes=1, final_eval_episodes=1)
    pg.train("a2c", config, tmp_path, progress=False)
    reader = tf.train.load_checkpoint(str(tmp_path / "checkpoints"))
    # updates every 16 x 5 = 80 steps; the last one starts at step 720: 3e-3 * (1 - 720 / 800)
    learning_rate = reader.get_tensor("optimizer/learning_rate/.ATTRIBUTES/VARIABLE_VALUE")
    assert float(learning_rate) == pytest.approx(3e-4, rel=1e-4)
