"""PPO training: the smoke run learns CartPole, an interrupted run resumes, bad input is
refused, the export plays through the policy signatures; the cartpole preset (slow) ends its
full budget at 475 or more on seeds 0, 1, 2."""
import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from export.savedmodel import export_run, load_run
from export.verify import verify
from tests.export.test_policy_export import TF_AGENTS_SIGNATURES, greedy_returns
from training import ppo


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    """The smoke preset trained once: (run_dir, metrics)."""
    run_dir = tmp_path_factory.mktemp("ppo") / "run"
    return run_dir, ppo.train(ppo.smoke(), run_dir, progress=False)


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
    assert json.loads((run_dir / "model.json").read_text())["algorithm"] == "ppo"
    assert (run_dir / "learning_curves.png").exists() and list((run_dir / "tensorboard").iterdir())


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, capsys):
    config = dataclasses.replace(ppo.smoke(), total_steps=3_072, checkpoint_every=1_024, eval_every=1_024)
    whole = ppo.train(config, tmp_path / "run", progress=False)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    # as if the run had died just after its checkpoint at 2,048 steps
    for path in (tmp_path / "run" / "checkpoints").glob("*-3072*"):
        path.unlink()
    (tmp_path / "run" / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-2048"\n')
    (tmp_path / "run" / "metrics.json").unlink()

    resumed = ppo.train(config, tmp_path / "run", progress=False)
    again = json.loads((tmp_path / "run" / "history.json").read_text())
    assert resumed["steps"] == whole["steps"] == 3_072
    # weights, optimizer, random generator and history come back; the environments restart
    # from fresh episodes (seeded by the step), so only the last evaluation may differ
    assert again[:2] == history[:2] and [r["step"] for r in again] == [1024, 2048, 3072]
    assert ppo.train(config, tmp_path / "run", progress=False) == resumed
    assert "already trained" in capsys.readouterr().out


def test_cli_refuses_what_it_cannot_train(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        ppo.main(["--num_minibatches", "3", "--out", str(tmp_path / "a")])  # 8 x 32 = 256 transitions
    assert exit_.value.code == 2 and "must divide num_envs x n_steps (256)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        ppo.main(["--critic", "none", "--out", str(tmp_path / "b")])
    assert exit_.value.code == 2 and "ppo needs a critic" in capsys.readouterr().err


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


def test_export_plays_cartpole_through_the_policy_signatures(ppo_run, tmp_path):
    run_dir, metrics = ppo_run
    version_dir = export_run(run_dir, tmp_path / "models", "cartpole_ppo")
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
    session.close()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cartpole_preset_ends_its_full_budget_at_475(seed, tmp_path):
    metrics = ppo.train(dataclasses.replace(ppo.cartpole(), seed=seed), tmp_path, progress=False)
    assert not metrics["stopped_early"] and metrics["steps"] >= 100_000
    assert metrics["final_eval_return"] >= 475, metrics  # 20 fresh greedy episodes
