"""DQN policy exports: the server's loader, the model's own signatures, and tf-agents'
SavedModelPyTFEagerPolicy playing an episode from them in its own environment."""
import json
import os
import subprocess

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from export.policy import POLICY_SPECS
from export.savedmodel import load_run
from export.verify import verify
from tests.helpers import ROOT

TF_AGENTS_PYTHON = ROOT / ".venv-tf-agents" / "bin" / "python"


def greedy_returns(model, seeds):
    """Our in-process greedy play: (returns, actions of the first episode)."""
    env = gym.make("CartPole-v1")
    returns, first_actions = [], []
    for seed in seeds:
        observation, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            action = int(model.greedy_action(observation[None])[0])
            if seed == seeds[0]:
                first_actions.append(action)
            observation, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        returns.append(total)
    return returns, first_actions


def assert_loads_with(export, signatures: set[str], reference_verdicts):
    """verify() finds exactly `signatures`, all answering as declared, and the server's loader
    takes the export; returns the version directory verify() checked."""
    version_dir, results = verify(export)
    assert {r.name for r in results} == signatures
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    reference_ok, output = reference_verdicts.get(version_dir, (True, "no reference checker"))
    assert reference_ok, output
    return version_dir


TF_AGENTS_SIGNATURES = {"action", "get_initial_state", "get_metadata", "get_train_step"}


def test_dqn_export_loads_as_the_server_loads_it(dqn_export, dqn_run, reference_verdicts):
    version_dir = assert_loads_with(dqn_export, {"serving_default", "q_values", *TF_AGENTS_SIGNATURES},
                                    reference_verdicts)
    card = json.loads((version_dir / "assets.extra" / "model_card.json").read_text())
    assert card["family"] == "dqn" and card["train_steps"] == 4000
    assert card["metrics"]["final_eval_return"] == dqn_run[1]["final_eval_return"]
    assert (version_dir / POLICY_SPECS).exists()


def test_dqn_signatures_match_the_trained_network(dqn_export, dqn_run):
    model, _ = load_run(dqn_run[0])
    observation = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(dqn_export))
        default, action = meta.signature_def["serving_default"], meta.signature_def["action"]
        q_values, greedy = session.run(
            [default.outputs["q_values"].name, default.outputs["action"].name],
            {default.inputs["observation"].name: observation})
        tf_agents_action = session.run(action.outputs["action"].name, {
            action.inputs["0/observation"].name: observation,
            action.inputs["0/step_type"].name: np.ones(7, np.int32),
            action.inputs["0/reward"].name: np.ones(7, np.float32),
            action.inputs["0/discount"].name: np.ones(7, np.float32)})
        train_step = session.run(meta.signature_def["get_train_step"].outputs["int64"].name)
    np.testing.assert_allclose(q_values, model(observation).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(greedy, q_values.argmax(-1))
    np.testing.assert_array_equal(tf_agents_action, greedy)
    assert train_step == 4000


@pytest.fixture(scope="module")
def tf_agents_plays(dqn_export, pg_export):
    """tf-agents 0.19 (its own environment, TF_USE_LEGACY_KERAS=1) loads the DQN export and the
    policy-gradient export with SavedModelPyTFEagerPolicy and plays a CartPole episode with
    each, as a tf-agents program would, in one process: {version_dir: what it played}."""
    if not TF_AGENTS_PYTHON.exists():
        pytest.skip("no .venv-tf-agents: `make test` creates it")
    episodes = {dqn_export: 5, pg_export[1]: 7}  # version directory -> seed of the episode's start
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([str(TF_AGENTS_PYTHON), str(ROOT / "tests" / "export" / "tf_agents_play.py"),
                             *[str(part) for episode in episodes.items() for part in episode]],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(zip(episodes, json.loads(result.stdout.strip().splitlines()[-1])))


def test_tf_agents_program_plays_our_policy(tf_agents_plays, dqn_export, dqn_run):
    """It acts exactly as the trained network does."""
    played = tf_agents_plays[dqn_export]
    assert played["train_step"] == 4000
    assert "int64" in played["action_spec"] and "maximum=1" in played["action_spec"]
    model, _ = load_run(dqn_run[0])
    returns, actions = greedy_returns(model, [5])
    assert played["actions"] == actions
    assert played["return"] == returns[0] > 30


def _session_run(version_dir, signature_name, inputs):
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(version_dir))
        signature = meta.signature_def[signature_name]
        aliases = sorted(signature.outputs)
        values = session.run([signature.outputs[a].name for a in aliases],
                             {signature.inputs[k].name: v for k, v in inputs.items()})
    return dict(zip(aliases, values))


def test_policy_gradient_export_samples_per_seed_and_acts_greedily(pg_export, reference_verdicts):
    run_dir, version_dir = pg_export
    assert_loads_with(version_dir, {"serving_default", "greedy", "probabilities", "value", *TF_AGENTS_SIGNATURES},
                      reference_verdicts)

    model, _ = load_run(run_dir)
    observation = np.random.default_rng(0).normal(scale=0.1, size=(6, 4)).astype(np.float32)
    seeds = np.arange(6, dtype=np.int64)
    first = _session_run(version_dir, "serving_default", {"observation": observation, "seed": seeds})["action"]
    again = _session_run(version_dir, "serving_default", {"observation": observation[::-1], "seed": seeds[::-1]})
    np.testing.assert_array_equal(first, again["action"][::-1])  # a row's action depends on its seed, not the batch
    probabilities = _session_run(version_dir, "probabilities", {"observation": observation})["probabilities"]
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probabilities, tf.nn.softmax(model(observation)["logits"]).numpy(), rtol=1e-5)
    greedy = _session_run(version_dir, "greedy", {"observation": observation})["action"]
    np.testing.assert_array_equal(greedy, probabilities.argmax(-1))
    value = _session_run(version_dir, "value", {"observation": observation})["value"]
    np.testing.assert_allclose(value, model(observation)["value"].numpy(), rtol=1e-5)

    # many seeds on one observation: the sampled actions follow the probabilities
    many = _session_run(version_dir, "serving_default", {"observation": np.repeat(observation[:1], 4000, 0),
                                                         "seed": np.arange(4000, dtype=np.int64)})["action"]
    assert abs(many.mean() - probabilities[0, 1]) < 0.03


def test_tf_agents_program_plays_a_policy_gradient_export(tf_agents_plays, pg_export):
    run_dir, version_dir = pg_export
    played = tf_agents_plays[version_dir]
    model, _ = load_run(run_dir)
    returns, actions = greedy_returns(model, [7])
    assert played["actions"] == actions and played["return"] == returns[0]


def test_a_gaussian_policy_exports_its_distribution_and_clipped_actions(pendulum_export, reference_verdicts):
    run_dir, version_dir = pendulum_export
    assert_loads_with(version_dir, {"serving_default", "greedy", "distribution", "value", *TF_AGENTS_SIGNATURES},
                      reference_verdicts)

    model, _ = load_run(run_dir)
    observation = np.random.default_rng(1).uniform(-1, 1, size=(5, 3)).astype(np.float32)
    outputs = model(observation)
    distribution = _session_run(version_dir, "distribution", {"observation": observation})
    np.testing.assert_allclose(distribution["mean"], outputs["mean"].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(distribution["stddev"], outputs["stddev"].numpy(), rtol=1e-5)
    greedy = _session_run(version_dir, "greedy", {"observation": observation})["action"]
    np.testing.assert_allclose(greedy, np.clip(outputs["mean"].numpy(), -2, 2), rtol=1e-5, atol=1e-6)
    seeds = np.arange(5, dtype=np.int64)
    sampled = _session_run(version_dir, "serving_default", {"observation": observation, "seed": seeds})["action"]
    assert sampled.shape == (5, 1) and (np.abs(sampled) <= 2).all()  # Pendulum's torque bounds
    again = _session_run(version_dir, "serving_default", {"observation": observation, "seed": seeds})["action"]
    np.testing.assert_array_equal(sampled, again)
    # many seeds on one observation: mean and spread of the draws are the Gaussian's (the
    # untrained mean is near 0, so clipping at +-2 barely touches a stddev of about 1)
    many = _session_run(version_dir, "serving_default", {"observation": np.repeat(observation[:1], 4000, 0),
                                                         "seed": np.arange(4000, dtype=np.int64)})["action"]
    assert abs(many.mean() - distribution["mean"][0, 0]) < 0.1
    assert abs(many.std() - distribution["stddev"][0, 0]) < 0.15
