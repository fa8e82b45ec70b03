"""The VAE's objective, bound and sampling, checked by hand and by Monte Carlo."""
import math

import numpy as np
import pytest
import tensorflow as tf

from zoo.vae import VAE, VAEConfig, distortion, image_distribution, importance_weighted_bound, rate, tfd

SMALL = VAEConfig(image_shape=(8, 8, 1), architecture="mlp", latent_dim=3, hidden_units=(16,))


def test_distortion_of_zero_logits_is_log2_per_pixel():
    # logits 0 -> p = 1/2 for every pixel, whatever its value: D = 64 * ln 2 = 44.3614 nats.
    images = tf.constant(np.random.default_rng(0).integers(0, 2, (3, 8, 8, 1)), tf.float32)
    d = distortion(image_distribution(tf.zeros([3, 8, 8, 1]), "bernoulli"), images)
    np.testing.assert_allclose(d.numpy(), [64 * math.log(2)] * 3, rtol=1e-6)


def test_rate_of_unit_scale_posterior_is_half_squared_mean():
    # KL(N(mu, I) || N(0, I)) = 0.5 * |mu|^2: mu = (1, 2, 2) -> 0.5 * 9 = 4.5.
    posterior = tfd.MultivariateNormalDiag(loc=[[1.0, 2.0, 2.0]], scale_diag=[[1.0, 1.0, 1.0]])
    prior = tfd.MultivariateNormalDiag(loc=tf.zeros(3), scale_diag=tf.ones(3))
    np.testing.assert_allclose(rate(posterior, prior).numpy(), [4.5], rtol=1e-6)


def test_importance_weighted_bound_of_equal_weights_is_that_weight():
    # log (1/k) sum_i exp(c) = c for any k.
    np.testing.assert_allclose(importance_weighted_bound(tf.fill([7, 2], -3.0)).numpy(), [-3.0, -3.0], rtol=1e-6)


def test_analytic_kl_matches_monte_carlo():
    model = VAE(SMALL)
    images = tf.random.stateless_uniform([4, 8, 8, 1], seed=[1, 2])
    posterior = model.posterior(images)
    analytic = rate(posterior, model.prior).numpy()
    z = posterior.sample(20000, seed=tf.constant([3, 4], tf.int32))  # [n, 4, d]
    log_ratio = (posterior.log_prob(z) - model.prior.log_prob(z)).numpy()
    monte_carlo, standard_error = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(len(log_ratio))
    assert np.all(np.abs(monte_carlo - analytic) < 4 * standard_error + 1e-3), (monte_carlo, analytic)


def test_importance_weighted_bound_is_above_elbo_and_tightens_with_k(smoke_run):
    from export.savedmodel import load_run
    from training.data import load_images

    model, _ = load_run(smoke_run[0])
    images = tf.constant((load_images("mnist").test_images[:200] > 0.5).astype(np.float32))
    elbo = float(tf.reduce_mean(-model.loss_terms(images, None, tf.constant([5, 6]))["loss"]))

    def bound(k: int) -> float:
        return float(tf.reduce_mean(model.importance_weighted_log_likelihood(images, None, k, tf.constant([7, k]))))

    k1, k10, k100 = bound(1), bound(10), bound(100)
    assert abs(k1 - elbo) < 3.0  # k = 1 is a one-sample ELBO estimate
    assert elbo < k10 < k100, (elbo, k1, k10, k100)


def test_sample_rows_depend_only_on_their_seed():
    model = VAE(SMALL)
    first = model.sample(tf.constant([1, 2, 1], tf.int64)).numpy()
    again = model.sample(tf.constant([2, 1], tf.int64)).numpy()
    np.testing.assert_array_equal(first[0], first[2])
    assert np.abs(first[0] - first[1]).max() > 1e-4
    np.testing.assert_allclose(again[1], first[0], atol=1e-6)  # another batch, another position


@pytest.mark.parametrize("kind", ["ae", "dae"])
def test_autoencoders_have_no_rate_and_zero_stddev(kind):
    model = VAE(VAEConfig(**{**SMALL.__dict__, "kind": kind}))
    images = tf.random.stateless_uniform([2, 8, 8, 1], seed=[0, 1])
    terms = model.loss_terms(images, None, tf.constant([0, 0]))
    assert set(terms) == {"loss", "distortion"}
    assert np.all(model.encode(images)[1].numpy() == 0)
    assert "elbo" not in model.serving_signatures()


def test_denoising_autoencoder_is_scored_on_clean_images_from_noisy_inputs():
    config = VAEConfig(**{**SMALL.__dict__, "kind": "dae", "noise_stddev": 0.5})
    model = VAE(config)
    images = tf.random.stateless_uniform([2, 8, 8, 1], seed=[0, 1])
    with_noise = model.loss_terms(images, None, tf.constant([0, 0]))["loss"]
    clean_code = model.encode(images)[0]
    without_noise = distortion(model.likelihood(clean_code), images)
    assert not np.allclose(with_noise.numpy(), without_noise.numpy())


def test_conditional_model_asks_for_labels():
    model = VAE(VAEConfig(**{**SMALL.__dict__, "num_classes": 10}))
    with pytest.raises(ValueError, match="pass a label"):
        model.encode(tf.zeros([1, 8, 8, 1]))
    images = model.sample(tf.constant([1, 1], tf.int64), tf.constant([3, 4], tf.int64)).numpy()
    assert np.abs(images[0] - images[1]).max() > 1e-4  # same z, different label


def test_config_rejects_nonsense():
    with pytest.raises(ValueError, match="latent_dim"):
        VAEConfig(latent_dim=0)
    with pytest.raises(ValueError, match="beta"):
        VAEConfig(beta=-1.0)
