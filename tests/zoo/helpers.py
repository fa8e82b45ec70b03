"""Helpers for the model tests: shipped data and a few training steps."""
import keras
import numpy as np
import tensorflow as tf


def binarized_digits():
    """scikit-learn's 8x8 digits binarized once (numpy's default_rng(0), training images first):
    (train, held_out, data), the first two float32 [n, 8, 8, 1] of 0s and 1s."""
    from training.data import load_images

    data = load_images("digits")
    rng = np.random.default_rng(0)
    train = (rng.random(data.train_images.shape) < data.train_images).astype(np.float32)
    held_out = (rng.random(data.test_images.shape) < data.test_images).astype(np.float32)
    return train, held_out, data


def fit(model: keras.Model, images: np.ndarray, steps: int, labels: np.ndarray | None = None,
        learning_rate: float = 3e-3, batch: int = 64) -> None:
    """`steps` Adam steps on the mean of `model.loss_terms` over consecutive batches of `images`
    (wrapping around), step i seeded (i, 1)."""
    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function
    def step(images, labels, i):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss_terms(images, labels, tf.stack([i, 1]))["loss"])
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    for i in range(steps):
        start = i * batch % (len(images) - batch)
        step(images[start:start + batch], None if labels is None else labels[start:start + batch],
             tf.constant(i, tf.int64))
