"""A classifier on an autoencoder's encoder: the autoencoder lecture's pretraining recipe.

Train a VAE or autoencoder on unlabelled images, throw away the decoder, put a softmax
head on the encoder's code, train the head on the few labelled images there are (encoder
frozen), then fine-tune the encoder with it. `Classifier.from_autoencoder` copies the
encoder's layers and weights from a trained `zoo.vae.VAE`; the same network built from its
config and trained from its random initialisation is the from-scratch baseline.

The code is a VAE's posterior mean (the first latent_dim outputs of its encoder head; the
scale outputs are kept so the weights copy one to one, and unused), or an autoencoder's
code. p(class | image) is a `tfd.Categorical` over the head's logits.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from zoo import signatures as checks
from zoo.signatures import Signature
from zoo.vae import VAE, VAEConfig, build_encoder_head, build_encoder_torso

tfd = tfp.distributions


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """The encoder (as in the VAE it comes from), the head, and whether the encoder trains."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    """Height, width and channels of the images (set from the data by the trainer)."""
    num_classes: int = 10
    """Number of classes of the softmax."""
    encoder_kind: Literal["vae", "ae", "dae"] = "vae"
    """Kind of the autoencoder the encoder comes from: a VAE's code is its posterior mean."""
    architecture: Literal["mlp", "conv"] = "conv"
    """The encoder's layout, as VAEConfig.architecture."""
    latent_dim: int = 16
    """Size of the code the head sees, as VAEConfig.latent_dim."""
    hidden_units: tuple[int, ...] = (256,)
    """The encoder head's dense layers, as VAEConfig.hidden_units."""
    conv_filters: tuple[int, ...] = (32, 64)
    """The encoder's stride-2 convolutions, as VAEConfig.conv_filters."""
    head_units: tuple[int, ...] = ()
    """Dense ReLU layers between the code and the softmax; none gives a linear softmax on the code."""
    freeze_encoder: bool = False
    """Train the head alone, the encoder's weights fixed; false fine-tunes the encoder too."""

    def __post_init__(self):
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        _ = self.encoder_config  # VAEConfig checks the encoder's fields

    @property
    def encoder_config(self) -> VAEConfig:
        """The VAEConfig whose encoder this classifier has (the decoder fields at their defaults)."""
        return VAEConfig(image_shape=self.image_shape, kind=self.encoder_kind, architecture=self.architecture,
                         latent_dim=self.latent_dim, hidden_units=self.hidden_units, conv_filters=self.conv_filters)

    @classmethod
    def from_autoencoder(cls, config: VAEConfig, **fields) -> ClassifierConfig:
        """The classifier config with `config`'s encoder, and `fields` (num_classes, head_units, ...)."""
        if config.conditional:
            raise ValueError("this autoencoder's encoder takes the class label as an input, so it cannot "
                             "predict it; pretrain an unconditional one (without --conditional)")
        return cls(image_shape=config.image_shape, encoder_kind=config.kind, architecture=config.architecture,
                   latent_dim=config.latent_dim, hidden_units=config.hidden_units,
                   conv_filters=config.conv_filters, **fields)


def classification_terms(logits: tf.Tensor, labels: tf.Tensor) -> dict[str, tf.Tensor]:
    """Cross-entropy -log p(label | image) and 0/1 accuracy, each [b]."""
    labels = tf.cast(labels, tf.int32)
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return {"loss": -tfd.Categorical(logits=logits).log_prob(labels),
            "accuracy": tf.cast(tf.equal(predicted, labels), tf.float32)}


class Classifier(keras.Model):
    """images [b, H, W, C] in [0, 1] -> class logits [b, K], through an autoencoder's encoder."""

    def __init__(self, config: ClassifierConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        encoder = config.encoder_config
        code_size = 2 * encoder.latent_dim if encoder.kind == "vae" else encoder.latent_dim
        self.encoder_torso = build_encoder_torso(encoder)
        self.encoder_head = build_encoder_head(encoder, code_size)
        self.head = keras.Sequential([keras.layers.Dense(units, activation="relu") for units in config.head_units]
                                     + [keras.layers.Dense(config.num_classes)], name="classifier_head")
        self(tf.zeros([1, *config.image_shape]))
        self.set_encoder_frozen(config.freeze_encoder)

    @classmethod
    def from_autoencoder(cls, autoencoder: VAE, **fields) -> Classifier:
        """A classifier on a copy of `autoencoder`'s encoder (its decoder thrown away); `fields`
        set the rest of ClassifierConfig (num_classes, head_units, freeze_encoder)."""
        classifier = cls(ClassifierConfig.from_autoencoder(autoencoder.config, **fields))
        classifier.copy_encoder(autoencoder)
        return classifier

    def copy_encoder(self, autoencoder: VAE) -> None:
        """Take the weights of `autoencoder`'s encoder (same layout) into this classifier's encoder."""
        for mine, theirs in ((self.encoder_torso, autoencoder.encoder_torso),
                             (self.encoder_head, autoencoder.encoder_head)):
            shapes = [tuple(w.shape) for w in mine.weights], [tuple(w.shape) for w in theirs.weights]
            if shapes[0] != shapes[1]:
                raise ValueError(f"the autoencoder's {theirs.name} has weights of shapes {shapes[1]}, this "
                                 f"classifier's {shapes[0]}; build the classifier with "
                                 f"ClassifierConfig.from_autoencoder(autoencoder.config)")
            mine.set_weights(theirs.get_weights())

    def set_encoder_frozen(self, frozen: bool) -> None:
        """Leave the encoder out of (or put it back into) `trainable_variables`.

        A train step reads `trainable_variables` when it is traced, and a Keras optimizer updates
        only the variables it was built for: after this, make a new train step and optimizer
        (fine-tuning usually takes a smaller learning rate anyway).
        """
        self.encoder_torso.trainable = not frozen
        self.encoder_head.trainable = not frozen

    def features(self, images: tf.Tensor) -> tf.Tensor:
        """The encoder's code [b, d]: a VAE's posterior mean, an autoencoder's code."""
        code = self.encoder_head(self.encoder_torso(images))
        return code[:, :self.config.latent_dim]

    def call(self, images: tf.Tensor) -> tf.Tensor:
        """Class logits [b, K]."""
        return self.head(self.features(images))

    def loss_terms(self, images: tf.Tensor, labels: tf.Tensor | None, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        """Per-image cross-entropy (`loss`) and accuracy, each [b]; `seed` is unused (no draws)."""
        if labels is None:
            raise ValueError("the classifier learns from labels: pass the label of every image")
        return classification_terms(self(images), labels)

    def serving_signatures(self) -> dict[str, Signature]:
        """classify (and serving_default): images -> probabilities [b, K], classes [b]."""
        images_spec = tf.TensorSpec([None, *self.config.image_shape], tf.float32, name="images")

        def classify(images):
            logits = self(checks.checked_images(images, self.config.image_shape))
            return {"probabilities": tf.nn.softmax(logits), "classes": tf.argmax(logits, axis=-1)}

        return {"serving_default": (classify, [images_spec]), "classify": (classify, [images_spec])}

    def signature_expectations(self) -> dict[str, dict[str, dict]]:
        """Output shapes (-1 = batch) and value ranges per signature, for the model card."""
        outputs = {"probabilities": {"shape": [-1, self.config.num_classes], "min": 0.0, "max": 1.0},
                   "classes": {"shape": [-1], "min": 0, "max": self.config.num_classes - 1}}
        return {"serving_default": outputs, "classify": outputs}
