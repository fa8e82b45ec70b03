"""The architecture search's pieces: both spaces decode to the networks they name, the
controller is a proper distribution over a whole space, FLOPs and the FLOPs-aware reward by
hand, REINFORCE's and PPO's arithmetic, and a controller that learns which choice a reward
favours."""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo.nas import (Block, Cells, CellSpace, Controller, Layer, Layers, LayerSpace, controller_loss, flops_reward,
                     moving_average, multiply_adds, ppo_controller_loss)


def test_choices_decode_to_layers():
    space = LayerSpace()
    assert space.size == (3 * 3 * 2) ** 3
    architecture = space.decode(np.array([2, 1, 1, 0, 0, 0, 1, 2, 0]))
    assert architecture == Layers((Layer(32, 3, True), Layer(8, 1, False), Layer(16, 5, False)))
    assert str(architecture) == "conv32x3+skip > conv8x1 > conv16x5"


def test_the_controller_is_a_distribution_over_the_whole_space():
    space = LayerSpace(num_layers=2, filters=(8, 16), kernel_sizes=(1, 3), skips=(False, True))
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
    space = LayerSpace(num_layers=2)
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
    assert space.decode(controller.mode()).layers[0].kernel_size == 5


def test_children_are_the_cnns_their_architectures_name():
    model = Layers((Layer(8, 3, True), Layer(16, 1, False))).build((8, 8, 1), 10)
    assert model(np.zeros((2, 8, 8, 1), np.float32)).shape == (2, 10)
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size) for c in convolutions] == [(8, (3, 3)), (16, (1, 1))]
    # the skip concatenates the input (1 channel) onto the first layer's 8: the second sees 9
    assert convolutions[1].kernel.shape == (1, 1, 9, 16)


def test_cell_choices_decode_to_blocks():
    space = CellSpace(blocks=2)
    # block 0 reads c-1 or c-2, block 1 also b0: (2*2*6*6*2) (3*3*6*6*2) per cell, two cells
    assert len(space.decisions) == 20 and space.size == (288 * 648) ** 2
    assert space.decisions[5] == ("normal/b1/left_input", ("c-1", "c-2", "b0"))
    # normal: b0 = add(sep_conv_3x3(c-1), identity(c-2)); b1 = concat(max_pool_3x3(b0), conv_3x3(c-1))
    # reduction: b0 = add(avg_pool_3x3(c-2), sep_conv_5x5(c-1)); b1 = add(identity(c-1), conv_3x3(c-2))
    cells = space.decode(np.array([0, 1, 1, 0, 0, 2, 0, 3, 5, 1,
                                   1, 0, 4, 2, 0, 0, 1, 0, 5, 0]))
    assert cells == NORMAL_AND_REDUCTION
    assert str(cells) == ("normal: b0 = add(sep_conv_3x3(c-1), identity(c-2)); b1 = concat(max_pool_3x3(b0), "
                          "conv_3x3(c-1)) | reduction: b0 = add(avg_pool_3x3(c-2), sep_conv_5x5(c-1)); "
                          "b1 = add(identity(c-1), conv_3x3(c-2))")
    with pytest.raises(ValueError, match="operations must be some of identity, sep_conv_3x3"):
        CellSpace(operations=("dil_conv_3x3",))


NORMAL_AND_REDUCTION = Cells(
    normal=(Block(("c-1", "c-2"), ("sep_conv_3x3", "identity"), "add"),
            Block(("b0", "c-1"), ("max_pool_3x3", "conv_3x3"), "concat")),
    reduction=(Block(("c-2", "c-1"), ("avg_pool_3x3", "sep_conv_5x5"), "add"),
               Block(("c-1", "c-2"), ("identity", "conv_3x3"), "add")),
    filters=16, normal_cells=1)


def sources(model: keras.Model, name: str) -> list[str]:
    """Names of the layers whose outputs the layer `name` reads, in order."""
    inputs = model.get_layer(name).input
    producers = {id(layer.output): layer.name for layer in model.layers}
    return [producers[id(tensor)] for tensor in (inputs if isinstance(inputs, list) else [inputs])]


def test_the_decoded_cells_are_the_keras_graph_they_name():
    model = NORMAL_AND_REDUCTION.build((8, 8, 1), 10)
    assert model(np.zeros((2, 8, 8, 1), np.float32)).shape == (2, 10)
    layer = model.get_layer
    # the skeleton: stem, normal cell, reduction cell, normal cell, pooling, logits
    assert sources(model, "cell0_normal.c-1") == sources(model, "cell0_normal.c-2") == ["stem"]
    assert sources(model, "cell1_reduction.c-1") == ["cell0_normal.b1.concat.project"]  # b0 is read: b1 is the output
    assert sources(model, "cell1_reduction.c-2") == ["stem"]
    assert sources(model, "cell2_normal.c-1") == ["cell1_reduction.output"]
    assert sources(model, "cell2_normal.c-2") == ["cell0_normal.b1.concat.project"]
    assert layer("cell2_normal.c-2").strides == (2, 2)  # the cell before the reduction is twice the size
    assert sources(model, "pool") == ["cell2_normal.b1.concat.project"] and sources(model, "logits") == ["pool"]

    # normal cell: b0 = add(sep_conv_3x3(c-1), identity(c-2)); b1 = concat(max_pool_3x3(b0), conv_3x3(c-1))
    assert sources(model, "cell0_normal.b0.left-sep_conv_3x3") == ["cell0_normal.c-1"]
    assert sources(model, "cell0_normal.b0.add") == ["cell0_normal.b0.left-sep_conv_3x3", "cell0_normal.c-2"]
    assert sources(model, "cell0_normal.b1.left-max_pool_3x3") == ["cell0_normal.b0.add"]
    assert sources(model, "cell0_normal.b1.right-conv_3x3") == ["cell0_normal.c-1"]
    assert sources(model, "cell0_normal.b1.concat") == ["cell0_normal.b1.left-max_pool_3x3",
                                                        "cell0_normal.b1.right-conv_3x3"]
    assert isinstance(layer("cell0_normal.b0.left-sep_conv_3x3"), keras.layers.SeparableConv2D)
    assert layer("cell0_normal.b0.left-sep_conv_3x3").kernel_size == (3, 3)
    assert isinstance(layer("cell0_normal.b1.left-max_pool_3x3"), keras.layers.MaxPooling2D)
    assert layer("cell0_normal.b1.concat").output.shape == (None, 8, 8, 32)  # two results of 16 channels
    assert layer("cell0_normal.b1.concat.project").output.shape == (None, 8, 8, 16)

    # reduction cell: b0 = add(avg_pool_3x3(c-2), sep_conv_5x5(c-1)); b1 = add(identity(c-1), conv_3x3(c-2)):
    # every operation on the cell's inputs has stride 2, and both blocks are unread, so both are the output
    assert sources(model, "cell1_reduction.b0.left-avg_pool_3x3") == ["cell1_reduction.c-2"]
    assert sources(model, "cell1_reduction.b0.right-sep_conv_5x5") == ["cell1_reduction.c-1"]
    assert sources(model, "cell1_reduction.b1.left-identity") == ["cell1_reduction.c-1"]
    assert isinstance(layer("cell1_reduction.b1.left-identity"), keras.layers.MaxPooling2D)
    assert layer("cell1_reduction.b1.left-identity").pool_size == (1, 1)  # identity at stride 2 keeps every other pixel
    assert layer("cell1_reduction.b0.right-sep_conv_5x5").kernel_size == (5, 5)
    assert {layer(f"cell1_reduction.b{i}.{side}").strides for i, side in [
        (0, "left-avg_pool_3x3"), (0, "right-sep_conv_5x5"), (1, "left-identity"), (1, "right-conv_3x3")]} == {(2, 2)}
    assert sources(model, "cell1_reduction.output") == ["cell1_reduction.b0.add", "cell1_reduction.b1.add"]
    assert layer("cell1_reduction.output").output.shape == (None, 4, 4, 64)  # two blocks of 2 x 16 channels
    # the second normal cell, at 4x4, reads with stride 1 everywhere but its c-2 squeeze
    assert layer("cell2_normal.b1.right-conv_3x3").strides == (1, 1)
    # and no layer the architecture does not name (an identity at stride 1 is no layer)
    normal = ["c-1", "c-2", "b0.left-sep_conv_3x3", "b0.add", "b1.left-max_pool_3x3", "b1.right-conv_3x3",
              "b1.concat", "b1.concat.project"]
    reduction = ["c-1", "c-2", "b0.left-avg_pool_3x3", "b0.right-sep_conv_5x5", "b0.add", "b1.left-identity",
                 "b1.right-conv_3x3", "b1.add", "output"]
    assert sorted(l.name for l in model.layers[1:]) == sorted(
        ["stem", "pool", "logits"] + [f"cell0_normal.{n}" for n in normal] + [f"cell2_normal.{n}" for n in normal]
        + [f"cell1_reduction.{n}" for n in reduction])


@pytest.mark.parametrize("space", [CellSpace(blocks=1, operations=("identity", "conv_3x3", "max_pool_3x3")),
                                   CellSpace(blocks=2, operations=("identity",), combinations=("concat",))])
def test_the_controller_is_a_distribution_over_the_whole_cell_space(space):
    keras.utils.set_random_seed(2)
    controller = Controller(space, units=8)
    every = np.array(list(itertools.product(*[range(len(options)) for _, options in space.decisions])))
    # blocks=1, three operations: (2*2 * 3*3 * 2)^2 = 5,184; blocks=2, one operation and one combination:
    # (2*2 * 3*3)^2 = 1,296 (block 1 may also read block 0)
    assert len(every) == space.size == {1: 5_184, 2: 1_296}[space.blocks]
    assert controller.probabilities(every).sum() == pytest.approx(1.0, abs=1e-4)
    draws = controller.sample(64, seed=0)
    assert all(str(space.decode(row)).startswith("normal: b0 = ") for row in draws)


def test_multiply_adds_by_hand():
    # conv 8x3 on 8x8x1: 8*8 positions * 3*3 window * 1 channel * 8 filters = 4,608; dense 8 -> 10: 80
    small = Layers((Layer(8, 3, False),)).build((8, 8, 1), 10)
    assert multiply_adds(small) == 4_608 + 80
    assert multiply_adds(Layers((Layer(16, 3, False),)).build((8, 8, 1), 10)) == 2 * (4_608 + 80)  # twice the filters
    cells = Cells(normal=(Block(("c-1", "c-1"), ("sep_conv_3x3", "identity"), "add"),),
                  reduction=(Block(("c-1", "c-2"), ("max_pool_3x3", "conv_3x3"), "concat"),), filters=4)
    # only what a block reads is built: the normal cell reads c-1 alone
    stem = 64 * 9 * 1 * 4                       # 2,304
    normal = 64 * 4 * 4 + 64 * 9 * 4 + 64 * 4 * 4   # c-1 squeeze 1,024; sep conv: depthwise 2,304 + pointwise 1,024
    # reduction, 8 channels: squeezes 2 * 64*4*8 = 4,096; conv 3x3 stride 2 on 4x4: 16*9*8*8 = 9,216;
    # the concat's 16 channels projected to 8: 16*16*8 = 2,048; max pooling and identity cost nothing
    reduction = 2 * 64 * 4 * 8 + 16 * 9 * 8 * 8 + 16 * 16 * 8
    # normal at 4x4, 8 channels: c-1 squeeze 16*8*8 = 1,024; sep conv 16*9*8 + 16*8*8 = 2,176
    second = 16 * 8 * 8 + 16 * 9 * 8 + 16 * 8 * 8
    assert multiply_adds(cells.build((8, 8, 1), 10)) == stem + normal + reduction + second + 8 * 10 == 25_296


def test_twice_the_flops_cost_a_factor_two_to_the_minus_w():
    one, two = (multiply_adds(Layers((Layer(f, 3, False),)).build((8, 8, 1), 10)) for f in (8, 16))
    assert two == 2 * one
    for w in (0.07, 0.5):
        assert flops_reward(0.9, two, 1e4, w) / flops_reward(0.9, one, 1e4, w) == pytest.approx(2 ** -w)
    assert flops_reward(0.9, one, one, 0.07) == pytest.approx(0.9)  # at the target: the accuracy
    assert flops_reward(0.9, two, None, 0.07) == 0.9  # no target: accuracy alone
    # 0.8 (1e5 / 4e5)^0.07 = 0.8 * 4^-0.07 = 0.8 * 0.90751 = 0.72601
    assert flops_reward(0.8, 4e5, 1e5, 0.07) == pytest.approx(0.72601, abs=1e-5)


def test_ppo_controller_loss_by_hand():
    log_probs = tf.Variable([-1.0, -2.0])
    old_log_probs, rewards, entropy = tf.constant([-1.0, -2.5]), tf.constant([1.0, 0.0]), tf.constant([2.0, 4.0])
    # A = R - b = [0.5, -0.5]; rho = exp(log_probs - old) = [1, e^0.5 = 1.64872]
    # row 0: min(1 * 0.5, clip(1) * 0.5) = 0.5; row 1: min(1.64872 * -0.5, 1.2 * -0.5) = min(-0.82436, -0.6) = -0.82436
    # loss = -mean(0.5, -0.82436) = 0.16218; with 0.1 * mean entropy 3: 0.16218 - 0.3 = -0.13782
    with tf.GradientTape() as tape:
        loss = ppo_controller_loss(log_probs, old_log_probs, rewards, 0.5, entropy, 0.2)
    assert float(loss) == pytest.approx(0.16218, abs=1e-5)
    assert float(ppo_controller_loss(log_probs, old_log_probs, rewards, 0.5, entropy, 0.2, 0.1)) == pytest.approx(
        -0.13782, abs=1e-5)
    # d/d log pi of -mean(rho A) = -rho A / 2: row 0: -0.25; row 1 (unclipped, the pessimistic term): 0.41218
    np.testing.assert_allclose(tape.gradient(loss, log_probs).numpy(), [-0.25, 0.41218], atol=1e-5)
    # rho = e^0.5 beyond 1 + 0.2 with A = +0.5: the clipped term 1.2 * 0.5 = 0.6 is the minimum; no gradient
    with tf.GradientTape() as tape:
        clipped = ppo_controller_loss(log_probs[1:], tf.constant([-2.5]), tf.constant([1.0]), 0.5, tf.zeros([1]), 0.2)
    assert float(clipped) == pytest.approx(-0.6)
    assert float(tf.reduce_sum(tape.gradient(clipped, log_probs))) == 0.0
    # before the first step (rho = 1) PPO's gradient is REINFORCE's: -A / 2 = [-0.25, 0.25]
    with tf.GradientTape(persistent=True) as tape:
        ppo = ppo_controller_loss(log_probs, tf.identity(log_probs), rewards, 0.5, entropy, 0.2)
        reinforce = controller_loss(log_probs, rewards, 0.5, entropy)
    np.testing.assert_allclose(tape.gradient(ppo, log_probs).numpy(), [-0.25, 0.25], atol=1e-6)
    np.testing.assert_allclose(tape.gradient(reinforce, log_probs).numpy(), [-0.25, 0.25], atol=1e-6)


def test_with_no_exponent_below_the_target_only_children_over_it_pay():
    # MnasNet's alpha = 0: under T the reward is the accuracy; over it, as the soft constraint
    assert flops_reward(0.8, 5e4, 1e5, 0.07, exponent_below=0) == 0.8
    assert flops_reward(0.8, 1e5, 1e5, 0.07, exponent_below=0) == 0.8  # at the target: not over it
    # soft: 0.8 (1e5 / 5e4)^0.07 = 0.8 * 2^0.07 = 0.8 * 1.04971 = 0.83977
    assert flops_reward(0.8, 5e4, 1e5, 0.07) == pytest.approx(0.83977, abs=1e-5)
    # over T both give 0.8 * 4^-0.07 = 0.72601
    assert flops_reward(0.8, 4e5, 1e5, 0.07, exponent_below=0) == pytest.approx(0.72601, abs=1e-5)
    rewards = flops_reward(np.array([0.9, 0.9]), np.array([5e4, 2e5]), 1e5, 1.0, exponent_below=0)
    np.testing.assert_allclose(rewards, [0.9, 0.45])  # 0.9 (1e5 / 2e5)^1 = 0.45
