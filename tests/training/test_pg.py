"""Policy-gradient training: each algorithm's smoke run learns CartPole and resumes to the
same run, the shared critic learns, bad input is refused."""
import dataclasses
import json
import shutil

import numpy as np
import pytest

from tests.helpers import exits_2
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
    ("a2c", ["--env", "StarGrid-v0"], "StarGrid-v0 has observations of shape () (int64); expected vectors or uint8"),
    ("reinforce", ["--baseline", "learned"], "reinforce with a learned baseline is the reinforce_baseline command"),
    ("a2c", ["--baseline", "moving_average"], "a2c subtracts its critic's v(s) (--baseline=learned)"),
    ("reinforce", ["--baseline", "moving_average"], "which normalize_returns subtracts again"),
    ("reinforce_baseline", ["--critic", "none"], "reinforce_baseline needs a critic; use --critic=separate"),
])
def test_cli_refuses_what_it_cannot_train(algorithm, argv, message, tmp_path, capsys):
    err = exits_2(lambda: pg.main(algorithm, [*argv, "--out", str(tmp_path / "run")]), capsys)
    assert message in err


def test_compare_puts_the_algorithms_in_one_picture(tmp_path, capsys):
    from training import pg_compare

    assert pg_compare.main(["--out", str(tmp_path), "--seeds", "0", "--total_steps", "1500", "--eval_every", "500"]) == 0
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["threshold"] == 475 and set(pg_compare.VARIANTS) <= set(summary)
    for label in pg_compare.VARIANTS:
        assert len(summary[label]["first_reaching_step"]) == 1 and summary[label]["average_eval_return"] > 0
    assert (tmp_path / "pg_compare.png").stat().st_size > 0
    assert "A2C: average greedy return" in capsys.readouterr().out
    # the directory holds this comparison: another is refused
    err = exits_2(lambda: pg_compare.main(["--out", str(tmp_path), "--seeds", "0,1", "--total_steps", "1500",
                                           "--eval_every", "500"]), capsys)
    assert "differs in: seeds" in err


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


def test_the_moving_average_baseline_is_bias_corrected():
    average = pg.MovingAverage(rate=0.5)
    assert average.value == 0.0  # nothing seen: no baseline
    average.add(10.0)  # b = 0 + 0.5 (10 - 0) = 5, corrected by 1 - 0.5 = 0.5: 10
    assert average.value == 10.0
    average.add(4.0)  # b = 5 + 0.5 (4 - 5) = 4.5, corrected by 1 - 0.25 = 0.75: 6 (= (0.5 * 10 + 4) / 1.5)
    assert average.value == pytest.approx(6.0)


def test_reinforce_on_the_aliased_grid_world_learns_a_coin_in_the_grey_cells(tmp_path):
    """The two grey cells look alike, so a deterministic policy takes the same move in both and gets
    stuck on one side: the best returns -14.6 (tests/zoo/test_worlds.py, exactly). REINFORCE's
    stochastic policy ends near 50/50 between E and W there, and its exact expected return (the
    preset's metrics: sampling from it over the 50-step limit) beats -14.6; a fair coin there earns 7.2."""
    metrics = pg.train(pg.aliased_grid(), tmp_path, progress=False)
    grey = np.array(metrics["state_probabilities"])[[1, 3]]  # top cells 0-4 in reading order; 1 and 3 are grey
    np.testing.assert_allclose(grey[0], grey[1])  # they look alike: one distribution
    north, east, south, west = grey[0]
    assert east + west > 0.95 and abs(east - 0.5) < 0.1, grey[0]
    assert metrics["policy_return"] > -14.6 + 10, metrics["policy_return"]
    assert metrics["final_eval_return"] < metrics["policy_return"]  # greedy: stuck on one side


def test_a2c_learns_from_pong_frames_and_its_export_serves_them(tmp_path):
    """The pong_smoke preset: uint8 frames [84, 84, 4] through the Nature torso, one update of 2
    environments x 5 steps, a whole game of evaluation; the export takes uint8 frames."""
    import keras

    from export.savedmodel import export_run, load_run
    from export.verify import verify
    from zoo.policy_gradient import PolicyNetwork

    config = pg.pong_smoke("a2c")
    metrics = pg.train(config, tmp_path / "run", progress=False)
    model = json.loads((tmp_path / "run" / "model.json").read_text())["config"]
    assert (model["observation_shape"], model["observation_dtype"], model["torso"]) == ([84, 84, 4], "uint8", "nature")
    assert -21 <= metrics["final_eval_return"] <= 21  # a whole game, scored as the game scores it
    trained, _ = load_run(tmp_path / "run")
    keras.utils.set_random_seed(config.seed)
    untrained = PolicyNetwork(trained.config)  # the network the run started from
    frames = np.random.default_rng(0).integers(0, 256, (4, 84, 84, 4), dtype=np.uint8)
    assert not np.allclose(untrained(frames)["logits"], trained(frames)["logits"])  # the update moved the policy
    version_dir = export_run(tmp_path / "run", tmp_path / "models", "pong_a2c")
    _, results = verify(version_dir)  # every signature, through the session-based loader, on uint8 frames
    assert all(result.ok for result in results), results


def test_reinforce_plays_a_game_of_pong_and_learns_from_its_frames(tmp_path):
    """REINFORCE's own path on frames: a whole game through the network, stored as uint8, one update."""
    from rundir import Run
    from training.envs import make_env

    config = pg.pong_smoke("reinforce")
    eval_env = make_env(config.env, training=False)
    config = dataclasses.replace(config, model=pg.policy_config(eval_env, config))
    agent = pg.Agent(config, Run.open(tmp_path, config, family="policy_gradient", kind="policy", model=config.model),
                     eval_env, progress=False)
    episode = pg.play_episode(make_env(config.env), agent, seed=0)
    assert episode.observations.dtype == np.uint8 and episode.observations.shape[1:] == (84, 84, 4)
    assert -21 <= episode.score < 0 and len(episode.actions) > 500  # an untrained policy loses a whole game
    before = agent.policy.outputs(episode.observations[:8])
    weights = pg.reinforce_weights(episode.rewards, config.gamma)
    terms = agent.update((episode.observations, episode.actions, (weights - weights.mean()) / weights.std(),
                          np.ones(len(weights), np.float32)), 0)
    assert np.isfinite(terms["loss"]) and not np.allclose(before, agent.policy.outputs(episode.observations[:8]))


def test_reinforce_weighing_whole_trajectories_less_a_moving_average_learns_and_resumes(tmp_path, capsys):
    """--weights=trajectory --baseline=moving_average on raw returns: CartPole still learns, and a
    run stopped after its next-to-last checkpoint resumes to the same end (the average is saved)."""
    config = dataclasses.replace(pg.smoke("reinforce"), weights="trajectory", baseline="moving_average",
                                 normalize_returns=False)
    whole = pg.train(config, tmp_path / "whole", progress=False)
    history = json.loads((tmp_path / "whole" / "history.json").read_text())
    assert max(r["eval_return"] for r in history) > 40, history
    shutil.copytree(tmp_path / "whole", tmp_path / "run")
    last = max(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir())
    shutil.rmtree(tmp_path / "run" / "checkpoints" / str(last))
    (tmp_path / "run" / "metrics.json").unlink()
    resumed = pg.train(config, tmp_path / "run", progress=False)
    assert "resuming from step" in capsys.readouterr().out
    assert without_wall_clock(resumed) == without_wall_clock(whole)
