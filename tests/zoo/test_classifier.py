"""The classifier on a pretrained encoder: copied weights, freezing, its loss by hand, a short
training run, and its signatures on the server's session path."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import exported
from tests.zoo.helpers import fit
from zoo.classifier import Classifier, ClassifierConfig, classification_terms
from zoo.vae import VAE, VAEConfig

ENCODERS = {
    "vae-mlp": VAEConfig(image_shape=(8, 8, 1), architecture="mlp", latent_dim=3, hidden_units=(16,)),
    "ae-conv": VAEConfig(image_shape=(8, 8, 1), kind="ae", architecture="conv", latent_dim=4, hidden_units=(16,),
                         conv_filters=(8, 16)),
}


@pytest.mark.parametrize("name", list(ENCODERS))
def test_the_encoders_weights_are_copied_and_give_its_code(name):
    keras.utils.set_random_seed(0)
    autoencoder = VAE(ENCODERS[name])
    images = tf.random.stateless_uniform([5, 8, 8, 1], [1, 2])
    classifier = Classifier.from_autoencoder(autoencoder, head_units=(8,))
    np.testing.assert_array_equal(classifier.features(images).numpy(), autoencoder.encode(images)[0].numpy())
    fresh = Classifier(ClassifierConfig.from_autoencoder(autoencoder.config))  # the from-scratch baseline
    assert np.abs(fresh.features(images) - autoencoder.encode(images)[0]).max() > 1e-3


def test_freezing_keeps_the_encoder_fixed_and_unfreezing_trains_it():
    autoencoder = VAE(ENCODERS["vae-mlp"])
    classifier = Classifier.from_autoencoder(autoencoder, freeze_encoder=True)
    encoder_variables = classifier.encoder_torso.weights + classifier.encoder_head.weights
    assert {v.path for v in classifier.trainable_variables} == {v.path for v in classifier.head.weights}
    images, labels = tf.random.stateless_uniform([8, 8, 8, 1], [3, 4]), tf.range(8) % 10

    def step():  # a new optimizer each time: a Keras optimizer updates only the variables it was built for
        optimizer = keras.optimizers.Adam(1e-2)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(classifier.loss_terms(images, labels, tf.constant([0, 0]))["loss"])
        optimizer.apply_gradients(zip(tape.gradient(loss, classifier.trainable_variables),
                                      classifier.trainable_variables))

    before = [v.numpy() for v in encoder_variables]
    head_before = classifier.head.weights[0].numpy()
    step()
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, encoder_variables))
    assert not np.array_equal(head_before, classifier.head.weights[0].numpy())

    classifier.set_encoder_frozen(False)  # fine-tuning
    assert len(classifier.trainable_variables) == len(encoder_variables) + len(classifier.head.weights)
    step()
    assert not np.array_equal(before[0], encoder_variables[0].numpy())


def test_classification_terms_by_hand():
    # Logits 0 over 10 classes: p = 1/10 for every label, loss ln 10 = 2.302585; argmax of equal
    # logits is class 0, right for the first image (label 0), wrong for the second (label 3).
    terms = classification_terms(tf.zeros([2, 10]), tf.constant([0, 3]))
    np.testing.assert_allclose(terms["loss"].numpy(), [math.log(10)] * 2, rtol=1e-6)
    np.testing.assert_array_equal(terms["accuracy"].numpy(), [1.0, 0.0])
    # Logits (ln 3, 0): p(0) = 3/4, loss -ln(3/4) = 0.287682 for label 0, -ln(1/4) = 1.386294 for label 1.
    terms = classification_terms(tf.constant([[math.log(3), 0.0]] * 2), tf.constant([0, 1]))
    np.testing.assert_allclose(terms["loss"].numpy(), [0.287682, 1.386294], rtol=1e-5)


def test_a_short_training_run_classifies_the_digits():
    from training.data import load_images

    data = load_images("digits")
    keras.utils.set_random_seed(0)
    classifier = Classifier(ClassifierConfig(image_shape=(8, 8, 1), architecture="mlp", latent_dim=16,
                                             hidden_units=(64,)))
    fit(classifier, data.train_images, 150, labels=data.train_labels)
    terms = classifier.loss_terms(data.test_images, data.test_labels, tf.constant([0, 0]))
    assert float(tf.reduce_mean(terms["accuracy"])) > 0.85  # 10% by chance


def test_classify_signature_through_the_servers_session_path(tmp_path):
    classifier = Classifier.from_autoencoder(VAE(ENCODERS["ae-conv"]), head_units=(8,))
    run = exported(classifier, tmp_path / "1")
    assert run.signatures == ["classify", "serving_default"]
    assert set(classifier.signature_expectations()) == set(run.signatures)
    images = tf.random.stateless_uniform([3, 8, 8, 1], [5, 6]).numpy()
    for signature in run.signatures:
        got = run(signature, images=images)
        assert got["probabilities"].shape == (3, 10) and got["classes"].shape == (3,)
        np.testing.assert_allclose(got["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(got["probabilities"], tf.nn.softmax(classifier(images)).numpy(), rtol=1e-5)
        np.testing.assert_array_equal(got["classes"], got["probabilities"].argmax(axis=1))
    with pytest.raises(Exception, match=r"images must be in \[0, 1\]"):
        run("classify", images=images + 1.0)


def test_config_refuses_a_label_conditioned_encoder_and_a_mismatched_copy():
    with pytest.raises(ValueError, match="cannot predict it"):
        ClassifierConfig.from_autoencoder(VAEConfig(image_shape=(8, 8, 1), num_classes=10))
    classifier = Classifier(ClassifierConfig(image_shape=(8, 8, 1), architecture="mlp", latent_dim=5,
                                             hidden_units=(16,)))
    with pytest.raises(ValueError, match="from_autoencoder"):
        classifier.copy_encoder(VAE(ENCODERS["vae-mlp"]))
