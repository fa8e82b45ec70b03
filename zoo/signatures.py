"""Input checks shared by the model families' serving signatures.

They run inside the SavedModel (core ops only, so TensorFlow Serving can load them): a
wrong shape fails in EnsureShape, a value out of range in an Assert, each naming the input.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

Signature = tuple[Callable[..., dict[str, tf.Tensor]], list[tf.TensorSpec]]
"""(function returning a dict of tensors, its input specs): what `export` writes as one signature."""


def checked_images(images: tf.Tensor, shape: tuple[int, ...]) -> tf.Tensor:
    """Images of shape [b, *shape] with values in [0, 1]."""
    images = tf.ensure_shape(images, [None, *shape])
    with tf.control_dependencies([
            tf.debugging.assert_greater_equal(images, 0.0, message="images must be in [0, 1]"),
            tf.debugging.assert_less_equal(images, 1.0, message="images must be in [0, 1]")]):
        return tf.identity(images)


def checked_range(values: tf.Tensor | None, low: int, high: int, name: str) -> tf.Tensor | None:
    """A [b] integer input with values in [low, high); None passes through."""
    if values is None:
        return None
    values = tf.ensure_shape(values, [None])
    message = f"{name} must be in [{low}, {high})"
    with tf.control_dependencies([
            tf.debugging.assert_greater_equal(values, tf.constant(low, values.dtype), message=message),
            tf.debugging.assert_less(values, tf.constant(high, values.dtype), message=message)]):
        return tf.identity(values)
