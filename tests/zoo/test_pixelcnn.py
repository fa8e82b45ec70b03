"""PixelCNN: masks that can fail, causality by gradients, no blind spot for the gated model,
likelihoods, and samplers that depend on the seed alone."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import exported, jacobian, raster_dependence
from zoo.pixelcnn import MaskedConv2D, PixelCNN, PixelCNNConfig, causal_mask


def test_mask_of_a_3x3_kernel_over_rgb():
    a = causal_mask((3, 3), (1, 1), 3, 3, 3, "A")
    b = causal_mask((3, 3), (1, 1), 3, 3, 3, "B")
    for mask in (a, b):
        assert mask[0].all() and mask[1, 0].all()          # the row above and the pixel to the left: all seen
        assert not mask[1, 2].any() and not mask[2].any()  # to the right and below: nothing
    # at the centre, output colour j sees input colours i < j (A) or i <= j (B)
    np.testing.assert_array_equal(a[1, 1], [[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(b[1, 1], [[1, 1, 1], [0, 1, 1], [0, 0, 1]])


@pytest.mark.parametrize("mask_type", ["A", "B"])
@pytest.mark.parametrize("channels", [1, 3])
def test_masked_convolution_is_causal(mask_type, channels):
    layer = MaskedConv2D(channels, 3, mask_type, channels)
    grads = jacobian(layer, 4, 4, channels)
    allowed = raster_dependence(4, 4, channels, strict_channels=mask_type == "A")
    assert np.all(grads[~allowed] == 0)
    assert np.count_nonzero(grads[allowed]) > 0


CONFIGS = {
    "pixelcnn-1": PixelCNNConfig(image_shape=(5, 5, 1), architecture="pixelcnn", filters=6, layers=3,
                                 first_kernel=5, kernel=3),
    "pixelcnn-3": PixelCNNConfig(image_shape=(4, 4, 3), architecture="pixelcnn", filters=6, layers=3,
                                 first_kernel=3, kernel=3, output="categorical"),
    "gated-1": PixelCNNConfig(image_shape=(5, 5, 1), architecture="gated", filters=6, layers=4,
                              first_kernel=5, kernel=3),
    "gated-3": PixelCNNConfig(image_shape=(4, 4, 3), architecture="gated", filters=6, layers=4,
                              first_kernel=5, kernel=3, output="categorical", num_classes=3),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_models_are_causal_and_the_gated_one_has_no_blind_spot(name):
    config = CONFIGS[name]
    keras.utils.set_random_seed(0)
    model = PixelCNN(config)
    labels = tf.constant([1], tf.int64) if config.conditional else None
    height, width, channels = config.image_shape
    grads = jacobian(lambda x: model.logits(x, labels), height, width, channels)
    allowed = raster_dependence(height, width, channels, strict_channels=True)
    assert np.all(grads[~allowed] == 0), "an output depends on its own or a later value"
    if config.architecture == "gated":
        # these nets reach the whole image: every earlier value must matter (no blind spot)
        assert np.all(grads[allowed] != 0), np.argwhere((grads == 0) & allowed)[:5]
    else:
        # the plain model's stacked 3x3 masks miss pixels up and to the right: its blind spot
        assert np.any(grads[allowed] == 0)


def test_log_prob_and_bits_per_dim():
    config = CONFIGS["gated-3"]
    model = PixelCNN(config)
    images = tf.random.uniform((2, *config.image_shape), seed=3)
    labels = tf.constant([0, 2], tf.int64)
    log_prob = model.log_prob(images, labels)
    assert log_prob.shape == (2,) and np.all(log_prob.numpy() < 0)
    # an untrained net is near uniform over 256 values: about 8 bits per dimension
    np.testing.assert_allclose(model.bits_per_dim(log_prob).numpy(), 8.0, atol=1.0)


@pytest.mark.parametrize("name", ["gated-1", "gated-3"])
def test_samples_depend_on_the_seed_alone_and_completion_keeps_known_rows(name):
    config = CONFIGS[name]
    model = PixelCNN(config)
    labels = tf.constant([1, 1, 1], tf.int64) if config.conditional else None
    sample = tf.function(model.sample, reduce_retracing=True)  # a graph runs the loops about twice as fast
    batch = sample(tf.constant([7, 8, 9], tf.int64), labels)
    alone = sample(tf.constant([8], tf.int64), labels if labels is None else labels[:1])
    np.testing.assert_array_equal(batch[1], alone[0])
    assert not np.array_equal(batch[0], batch[2])
    levels = np.round(batch.numpy() * (config.levels - 1))
    np.testing.assert_array_equal(levels / (config.levels - 1), batch.numpy())

    images = tf.random.uniform((3, *config.image_shape), seed=4)
    completed = tf.function(model.complete)(images, tf.constant([2, 0, 3]), tf.constant([1, 2, 3], tf.int64), labels)
    np.testing.assert_array_equal(completed[0, :2], images[0, :2])
    np.testing.assert_array_equal(completed[2, :3], images[2, :3])
    assert not np.array_equal(completed[0, 2:], images[0, 2:])


def test_a_few_steps_of_training_raise_the_likelihood():
    config = PixelCNNConfig(image_shape=(8, 8, 1), filters=8, layers=3)
    model = PixelCNN(config)
    images = tf.cast(tf.random.uniform((16, 8, 8, 1), seed=5) < tf.linspace(0.1, 0.9, 8)[None, :, None, None],
                     tf.float32)
    optimizer = keras.optimizers.Adam(1e-2)
    optimizer.build(model.trainable_variables)
    before = float(tf.reduce_mean(model.log_prob(images)))

    @tf.function  # one trace, then 40 graph calls (eager steps cost about ten times more here)
    def step():
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(model.log_prob(images))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    for _ in range(40):
        step()
    assert float(tf.reduce_mean(model.log_prob(images))) > before + 5


@pytest.mark.parametrize("name", list(CONFIGS))
def test_fast_sampler_gives_the_naive_samples(name):
    config = CONFIGS[name]
    keras.utils.set_random_seed(1)
    model = PixelCNN(config)
    seeds = tf.constant([3, 4, 5, 6], tf.int64)
    labels = tf.constant([0, 1, 2, 0], tf.int64) if config.conditional else None
    # as graphs (the loops run about twice as fast as eagerly)
    naive = tf.function(lambda: model.sample(seeds, labels, temperature=1.0, fast=False))()
    fast = tf.function(lambda: model.sample(seeds, labels, temperature=1.0, fast=True))()
    np.testing.assert_array_equal(fast.numpy(), naive.numpy())
    images = tf.random.uniform((4, *config.image_shape), seed=6)
    known = tf.constant([1, 2, 0, 3])
    np.testing.assert_array_equal(tf.function(model.complete_fast)(images, known, seeds, labels).numpy(),
                                  tf.function(model.complete)(images, known, seeds, labels).numpy())


@pytest.mark.parametrize("name", ["gated-3", "pixelcnn-1"])
def test_signatures_load_and_answer_through_the_servers_session_path(name, tmp_path):
    config = CONFIGS[name]
    model = PixelCNN(config)
    model.build_all()
    run = exported(model, tmp_path / "1")  # loaded by the session-based loader, as TF Serving loads it
    seeds = np.array([5, 6], np.int64)
    labels = {"label": np.array([2, 0], np.int64)} if config.conditional else {}
    tf_labels = tf.constant(labels["label"]) if labels else None
    np.testing.assert_array_equal(run("sample", seed=seeds, **labels)["images"],
                                  tf.function(model.sample)(tf.constant(seeds), tf_labels).numpy())
    images = np.random.default_rng(0).integers(0, config.levels, (2, *config.image_shape)) / (config.levels - 1)
    images = images.astype(np.float32)
    scored = run("log_prob", images=images, **labels)
    np.testing.assert_allclose(scored["log_prob"], model.log_prob(images, tf_labels).numpy(), rtol=1e-5)
    completed = run("complete", images=images, known_rows=np.array([1, 2], np.int64), seed=seeds, **labels)
    np.testing.assert_array_equal(completed["images"][0, :1], images[0, :1])
    np.testing.assert_array_equal(completed["images"][1, :2], images[1, :2])
    with pytest.raises(Exception, match="known_rows must be in"):
        run("complete", images=images, known_rows=np.array([9, 0], np.int64), seed=seeds, **labels)
