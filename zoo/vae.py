"""Variational autoencoders (Kingma & Welling, 2014) and the autoencoders they grew from.

One Keras 3 subclassed model, `VAE`, covers three kinds that share the encoder and decoder
builders below, so that the only difference a user sees is the objective:

- ``vae``: the encoder gives a diagonal Gaussian posterior q(z|x); the prior is N(0, I);
  the loss is ``distortion + beta * rate`` with the analytic KL from `tfd.kl_divergence`.
- ``ae``: a deterministic code and the distortion alone. Nothing pulls the codes towards
  N(0, I), which is why codes drawn from N(0, I) decode to garbage.
- ``dae``: the same, fed images corrupted with Gaussian noise and asked for the clean ones.

The reconstruction term E_q[log p(x|z)] is estimated with M draws from q(z|x), and its
gradient reaches the encoder one of two ways (``gradient_estimator``): through the draws
z = mean + stddev * noise (reparameterized, the default), or by the score function
grad log q(z|x) times the learning signal log p(x|z), as REINFORCE does for a policy
(``score_function``; each draw's baseline is the mean signal of the image's other M - 1
draws). `encoder_gradient_moments` measures how far apart the two estimators' variances are.
A latent of independent bits (``latent="bernoulli"``) has no reparameterization: only the
score function trains its encoder.

For grey levels, ``likelihood="gaussian"`` gives every pixel its own mean and standard
deviation sigma_theta(z). A density on [0, 1] is not a probability of 8-bit values, so the
Gaussian decoder is fed and scored on dequantized values x = (k + u) / 256, u ~ U[0, 1), and
reports log p(x|z) - D log 256: in expectation over u a lower bound on the log-probability of
the discrete image (Theis et al., 2016), comparable with the 256-way PixelCNN in nats or bits/dim.

A label (``num_classes > 0``) conditions both the encoder and the decoder.

Probability stays in `tfp.distributions` (never `tfp.layers`, which is built on Keras 2).
Serving signatures return tensors and take a per-row int64 ``seed`` wherever they draw.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Literal

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from zoo import signatures as checks
from zoo.signatures import Signature

tfd = tfp.distributions



@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Architecture and objective of a VAE or (denoising) autoencoder."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    """Height, width and channels of the images (set from the data by the trainer)."""
    kind: Literal["vae", "ae", "dae"] = "vae"
    """Variational autoencoder, plain autoencoder, or denoising autoencoder."""
    architecture: Literal["mlp", "conv"] = "conv"
    """Fully connected encoder/decoder, or strided convolutions as in keras.io's VAE."""
    latent_dim: int = 16
    """Dimension of the latent code z."""
    hidden_units: tuple[int, ...] = (256,)
    """Dense layers of the encoder head (the MLP decoder mirrors them)."""
    conv_filters: tuple[int, ...] = (32, 64)
    """Filters of the stride-2 convolutions (the conv decoder mirrors them)."""
    likelihood: Literal["bernoulli", "continuous_bernoulli", "gaussian"] = "bernoulli"
    """p(x|z): Bernoulli for binarized images; for grey levels, continuous Bernoulli on [0, 1] or a Gaussian
    with a learned per-pixel stddev on dequantized 8-bit values (its log-likelihood bounds the discrete one)."""
    posterior_scale: Literal["softplus", "exp"] = "softplus"
    """How the encoder's raw output becomes the posterior standard deviation."""
    beta: float = 1.0
    """Weight of the KL term: 1 is the ELBO; larger trades reconstructions for a tidier latent."""
    num_classes: int = 0
    """Number of classes for a conditional model; 0 for an unconditional one."""
    noise_stddev: float = 0.5
    """Standard deviation of the Gaussian corruption (``dae`` only)."""
    estimator_samples: int = 1
    """M: posterior draws per image averaged in the reconstruction term (and in the score function's baseline)."""
    score_baseline: Literal["leave_one_out", "none"] = "leave_one_out"
    """Score function: subtract from each draw's signal the mean signal of the image's other M - 1 draws
    (unbiased, needs M >= 2), or nothing."""
    gradient_estimator: Literal["reparameterized", "score_function"] = "reparameterized"
    """How the encoder gets the reconstruction term's gradient: through z = mean + stddev * noise, or by
    the score function grad log q(z|x) times the learning signal log p(x|z) (REINFORCE; vae only)."""
    latent: Literal["gaussian", "bernoulli"] = "gaussian"
    """z: a diagonal Gaussian with prior N(0, I), or latent_dim independent bits with prior Bernoulli(1/2)
    (a draw of a bit cannot be reparameterized: bits need gradient_estimator=score_function)."""
    refine_steps: int = 0
    """K > 0 exports an `encode_refined` signature: the encoder's q(z|x) refined by K steps of
    per-image gradient ascent on the ELBO (`refine_posterior`); 0 exports none."""

    def __post_init__(self):
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be at least 1, got {self.latent_dim}")
        if self.beta < 0:
            raise ValueError(f"beta must be non-negative, got {self.beta}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be 0 or more, got {self.num_classes}")
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ValueError(f"image_shape must be (height, width, channels), got {self.image_shape}")
        if self.latent == "bernoulli" and (self.kind != "vae" or self.gradient_estimator != "score_function"):
            raise ValueError("a Bernoulli latent needs kind=vae and gradient_estimator=score_function: a draw of "
                             "a bit has no reparameterization for the encoder's gradient to flow through")
        if self.latent == "bernoulli" and self.refine_steps:
            raise ValueError("refine_steps refines a Gaussian posterior; a Bernoulli latent has none")
        if self.refine_steps < 0:
            raise ValueError(f"refine_steps must be 0 or more, got {self.refine_steps}")
        if self.refine_steps and self.kind != "vae":
            raise ValueError(f"refine_steps needs kind=vae (a posterior to refine), got kind={self.kind}")
        if self.estimator_samples < 1:
            raise ValueError(f"estimator_samples must be at least 1, got {self.estimator_samples}")
        if self.gradient_estimator == "score_function":
            if self.kind != "vae":
                raise ValueError(f"gradient_estimator=score_function needs kind=vae (a posterior to draw from), "
                                 f"got kind={self.kind}")
            if self.score_baseline == "leave_one_out" and self.estimator_samples < 2:
                raise ValueError("the leave-one-out baseline needs estimator_samples >= 2 (the other draws "
                                 "of an image); raise estimator_samples or set score_baseline=none")

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0


# ALGO LOGIC: the objective, as pure functions of per-example tensors.


def distortion(likelihood: tfd.Distribution, images: tf.Tensor) -> tf.Tensor:
    """Distortion D = -log p(x|z), in nats per image, shape [b]."""
    return -likelihood.log_prob(images)


def rate(posterior: tfd.Distribution, prior: tfd.Distribution) -> tf.Tensor:
    """Rate R = KL(q(z|x) || p(z)), analytic, in nats per image, shape [b]."""
    return tfd.kl_divergence(posterior, prior)


def elbo(distortion: tf.Tensor, rate: tf.Tensor) -> tf.Tensor:
    """Evidence lower bound ELBO = -(D + R) <= log p(x)."""
    return -(distortion + rate)


def beta_vae_loss(distortion: tf.Tensor, rate: tf.Tensor, beta: float) -> tf.Tensor:
    """Loss D + beta * R (Higgins et al., 2017); beta = 1 gives the negative ELBO."""
    return distortion + beta * rate


def leave_one_out_baseline(signal: tf.Tensor) -> tf.Tensor:
    """b_m = (sum_j f_j - f_m) / (M - 1): each draw's baseline is the mean signal of the
    image's other M - 1 draws. [M, b] -> [M, b]; it does not depend on draw m itself."""
    draws = tf.cast(tf.shape(signal)[0], signal.dtype)
    return (tf.reduce_sum(signal, axis=0, keepdims=True) - signal) / (draws - 1.0)


def score_function_surrogate(signal: tf.Tensor, log_q: tf.Tensor,
                             baseline: Literal["leave_one_out", "none"]) -> tf.Tensor:
    """A term that is 0 in value and whose gradient is the score-function estimate of grad E_q[f]:

        (1/M) sum_m (f_m - b_m) grad log q(z_m|x),   z_m ~ q(z|x) held fixed,

    from the signal f_m [M, b] and log q(z_m|x) [M, b]; shape [b]. It is unbiased because
    E_q[grad log q] = 0 and b_m does not depend on z_m (Williams, 1992; the leave-one-out
    baseline is Kool et al.'s, 2019). Add it to an objective that is maximized (subtract it
    from a loss): its value leaves the objective's value alone.
    """
    signal = tf.stop_gradient(signal)
    advantage = signal - leave_one_out_baseline(signal) if baseline == "leave_one_out" else signal
    return tf.reduce_mean(advantage * (log_q - tf.stop_gradient(log_q)), axis=0)


def row_noise(seeds: tf.Tensor, shape: list[int] | tf.Tensor, salt: int = 0,
              kind: Literal["normal", "uniform"] = "normal") -> tf.Tensor:
    """Standard normal (or U[0, 1)) noise [b, *shape]; row i is drawn from the stateless seed (seeds[i], salt) alone."""
    draw = tf.random.stateless_normal if kind == "normal" else tf.random.stateless_uniform
    return tf.map_fn(lambda s: draw(shape, tf.stack([s, salt])), tf.cast(seeds, tf.int64), fn_output_signature=tf.float32)


def adam_ascent(parameter: tf.Tensor, gradient: tf.Tensor, first: tf.Tensor, second: tf.Tensor, step: tf.Tensor,
                learning_rate: float, beta_1: float = 0.9, beta_2: float = 0.999,
                epsilon: float = 1e-8) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One elementwise Adam step uphill (Kingma & Ba, 2015), `step` counting from 1:
    (parameter + lr * m_hat / (sqrt(v_hat) + eps), m, v) with m, v the moving moments of the gradient."""
    first = beta_1 * first + (1 - beta_1) * gradient
    second = beta_2 * second + (1 - beta_2) * tf.square(gradient)
    step = tf.cast(step, parameter.dtype)
    m_hat, v_hat = first / (1 - beta_1 ** step), second / (1 - beta_2 ** step)
    return parameter + learning_rate * m_hat / (tf.sqrt(v_hat) + epsilon), first, second


def importance_weighted_bound(log_weights: tf.Tensor) -> tf.Tensor:
    """IWAE bound (Burda et al., 2016): log (1/k) sum_i w_i, w_i = p(x, z_i) / q(z_i|x).

    `log_weights` has shape [k, b]; the result, shape [b], is a lower bound on log p(x)
    that is at least the ELBO in expectation and tightens as k grows.
    """
    k = tf.cast(tf.shape(log_weights)[0], log_weights.dtype)
    return tf.reduce_logsumexp(log_weights, axis=0) - tf.math.log(k)


LOG_PROB_SAMPLES = 100
"""k of the importance-weighted bound the `log_prob` signature serves. Its draws come from one fixed
seed for the whole batch: the same batch always gets the same scores, but a row's draws depend on
its place in the batch (and so on what server-side batching merged it with)."""
LEVELS = 256
"""Values of an 8-bit channel: images in [0, 1] are k / 255, k = 0..255."""
GAUSSIAN_SCALE_FLOOR = 1.0 / (LEVELS * math.sqrt(12.0))
"""Smallest pixel stddev of the Gaussian decoder: the stddev of the dequantization noise in one bin
(width 1/256). A Gaussian fitted to one bin's uniform noise has exactly this stddev, so the floor
never binds on a fit to the data, but it keeps the density finite when sigma would collapse."""


def dequantize(images: tf.Tensor, uniform: tf.Tensor) -> tf.Tensor:
    """x = (k + u) / 256 with k = round(255 * images): each 8-bit value spread uniformly over its bin
    [k/256, (k+1)/256); `uniform` holds u in [0, 1), images' shape."""
    return (tf.round(images * (LEVELS - 1)) + uniform) / LEVELS


def discrete_log_likelihood(log_density: tf.Tensor, num_dims: int) -> tf.Tensor:
    """log p(x) - D log 256 for a density p at dequantized values x = (k + u) / 256.

    The discrete model P(k) = integral of p over the bin of k, a cube of side 1/256, is
    256^-D E_u[p((k + u)/256)] >= exp(E_u[log p((k + u)/256)] - D log 256) by Jensen's
    inequality: the result is, in expectation over u, a lower bound on log P(k).
    """
    return log_density - num_dims * math.log(LEVELS)


def bits_per_dim(log_likelihood: tf.Tensor, num_dims: int) -> tf.Tensor:
    """-log2 p(x) per channel value: nats / (D ln 2)."""
    return -log_likelihood / (num_dims * math.log(2.0))


def image_distribution(logits: tf.Tensor, likelihood: str) -> tfd.Distribution:
    """p(x|z) over whole images: independent per pixel, event shape [H, W, C].

    For the Gaussian the decoder gives 2C channels: the mean sigmoid(a) and the stddev
    softplus(b) + GAUSSIAN_SCALE_FLOOR of each pixel (a, b the two halves of the last axis).
    """
    if likelihood == "bernoulli":
        pixel = tfd.Bernoulli(logits=logits, dtype=logits.dtype)
    elif likelihood == "continuous_bernoulli":
        pixel = tfd.ContinuousBernoulli(logits=logits)
    elif likelihood == "gaussian":
        mean_logits, raw_scale = tf.split(logits, 2, axis=-1)
        pixel = tfd.Normal(tf.sigmoid(mean_logits), tf.nn.softplus(raw_scale) + GAUSSIAN_SCALE_FLOOR)
    else:
        raise ValueError(f"unknown likelihood {likelihood!r}; expected bernoulli, continuous_bernoulli or gaussian")
    return tfd.Independent(pixel, reinterpreted_batch_ndims=3)


# Encoder and decoder builders, shared by every kind.


def build_encoder_torso(config: VAEConfig) -> keras.Sequential:
    """images [b, H, W, C] -> features [b, F]."""
    layers: list[keras.layers.Layer] = []
    if config.architecture == "conv":
        layers += [keras.layers.Conv2D(f, 3, strides=2, padding="same", activation="relu")
                   for f in config.conv_filters]
    layers.append(keras.layers.Flatten())
    return keras.Sequential(layers, name="encoder_torso")


def build_encoder_head(config: VAEConfig, outputs: int) -> keras.Sequential:
    """concat(features, one-hot label) [b, F+K] -> [b, outputs]."""
    layers = [keras.layers.Dense(units, activation="relu") for units in config.hidden_units]
    return keras.Sequential(layers + [keras.layers.Dense(outputs)], name="encoder_head")


def build_decoder(config: VAEConfig) -> keras.Sequential:
    """concat(z, one-hot label) [b, d+K] -> logits [b, H, W, C] ([b, H, W, 2C] for a Gaussian: mean and scale)."""
    height, width, image_channels = config.image_shape
    channels = 2 * image_channels if config.likelihood == "gaussian" else image_channels
    if config.architecture == "mlp":
        layers = [keras.layers.Dense(units, activation="relu") for units in reversed(config.hidden_units)]
        layers += [keras.layers.Dense(height * width * channels),
                   keras.layers.Reshape((height, width, channels))]
        return keras.Sequential(layers, name="decoder")
    scale = 2 ** len(config.conv_filters)
    start_h, start_w = math.ceil(height / scale), math.ceil(width / scale)
    layers = [keras.layers.Dense(start_h * start_w * config.conv_filters[-1], activation="relu"),
              keras.layers.Reshape((start_h, start_w, config.conv_filters[-1]))]
    layers += [keras.layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu")
               for f in reversed(config.conv_filters)]
    layers.append(keras.layers.Conv2DTranspose(channels, 3, padding="same"))
    extra_h, extra_w = start_h * scale - height, start_w * scale - width
    if extra_h or extra_w:  # sizes not divisible by 2**len(conv_filters)
        layers.append(keras.layers.Cropping2D(((0, extra_h), (0, extra_w))))
    return keras.Sequential(layers, name="decoder")


class VAE(keras.Model):
    """A VAE, autoencoder or denoising autoencoder over images in [0, 1], shape [b, H, W, C]."""

    def __init__(self, config: VAEConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        code_size = 2 * config.latent_dim if config.kind == "vae" and config.latent == "gaussian" else config.latent_dim
        self.encoder_torso = build_encoder_torso(config)
        self.encoder_head = build_encoder_head(config, code_size)
        self.decoder = build_decoder(config)
        if config.latent == "bernoulli":
            self.prior = tfd.Independent(tfd.Bernoulli(probs=tf.fill([config.latent_dim], 0.5), dtype=tf.float32),
                                         reinterpreted_batch_ndims=1)
        else:
            self.prior = tfd.MultivariateNormalDiag(loc=tf.zeros(config.latent_dim),
                                                    scale_diag=tf.ones(config.latent_dim))
        self.build_all()

    def build_all(self) -> None:
        """Create every variable now, so checkpoints restore and exports track them."""
        height, width, channels = self.config.image_shape
        labels = tf.zeros([1], tf.int64) if self.config.conditional else None
        images = tf.zeros([1, height, width, channels])
        self((images, labels) if self.config.conditional else images)

    def _condition(self, tensor: tf.Tensor, labels: tf.Tensor | None) -> tf.Tensor:
        """Append the one-hot label to `tensor` [b, n] when the model is conditional."""
        if not self.config.conditional:
            return tensor
        if labels is None:
            raise ValueError("this model is conditional: pass a label for every image")
        one_hot = tf.one_hot(tf.cast(labels, tf.int32), self.config.num_classes, dtype=tensor.dtype)
        return tf.concat([tensor, one_hot], axis=-1)

    # Encoder side.

    @property
    def encoder_variables(self) -> list[tf.Variable]:
        """The encoder's (phi's) trainable variables: what the gradient estimators differ on."""
        return self.encoder_torso.trainable_variables + self.encoder_head.trainable_variables

    def encode(self, images: tf.Tensor, labels: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """Posterior mean and standard deviation, each [b, d] (stddev is 0 for autoencoders; for
        bits, each bit's probability of 1 and its Bernoulli stddev)."""
        if self.config.latent == "bernoulli":
            bits = self.posterior(images, labels)
            return bits.mean(), bits.stddev()
        code = self.encoder_head(self._condition(self.encoder_torso(images), labels))
        if self.config.kind != "vae":
            return code, tf.zeros_like(code)
        mean, raw_scale = tf.split(code, 2, axis=-1)
        if self.config.posterior_scale == "exp":
            return mean, tf.exp(raw_scale)
        return mean, tf.nn.softplus(raw_scale) + 1e-5

    def posterior(self, images: tf.Tensor, labels: tf.Tensor | None = None) -> tfd.Distribution:
        """q(z|x) with batch shape [b] and event shape [d]: a diagonal Gaussian, or independent bits."""
        if self.config.latent == "bernoulli":
            logits = self.encoder_head(self._condition(self.encoder_torso(images), labels))
            return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.float32), reinterpreted_batch_ndims=1)
        mean, stddev = self.encode(images, labels)
        return tfd.MultivariateNormalDiag(loc=mean, scale_diag=stddev)

    # Decoder side.

    def likelihood(self, z: tf.Tensor, labels: tf.Tensor | None = None) -> tfd.Distribution:
        """p(x|z) with batch shape [b] and event shape [H, W, C]."""
        return image_distribution(self.decoder(self._condition(z, labels)), self.config.likelihood)

    def decode(self, z: tf.Tensor, labels: tf.Tensor | None = None) -> tf.Tensor:
        """Mean image of p(x|z), [b, H, W, C] in [0, 1]."""
        return self.likelihood(z, labels).mean()

    def call(self, inputs: tf.Tensor | tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        """Reconstruction (the decoded posterior mean) of images, or of (images, labels)."""
        images, labels = inputs if self.config.conditional else (inputs, None)
        return self.decode(self.encode(images, labels)[0], labels)

    def sample(self, seeds: tf.Tensor, labels: tf.Tensor | None = None) -> tf.Tensor:
        """Decode one z from the prior per row; row i depends only on seeds[i] (and labels[i])."""
        if self.config.latent == "bernoulli":  # fair coins
            bits = row_noise(seeds, [self.config.latent_dim], kind="uniform") < 0.5
            return self.decode(tf.cast(bits, tf.float32), labels)
        return self.decode(row_noise(seeds, [self.config.latent_dim]), labels)  # z [b, d]: one draw per seed

    # Objectives.

    def loss_terms(self, images: tf.Tensor, labels: tf.Tensor | None, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        """Per-example loss and its parts, each [b]; `seed` is a stateless seed of shape [2]."""
        if self.config.kind == "vae":
            return self.elbo_terms(images, labels, seed)
        inputs = images
        if self.config.kind == "dae":
            noise = tf.random.stateless_normal(tf.shape(images), tf.cast(seed, tf.int32), dtype=images.dtype)
            inputs = tf.clip_by_value(images + self.config.noise_stddev * noise, 0.0, 1.0)
        code, _ = self.encode(inputs, labels)
        d = -self.data_log_likelihood(self.likelihood(code, labels), self.scored_images(images, seed))
        return {"loss": d, "distortion": d}

    def elbo_terms(self, images: tf.Tensor, labels: tf.Tensor | None, seed: tf.Tensor,
                   estimator: str | None = None, samples: int | None = None,
                   posterior: tfd.Distribution | None = None) -> dict[str, tf.Tensor]:
        """The VAE's per-image loss D + beta R and its parts, each [b], with D from M draws of q(z|x).

        `estimator` and `samples` default to the config's, `posterior` to the encoder's q(z|x)
        (pass another, such as a refined N(mean_i, stddev_i), to score it). Under both estimators `loss` has
        the same value; under the score function the draws are held fixed (the decoder's
        gradient is the usual one) and the encoder's gradient of the distortion comes from
        `score_function_surrogate`. The rate is analytic either way.
        """
        config = self.config
        estimator = estimator or config.gradient_estimator
        samples = samples or config.estimator_samples
        if estimator == "reparameterized" and config.latent == "bernoulli":
            raise ValueError("a Bernoulli latent has no reparameterized gradient; use the score function")
        seed = tf.cast(seed, tf.int32)  # TFP's stateless samplers take int32 seeds
        posterior = self.posterior(images, labels) if posterior is None else posterior
        z = posterior.sample(samples, seed=seed)  # [M, b, d]; reparameterized: gradients reach mean, stddev
        if estimator == "score_function":
            z = tf.stop_gradient(z)
        log_likelihood = self.log_likelihood_of_draws(z, self.scored_images(images, seed), labels)  # [M, b]
        d = -tf.reduce_mean(log_likelihood, axis=0)
        r = rate(posterior, self.prior)
        loss = beta_vae_loss(d, r, config.beta)
        if estimator == "score_function":
            loss -= score_function_surrogate(log_likelihood, posterior.log_prob(z), config.score_baseline)
        return {"loss": loss, "distortion": d, "rate": r, "elbo": elbo(d, r)}

    def scored_images(self, images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """What p(x|z) scores: the images, or for the Gaussian decoder their dequantization with
        noise from the stateless `seed` [2] (a stream of its own, apart from the posterior's draws)."""
        if self.config.likelihood != "gaussian":
            return images
        noise_seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int32), 1)
        return dequantize(images, tf.random.stateless_uniform(tf.shape(images), noise_seed))

    def data_log_likelihood(self, likelihood: tfd.Distribution, scored: tf.Tensor) -> tf.Tensor:
        """log p(x|z) [b] of scored images; for the Gaussian decoder, of the 8-bit images (the bound
        log p(x_dequantized|z) - D log 256)."""
        log_prob = likelihood.log_prob(scored)
        if self.config.likelihood == "gaussian":
            return discrete_log_likelihood(log_prob, math.prod(self.config.image_shape))
        return log_prob

    def log_likelihood_of_draws(self, z: tf.Tensor, scored: tf.Tensor, labels: tf.Tensor | None) -> tf.Tensor:
        """log p(x|z_k) [k, b] for draws z [k, b, d] of every image (`scored_images` of the batch)."""
        draws, batch = tf.shape(z)[0], tf.shape(scored)[0]
        flat_z = tf.reshape(z, [-1, self.config.latent_dim])  # [k*b, d]: decoder sees k*b rows
        flat_labels = None if labels is None else tf.tile(labels, [draws])
        flat_scored = tf.tile(scored, [draws, 1, 1, 1])  # [k*b, H, W, C], sample-major
        return tf.reshape(self.data_log_likelihood(self.likelihood(flat_z, flat_labels), flat_scored), [draws, batch])

    def importance_weighted_log_likelihood(self, images: tf.Tensor, labels: tf.Tensor | None, num_samples: int,
                                           seed: tf.Tensor, posterior: tfd.Distribution | None = None) -> tf.Tensor:
        """IWAE estimate of log p(x) with k = num_samples, shape [b]; -it bounds the NLL from above.

        The proposal is the encoder's q(z|x) unless `posterior` gives another."""
        if self.config.kind != "vae":
            raise ValueError("the importance-weighted bound needs a VAE posterior")
        posterior = self.posterior(images, labels) if posterior is None else posterior
        z = posterior.sample(num_samples, seed=tf.cast(seed, tf.int32))  # [k, b, d]
        log_px_z = self.log_likelihood_of_draws(z, self.scored_images(images, seed), labels)  # [k, b]
        log_weights = log_px_z + self.prior.log_prob(z) - posterior.log_prob(z)  # [k, b]
        return importance_weighted_bound(log_weights)

    def elbo_parts(self, images: tf.Tensor, labels: tf.Tensor | None = None,
                   seed: tuple[int, int] = (0, 0)) -> dict[str, tf.Tensor]:
        """One-sample ELBO with a fixed seed for the whole batch: the same batch always gets the same
        scores (a row's draw depends on its place in the batch, as `log_prob`'s do)."""
        terms = self.loss_terms(images, labels, tf.constant(seed, tf.int32))
        return {"elbo": terms["elbo"], "reconstruction": -terms["distortion"], "kl": terms["rate"]}

    # Serving signatures (DESIGN.md): named tensors in, dicts of tensors out.

    def serving_signatures(self) -> dict[str, Signature]:
        """Signature name -> (function, input specs); `export` writes them into a SavedModel."""
        config = self.config
        images_spec = tf.TensorSpec([None, *config.image_shape], tf.float32, name="images")
        seed_spec = tf.TensorSpec([None], tf.int64, name="seed")
        z_spec = tf.TensorSpec([None, config.latent_dim], tf.float32, name="z")
        cond = [tf.TensorSpec([None], tf.int64, name="label")] if config.conditional else []

        def checked_images(images):
            return checks.checked_images(images, config.image_shape)

        def checked_labels(label):
            return checks.checked_range(label, 0, config.num_classes, "label")

        def sample(seed, label=None):
            return {"images": self.sample(tf.ensure_shape(seed, [None]), checked_labels(label))}

        def decode(z, label=None):
            return {"images": self.decode(tf.ensure_shape(z, [None, config.latent_dim]),
                                          checked_labels(label))}

        def encode(images, label=None):
            mean, stddev = self.encode(checked_images(images), checked_labels(label))
            return {"mean": mean, "stddev": stddev}

        def reconstruct(images, label=None):
            images, label = checked_images(images), checked_labels(label)
            return {"images": self.decode(self.encode(images, label)[0], label)}

        def elbo_signature(images, label=None):
            return self.elbo_parts(checked_images(images), checked_labels(label))

        def log_prob(images, label=None):
            images, label = checked_images(images), checked_labels(label)
            log_likelihood = self.importance_weighted_log_likelihood(images, label, LOG_PROB_SAMPLES,
                                                                     tf.constant([0, 0], tf.int64))
            return {"log_prob": log_likelihood,
                    "bits_per_dim": bits_per_dim(log_likelihood, math.prod(config.image_shape))}

        def encode_refined(images, seed, label=None):
            images, label = checked_images(images), checked_labels(label)
            mean, stddev = self.encode(images, label)
            refined = refine_posterior(self, images, label, mean, stddev, tf.ensure_shape(seed, [None]),
                                       config.refine_steps)
            return {"mean": refined["mean"], "stddev": refined["stddev"]}

        signatures = {
            "serving_default": (sample, [seed_spec, *cond]),
            "sample": (sample, [seed_spec, *cond]),
            "decode": (decode, [z_spec, *cond]),
            "encode": (encode, [images_spec, *cond]),
            "reconstruct": (reconstruct, [images_spec, *cond]),
        }
        if config.kind == "vae":
            signatures["elbo"] = (elbo_signature, [images_spec, *cond])
            signatures["log_prob"] = (log_prob, [images_spec, *cond])
        if config.refine_steps:
            signatures["encode_refined"] = (encode_refined, [images_spec, seed_spec, *cond])
        return signatures

    def signature_expectations(self) -> dict[str, dict[str, dict]]:
        """Output shapes (-1 = batch) and value ranges per signature, for the model card."""
        images = {"shape": [-1, *self.config.image_shape], "min": 0.0, "max": 1.0}
        code = {"shape": [-1, self.config.latent_dim]}
        expectations = {
            "serving_default": {"images": images}, "sample": {"images": images},
            "decode": {"images": images}, "reconstruct": {"images": images},
            "encode": {"mean": code, "stddev": {**code, "min": 0.0}},
        }
        if self.config.kind == "vae":
            expectations["elbo"] = {"elbo": {"shape": [-1]}, "reconstruction": {"shape": [-1]},
                                    "kl": {"shape": [-1], "min": 0.0}}
            expectations["log_prob"] = {"log_prob": {"shape": [-1]}, "bits_per_dim": {"shape": [-1]}}
        if self.config.refine_steps:
            expectations["encode_refined"] = expectations["encode"]
        return expectations


def encoder_gradient_moments(model: VAE, images: tf.Tensor, labels: tf.Tensor | None,
                             estimator: Literal["reparameterized", "score_function"], samples: int,
                             draws: int, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Mean and variance, per encoder parameter, of the estimator's gradient of the batch's mean loss.

    One draw is one M-sample (`samples`) estimate on the whole batch, at the model's current
    weights; `draws` independent draws (stateless seeds (seed, 0..draws-1)) give the mean and
    the variance (n - 1 divisor), accumulated by Welford's update in float64 inside one
    tf.function. The standard error of a mean is sqrt(variance / draws). Returns
    {variable path: {"mean": array, "variance": array}}, arrays of the variable's shape.
    """
    variables = model.encoder_variables

    @tf.function
    def moments():
        def body(i, means, squares):
            with tf.GradientTape() as tape:
                seed_i = tf.stack([tf.constant(seed, tf.int64), tf.cast(i, tf.int64)])
                terms = model.elbo_terms(images, labels, seed_i, estimator=estimator, samples=samples)
                loss = tf.reduce_mean(terms["loss"])
            gradients = [tf.cast(g, tf.float64) for g in tape.gradient(loss, variables)]
            count = tf.cast(i + 1, tf.float64)
            new_means = [m + (g - m) / count for m, g in zip(means, gradients)]
            squares = [s + (g - m) * (g - n) for s, g, m, n in zip(squares, gradients, means, new_means)]
            return i + 1, new_means, squares

        zeros = [tf.zeros(v.shape, tf.float64) for v in variables]
        _, means, squares = tf.while_loop(lambda i, *_: i < draws, body, [tf.constant(0), zeros, zeros])
        return means, [s / (draws - 1) for s in squares]

    means, variances = moments()
    return {v.path: {"mean": m.numpy(), "variance": s.numpy()} for v, m, s in zip(variables, means, variances)}


# Per-datapoint variational inference: the amortization gap (Cremer et al., 2018).


@tf.function(reduce_retracing=True)
def refine_posterior(model: VAE, images: tf.Tensor, labels: tf.Tensor | None, mean: tf.Tensor, stddev: tf.Tensor,
                     seeds: tf.Tensor, steps: int, learning_rate: float = 0.1, samples: int = 1) -> dict[str, tf.Tensor]:
    """Fit each image's own q_i(z) = N(mean_i, stddev_i) by gradient ascent on its ELBO, decoder fixed.

    Starts from `mean`, `stddev` [b, d] (the prior's 0 and 1, or the encoder's output) and
    takes `steps` Adam steps on (mean, log stddev) in one tf.while_loop, each on an
    M-sample (`samples`) reparameterized ELBO estimate with fresh noise. Adam is
    elementwise and image i's ELBO depends on its own parameters only, so this is per-image
    Adam: every image and latent dimension gets its own step size, whatever the scale of
    its gradient. Row i's noise comes from seeds[i] alone. Returns the refined "mean" and
    "stddev" [b, d], and "elbo" [steps, b], the estimate at each step (before its update).
    """
    if model.config.latent != "gaussian":
        raise ValueError("refine_posterior fits Gaussian posteriors; this model's latent is "
                         f"{model.config.latent}")
    latent_dim = model.config.latent_dim
    noise = row_noise(seeds, [steps, samples, latent_dim], salt=1)  # [b, K, M, d]
    scored = images
    if model.config.likelihood == "gaussian":  # one dequantization per image, kept for all K steps
        scored = dequantize(images, row_noise(seeds, model.config.image_shape, salt=2, kind="uniform"))

    def elbo_estimate(mean, log_stddev, k):
        z = mean + tf.exp(log_stddev) * tf.transpose(noise[:, k], [1, 0, 2])  # [M, b, d]
        posterior = tfd.MultivariateNormalDiag(loc=mean, scale_diag=tf.exp(log_stddev))
        reconstruction = tf.reduce_mean(model.log_likelihood_of_draws(z, scored, labels), axis=0)
        return reconstruction - rate(posterior, model.prior)  # [b]

    def step(k, mean, log_stddev, moments, trace):
        with tf.GradientTape() as tape:
            tape.watch([mean, log_stddev])
            estimate = elbo_estimate(mean, log_stddev, k)
            total = tf.reduce_sum(estimate)
        gradients = tape.gradient(total, [mean, log_stddev])  # row i's: the gradient of its own ELBO
        step_size = learning_rate * (1.0 - tf.cast(k, tf.float32) / steps)  # linear decay to 0
        updated = [adam_ascent(p, g, m, v, k + 1, step_size)
                   for p, g, (m, v) in zip([mean, log_stddev], gradients, moments)]
        (mean, *mean_moments), (log_stddev, *scale_moments) = updated
        return k + 1, mean, log_stddev, [mean_moments, scale_moments], trace.write(k, estimate)

    zeros = tf.zeros_like(mean)
    _, mean, log_stddev, _, trace = tf.while_loop(
        lambda k, *_: k < steps, step,
        [tf.constant(0), mean, tf.math.log(stddev), [[zeros, zeros], [zeros, zeros]],
         tf.TensorArray(tf.float32, size=steps)])
    return {"mean": mean, "stddev": tf.exp(log_stddev), "elbo": trace.stack()}


def parameter_counts(model: VAE, num_images: int) -> dict[str, int]:
    """What each way of inference learns for N images (the lecture's count):
    amortized |theta| + |phi| (decoder and encoder), per-datapoint |theta| + 2 d N (a mean and
    a standard deviation per image and latent dimension; one probability per bit for bits)."""
    decoder = sum(math.prod(v.shape) for v in model.decoder.trainable_variables)
    encoder = sum(math.prod(v.shape) for v in model.encoder_variables)
    per_dimension = 2 if model.config.latent == "gaussian" else 1
    return {"decoder": decoder, "encoder": encoder, "amortized": decoder + encoder,
            "per_datapoint": decoder + per_dimension * model.config.latent_dim * num_images}
