"""Whole runs in one graph (training/ingraph.py): agents trained together are the agents trained
alone; the targets are the zoo's; the run directory exports and plays gymnasium's CartPole."""
import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from export.savedmodel import export_run
from export.verify import verify
from serving.query import query
from tests.helpers import exits_2
from tests.serving.conftest import start_server, write_config  # noqa: F401  start_server: a fixture
from training import ingraph, pg, ppo
from zoo import policy_stack
from zoo.policy_gradient import PolicyConfig, PolicyNetwork, gae_targets

# A few seconds of PPO on CartPole, with every branch the engine has: minibatches, an entropy
# bonus, a clipped value loss, an annealed clip range, and early stopping (a low bar, so some
# agents stop and keep their parameters while the others go on learning beside them).
TINY = ingraph.InGraphConfig(model=PolicyConfig(hidden=(32, 32)), num_envs=4, n_steps=16, update_epochs=2,
                             num_minibatches=2, entropy_weight=0.01, clip_value=0.2, anneal_clip_ratio=True,
                             learning_rate=3e-3, total_steps=1_280, eval_every=128, eval_episodes=3,
                             final_eval_episodes=3, stop_return=40.0)


def run(engine: ingraph.Engine, seeds: list[int]) -> dict:
    seeds = tf.constant(seeds, tf.int64)
    result = engine.run(engine.initial_state(seeds), seeds, tf.constant(False))
    return tf.nest.map_structure(lambda x: x.numpy(), result)


# Without XLA the curves are the same; with it (bit for bit, docs/ingraph.md) its two compiles
# take most of a minute, so that variant runs with the slow tests.
@pytest.mark.parametrize("jit_compile", [pytest.param(True, marks=pytest.mark.slow), False], ids=["xla", "tf"])
def test_agents_trained_together_are_the_agents_trained_alone(jit_compile):
    config = dataclasses.replace(TINY, jit_compile=jit_compile)
    together = run(ingraph.Engine(dataclasses.replace(config, seeds=(0, 1, 2, 3))), [0, 1, 2, 3])
    alone = ingraph.Engine(dataclasses.replace(config, seeds=(0,)))  # one graph for every single seed
    stopped = together["history"]["confirm_return"] >= TINY.stop_return  # [evaluations, seeds]
    assert 0 < stopped.any(axis=0).sum() < 4, "some agents stop early, others train to the end"
    for i, seed in enumerate([0, 1, 2, 3]):
        own = run(alone, [seed])
        evaluations = own["evaluations"]  # an agent alone ends when it stops
        # With XLA: curves, loss terms, steps, episodes and parameters bit for bit. Without it,
        # TensorFlow's CPU kernels split some sums (the losses' means) across threads by the
        # tensor's size, so a loss term or a parameter may differ in its last bit (measured: at
        # most 1 unit in the last place after these 20 updates); the curves stay the same here.
        exact = np.testing.assert_array_equal if jit_compile else (
            lambda a, b, err_msg="": np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7, err_msg=err_msg))
        for name in ("eval_return", "eval_return_std", "confirm_return", "train_return"):
            np.testing.assert_array_equal(together["history"][name][:evaluations, i],
                                          own["history"][name][:evaluations, 0], err_msg=name)
        for name in ingraph.TERMS["ppo"]:
            exact(together["history"][name][:evaluations, i], own["history"][name][:evaluations, 0], err_msg=name)
        np.testing.assert_array_equal(together["step"][:evaluations, i], own["step"][:evaluations, 0])
        assert together["steps"][i] == own["steps"][0] and together["episodes"][i] == own["episodes"][0]
        for name, value in own["params"].items():
            exact(together["params"][name][i], value[0], err_msg=name)
        np.testing.assert_array_equal(together["final_returns"][i], own["final_returns"][0])


def test_td_lambda_targets_are_the_zoos_gae_targets():
    rng = np.random.default_rng(0)
    shape = (7, 3, 2)  # [T, S, E]
    rewards, values, final_values = (rng.normal(size=shape).astype(np.float32) for _ in range(3))
    terminated, truncated = rng.random(shape) < 0.2, rng.random(shape) < 0.2
    last_values = rng.normal(size=shape[1:]).astype(np.float32)
    for lam in (0.8, 1.0):
        targets, advantages = ingraph.td_lambda_targets(*map(tf.constant, (
            rewards, terminated, truncated, values, final_values, last_values)), gamma=0.9, lam=lam)
        expected = gae_targets(rewards, terminated, truncated, values, final_values, last_values, 0.9, lam)
        np.testing.assert_allclose(targets, expected[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(advantages, expected[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_stacked_policy_is_the_keras_policy_network(kind):
    config = PolicyConfig(observation_shape=(3,), action_kind=kind, num_actions=2, hidden=(8, 8))
    networks = [PolicyNetwork(config) for _ in range(2)]
    params = policy_stack.from_networks(networks)
    observation = tf.random.stateless_normal([2, 5, 3], [0, 1])
    outputs = policy_stack.forward(config, params, observation)
    for i, network in enumerate(networks):
        expected = network(observation[i])
        for name, value in expected.items():
            np.testing.assert_allclose(outputs[name][i], value, rtol=1e-5, atol=1e-6)
        copy = PolicyNetwork(config)
        policy_stack.assign(copy, params, i)
        for a, b in zip(copy.variables, network.variables):
            np.testing.assert_array_equal(a, b)


def greedy_returns_of_export(version_dir, episodes: int = 20) -> list[float]:
    """Returns of gymnasium's CartPole-v1 (episode k reset with seed k) played by the export's
    `greedy` signature, the episodes stepped side by side."""
    import gymnasium as gym

    greedy = tf.saved_model.load(str(version_dir)).signatures["greedy"]
    envs = [gym.make("CartPole-v1") for _ in range(episodes)]
    observations = np.stack([env.reset(seed=k)[0] for k, env in enumerate(envs)])
    returns, playing = np.zeros(episodes), np.ones(episodes, bool)
    while playing.any():
        actions = greedy(observation=tf.constant(observations))["action"].numpy()
        for k in np.flatnonzero(playing):
            observations[k], reward, terminated, truncated, _ = envs[k].step(int(actions[k]))
            returns[k] += reward
            playing[k] = not (terminated or truncated)
    return returns.tolist()


@pytest.mark.slow
def test_cartpole_agents_trained_in_graph_export_and_play_gymnasium(tmp_path, start_server, capsys):
    """`ppo --preset cartpole --env_backend=tf`, seeds 0, 1, 2 in one graph (each stops at a
    confirmed 475); each seed's run directory exports as any policy-gradient run does and plays
    the real gymnasium CartPole-v1 at 475 or more over 20 episodes; one of them through the
    server (`query play`)."""
    assert ppo.main(["--env_backend=tf", "--preset", "cartpole", "--seeds", "0,1,2", "--out",
                     str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert sorted(summary["seeds"]) == ["0", "1", "2"] and (tmp_path / "run" / "seeds.png").exists()
    for seed in (0, 1, 2):
        run_dir = tmp_path / "run" / f"seed-{seed}"
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["final_eval_return"] >= 475 and metrics["first_solved_step"] is not None
        assert (run_dir / "learning_curves.png").exists() and json.loads((run_dir / "history.json").read_text())
        version = export_run(run_dir, tmp_path / "models", f"cartpole_{seed}")
        returns = greedy_returns_of_export(version)
        assert np.mean(returns) >= 475, (seed, returns)

    config = write_config(tmp_path / "models.config", {"cartpole_0": tmp_path / "models" / "cartpole_0"})
    server = start_server(f"--model_config_file={config}", wait_for=("cartpole_0",), rest=False)
    capsys.readouterr()
    assert query([f"--server={server.target}", "play", "--model=cartpole_0", "--env=CartPole-v1", "--episodes=2",
                  "--signature=greedy"]) == 0
    served = [float(line.split()[3]) for line in capsys.readouterr().out.splitlines() if line.startswith("episode ")]
    assert served == greedy_returns_of_export(tmp_path / "models" / "cartpole_0" / "1", episodes=2)


def test_a_run_directory_per_seed_that_exports(tmp_path, capsys):
    """`a2c --env_backend=tf` with two seeds: RUN/seed-N are policy runs export reads, RUN a
    comparison of them; the same command again is the finished run, another config is refused.
    One seed: RUN is the policy run itself."""
    argv = ["--env_backend=tf", "--preset", "smoke", "--total_steps", "400", "--eval_every", "200"]
    assert pg.main_a2c([*argv, "--seeds", "0,1", "--out", str(tmp_path / "two")]) == 0
    assert json.loads((tmp_path / "two" / "model.json").read_text())["kind"] == "comparison"
    summary = json.loads((tmp_path / "two" / "metrics.json").read_text())
    for seed in (0, 1):
        run_dir = tmp_path / "two" / f"seed-{seed}"
        assert json.loads((run_dir / "model.json").read_text())["kind"] == "policy"
        assert json.loads((run_dir / "metrics.json").read_text()) == summary["seeds"][str(seed)]
        assert [r["step"] for r in json.loads((run_dir / "history.json").read_text())] == [240, 400]  # 16 x 5 a rollout
        _, results = verify(export_run(run_dir, tmp_path / "models", f"a2c_{seed}"))
        assert all(r.ok for r in results) and "greedy" in {r.name for r in results}
    assert (tmp_path / "two" / "seeds.png").exists()
    capsys.readouterr()
    assert pg.main_a2c([*argv, "--seeds", "0,1", "--out", str(tmp_path / "two")]) == 0
    assert "already trained" in capsys.readouterr().out
    err = exits_2(lambda: pg.main_a2c([*argv, "--seeds", "0,2", "--out", str(tmp_path / "two")]), capsys)
    assert "differs in: seeds" in err

    assert pg.main_a2c([*argv, "--seeds", "3", "--out", str(tmp_path / "one")]) == 0
    assert json.loads((tmp_path / "one" / "metrics.json").read_text())["seed"] == 3
    assert json.loads((tmp_path / "one" / "model.json").read_text())["kind"] == "policy"


def test_env_backend_is_split_off_for_the_ppo_and_a2c_commands(capsys):
    assert ingraph.split_backend(["--preset", "cartpole", "--env_backend=tf", "--out", "r"]) == (
        "tf", ["--preset", "cartpole", "--out", "r"])
    assert ingraph.split_backend(["--env_backend", "gymnasium", "--out", "r"]) == ("gymnasium", ["--out", "r"])
    assert ingraph.split_backend(["--out", "r"]) == ("gymnasium", ["--out", "r"])
    err = exits_2(lambda: ingraph.split_backend(["--env_backend=jax"]), capsys)
    assert "must be one of gymnasium, tf, got 'jax'" in err


def test_cli_refuses_what_it_cannot_train(tmp_path, capsys):
    for argv, expected in ((["--env", "MountainCar-v0"], "no TensorFlow version of environment 'MountainCar-v0'"),
                           (["--seeds", "1,1"], "seeds must be distinct"),
                           (["--critic", "none"], "ppo needs a critic")):
        err = exits_2(lambda: ppo.main(["--env_backend=tf", *argv, "--out", str(tmp_path / "run")]), capsys)
        assert expected in err
