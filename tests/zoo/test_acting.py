"""The numpy copies that act in the RL loops compute what the Keras networks they mirror compute."""
import keras
import numpy as np
import pytest

from zoo.acting import NumpyPolicy, NumpyQNetwork, snapshot
from zoo.dqn import DQNConfig, QNetwork
from zoo.policy_gradient import PolicyConfig, PolicyNetwork


def shaken(network: keras.Model, seed: int = 0) -> keras.Model:
    """Every weight moved off its initial value (zero biases, the small action head), so a
    layer read from the wrong variable, or a missing bias, shows in the outputs."""
    rng = np.random.default_rng(seed)
    for variable in network.trainable_variables:
        variable.assign(variable.numpy() + rng.normal(scale=0.3, size=variable.shape).astype(np.float32))
    return network


def test_q_values_and_greedy_actions_match_the_q_network():
    network = shaken(QNetwork(DQNConfig(hidden=(16, 8), num_actions=3, observation_shape=(5,))))
    observation = np.random.default_rng(1).normal(size=(7, 5)).astype(np.float32)
    copy = NumpyQNetwork(network, snapshot(network.trainable_variables))
    np.testing.assert_allclose(copy.q_values(observation), network(observation).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(copy.greedy(observation), network.greedy_action(observation).numpy())


def test_frame_agents_have_no_numpy_copy():
    network = QNetwork(DQNConfig(observation_shape=(84, 84, 4), observation_dtype="uint8", torso="nature"))
    with pytest.raises(ValueError, match="MLP torso"):
        NumpyQNetwork(network, snapshot(network.trainable_variables))


POLICIES = {f"{kind}-{critic}": PolicyConfig(
    observation_shape=(3,), action_kind=kind, num_actions=3 if kind == "discrete" else 2, hidden=(8, 6),
    critic=critic, action_low=-2.0, action_high=2.0)
    for kind in ("discrete", "continuous") for critic in ("none", "separate", "shared")}


@pytest.mark.parametrize("name", list(POLICIES))
def test_policy_copy_matches_the_policy_network(name):
    config = POLICIES[name]
    network = shaken(PolicyNetwork(config))
    observation = np.random.default_rng(2).normal(size=(9, 3)).astype(np.float32)
    copy = NumpyPolicy(network, snapshot(network.trainable_variables))
    outputs = network(observation)
    parameters = outputs["logits" if config.action_kind == "discrete" else "mean"].numpy()
    np.testing.assert_allclose(copy.outputs(observation), parameters, rtol=1e-5, atol=1e-5)
    if config.action_kind == "discrete":
        np.testing.assert_array_equal(copy.act(observation, None), network.greedy_action(observation).numpy())
    else:  # the mode; the environment's bounds clip it (training's to_env, the network's greedy_action)
        np.testing.assert_allclose(np.clip(copy.act(observation, None), -2, 2),
                                   network.greedy_action(observation).numpy(), rtol=1e-5, atol=1e-5)
    if config.critic == "none":
        assert copy.value is None
    else:
        np.testing.assert_allclose(copy.values(observation), outputs["value"].numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_sampled_actions_follow_the_networks_distribution(kind):
    config = POLICIES[f"{kind}-none"]
    network = shaken(PolicyNetwork(config))
    observation = np.random.default_rng(3).normal(size=(1, 3)).astype(np.float32)
    copy = NumpyPolicy(network, snapshot(network.trainable_variables))
    actions = copy.act(np.repeat(observation, 20_000, axis=0), np.random.default_rng(4))
    outputs = network(observation)
    if kind == "discrete":
        probabilities = network.distribution(outputs).probs_parameter().numpy()[0]
        # each frequency from 20,000 draws: standard error at most sqrt(0.25 / 20,000) = 0.0035
        np.testing.assert_allclose(np.bincount(actions, minlength=3) / 20_000, probabilities, atol=0.015)
    else:
        # the sample mean's standard error is at most stddev / sqrt(20,000), under 1% of a stddev
        stddev = outputs["stddev"].numpy()[0]
        np.testing.assert_allclose(actions.mean(0), outputs["mean"].numpy()[0], atol=0.03 * stddev.max())
        np.testing.assert_allclose(actions.std(0), stddev, rtol=0.03)
