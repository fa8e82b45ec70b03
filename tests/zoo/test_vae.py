"""The VAE's objective, bound, sampling and gradient estimators, checked by hand and by Monte Carlo."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import exported
from tests.zoo.helpers import binarized_digits, fit
from zoo.vae import (GAUSSIAN_SCALE_FLOOR, LOG_PROB_SAMPLES, VAE, VAEConfig, adam_ascent, bits_per_dim, dequantize,
                     discrete_log_likelihood, distortion, encoder_gradient_moments, image_distribution,
                     importance_weighted_bound, leave_one_out_baseline, parameter_counts, rate, refine_posterior,
                     score_function_surrogate, tfd)

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


@pytest.fixture(scope="module")
def digits_vae():
    """An MLP VAE (d = 16) trained for 300 steps on binarized 8x8 digits, and 32 held-out digits."""
    train, held_out, _ = binarized_digits()
    keras.utils.set_random_seed(0)
    model = VAE(VAEConfig(image_shape=(8, 8, 1), architecture="mlp", latent_dim=16, hidden_units=(32,)))
    fit(model, train, 300)
    return model, tf.constant(held_out[:32])


def test_leave_one_out_baseline_by_hand():
    # signals 1, 2, 6 (M = 3): baselines (2 + 6) / 2 = 4, (1 + 6) / 2 = 3.5, (1 + 2) / 2 = 1.5.
    np.testing.assert_allclose(leave_one_out_baseline(tf.constant([[1.0], [2.0], [6.0]])).numpy(),
                               [[4.0], [3.5], [1.5]])


def test_score_function_surrogate_is_zero_and_has_the_reinforce_gradient():
    # log q_m = w * a_m with a = (1, 0, 2) at w = 0.5; signals f = (1, 2, 6), baselines (4, 3.5, 1.5):
    # advantages (-3, -1.5, 4.5); gradient (1/3)(-3 * 1 - 1.5 * 0 + 4.5 * 2) = 6 / 3 = 2.
    # Without a baseline: (1/3)(1 * 1 + 2 * 0 + 6 * 2) = 13 / 3.
    w = tf.Variable(0.5)
    a = tf.constant([[1.0], [0.0], [2.0]])
    f = tf.constant([[1.0], [2.0], [6.0]])
    for baseline, expected in (("leave_one_out", 2.0), ("none", 13 / 3)):
        with tf.GradientTape() as tape:
            surrogate = score_function_surrogate(f, w * a, baseline)
        assert float(surrogate[0]) == 0.0
        np.testing.assert_allclose(float(tape.gradient(surrogate, w)), expected, rtol=1e-6)


def test_both_estimators_give_the_same_loss_value():
    model = VAE(SMALL)
    images = tf.random.stateless_uniform([4, 8, 8, 1], seed=[1, 2])
    seed = tf.constant([3, 4], tf.int64)
    reparameterized = model.elbo_terms(images, None, seed, "reparameterized", 5)
    score = model.elbo_terms(images, None, seed, "score_function", 5)
    for name in ("loss", "distortion", "rate", "elbo"):
        np.testing.assert_allclose(score[name].numpy(), reparameterized[name].numpy(), rtol=1e-6)
    np.testing.assert_array_equal(model.loss_terms(images, None, seed)["loss"].numpy(),
                                  model.elbo_terms(images, None, seed, "reparameterized", 1)["loss"].numpy())


def test_estimators_agree_in_the_mean_and_the_score_function_varies_far_more(digits_vae):
    """1,000 four-sample estimates each, independent seeds, on 32 held-out digits at fixed weights.

    Per encoder parameter, z = (mean_rep - mean_sf) / sqrt(se_rep^2 + se_sf^2) with
    se = sqrt(variance / 1000): unbiased estimators give z ~ N(0, 1), so |z| > 3 for about
    0.3% of the parameters; the encoder's final biases (the posterior's 32 mean and scale
    biases) must each be within 4 standard errors. The gradient without the reconstruction
    term's encoder part (the KL's alone) is refused by the same check. Measured here: |z| > 3
    for 0.38% of the 1,056 parameters that get a gradient (max 4.0); the first mean bias
    0.0802 +- 0.0021 (reparameterized) against 0.0750 +- 0.0077 (score function); summed
    variances 1.07 and 19.9, a ratio of 18.5 (1,800 without the baseline).
    """
    model, images = digits_vae
    draws = 1000
    reparameterized = encoder_gradient_moments(model, images, None, "reparameterized", 4, draws, seed=1)
    score = encoder_gradient_moments(model, images, None, "score_function", 4, draws, seed=2)
    with tf.GradientTape() as tape:
        rate_only = tf.reduce_mean(model.elbo_terms(images, None, tf.constant([0, 0]))["rate"])
    kl_gradient = dict(zip([v.path for v in model.encoder_variables], tape.gradient(rate_only, model.encoder_variables)))

    z_all, z_wrong = [], []
    for path, rep in reparameterized.items():
        sf = score[path]
        se = np.sqrt((rep["variance"] + sf["variance"]) / draws)
        alive = se > 0  # units that no image switches on have gradient 0 under both estimators
        z = (rep["mean"] - sf["mean"])[alive] / se[alive]
        z_all.append(z)
        z_wrong.append((kl_gradient[path].numpy() - sf["mean"])[alive] / se[alive])
        if path.endswith("dense_1/bias"):  # the posterior's mean and scale biases
            assert np.all(np.abs(z) < 4), z
    z_all, z_wrong = np.concatenate(z_all), np.concatenate(z_wrong)
    assert np.mean(np.abs(z_all) > 3) < 0.01, np.mean(np.abs(z_all) > 3)
    assert np.mean(np.abs(z_wrong) > 3) > 0.1, np.mean(np.abs(z_wrong) > 3)

    total = {name: sum(float(m["variance"].sum()) for m in moments.values())
             for name, moments in (("reparameterized", reparameterized), ("score_function", score))}
    assert total["score_function"] > 10 * total["reparameterized"], total


def test_config_refuses_a_score_function_without_a_posterior_or_baseline_samples():
    with pytest.raises(ValueError, match="estimator_samples >= 2"):
        VAEConfig(gradient_estimator="score_function", estimator_samples=1)
    with pytest.raises(ValueError, match="kind=vae"):
        VAEConfig(kind="ae", gradient_estimator="score_function", estimator_samples=2)
    VAEConfig(gradient_estimator="score_function", estimator_samples=1, score_baseline="none")


def test_adam_ascent_first_step_moves_each_coordinate_by_the_step_size():
    # Step 1: m = 0.1 g, v = 0.001 g^2, bias-corrected m_hat = g, v_hat = g^2, so the move is
    # lr * g / |g| = lr * sign(g) (eps 1e-8 aside): 1 + 0.5 = 1.5 and 1 - 0.5 = 0.5.
    parameter, first, second = adam_ascent(tf.constant([1.0, 1.0]), tf.constant([4.0, -0.25]),
                                           tf.zeros(2), tf.zeros(2), tf.constant(1), 0.5)
    np.testing.assert_allclose(parameter.numpy(), [1.5, 0.5], rtol=2e-5)  # float32: 1 - 0.999 is not 0.001
    np.testing.assert_allclose(first.numpy(), [0.4, -0.025], rtol=1e-6)
    np.testing.assert_allclose(second.numpy(), [0.016, 0.0000625], rtol=1e-5)


def test_parameter_counts_by_hand():
    # SMALL: decoder 3 -> 16 -> 64: (3*16 + 16) + (16*64 + 64) = 64 + 1088 = 1152;
    # encoder 64 -> 16 -> 6: (64*16 + 16) + (16*6 + 6) = 1040 + 102 = 1142.
    # N = 1000 images: per-datapoint 1152 + 2 * 3 * 1000 = 7152; amortized 1152 + 1142 = 2294.
    assert parameter_counts(VAE(SMALL), 1000) == {"decoder": 1152, "encoder": 1142, "amortized": 2294,
                                                  "per_datapoint": 7152}


def test_refinement_never_lowers_the_elbo_and_from_the_prior_reaches_the_encoders(digits_vae):
    model, images = digits_vae
    seeds = tf.range(32, dtype=tf.int64)
    mean, stddev = model.encode(images)

    def elbo(mean, stddev, seed):  # 256 draws per image, the same noise for every (mean, stddev)
        posterior = tfd.MultivariateNormalDiag(loc=mean, scale_diag=stddev)
        return model.elbo_terms(images, None, tf.constant([seed, 0]), samples=256, posterior=posterior)["elbo"].numpy()

    refined = refine_posterior(model, images, None, mean, stddev, seeds, 100)
    from_prior = refine_posterior(model, images, None, tf.zeros_like(mean), tf.ones_like(stddev), seeds, 300)
    assert refined["elbo"].shape == (100, 32)
    for seed in (1, 2, 3):
        encoder = elbo(mean, stddev, seed)
        after = elbo(refined["mean"], refined["stddev"], seed)
        assert after.mean() >= encoder.mean(), (after.mean(), encoder.mean())
        assert np.mean(after > encoder) >= 0.9, np.mean(after > encoder)
        prior = elbo(tf.zeros_like(mean), tf.ones_like(stddev), seed)
        fitted = elbo(from_prior["mean"], from_prior["stddev"], seed)
        assert fitted.mean() >= encoder.mean() > prior.mean(), (fitted.mean(), encoder.mean(), prior.mean())


def test_a_rows_refinement_depends_only_on_its_image_and_seed():
    model = VAE(SMALL)
    images = tf.random.stateless_uniform([3, 8, 8, 1], seed=[1, 2])
    mean, stddev = model.encode(images)
    together = refine_posterior(model, images, None, mean, stddev, tf.constant([7, 8, 9], tf.int64), 5)
    alone = refine_posterior(model, images[1:2], None, mean[1:2], stddev[1:2], tf.constant([8], tf.int64), 5)
    np.testing.assert_allclose(alone["mean"].numpy()[0], together["mean"].numpy()[1], rtol=1e-5, atol=1e-6)
    assert np.abs(together["mean"].numpy() - mean.numpy()).max() > 1e-3  # it moved


def test_encode_refined_signature_runs_the_refinement_through_the_servers_session_path(tmp_path):
    """A conditional conv VAE with the Gaussian decoder: every signature, encode_refined among them."""
    config = VAEConfig(image_shape=(8, 8, 1), architecture="conv", latent_dim=3, hidden_units=(16,),
                       conv_filters=(8, 16), num_classes=10, likelihood="gaussian", refine_steps=4)
    model = VAE(config)
    run = exported(model, tmp_path / "1")
    assert run.signatures == sorted(["serving_default", "sample", "decode", "encode", "reconstruct", "elbo",
                                     "log_prob", "encode_refined"])
    images = tf.random.stateless_uniform([2, 8, 8, 1], seed=[1, 2])
    labels, seeds = tf.constant([3, 4], tf.int64), tf.constant([5, 6], tf.int64)
    got = run("encode_refined", images=images.numpy(), seed=seeds.numpy(), label=labels.numpy())
    mean, stddev = model.encode(images, labels)
    expected = refine_posterior(model, images, labels, mean, stddev, seeds, 4)
    np.testing.assert_allclose(got["mean"], expected["mean"].numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["stddev"], expected["stddev"].numpy(), rtol=1e-4, atol=1e-5)
    assert set(model.signature_expectations()) == set(run.signatures)
    scored = run("elbo", images=images.numpy(), label=labels.numpy())
    np.testing.assert_allclose(scored["elbo"], model.elbo_parts(images, labels)["elbo"].numpy(), rtol=1e-4)
    scored = run("log_prob", images=images.numpy(), label=labels.numpy())
    bound = model.importance_weighted_log_likelihood(images, labels, LOG_PROB_SAMPLES, tf.constant([0, 0], tf.int64))
    np.testing.assert_allclose(scored["log_prob"], bound.numpy(), rtol=1e-4)
    np.testing.assert_allclose(scored["bits_per_dim"], -bound.numpy() / (64 * math.log(2)), rtol=1e-4)
    decoded = run("decode", z=np.zeros([2, 3], np.float32), label=labels.numpy())["images"]
    assert decoded.shape == (2, 8, 8, 1) and 0 < decoded.min() and decoded.max() < 1


TWO_BY_TWO = tf.constant([0.0, 64.0, 128.0, 255.0], shape=[1, 2, 2, 1]) / 255.0  # 8-bit values 0, 64, 128, 255


def test_dequantized_gaussian_log_likelihood_by_hand():
    # u = 1/2: x = (k + 1/2) / 256 = 0.001953125, 0.251953125, 0.501953125, 0.998046875.
    # (x - 1/2)^2 = 0.2480507, 0.0615273, 0.0000038, 0.2480507; sum 0.5576324.
    # log N(x; 1/2, 1/4) = -log(1/4) - log(2 pi)/2 - (x - 1/2)^2 / (2/16) = 0.4673558 - 8 (x - 1/2)^2,
    # summed over the 4 pixels: 4 * 0.4673558 - 8 * 0.5576324 = -2.5916363 nats of density.
    # The 8-bit image: -2.5916363 - 4 log 256 = -2.5916363 - 22.1807098 = -24.7723460 nats,
    # 24.7723460 / (4 ln 2) = 8.9347352 bits/dim.
    x = dequantize(TWO_BY_TWO, tf.fill([1, 2, 2, 1], 0.5))
    np.testing.assert_allclose(x.numpy().ravel(), [0.001953125, 0.251953125, 0.501953125, 0.998046875], rtol=1e-6)
    density = tfd.Independent(tfd.Normal(tf.fill([1, 2, 2, 1], 0.5), 0.25), reinterpreted_batch_ndims=3)
    log_likelihood = discrete_log_likelihood(density.log_prob(x), 4)
    np.testing.assert_allclose(log_likelihood.numpy(), [-24.7723460], rtol=1e-6)
    np.testing.assert_allclose(bits_per_dim(log_likelihood, 4).numpy(), [8.9347352], rtol=1e-6)


def test_a_uniform_density_is_eight_bits_per_dim_and_dequantized_values_stay_in_their_bins():
    # The uniform density on [0, 1)^D is 1: log P >= 0 - D log 256, exactly 8 bits/dim, the uniform
    # 256-way categorical's: the change of variables loses nothing at a constant density.
    np.testing.assert_allclose(bits_per_dim(discrete_log_likelihood(tf.zeros([3]), 784), 784).numpy(), [8.0] * 3)
    for u in (0.0, 0.99):
        x = dequantize(TWO_BY_TWO, tf.fill([1, 2, 2, 1], u)).numpy().ravel() * 256
        assert np.all((np.array([0, 64, 128, 255]) <= x) & (x < np.array([1, 65, 129, 256]))), x


def test_gaussian_decoder_scores_the_8_bit_image_by_hand():
    # Decoder output 0: mean sigmoid(0) = 1/2, stddev softplus(0) + floor = ln 2 + 1/(256 sqrt 12) = 0.6942748.
    # log N(x; 1/2, s) = -log s - log(2 pi)/2 - (x - 1/2)^2 / (2 s^2) = -0.5540511 - (x - 1/2)^2 / 0.9640351;
    # over the 4 pixels of the u = 1/2 image above: 4 * -0.5540511 - 0.5576324 / 0.9640351 = -2.7946404,
    # and -2.7946404 - 4 log 256 = -24.9753502 nats for the 8-bit image.
    model = VAE(VAEConfig(image_shape=(2, 2, 1), architecture="mlp", latent_dim=2, hidden_units=(4,),
                          likelihood="gaussian"))
    last = model.decoder.layers[-2]  # Dense(2 * 2 * 2): mean and scale of the 4 pixels
    last.set_weights([np.zeros_like(w) for w in last.get_weights()])
    np.testing.assert_allclose(float(tf.reduce_min(model.likelihood(tf.zeros([1, 2])).stddev())),
                               math.log(2) + GAUSSIAN_SCALE_FLOOR, rtol=1e-6)
    x = dequantize(TWO_BY_TWO, tf.fill([1, 2, 2, 1], 0.5))
    np.testing.assert_allclose(model.log_likelihood_of_draws(tf.zeros([1, 1, 2]), x, None).numpy(), [[-24.9753502]],
                               rtol=1e-6)
    np.testing.assert_allclose(model.decode(tf.zeros([1, 2])).numpy(), np.full([1, 2, 2, 1], 0.5))
    # The loss dequantizes with noise of its own: the same formula at those x, whatever z is drawn.
    seed = tf.constant([1, 2])
    x = model.scored_images(TWO_BY_TWO, seed).numpy()
    assert np.all((x * 256 >= [[[0], [64]], [[128], [255]]]) & (x * 256 < [[[1], [65]], [[129], [256]]]))
    expected = 4 * -0.5540511 - np.sum((x - 0.5) ** 2) / 0.9640351 - 4 * math.log(256)
    np.testing.assert_allclose(model.loss_terms(TWO_BY_TWO, None, seed)["distortion"].numpy(), [-expected],
                               rtol=1e-6)


def test_gaussian_decoder_trains_below_eight_bits_per_dim_on_the_grey_digits():
    from training.data import load_images

    data = load_images("digits")  # grey levels, not binarized
    keras.utils.set_random_seed(0)
    model = VAE(VAEConfig(image_shape=(8, 8, 1), architecture="mlp", latent_dim=8, hidden_units=(64,),
                          likelihood="gaussian"))
    held_out = tf.constant(data.test_images[:200])

    def held_out_bits() -> float:
        return float(tf.reduce_mean(bits_per_dim(model.loss_terms(held_out, None, tf.constant([7, 7]))["elbo"], 64)))

    before = held_out_bits()  # about 9.1: worse than the uniform's 8
    fit(model, data.train_images, 150)
    after = held_out_bits()  # about 6.6
    assert after < 7.5 < 8.5 < before, (before, after)


def test_a_bernoulli_latents_kl_by_hand_and_only_the_score_function_for_it():
    # One bit with q(1) = 0.9 against the fair coin: 0.9 ln(0.9/0.5) + 0.1 ln(0.1/0.5)
    # = 0.9 * 0.5877867 - 0.1 * 1.6094379 = 0.3680642; a second bit at 1/2 adds 0.
    model = VAE(VAEConfig(**{**SMALL.__dict__, "latent_dim": 2, "latent": "bernoulli",
                             "gradient_estimator": "score_function", "estimator_samples": 2}))
    bits = tfd.Independent(tfd.Bernoulli(logits=[[math.log(9.0), 0.0]], dtype=tf.float32), reinterpreted_batch_ndims=1)
    np.testing.assert_allclose(rate(bits, model.prior).numpy(), [0.3680642], rtol=1e-5)
    images = tf.random.stateless_uniform([2, 8, 8, 1], seed=[1, 2])
    mean, stddev = model.encode(images)
    np.testing.assert_allclose(stddev.numpy(), np.sqrt(mean.numpy() * (1 - mean.numpy())), rtol=1e-5)
    assert set(np.unique(model.posterior(images).sample(seed=tf.constant([0, 1])).numpy())) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="no reparameterized gradient"):
        model.elbo_terms(images, None, tf.constant([0, 0]), estimator="reparameterized")
    with pytest.raises(ValueError, match="gradient_estimator=score_function"):
        VAEConfig(latent="bernoulli")


def test_the_score_function_trains_a_vae_with_binary_codes():
    """16 bits, M = 4, 400 steps on the binarized digits: the held-out -ELBO (64 draws) goes
    below the NLL of the best model that ignores z (independent pixels at their training
    frequencies, 27.3 nats), which it can only do if the encoder learned to code the digits."""
    train, held_out, _ = binarized_digits()
    p = np.clip(train.mean(0), 1e-3, 1 - 1e-3)
    independent = -(held_out * np.log(p) + (1 - held_out) * np.log(1 - p)).sum((1, 2, 3)).mean()
    keras.utils.set_random_seed(0)
    model = VAE(VAEConfig(image_shape=(8, 8, 1), architecture="mlp", latent_dim=16, hidden_units=(64,),
                          latent="bernoulli", gradient_estimator="score_function", estimator_samples=4))
    fit(model, train, 400)
    terms = model.elbo_terms(tf.constant(held_out), None, tf.constant([7, 7]), samples=64)
    negative_elbo, used = float(tf.reduce_mean(terms["loss"])), float(tf.reduce_mean(terms["rate"]))
    assert negative_elbo < independent - 1.0 and used > 0.5, (negative_elbo, independent, used)  # 25.7, 27.3, 1.9
    assert model.sample(tf.constant([1, 2], tf.int64)).shape == (2, 8, 8, 1)
