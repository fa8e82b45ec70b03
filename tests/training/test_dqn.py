"""DQN training: replay memory, epsilon schedule, the update step, real runs (CartPole and
Atari), resuming, and the command line."""
import dataclasses
import json
import shutil

import keras
import numpy as np
import pytest

from tests.helpers import exits_2
from training import dqn
from training.dqn import ReplayMemory, TrainConfig, epsilon_at, make_update
from zoo.dqn import QNetwork


def test_replay_memory_wraps_around_and_samples_what_was_stored():
    memory = ReplayMemory(5, (2,), "float32")
    for start in (0, 3, 6):  # 9 transitions into 5 slots: 4..8 remain
        rows = np.arange(start, start + 3)
        memory.add(observation=np.stack([rows, rows], 1), action=rows % 2, reward=rows.astype(np.float32),
                   next_observation=np.stack([rows + 1, rows + 1], 1), terminated=np.zeros(3))
    assert memory.size == 5 and memory.position == 4
    assert sorted(memory.arrays["reward"].tolist()) == [4, 5, 6, 7, 8]
    batch = memory.sample(np.random.default_rng(0), (3, 4))
    assert batch["observation"].shape == (3, 4, 2) and batch["action"].shape == (3, 4)
    np.testing.assert_array_equal(batch["next_observation"][..., 0], batch["reward"] + 1)  # rows stay whole
    restored = ReplayMemory(5, (2,), "float32")
    restored.load(memory.state())
    assert (restored.size, restored.position) == (5, 4)
    np.testing.assert_array_equal(restored.arrays["observation"], memory.arrays["observation"])


def test_epsilon_decays_linearly_then_holds():
    config = TrainConfig(total_steps=1000, epsilon_start=1.0, epsilon_end=0.1, epsilon_fraction=0.2)
    # decay over 0.2 * 1000 = 200 steps: halfway (step 100) is 1 - 0.5 * 0.9 = 0.55
    assert [epsilon_at(s, config) for s in (0, 100, 200, 900)] == pytest.approx([1.0, 0.55, 0.1, 0.1])


def _networks(config):
    online, target = QNetwork(config.model), QNetwork(config.model)
    target.set_weights(online.get_weights())
    optimizer = keras.optimizers.Adam(config.learning_rate, global_clipnorm=config.max_grad_norm)
    optimizer.build(online.trainable_variables)
    return online, target, optimizer


def _batch(steps, size=32, seed=0):
    rng = np.random.default_rng(seed)
    return dict(observation=rng.normal(size=(steps, size, 4)).astype(np.float32),
                action=rng.integers(0, 2, (steps, size)).astype(np.int32),
                reward=np.ones((steps, size), np.float32),
                next_observation=rng.normal(size=(steps, size, 4)).astype(np.float32),
                terminated=(rng.random((steps, size)) < 0.5).astype(np.float32))


def test_update_fits_the_td_target_and_copies_the_target_every_period():
    config = TrainConfig(target_update=3, learning_rate=1e-2, jit_compile=False)
    online, target, optimizer = _networks(config)
    update = make_update(online, target, optimizer, config)
    batch = _batch(2)
    _, _, weights = update(**batch)  # 2 gradient steps: no copy yet (the copy comes at step 3)
    assert not np.allclose(target.get_weights()[0], online.get_weights()[0])
    first = online.trainable_variables[0]
    np.testing.assert_allclose(weights[first.path].numpy(), first.numpy())
    update(**{k: v[:1] for k, v in batch.items()})  # step 3: target <- online
    for t, o in zip(target.get_weights(), online.get_weights()):
        np.testing.assert_array_equal(t, o)
    # With every transition terminal the target is the reward alone (1.0), a fixed regression target.
    batch["terminated"][:] = 1.0
    first_loss, _, _ = update(**batch)
    for _ in range(30):
        loss, q_mean, _ = update(**batch)
    assert float(loss) < 0.1 * float(first_loss)
    assert float(q_mean) == pytest.approx(1.0, abs=0.1)


def test_polyak_update_moves_the_target_by_tau():
    config = TrainConfig(tau=0.5, learning_rate=1e-3, jit_compile=False)
    online, target, optimizer = _networks(config)
    target.set_weights([w + 1.0 for w in online.get_weights()])  # target = online + 1 everywhere
    update = make_update(online, target, optimizer, config)
    update(**_batch(1))
    # after the step: target = 0.5 * online' + 0.5 * (online + 1), i.e. halfway, plus 0.5
    for t, o in zip(target.get_weights(), online.get_weights()):
        assert np.abs(t - o).mean() == pytest.approx(0.5, abs=0.01)


def test_smoke_run_learns_cartpole(dqn_run):
    run_dir, metrics = dqn_run
    history = json.loads((run_dir / "history.json").read_text())
    # An untrained greedy network pushes one way (about 10 steps); a random policy lasts about 22.
    assert metrics["final_eval_return"] > 60, history
    assert metrics["steps"] == 4000 and metrics["train_seconds"] > 0
    assert (run_dir / "learning_curves.png").stat().st_size > 0
    assert any((run_dir / "tensorboard").iterdir())


WALL_CLOCK = {"train_seconds", "steps_per_second", "first_solved_seconds"}


def without_wall_clock(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in WALL_CLOCK}


def test_a_resumed_run_ends_as_the_uninterrupted_one(dqn_run, tmp_path, capsys):
    """Stopped just after its checkpoint at step 2000 (the environments mid-episode, the replay
    memory, the random state, the optimizer), the run resumes to the uninterrupted run's
    metrics and history, all but the wall-clock fields."""
    run_dir = tmp_path / "run"
    shutil.copytree(dqn_run[0], run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "4000")  # as if killed after the checkpoint at step 2000
    (run_dir / "metrics.json").unlink()
    metrics = dqn.train(dqn.smoke(), run_dir, progress=False)
    assert "resuming from step 2000" in capsys.readouterr().out
    assert without_wall_clock(metrics) == without_wall_clock(dqn_run[1])
    whole = json.loads((dqn_run[0] / "history.json").read_text())
    resumed = json.loads((run_dir / "history.json").read_text())
    assert [r["step"] for r in resumed] == [1000, 2000, 3000, 4000]
    assert [without_wall_clock(r) for r in resumed] == [without_wall_clock(r) for r in whole]
    # a finished run is not trained again
    assert dqn.train(dqn.smoke(), run_dir, progress=False) == metrics
    assert "already trained" in capsys.readouterr().out


def test_a_run_directory_refuses_another_config(dqn_run):
    with pytest.raises(dqn.UserError, match="different config"):
        dqn.train(dataclasses.replace(dqn.smoke(), learning_rate=0.5), dqn_run[0], progress=False)


def test_atari_smoke_plays_pong_through_the_full_preprocessing(tmp_path):
    metrics = dqn.train(dqn.atari_smoke(), tmp_path / "pong", progress=False)
    model = json.loads((tmp_path / "pong" / "model.json").read_text())
    assert model["config"]["observation_shape"] == [84, 84, 4] and model["config"]["torso"] == "nature"
    assert model["config"]["num_actions"] == 6
    assert metrics["steps"] == 400
    assert -21 <= metrics["final_eval_return"] <= 21  # a whole game of Pong, scored as the game scores it
    assert (tmp_path / "pong" / "checkpoints" / "400" / "environments.pkl").exists()  # resumable mid-game


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cartpole_preset_reaches_475(seed, tmp_path):
    """docs/dqn.md's claim: every seed reaches a 20-episode greedy average of 475 or more."""
    metrics = dqn.train(dataclasses.replace(dqn.cartpole(), seed=seed), tmp_path / "run", progress=False)
    assert metrics["final_eval_return"] >= 475, metrics
    assert metrics["final_eval_episodes"] == 20


@pytest.mark.parametrize("argv, message", [
    (["--env", "Pendulum-v1"], "Pendulum-v1 has a Box action space; this agent needs Discrete actions"),
    (["--env", "NoSuchEnv-v0"], "cannot make environment 'NoSuchEnv-v0'"),
    (["--tau", "0"], "--tau: tau must be in (0, 1], got 0.0"),
])
def test_cli_refuses_what_it_cannot_train_with_one_sentence(argv, message, tmp_path, capsys):
    err = exits_2(lambda: dqn.main([*argv, "--out", str(tmp_path / "run")]), capsys)
    assert message in err
