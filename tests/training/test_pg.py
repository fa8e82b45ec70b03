"""Policy-gradient training: each algorithm's smoke run learns CartPole and resumes to the
same run, the shared critic learns, bad input is refused."""
import dataclasses
import json
import shutil

import numpy as np
import pytest

from tests.training.test_dqn import without_wall_clock
from training import pg


@pytest.mark.parametrize("algorithm", pg.ALGORITHMS)
def test_smoke_runs_learn_cartpole(algorithm, pg_smoke_runs):
    run_dir, metrics = pg_smoke_runs(algorithm)
    history = json.loads((run_dir / "history.json").read_text())
    # an untrained policy's greedy action is nearly constant (about 10 steps); random play lasts about 22
    assert max(r["eval_return"] for r in history) > 40, history
    assert 10 < metrics["random_policy_return"] < 40  # uniformly random actions, on the final evaluation's starts
    assert metrics["steps"] >= 5_000 and (run_dir / "learning_curves.png").exists()


def test_continuous_actions_get_a_gaussian_policy(pendulum_export):
    run_dir, _ = pendulum_export  # A2C, 400 steps of Pendulum-v1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model = json.loads((run_dir / "model.json").read_text())
    assert model["config"]["action_kind"] == "continuous" and model["config"]["num_actions"] == 1
    assert -2000 < metrics["final_eval_return"] < 0  # Pendulum pays a cost every step


@pytest.mark.parametrize("algorithm", ["reinforce_baseline", "a2c"])
def test_a_resumed_run_ends_as_the_uninterrupted_one(algorithm, pg_smoke_runs, tmp_path, capsys):
    """Stopped just after its next-to-last checkpoint, a run resumes to the same metrics and
    history (REINFORCE's episodes are seeded one by one; A2C's environments are saved mid-episode)."""
    whole_dir, whole = pg_smoke_runs(algorithm)
    run_dir = tmp_path / "run"
    shutil.copytree(whole_dir, run_dir)
    last, kept = sorted((int(p.name) for p in (run_dir / "checkpoints").iterdir()), reverse=True)[:2]
    shutil.rmtree(run_dir / "checkpoints" / str(last))
    (run_dir / "metrics.json").unlink()

    resumed = pg.train(pg.smoke(algorithm), run_dir, progress=False)
    assert f"resuming from step {kept}" in capsys.readouterr().out
    assert without_wall_clock(resumed) == without_wall_clock(whole)
    history, again = (json.loads((d / "history.json").read_text()) for d in (whole_dir, run_dir))
    assert [without_wall_clock(r) for r in again] == [without_wall_clock(r) for r in history]
    assert pg.train(pg.smoke(algorithm), run_dir, progress=False) == resumed
    assert "already trained" in capsys.readouterr().out


def test_a2c_trains_a_shared_critic(tmp_path):
    """--critic shared: one torso for the policy and v(s). The policy learns, and v(s) of the
    start states rises from about 0 towards their discounted return."""
    import keras

    from export.savedmodel import load_run
    from zoo.policy_gradient import PolicyNetwork

    smoke = pg.smoke("a2c")
    config = dataclasses.replace(smoke, model=dataclasses.replace(smoke.model, critic="shared"))
    pg.train(config, tmp_path / "run", progress=False)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert max(r["eval_return"] for r in history) > 40, history
    trained, _ = load_run(tmp_path / "run")
    keras.utils.set_random_seed(config.seed)
    untrained = PolicyNetwork(trained.config)  # the network the run started from
    starts = np.random.default_rng(0).uniform(-0.05, 0.05, size=(100, 4)).astype(np.float32)  # CartPole's resets
    before, after = (float(network(starts)["value"].numpy().mean()) for network in (untrained, trained))
    # 40 steps at gamma 0.99 are worth 1 + 0.99 + ... + 0.99^39 = (1 - 0.99^40) / 0.01 = 33 from the start
    assert abs(before) < 2 and after > 10, (before, after)


@pytest.mark.parametrize("algorithm, argv, message", [
    ("a2c", ["--env", "ALE/Pong-v5"], "ALE/Pong-v5 has observations of shape (84, 84, 4); expected vectors"),
    ("reinforce_baseline", ["--critic", "none"], "reinforce_baseline needs a critic; use --critic=separate"),
])
def test_cli_refuses_what_it_cannot_train(algorithm, argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        pg.main(algorithm, [*argv, "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_compare_puts_the_algorithms_in_one_picture(tmp_path, capsys):
    from training import pg_compare

    assert pg_compare.main(["--out", str(tmp_path), "--seeds", "0", "--total_steps", "1500", "--eval_every", "500"]) == 0
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["threshold"] == 475 and set(pg_compare.VARIANTS) <= set(summary)
    for label in pg_compare.VARIANTS:
        assert len(summary[label]["first_reaching_step"]) == 1 and summary[label]["average_eval_return"] > 0
    assert (tmp_path / "pg_compare.png").stat().st_size > 0
    assert "A2C: average greedy return" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # the directory holds this comparison: another is refused
        pg_compare.main(["--out", str(tmp_path), "--seeds", "0,1", "--total_steps", "1500", "--eval_every", "500"])
    assert exit_info.value.code == 2 and "differs in: seeds" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["reinforce_baseline", "a2c"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cartpole_preset_reaches_475(algorithm, seed, tmp_path):
    metrics = pg.train(dataclasses.replace(pg.cartpole(algorithm), seed=seed), tmp_path, progress=False)
    assert metrics["final_eval_return"] >= 475, metrics  # 20 fresh greedy episodes


def test_annealing_takes_the_step_size_linearly_to_zero(tmp_path):
    import tensorflow as tf

    config = dataclasses.replace(pg.smoke("a2c"), total_steps=800, anneal_learning_rate=True, eval_every=400,
                                 eval_episodes=1, final_eval_episodes=1)
    pg.train(config, tmp_path, progress=False)
    reader = tf.train.load_checkpoint(str(tmp_path / "checkpoints" / "800" / "variables"))
    # updates every 16 x 5 = 80 steps; the last one starts at step 720: 3e-3 * (1 - 720 / 800)
    learning_rate = reader.get_tensor("optimizer/learning_rate/.ATTRIBUTES/VARIABLE_VALUE")
    assert float(learning_rate) == pytest.approx(3e-4, rel=1e-4)
