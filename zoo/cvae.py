"""A conditional VAE with a learned prior (Sohn et al., 2015): complete an image from its top rows.

The lecture's conditional model: x is what is known (an image's first `known_rows` rows),
y what is to be predicted (the rest), and the latent code carries what x leaves open:

    recognition  q(z|x, y)   sees the whole image and which rows are known;
    prior        p(z|x)      a network of the known rows alone;
    decoder      p(y|x, z)   Bernoulli pixels, scored on the unknown rows only.

The loss is -ELBO = -E_q[log p(y|x, z)] + KL(q(z|x, y) || p(z|x)), the KL analytic from
`tfd.kl_divergence` (two diagonal Gaussians). At test time z ~ p(z|x), then y from
p(y|x, z): every z gives another plausible completion, where a regression would give their
average. A completion returns p(y|x, z)'s mean (each pixel's Bernoulli probability), not a
Bernoulli draw: the variety between completions is the latent's, and the pixel noise of a
draw would only add salt and pepper to each. Known rows are returned bit for bit.

`known_rows` in the config chooses the training split: -1 (the default) draws a number of
known rows per image (0 to H-1, uniformly), so one model completes from any number of rows
(0 rows: it samples from the learned prior); n >= 0 always uses n, and the served `complete`
then refuses other values. Trained alike, the random split's held-out bound at the half
split came within about 5% of a model trained at the half split alone, and far ahead of it
at any other split (issue 14's note has the figures). The networks see the masked image and
the mask, so they know which rows are given.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from zoo import signatures as checks
from zoo.signatures import Signature
from zoo.vae import elbo, importance_weighted_bound, rate, row_noise

tfd = tfp.distributions


@dataclasses.dataclass(frozen=True)
class CVAEConfig:
    """Architecture and training split of a completion model over binarized images."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    """Height, width and channels of the images (set from the data by the trainer)."""
    latent_dim: int = 16
    """Dimension of the latent code z."""
    hidden_units: tuple[int, ...] = (256, 256)
    """Dense layers of each of the three networks (prior, recognition, decoder)."""
    known_rows: int = -1
    """Rows given in training: -1 draws 0..H-1 per image (any value can be served); n >= 0 always n."""
    num_classes: int = 0
    """Kept at 0: the model is conditioned on the known rows, not on a label."""

    def __post_init__(self):
        height = self.image_shape[0]
        if len(self.image_shape) != 3 or min(self.image_shape) < 1:
            raise ValueError(f"image_shape must be (height, width, channels), got {self.image_shape}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be at least 1, got {self.latent_dim}")
        if not -1 <= self.known_rows < height:
            raise ValueError(f"known_rows must be -1 (random) or 0..{height - 1}, got {self.known_rows}")
        if self.num_classes:
            raise ValueError("the completion model is conditioned on the known rows, not on a label; "
                             "train it without --conditional")

    @property
    def conditional(self) -> bool:
        """False: the model is conditioned on the known rows, never on a label (what the image loop asks)."""
        return False


# ALGO LOGIC: what is known, and the conditional objective.


def known_mask(known_rows: tf.Tensor, image_shape: tuple[int, int, int]) -> tf.Tensor:
    """1.0 on each image's first known_rows[b] rows, 0.0 below: [b, H, W, C]."""
    height, width, channels = image_shape
    rows = tf.range(height)[None, :, None, None]  # [1, H, 1, 1]
    known = tf.cast(rows < tf.cast(known_rows, tf.int32)[:, None, None, None], tf.float32)  # [b, H, 1, 1]
    return tf.tile(known, [1, 1, width, channels])


def unknown_distortion(likelihood: tfd.Distribution, images: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """-log p(y|x, z): the per-pixel negative log-likelihood summed over the unknown pixels only, [b]."""
    return tf.reduce_sum(-likelihood.log_prob(images) * (1.0 - mask), axis=[1, 2, 3])


def _mlp(hidden: tuple[int, ...], outputs: int, name: str) -> keras.Sequential:
    layers = [keras.layers.Dense(units, activation="relu") for units in hidden]
    return keras.Sequential(layers + [keras.layers.Dense(outputs)], name=name)


def _gaussian(code: tf.Tensor) -> tfd.MultivariateNormalDiag:
    mean, raw_scale = tf.split(code, 2, axis=-1)
    return tfd.MultivariateNormalDiag(loc=mean, scale_diag=tf.nn.softplus(raw_scale) + 1e-5)


class CVAE(keras.Model):
    """q(z|x, y), p(z|x) and p(y|x, z) over images [b, H, W, C] in [0, 1] split at known_rows[b]."""

    def __init__(self, config: CVAEConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        height, width, channels = config.image_shape
        self.prior_net = _mlp(config.hidden_units, 2 * config.latent_dim, "prior")
        self.recognition_net = _mlp(config.hidden_units, 2 * config.latent_dim, "recognition")
        self.decoder = keras.Sequential([_mlp(config.hidden_units, height * width * channels, "decoder_mlp"),
                                         keras.layers.Reshape(config.image_shape)], name="decoder")
        self.build()

    def build(self, input_shape=None) -> None:
        """Create every variable now (one pass of each network), so checkpoints restore and exports track them."""
        images, known_rows = tf.zeros([1, *self.config.image_shape]), tf.zeros([1], tf.int32)
        self.likelihood(images, known_rows, self.prior(images, known_rows).mean())
        self.posterior(images, known_rows)

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        """(images, known_rows) -> the completion with z at the prior's mean (the most typical one)."""
        images, known_rows = inputs
        return self.fill_in(images, known_rows, self.prior(images, known_rows).mean())

    # The three distributions. Each network sees an image and the mask, flattened side by side.

    def _with_mask(self, images: tf.Tensor, known_rows: tf.Tensor, hide_unknown: bool) -> tf.Tensor:
        """[b, 2 HWC]: the image (its unknown pixels set to 0 when hidden) and the known-rows mask."""
        mask = known_mask(known_rows, self.config.image_shape)
        pixels = images * mask if hide_unknown else images
        batch = tf.shape(images)[0]
        return tf.concat([tf.reshape(pixels, [batch, -1]), tf.reshape(mask, [batch, -1])], axis=-1)

    def prior(self, images: tf.Tensor, known_rows: tf.Tensor) -> tfd.MultivariateNormalDiag:
        """p(z|x): batch shape [b], event [d]; it sees the known rows only."""
        return _gaussian(self.prior_net(self._with_mask(images, known_rows, hide_unknown=True)))

    def posterior(self, images: tf.Tensor, known_rows: tf.Tensor) -> tfd.MultivariateNormalDiag:
        """q(z|x, y): batch shape [b], event [d]; it sees the whole image and the mask."""
        return _gaussian(self.recognition_net(self._with_mask(images, known_rows, hide_unknown=False)))

    def likelihood(self, images: tf.Tensor, known_rows: tf.Tensor, z: tf.Tensor) -> tfd.Bernoulli:
        """p(y|x, z) per pixel (batch shape [b, H, W, C]; only the unknown pixels are scored)."""
        x = self._with_mask(images, known_rows, hide_unknown=True)
        return tfd.Bernoulli(logits=self.decoder(tf.concat([z, x], axis=-1)), dtype=tf.float32)

    def fill_in(self, images: tf.Tensor, known_rows: tf.Tensor, z: tf.Tensor) -> tf.Tensor:
        """The known rows of `images` as they are, the others p(y|x, z)'s mean."""
        mask = known_mask(known_rows, self.config.image_shape)
        return tf.where(mask > 0, images, self.likelihood(images, known_rows, z).mean())

    # Objectives.

    def training_rows(self, batch: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """known_rows [b] for a training batch: the config's, or uniform over 0..H-1 from `seed`."""
        if self.config.known_rows >= 0:
            return tf.fill([batch], self.config.known_rows)
        return tf.random.stateless_uniform([batch], tf.cast(seed, tf.int32), 0, self.config.image_shape[0],
                                           dtype=tf.int32)

    def loss_terms(self, images: tf.Tensor, labels: tf.Tensor | None, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        """Per-image -ELBO of the unknown rows given the known ones, each [b], at the training split.

        `labels` is unused (the model is conditioned on the known rows); `seed` [2] draws the
        split and the posterior sample."""
        seed = tf.cast(seed, tf.int32)
        rows_seed = tf.random.experimental.stateless_fold_in(seed, 1)
        return self.conditional_elbo_terms(images, self.training_rows(tf.shape(images)[0], rows_seed), seed)

    def conditional_elbo_terms(self, images: tf.Tensor, known_rows: tf.Tensor, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        """log p(y|x) >= E_q[log p(y|x, z)] - KL(q(z|x, y) || p(z|x)): loss (-ELBO), distortion, rate, elbo [b]."""
        posterior = self.posterior(images, known_rows)
        z = posterior.sample(seed=tf.cast(seed, tf.int32))  # [b, d], reparameterized
        d = unknown_distortion(self.likelihood(images, known_rows, z), images,
                               known_mask(known_rows, self.config.image_shape))
        r = rate(posterior, self.prior(images, known_rows))
        return {"loss": d + r, "distortion": d, "rate": r, "elbo": elbo(d, r)}

    def importance_weighted_log_likelihood(self, images: tf.Tensor, known_rows: tf.Tensor, num_samples: int,
                                           seed: tf.Tensor) -> tf.Tensor:
        """IWAE bound on log p(y|x) [b] with k = num_samples draws of q(z|x, y)."""
        posterior, prior = self.posterior(images, known_rows), self.prior(images, known_rows)
        z = posterior.sample(num_samples, seed=tf.cast(seed, tf.int32))  # [k, b, d]
        mask = known_mask(known_rows, self.config.image_shape)
        log_py = tf.map_fn(  # [k, b]: one decoder pass per draw
            lambda z_k: -unknown_distortion(self.likelihood(images, known_rows, z_k), images, mask), z)
        return importance_weighted_bound(log_py + prior.log_prob(z) - posterior.log_prob(z))

    # Serving.

    def complete(self, images: tf.Tensor, known_rows: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
        """Keep each image's first known_rows[b] rows; fill the rest from z ~ p(z|x) drawn from seeds[b]."""
        prior = self.prior(images, known_rows)
        z = prior.mean() + prior.stddev() * row_noise(seeds, [self.config.latent_dim])  # [b, d]
        return self.fill_in(images, known_rows, z)

    def sample(self, seeds: tf.Tensor) -> tf.Tensor:
        """Whole images from the prior given no rows: z ~ p(z|nothing known), then p(y|z)'s mean."""
        blank = tf.zeros([tf.shape(seeds)[0], *self.config.image_shape])
        return self.complete(blank, tf.zeros_like(seeds, tf.int32), seeds)

    def serving_signatures(self) -> dict[str, Signature]:
        """complete (PixelCNN's inputs and outputs), elbo, and sample when 0 known rows were trained."""
        config = self.config
        height = config.image_shape[0]
        images_spec = tf.TensorSpec([None, *config.image_shape], tf.float32, name="images")
        rows_spec = tf.TensorSpec([None], tf.int64, name="known_rows")
        seed_spec = tf.TensorSpec([None], tf.int64, name="seed")

        def checked_rows(known_rows):
            known_rows = checks.checked_range(known_rows, 0, height + 1, "known_rows")
            if config.known_rows < 0:
                return known_rows
            message = (f"known_rows must be {config.known_rows}: this model was trained to complete images "
                       f"from their first {config.known_rows} rows only")
            with tf.control_dependencies([tf.debugging.assert_equal(
                    known_rows, tf.constant(config.known_rows, known_rows.dtype), message=message)]):
                return tf.identity(known_rows)

        def complete(images, known_rows, seed):
            images = checks.checked_images(images, config.image_shape)
            return {"images": self.complete(images, checked_rows(known_rows), tf.ensure_shape(seed, [None]))}

        def elbo_signature(images, known_rows):
            terms = self.conditional_elbo_terms(checks.checked_images(images, config.image_shape),
                                                checked_rows(known_rows), tf.constant([0, 0]))
            return {"elbo": terms["elbo"], "reconstruction": -terms["distortion"], "kl": terms["rate"]}

        def sample(seed):
            return {"images": self.sample(tf.ensure_shape(seed, [None]))}

        signatures = {"serving_default": (complete, [images_spec, rows_spec, seed_spec]),
                      "complete": (complete, [images_spec, rows_spec, seed_spec]),
                      "elbo": (elbo_signature, [images_spec, rows_spec])}
        if config.known_rows <= 0:
            signatures["sample"] = (sample, [seed_spec])
        return signatures

    def signature_expectations(self) -> dict[str, dict[str, dict]]:
        """Output shapes (-1 = batch) and value ranges per signature, for the model card."""
        images = {"shape": [-1, *self.config.image_shape], "min": 0.0, "max": 1.0}
        expectations = {"serving_default": {"images": images}, "complete": {"images": images},
                        "elbo": {"elbo": {"shape": [-1]}, "reconstruction": {"shape": [-1], "max": 0.0},
                                 "kl": {"shape": [-1], "min": 0.0}}}
        if self.config.known_rows <= 0:
            expectations["sample"] = {"images": images}
        return expectations
