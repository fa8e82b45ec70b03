"""PPO training: the smoke run learns CartPole, an interrupted run resumes, bad input is
refused, the export plays through the policy signatures; the cartpole preset (slow) ends its
full budget at 475 or more on seeds 0, 1, 2."""
import dataclasses
import json
import shutil

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from export.savedmodel import export_run, load_run
from export.verify import verify
from tests.export.test_policy_export import TF_AGENTS_SIGNATURES, greedy_returns
from tests.helpers import exits_2
from tests.training.test_dqn import without_wall_clock
from training import ppo


def test_smoke_run_learns_cartpole(ppo_run):
    run_dir, metrics = ppo_run
    history = json.loads((run_dir / "history.json").read_text())
    # a uniformly random policy lasts about 22 steps on these starts; an untrained greedy one about 10
    assert 10 < metrics["random_policy_return"] < 40
    assert metrics["final_eval_return"] > metrics["random_policy_return"] + 50, metrics
    assert max(r["eval_return"] for r in history) > 150, history
    assert metrics["steps"] == 8192 and not metrics["stopped_early"]
    # the annealed clip range reaches about 0 by the last update: 0.2 * (1 - 7936 / 8192) = 0.00625
    assert history[-1]["clip_ratio"] == pytest.approx(0.00625)
    assert metrics["algorithm"] == "ppo"
    assert json.loads((run_dir / "model.json").read_text())["kind"] == "policy"
    assert (run_dir / "learning_curves.png").exists() and list((run_dir / "tensorboard").iterdir())


def test_an_interrupted_run_resumes_to_the_uninterrupted_run(tmp_path, capsys):
    """Stopped just after its checkpoint at 2,048 steps, a run resumes to the same history and
    metrics (weights, optimizer, generator and the environments mid-episode come back)."""
    config = dataclasses.replace(ppo.smoke(), total_steps=3_072, checkpoint_every=1_024, eval_every=1_024)
    whole = ppo.train(config, tmp_path / "run", progress=False)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "3072")  # as if the run had died just after 2,048
    (tmp_path / "run" / "metrics.json").unlink()

    resumed = ppo.train(config, tmp_path / "run", progress=False)
    again = json.loads((tmp_path / "run" / "history.json").read_text())
    assert "resuming from step 2048" in capsys.readouterr().out
    assert resumed["steps"] == whole["steps"] == 3_072
    assert [without_wall_clock(r) for r in again] == [without_wall_clock(r) for r in history]
    assert without_wall_clock(resumed) == without_wall_clock(whole)
    assert ppo.train(config, tmp_path / "run", progress=False) == resumed
    assert "already trained" in capsys.readouterr().out


def test_cli_refuses_what_it_cannot_train(tmp_path, capsys):
    err = exits_2(lambda: ppo.main(["--num_minibatches", "3", "--out", str(tmp_path / "a")]), capsys)
    assert "must divide num_envs x n_steps (256)" in err  # 8 x 32 = 256 transitions
    err = exits_2(lambda: ppo.main(["--critic", "none", "--out", str(tmp_path / "b")]), capsys)
    assert "ppo needs a critic" in err
    err = exits_2(lambda: ppo.main(["--env", "ALE/Pong-v5", "--out", str(tmp_path / "c")]), capsys)
    assert "ppo acts in numpy on vector observations, and ALE/Pong-v5's are frames" in err


def _session_player(version_dir):
    """The export loaded as TensorFlow Serving loads it: (signature name, {alias: array}) -> {alias: array}."""
    graph = tf.Graph()
    session = tf.compat.v1.Session(graph=graph)
    with graph.as_default():
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(version_dir))

    def run(name, inputs):
        signature = meta.signature_def[name]
        aliases = sorted(signature.outputs)
        values = session.run([signature.outputs[a].name for a in aliases],
                             {signature.inputs[k].name: v for k, v in inputs.items()})
        return dict(zip(aliases, values))
    return run, session


def test_export_plays_cartpole_through_the_policy_signatures(ppo_run, ppo_export):
    """Exported like A2C (tests/serving/test_cli.py plays it through the server)."""
    metrics = ppo_run[1]
    run_dir, version_dir = ppo_export
    # the session-based loader's verdict (a PPO export is an A2C one: the same PolicyNetwork and
    # writer, whose exports tests/export also puts through the reference checker)
    _, results = verify(version_dir)
    assert {r.name for r in results} == {"serving_default", "greedy", "probabilities", "value", *TF_AGENTS_SIGNATURES}
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    card = json.loads((version_dir / "assets.extra" / "model_card.json").read_text())
    assert card["family"] == "policy_gradient" and card["train_steps"] == metrics["steps"]

    model, _ = load_run(run_dir)
    expected = greedy_returns(model, [3])[0][0]  # the trained network's own greedy play
    run, session = _session_player(version_dir)
    env = gym.make("CartPole-v1")
    for name in ("greedy", "action", "serving_default"):
        observation, _ = env.reset(seed=3)
        total, done, t = 0.0, False, 0
        while not done:
            batch = observation[None].astype(np.float32)
            if name == "greedy":
                inputs = {"observation": batch}
            elif name == "action":  # tf-agents' signature: the greedy action of a TimeStep
                inputs = {"0/observation": batch, "0/step_type": np.ones(1, np.int32),
                          "0/reward": np.zeros(1, np.float32), "0/discount": np.ones(1, np.float32)}
            else:  # sampled, one seed per step
                inputs = {"observation": batch, "seed": np.array([t], np.int64)}
            action = run(name, inputs)["action"]
            observation, reward, terminated, truncated, _ = env.step(int(action[0]))
            total, done, t = total + reward, terminated or truncated, t + 1
        if name in ("greedy", "action"):
            assert total == expected
        else:  # sampling: far better than a random policy's 22 or so
            assert total > 60
    observation = np.random.default_rng(0).normal(scale=0.1, size=(6, 4)).astype(np.float32)
    outputs = model(observation)
    np.testing.assert_allclose(run("probabilities", {"observation": observation})["probabilities"],
                               tf.nn.softmax(outputs["logits"]).numpy(), rtol=1e-5)
    np.testing.assert_allclose(run("value", {"observation": observation})["value"], outputs["value"].numpy(),
                               rtol=1e-5)
    session.close()


def test_a_gaussian_ppo_policy_exports_its_distribution(tmp_path):
    """Pendulum's PPO (a few updates on tiny rollouts) exports as A2C's Gaussian policy does."""
    config = dataclasses.replace(ppo.pendulum(), n_steps=16, num_minibatches=1, total_steps=128, eval_every=128,
                                 eval_episodes=1, final_eval_episodes=1)
    ppo.train(config, tmp_path / "run", progress=False)
    _, results = verify(export_run(tmp_path / "run", tmp_path / "models", "pendulum_ppo"))
    assert {r.name for r in results} == {"serving_default", "greedy", "distribution", "value", *TF_AGENTS_SIGNATURES}
    assert all(r.ok for r in results), [r for r in results if not r.ok]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cartpole_preset_ends_its_full_budget_at_475(seed, tmp_path):
    metrics = ppo.train(dataclasses.replace(ppo.cartpole(), seed=seed), tmp_path, progress=False)
    assert not metrics["stopped_early"] and metrics["steps"] >= 100_000
    assert metrics["final_eval_return"] >= 475, metrics  # 20 fresh greedy episodes
