"""The completion model: masks and terms by hand, the learned prior's KL by Monte Carlo,
completions that keep the given rows, a prior that sees only them, and its signatures."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import exported
from tests.zoo.helpers import binarized_digits, fit
from zoo.cvae import CVAE, CVAEConfig, known_mask, tfd, unknown_distortion

SMALL = CVAEConfig(image_shape=(8, 8, 1), latent_dim=3, hidden_units=(32,))


def random_images(count: int, seed: int = 0) -> tf.Tensor:
    return tf.cast(tf.random.stateless_uniform([count, 8, 8, 1], [seed, 1]) < 0.4, tf.float32)


def test_known_mask_and_unknown_distortion_by_hand():
    # 3x2 images, known_rows 0 and 2: the first mask is all 0, the second has rows 0 and 1 set.
    mask = known_mask(tf.constant([0, 2]), (3, 2, 1)).numpy()[..., 0]
    np.testing.assert_array_equal(mask, [[[0, 0], [0, 0], [0, 0]], [[1, 1], [1, 1], [0, 0]]])
    # Logits 0: every pixel costs ln 2 whatever its value; 6 unknown pixels, then 2: 6 ln 2 = 4.1589, 2 ln 2 = 1.3863.
    images = tf.constant(np.random.default_rng(0).integers(0, 2, (2, 3, 2, 1)), tf.float32)
    d = unknown_distortion(tfd.Bernoulli(logits=tf.zeros([2, 3, 2, 1])), images, tf.constant(mask[..., None]))
    np.testing.assert_allclose(d.numpy(), [6 * math.log(2), 2 * math.log(2)], rtol=1e-6)


def test_kl_to_the_learned_prior_matches_monte_carlo():
    keras.utils.set_random_seed(0)
    model = CVAE(SMALL)
    images, rows = random_images(4), tf.constant([0, 2, 4, 7])
    posterior, prior = model.posterior(images, rows), model.prior(images, rows)
    analytic = tfd.kl_divergence(posterior, prior).numpy()
    z = posterior.sample(20000, seed=tf.constant([3, 4], tf.int32))  # [n, 4, d]
    log_ratio = (posterior.log_prob(z) - prior.log_prob(z)).numpy()
    monte_carlo, standard_error = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(len(log_ratio))
    assert np.all(np.abs(monte_carlo - analytic) < 4 * standard_error + 1e-4), (monte_carlo, analytic, standard_error)
    assert np.all(analytic > 0.01)  # a prior other than q: the check has something to check
    np.testing.assert_allclose(model.conditional_elbo_terms(images, rows, tf.constant([0, 0]))["rate"].numpy(),
                               analytic, rtol=1e-5)


def test_the_prior_sees_only_the_known_rows():
    model = CVAE(SMALL)
    images, rows = random_images(3), tf.constant([2, 4, 6])
    other = tf.where(known_mask(rows, (8, 8, 1)) > 0, images, 1.0 - images)  # the unknown rows flipped
    np.testing.assert_array_equal(model.prior(images, rows).mean().numpy(), model.prior(other, rows).mean().numpy())
    seeds = tf.constant([1, 2, 3], tf.int64)
    np.testing.assert_array_equal(model.complete(images, rows, seeds).numpy(), model.complete(other, rows, seeds).numpy())
    assert np.abs(model.posterior(images, rows).mean() - model.posterior(other, rows).mean()).max() > 1e-4


def test_completions_keep_the_given_rows_bit_for_bit_and_differ_across_seeds():
    model = CVAE(SMALL)
    images = tf.random.stateless_uniform([2, 8, 8, 1], [5, 6])  # grey values: a copy, not a rounding
    images = tf.concat([images, images[:1]], axis=0)  # the third image is the first
    rows = tf.constant([4, 4, 4])
    first = model.complete(images, rows, tf.constant([1, 2, 1], tf.int64)).numpy()
    np.testing.assert_array_equal(first[:, :4], images.numpy()[:, :4])
    np.testing.assert_array_equal(first[0], first[2])  # same image, same seed
    assert np.abs(first[0, 4:] - first[1, 4:]).max() > 1e-3  # another seed, another completion
    alone = model.complete(images[1:2], rows[1:2], tf.constant([2], tf.int64)).numpy()
    np.testing.assert_allclose(alone[0], first[1], atol=1e-6)  # a row's completion depends on its seed alone


def test_a_short_training_run_learns_to_use_the_known_rows():
    """200 steps on the binarized 8x8 digits with a random split: the held-out conditional
    -ELBO falls, and completions of the bottom half from the top half land nearer the true
    grey digits than completions from nothing (mean squared error 0.068 against 0.081)."""
    train, held_out, data = binarized_digits()
    grey, held_out = tf.constant(data.test_images[:200]), tf.constant(held_out[:200])
    keras.utils.set_random_seed(0)
    model = CVAE(CVAEConfig(image_shape=(8, 8, 1), latent_dim=4, hidden_units=(64,)))

    def held_out_loss() -> float:
        return float(tf.reduce_mean(model.conditional_elbo_terms(held_out, tf.fill([200], 4), tf.constant([7, 7]))["loss"]))

    before = held_out_loss()
    fit(model, train, 200)
    after = held_out_loss()
    assert after < 0.6 * before, (before, after)
    seeds = tf.range(200, dtype=tf.int64)
    error = {rows: float(tf.reduce_mean(tf.square(model.complete(held_out, tf.fill([200], rows), seeds)[:, 4:]
                                                  - grey[:, 4:]))) for rows in (0, 4)}
    assert error[4] < 0.9 * error[0], error


def test_signatures_through_the_servers_session_path(tmp_path):
    model = CVAE(SMALL)
    run = exported(model, tmp_path / "1")
    assert run.signatures == ["complete", "elbo", "sample", "serving_default"]
    assert set(model.signature_expectations()) == set(run.signatures)
    images = random_images(3, seed=3).numpy()
    rows, seeds = np.array([0, 3, 8], np.int64), np.array([1, 2, 1], np.int64)
    completed = run("complete", images=images, known_rows=rows, seed=seeds)["images"]
    np.testing.assert_allclose(completed, model.complete(images, rows, seeds).numpy(), atol=1e-6)
    np.testing.assert_array_equal(completed[1, :3], images[1, :3])
    np.testing.assert_array_equal(completed[2], images[2])  # all 8 rows known
    again = run("complete", images=images, known_rows=rows, seed=np.array([7, 8, 9], np.int64))["images"]
    assert np.abs(again[1, 3:] - completed[1, 3:]).max() > 1e-3
    sampled = run("sample", seed=np.array([4, 5], np.int64))["images"]
    np.testing.assert_allclose(sampled, model.sample(tf.constant([4, 5], tf.int64)).numpy(), atol=1e-6)
    scored = run("elbo", images=images, known_rows=rows)
    np.testing.assert_allclose(scored["kl"], model.conditional_elbo_terms(images, rows, tf.constant([0, 0]))["rate"],
                               rtol=1e-4, atol=1e-6)
    with pytest.raises(Exception, match="known_rows must be in"):
        run("complete", images=images, known_rows=np.array([0, 9, 1], np.int64), seed=seeds)


def test_a_model_trained_at_a_fixed_split_refuses_other_splits():
    model = CVAE(CVAEConfig(image_shape=(8, 8, 1), latent_dim=3, hidden_units=(32,), known_rows=4))
    signatures = model.serving_signatures()
    assert "sample" not in signatures and set(signatures) == set(model.signature_expectations())
    complete = tf.function(signatures["complete"][0], input_signature=signatures["complete"][1])
    images, seeds = random_images(2), tf.constant([1, 2], tf.int64)
    completed = complete(images, tf.constant([4, 4], tf.int64), seeds)["images"]
    np.testing.assert_array_equal(completed[:, :4], images[:, :4])
    with pytest.raises(tf.errors.InvalidArgumentError, match="known_rows must be 4: this model was trained to "
                                                             "complete images from their first 4 rows only"):
        complete(images, tf.constant([4, 3], tf.int64), seeds)
    assert float(tf.reduce_min(model.training_rows(5, tf.constant([0, 0])))) == 4


def test_config_refuses_nonsense():
    with pytest.raises(ValueError, match="known_rows"):
        CVAEConfig(image_shape=(8, 8, 1), known_rows=8)
    with pytest.raises(ValueError, match="without --conditional"):
        CVAEConfig(num_classes=10)
