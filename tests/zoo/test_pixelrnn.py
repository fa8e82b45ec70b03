"""PixelRNN: skewing and the down-shift by hand, causality by gradients (no blind spot for the
Diagonal BiLSTM, the triangle of the Row LSTM), likelihood arithmetic, fast and naive
samplers that agree, and signatures that load through the server's session path."""
import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import exported, jacobian, raster_dependence
from zoo.pixelrnn import DiagonalBiLSTM, PixelRNN, PixelRNNConfig, skew, unskew

CONFIGS = {
    "row-1": PixelRNNConfig(image_shape=(5, 5, 1), layer="row", recurrent_layers=2, hidden_units=4, first_kernel=3,
                            output_units=4),
    "row-3": PixelRNNConfig(image_shape=(4, 4, 3), layer="row", recurrent_layers=2, hidden_units=6, first_kernel=3,
                            output_units=6, output="categorical", num_classes=3),
    "diagonal-1": PixelRNNConfig(image_shape=(5, 5, 1), layer="diagonal", recurrent_layers=2, hidden_units=4,
                                 first_kernel=3, output_units=4),
    "diagonal-3": PixelRNNConfig(image_shape=(4, 4, 3), layer="diagonal", recurrent_layers=2, hidden_units=6,
                                 first_kernel=3, output_units=6, output="categorical", num_classes=3),
}


def labels_for(config, count):
    return tf.constant(np.arange(count) % config.num_classes, tf.int64) if config.conditional else None


def test_skew_shifts_row_y_right_by_y_and_unskew_undoes_it():
    maps = tf.constant([[1., 2.],
                        [3., 4.],
                        [5., 6.]])  # [H, W] = [3, 2]
    skewed = skew(maps)  # [W + H - 1, H]: diagonal t, row y
    np.testing.assert_array_equal(tf.transpose(skewed), [[1, 2, 0, 0],
                                                         [0, 3, 4, 0],
                                                         [0, 0, 5, 6]])
    np.testing.assert_array_equal(unskew(skewed, 2), maps)
    np.testing.assert_array_equal(tf.transpose(skew(maps, fill=-1.0))[0], [1, 2, -1, -1])


def test_each_diagonal_direction_sees_its_quadrant_and_the_right_to_left_one_is_shifted_down():
    height, width = 3, 4
    config = PixelRNNConfig(image_shape=(height, width, 1), hidden_units=2)
    keras.utils.set_random_seed(0)
    layer = DiagonalBiLSTM(config)
    # row i of the batch is for output position i (a random projection of its h features): one backward pass
    count = height * width
    inputs = tf.repeat(tf.random.normal((1, height, width, 4), seed=1), count, axis=0)  # the 2h-feature stream
    pixels = tf.repeat(tf.random.normal((1, height, width, 1), seed=2), count, axis=0)  # read by right-to-left only
    layer(inputs, pixels)  # builds it
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([inputs, pixels])
        left, right = layer.directions(inputs, pixels)
        own = tf.eye(count)[:, :, None] * tf.random.normal([2], seed=3)  # [count, H*W, h]
        left_own, right_own = (tf.reduce_sum(tf.reshape(out, [count, count, 2]) * own) for out in (left, right))

    def seen(own, source):  # [y, x, y', x']
        return np.abs(tape.gradient(own, source).numpy()).sum(axis=-1).reshape(height, width, height, width) != 0

    # output (2, 1): left-to-right sees rows 0..2 in columns 0..1 (its own position too: mask B);
    # right-to-left sees columns 1..3 of the rows above only, after the shift
    np.testing.assert_array_equal(seen(left_own, inputs)[2, 1], [[1, 1, 0, 0],
                                                                 [1, 1, 0, 0],
                                                                 [1, 1, 0, 0]])
    np.testing.assert_array_equal(seen(right_own, inputs)[2, 1], [[0, 1, 1, 1],
                                                                  [0, 1, 1, 1],
                                                                  [0, 0, 0, 0]])
    np.testing.assert_array_equal(right[0, 0], np.zeros((width, 2)))  # row 0 takes the zeros shifted in
    # every position: left sees y' <= y, x' <= x; right sees y' < y, x' >= x, of the stream and the pixels
    y, x, y2, x2 = np.indices((height, width, height, width))
    np.testing.assert_array_equal(seen(left_own, inputs), (y2 <= y) & (x2 <= x))
    np.testing.assert_array_equal(seen(right_own, inputs), (y2 < y) & (x2 >= x))
    np.testing.assert_array_equal(seen(right_own, pixels), (y2 < y) & (x2 >= x))
    assert not seen(left_own, pixels).any()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_models_are_causal_and_the_diagonal_bilstm_has_no_blind_spot(name):
    config = CONFIGS[name]
    keras.utils.set_random_seed(0)
    model = PixelRNN(config)
    height, width, channels = config.image_shape
    grads = jacobian(lambda x: model.logits(x, labels_for(config, 1)), height, width, channels)
    # own value, later channels of the same pixel (R < G < B) and later pixels: exactly zero
    allowed = raster_dependence(height, width, channels, strict_channels=True)
    assert np.all(grads[~allowed] == 0), "an output depends on its own or a later value"
    if config.layer == "diagonal":
        assert np.all(grads[allowed] != 0), np.argwhere((grads == 0) & allowed)[:5]
    else:  # the Row LSTM's triangle misses some earlier pixels (see the next test)
        assert np.any(grads[allowed] == 0)
    if channels == 3:  # within a pixel: G sees R, B sees R and G
        assert np.all(grads[2, 2, 1, 2, 2, 0] != 0) and np.all(grads[2, 2, 2, 2, 2, :2] != 0)


def test_without_reading_the_pixels_the_right_to_left_direction_leaves_the_papers_blind_spot():
    # the stream at (y, x) never holds pixel (y, x) (mask A), so the right-to-left direction never carries
    # (y-1, W-1), and the first layer (3x3: one column each side) reaches it only from x >= W - 2
    config = PixelRNNConfig(image_shape=(5, 7, 1), layer="diagonal", recurrent_layers=2, hidden_units=4,
                            first_kernel=3, output_units=4)
    keras.utils.set_random_seed(0)
    model = PixelRNN(config)
    for layer in model.recurrent:
        layer.pixels_to_state.kernel.assign(tf.zeros_like(layer.pixels_to_state.kernel))
    grads = jacobian(model.logits, 5, 7, 1)[:, :, 0, :, :, 0]
    blind = (grads == 0) & raster_dependence(5, 7, 1, strict_channels=True)[:, :, 0, :, :, 0]
    expected = {(y, x, y - 1, 6) for y in range(1, 5) for x in range(5)}
    assert set(map(tuple, np.argwhere(blind))) == expected


# What output (4, 3) of a 5x7 image sees, for a 3x3 mask-A first layer and k = 3: the first layer
# sees (y-1, x-1..x+1) and (y, x-1); each Row LSTM layer sees its inputs at (y, x-1..x) and the
# states at (y-1, x-1..x+1), so the layers' inputs at row y - d in columns x-1-d .. x+d (one
# layer); each further layer reaches one more column to the left. Composed: row y - e, for e >= 1,
# columns x - e - L - 1 .. x + e, and row y itself columns x - L - 1 .. x - 1, with L layers.
TRIANGLES = {
    1: [[1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 1],   # e = 3: columns -2..6
        [1, 1, 1, 1, 1, 1, 0],   # e = 2: columns -1..5
        [1, 1, 1, 1, 1, 0, 0],   # e = 1: columns 0..4
        [0, 1, 1, 0, 0, 0, 0]],  # e = 0: columns 1..2
    2: [[1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1, 0],   # e = 2: columns -2..5
        [1, 1, 1, 1, 1, 0, 0],   # e = 1: columns -1..4
        [1, 1, 1, 0, 0, 0, 0]],  # e = 0: columns 0..2
}


@pytest.mark.parametrize("depth", [1, 2])
def test_the_row_lstm_sees_the_triangle_above_the_pixel(depth):
    config = PixelRNNConfig(image_shape=(5, 7, 1), layer="row", recurrent_layers=depth, hidden_units=4,
                            first_kernel=3, row_kernel=3, output_units=4)
    keras.utils.set_random_seed(0)
    model = PixelRNN(config)
    grads = jacobian(model.logits, 5, 7, 1)
    np.testing.assert_array_equal(grads[4, 3, 0, :, :, 0] != 0, np.array(TRIANGLES[depth], bool))


@pytest.mark.parametrize("name", ["row-1", "diagonal-3"])
def test_log_prob_is_in_nats_and_bits_per_dim_divides_by_hwc_ln2(name):
    config = CONFIGS[name]
    keras.utils.set_random_seed(0)
    model = PixelRNN(config)
    height, width, channels = config.image_shape
    levels = config.levels
    images = tf.constant(np.random.default_rng(0).integers(0, levels, (3, height, width, channels)) / (levels - 1),
                         tf.float32)
    labels = labels_for(config, 3)
    log_prob = model.log_prob(images, labels)
    np.testing.assert_allclose(model.bits_per_dim(log_prob), -log_prob / (height * width * channels * math.log(2)),
                               rtol=1e-6)
    terms = model.loss_terms(images, labels, tf.constant([0, 0], tf.int64))
    np.testing.assert_array_equal(terms["loss"], -log_prob)
    # untrained, the logits are near 0: near log2(levels) bits per value (1 or 8)
    np.testing.assert_allclose(model.bits_per_dim(log_prob), np.log2(levels), rtol=0.1)
    # with the last layer's weights zeroed every value has probability 1/levels: 5*5*1*ln 2 = 17.33 nats
    # (row-1), 4*4*3*ln 256 = 266.17 nats (diagonal-3); that is 1 and 8 bits per dimension
    model.head[-1].kernel.assign(tf.zeros_like(model.head[-1].kernel))
    expected = {"row-1": 17.3287, "diagonal-3": 266.1685}[name]
    np.testing.assert_allclose(-model.log_prob(images, labels), expected, rtol=1e-5)
    np.testing.assert_allclose(model.bits_per_dim(model.log_prob(images, labels)), np.log2(levels), rtol=1e-6)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fast_sampler_gives_the_naive_samples_and_keeps_known_rows(name):
    config = CONFIGS[name]
    keras.utils.set_random_seed(1)
    model = PixelRNN(config)
    levels = config.levels
    images = tf.constant(np.random.default_rng(2).integers(0, levels, (4, *config.image_shape)) / (levels - 1),
                         tf.float32)
    known = tf.constant([1, 0, 2, 0])  # rows 1 and 3 are plain samples
    seeds = tf.constant([3, 4, 5, 6], tf.int64)
    labels = labels_for(config, 4)
    fast = model.complete_fast(images, known, seeds, labels).numpy()
    np.testing.assert_array_equal(fast, tf.function(model.complete)(images, known, seeds, labels).numpy())
    np.testing.assert_array_equal(fast[0, :1], images[0, :1])
    np.testing.assert_array_equal(fast[2, :2], images[2, :2])
    assert not np.array_equal(fast[2, 2:], images[2, 2:])
    np.testing.assert_array_equal(np.round(fast * (levels - 1)) / (levels - 1), fast)  # valid values only
    # a row's sample depends on its seed (and label) alone, not on the rest of the batch
    alone = model.sample(seeds[3:], None if labels is None else labels[3:])
    np.testing.assert_array_equal(alone[0], fast[3])
    assert not np.array_equal(fast[1], fast[3])


@pytest.mark.parametrize("layer", ["row", "diagonal"])
def test_a_few_steps_of_training_raise_the_likelihood(layer):
    config = PixelRNNConfig(image_shape=(8, 8, 1), layer=layer, recurrent_layers=1, hidden_units=8, output_units=8)
    keras.utils.set_random_seed(0)
    model = PixelRNN(config)
    images = tf.cast(tf.random.uniform((16, 8, 8, 1), seed=5) < tf.linspace(0.1, 0.9, 8)[None, :, None, None],
                     tf.float32)
    optimizer = keras.optimizers.Adam(1e-2)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss_terms(images, None, tf.constant([0, 0], tf.int64))["loss"])
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    before = float(step())
    for _ in range(30):
        after = float(step())
    assert after < before - 5


def test_signatures_load_and_answer_through_the_servers_session_path(tmp_path):
    config = dataclasses.replace(CONFIGS["diagonal-3"], recurrent_layers=1)  # conditional, RGB; small to trace
    model = PixelRNN(config)
    run = exported(model, tmp_path / "1")  # loaded by the session-based loader, as TF Serving loads it
    assert model.signature_expectations().keys() == set(run.signatures)
    seeds = np.array([5, 6], np.int64)
    labels = {"label": np.array([2, 0], np.int64)}
    tf_labels = tf.constant(labels["label"])
    np.testing.assert_array_equal(run("serving_default", seed=seeds, **labels)["images"],
                                  model.sample(tf.constant(seeds), tf_labels).numpy())
    images = np.random.default_rng(0).integers(0, config.levels, (2, *config.image_shape)) / (config.levels - 1)
    images = images.astype(np.float32)
    scored = run("log_prob", images=images, **labels)
    np.testing.assert_allclose(scored["log_prob"], model.log_prob(images, tf_labels).numpy(), rtol=1e-5)
    np.testing.assert_allclose(scored["bits_per_dim"], model.bits_per_dim(scored["log_prob"]), rtol=1e-6)
    completed = run("complete", images=images, known_rows=np.array([1, 2], np.int64), seed=seeds, **labels)
    np.testing.assert_array_equal(completed["images"],
                                  model.complete_fast(images, tf.constant([1, 2]), tf.constant(seeds), tf_labels).numpy())
    np.testing.assert_array_equal(run("sample", seed=seeds, **labels)["images"],
                                  run("serving_default", seed=seeds, **labels)["images"])
