"""The fused Adam takes the steps Keras' Adam takes."""
import keras
import numpy as np
import tensorflow as tf

from training.optim import FusedAdam


def test_fused_adam_matches_keras_adam_step_for_step():
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=(2,)).astype(np.float32)]
    ours, theirs = [keras.Variable(w) for w in start], [keras.Variable(w) for w in start]
    fused = FusedAdam(ours, learning_rate=0.01, clipnorm=0.5)
    reference = keras.optimizers.Adam(0.01, global_clipnorm=0.5)
    for _ in range(5):
        gradients = [tf.constant(rng.normal(size=w.shape).astype(np.float32)) for w in start]
        fused.apply(gradients, ours)
        reference.apply(gradients, theirs)
    for a, b, w in zip(ours, theirs, start):
        assert not np.allclose(a.numpy(), w)  # it moved
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert int(fused.iterations.numpy()) == 5
