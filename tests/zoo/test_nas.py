"""The architecture-search controller: a proper distribution over architectures, REINFORCE's
arithmetic, and a controller that learns which choice a reward favours."""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.nas import Controller, Layer, SearchSpace, build_child, controller_loss, describe, moving_average


def test_choices_decode_to_layers():
    space = SearchSpace()
    assert space.size == (3 * 3 * 2) ** 3
    architecture = space.decode(np.array([2, 1, 1, 0, 0, 0, 1, 2, 0]))
    assert architecture == (Layer(32, 3, True), Layer(8, 1, False), Layer(16, 5, False))
    assert describe(architecture) == "conv32x3+skip > conv8x1 > conv16x5"


def test_the_controller_is_a_distribution_over_the_whole_space():
    space = SearchSpace(num_layers=2, filters=(8, 16), kernel_sizes=(1, 3), skips=(False, True))
    keras.utils.set_random_seed(1)
    controller = Controller(space, units=8)
    every = np.array(list(itertools.product(*[range(len(options)) for _, options in space.decisions])))
    assert len(every) == space.size == 64
    # the autoregressive factorisation sums to one over all 64 architectures
    assert controller.probabilities(every).sum() == pytest.approx(1.0, abs=1e-5)
    draws = controller.sample(16, seed=3)
    assert draws.shape == (16, 6) and (draws >= 0).all() and (draws < 2).all()
    np.testing.assert_array_equal(controller.sample(16, seed=3), draws)  # reproducible per seed
    assert not np.array_equal(controller.sample(16, seed=4), draws)


def test_controller_loss_and_baseline_arithmetic():
    log_probs, rewards, entropy = tf.constant([-1.0, -2.0]), tf.constant([1.0, 0.0]), tf.constant([2.0, 4.0])
    # advantages R - b = [0.5, -0.5]: -mean(0.5 * -1, -0.5 * -2) = -mean(-0.5, 1) = -0.25
    assert float(controller_loss(log_probs, rewards, 0.5, entropy)) == pytest.approx(-0.25)
    # minus 0.1 * mean entropy 3
    assert float(controller_loss(log_probs, rewards, 0.5, entropy, 0.1)) == pytest.approx(-0.55)
    assert moving_average(None, np.array([0.2, 0.4]), 0.8) == pytest.approx(0.3)  # the first mean starts it
    assert moving_average(1.0, np.array([0.0, 1.0]), 0.8) == pytest.approx(0.8 * 1.0 + 0.2 * 0.5)


def test_reinforce_teaches_the_controller_what_the_reward_favours():
    space = SearchSpace(num_layers=2)
    keras.utils.set_random_seed(0)
    controller = Controller(space, units=16)
    optimizer = keras.optimizers.Adam(0.02)
    baseline = None
    for step in range(25):
        choices = controller.sample(8, seed=step)
        reward = (choices[:, 1] == 2).astype(np.float32)  # 1 when layer 0's kernel is the third option
        baseline = moving_average(baseline, reward, 0.8)
        with tf.GradientTape() as tape:
            loss = controller_loss(*controller.log_prob_and_entropy(choices)[:1], reward, baseline,
                                   tf.zeros([8]))
        optimizer.apply(tape.gradient(loss, controller.trainable_variables), controller.trainable_variables)
    # it starts at 1/3 and ends near certain
    assert (controller.sample(200, seed=99)[:, 1] == 2).mean() > 0.9
    assert space.decode(controller.mode())[0].kernel_size == 5


def test_children_are_the_cnns_their_architectures_name():
    model = build_child((Layer(8, 3, True), Layer(16, 1, False)), (8, 8, 1), 10)
    assert model(np.zeros((2, 8, 8, 1), np.float32)).shape == (2, 10)
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size) for c in convolutions] == [(8, (3, 3)), (16, (1, 1))]
    # the skip concatenates the input (1 channel) onto the first layer's 8: the second sees 9
    assert convolutions[1].kernel.shape == (1, 1, 9, 16)
