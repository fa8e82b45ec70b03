"""The DQN loss with the arithmetic written out, and the Q-network's shapes, actions and signatures."""
import numpy as np
import pytest
import tensorflow as tf

from zoo.dqn import DQNConfig, QNetwork, td_loss, td_target


def test_td_target_without_and_with_terminal():
    reward = tf.constant([1.0, 2.0])
    discount = tf.constant([0.99, 0.0])  # gamma * (1 - terminal): the second transition ends the episode
    next_q_target = tf.constant([[1.0, 3.0], [5.0, 2.0]])
    # row 0: 1 + 0.99 * max(1, 3) = 1 + 2.97 = 3.97; row 1: 2 + 0 * 5 = 2 (no bootstrap after a terminal)
    np.testing.assert_allclose(td_target(reward, discount, next_q_target).numpy(), [3.97, 2.0], rtol=1e-6)


def test_double_dqn_selects_with_online_and_evaluates_with_target():
    reward = tf.constant([1.0, 1.0])
    discount = tf.constant([0.5, 0.5])
    next_q_target = tf.constant([[1.0, 3.0], [5.0, 2.0]])
    next_q_online = tf.constant([[4.0, 0.0], [0.0, 4.0]])  # the online network prefers action 0, then 1
    # row 0: online picks a=0, target values it 1.0 -> 1 + 0.5 * 1 = 1.5 (DQN would take max 3 -> 2.5)
    # row 1: online picks a=1, target values it 2.0 -> 1 + 0.5 * 2 = 2.0 (DQN would take max 5 -> 3.5)
    np.testing.assert_allclose(td_target(reward, discount, next_q_target, next_q_online).numpy(), [1.5, 2.0])
    np.testing.assert_allclose(td_target(reward, discount, next_q_target).numpy(), [2.5, 3.5])


def test_td_loss_huber_and_mse():
    q_values = tf.constant([[1.0, 2.0], [0.0, 0.5]])
    action = tf.constant([1, 0])
    target = tf.constant([4.5, 0.5])
    # errors: 4.5 - 2 = 2.5 and 0.5 - 0 = 0.5
    # huber: 2.5 -> 0.5 * 1 + (2.5 - 1) = 2.0; 0.5 -> 0.5 * 0.25 = 0.125; mean = 1.0625
    assert td_loss(q_values, action, target, "huber").numpy() == pytest.approx(1.0625)
    # mse: 0.5 * 6.25 = 3.125 and 0.5 * 0.25 = 0.125; mean = 1.625
    assert td_loss(q_values, action, target, "mse").numpy() == pytest.approx(1.625)
    with pytest.raises(ValueError, match="unknown loss"):
        td_loss(q_values, action, target, "l1")


def test_td_loss_gradient_reaches_only_the_taken_action_and_not_the_target():
    q_values = tf.Variable([[1.0, 2.0]])
    target = tf.Variable([2.5])
    with tf.GradientTape(persistent=True) as tape:
        loss = td_loss(q_values, tf.constant([1]), target, "mse")
    # d/dQ(s,1) of 0.5 (2.5 - Q)^2 = -(2.5 - 2) = -0.5; Q(s,0) was not taken: 0
    np.testing.assert_allclose(tape.gradient(loss, q_values).numpy(), [[0.0, -0.5]])
    assert tape.gradient(loss, target) is None  # the target is held fixed


@pytest.mark.parametrize("config", [DQNConfig(), DQNConfig(hidden=(8,), num_actions=3, observation_shape=(6,)),
                                    DQNConfig(observation_shape=(84, 84, 4), observation_dtype="uint8",
                                              torso="nature", num_actions=6)])
def test_q_network_shapes_and_greedy_action(config):
    network = QNetwork(config)
    rng = np.random.default_rng(0)
    if config.observation_dtype == "uint8":
        observation = rng.integers(0, 256, (3, *config.observation_shape)).astype(np.uint8)
    else:
        observation = rng.normal(size=(3, *config.observation_shape)).astype(np.float32)
    q_values = network(observation).numpy()
    assert q_values.shape == (3, config.num_actions)
    np.testing.assert_array_equal(network.greedy_action(observation).numpy(), q_values.argmax(-1))
    outputs = network.serving_signatures()["serving_default"][0](tf.constant(observation))
    np.testing.assert_allclose(outputs["q_values"].numpy(), q_values, rtol=1e-5)
    assert outputs["action"].dtype == tf.int64


def test_nature_torso_has_the_papers_layers():
    network = QNetwork(DQNConfig(observation_shape=(84, 84, 4), observation_dtype="uint8", torso="nature",
                                 num_actions=4))
    # conv 8x8x4x32 + 32, conv 4x4x32x64 + 64, conv 3x3x64x64 + 64, dense 3136x512 + 512, head 512x4 + 4
    expected = (8 * 8 * 4 * 32 + 32) + (4 * 4 * 32 * 64 + 64) + (3 * 3 * 64 * 64 + 64) + (3136 * 512 + 512) + (512 * 4 + 4)
    assert network.count_params() == expected == 1_686_180


def test_config_is_checked():
    with pytest.raises(ValueError, match="num_actions"):
        DQNConfig(num_actions=0)
    with pytest.raises(ValueError, match="nature torso"):
        DQNConfig(torso="nature", observation_shape=(4,))
