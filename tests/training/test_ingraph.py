"""Whole runs in one graph (training/ingraph.py): agents trained together are the agents trained
alone; the targets are the zoo's; the run directory exports and plays gymnasium's CartPole."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from training import ingraph
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
    return tf.nest.map_structure(lambda x: x.numpy(), engine.run(engine.initial_state(seeds), seeds, tf.constant(False)))


def test_agents_trained_together_are_the_agents_trained_alone():
    together = run(ingraph.Engine(dataclasses.replace(TINY, seeds=(0, 1, 2, 3))), [0, 1, 2, 3])
    alone = ingraph.Engine(dataclasses.replace(TINY, seeds=(0,)))  # one graph for every single seed
    stopped = together["history"]["confirm_return"] >= TINY.stop_return  # [evaluations, seeds]
    assert 0 < stopped.any(axis=0).sum() < 4, "some agents stop early, others train to the end"
    for i, seed in enumerate([0, 1, 2, 3]):
        own = run(alone, [seed])
        evaluations = own["evaluations"]  # an agent alone ends when it stops
        # Curves, loss terms, steps, episodes and parameters: bit for bit.
        for name, values in own["history"].items():
            np.testing.assert_array_equal(together["history"][name][:evaluations, i], values[:evaluations, 0],
                                          err_msg=name)
        np.testing.assert_array_equal(together["step"][:evaluations, i], own["step"][:evaluations, 0])
        assert together["steps"][i] == own["steps"][0] and together["episodes"][i] == own["episodes"][0]
        for name, value in own["params"].items():
            np.testing.assert_array_equal(together["params"][name][i], value[0], err_msg=name)
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
