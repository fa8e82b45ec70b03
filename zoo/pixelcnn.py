"""PixelCNN (van den Oord et al., 2016a) and Gated PixelCNN (van den Oord et al., 2016b).

An explicit-likelihood image model: p(x) = prod_i p(x_i | x_<i) over pixels in raster
order and, within a pixel, over channels in turn (R, then G given R, then B given R and G).
Causality comes from masked convolutions:

- mask type A (first layer) hides the current pixel; type B (later layers) shows it;
- at the current pixel, feature channels are split into as many groups as the image has
  channels, and group j may only see groups before it (A) or up to it (B), which makes
  the colours autoregressive within a pixel.

The plain model stacks masked residual blocks and has the blind spot of its 3x3 masks. The
gated model has a vertical stack (rows above, any column) and a horizontal stack (the row
so far), with `tanh(f) * sigmoid(g)` units; the vertical stack feeds the horizontal one
shifted down a row, so nothing is blind. Both can be conditioned on a class label. ELU
rather than ReLU between layers keeps every gradient alive, so the tests can tell a blind
spot (a structural zero) from a dead unit.

Outputs are Bernoulli logits for binarized images, or a 256-way categorical per channel
for 8-bit images. Sampling draws its noise for a whole image up front from the row's seed,
so a row's sample depends on its seed alone, never on the rest of the batch.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Literal

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


@dataclasses.dataclass(frozen=True)
class PixelCNNConfig:
    """Architecture and output distribution of a (gated) PixelCNN."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    """Height, width and channels of the images (set from the data by the trainer)."""
    architecture: Literal["pixelcnn", "gated"] = "gated"
    """Masked residual blocks (with a blind spot), or gated vertical and horizontal stacks."""
    filters: int = 64
    """Feature channels per layer; a multiple of the image's channels (one group per colour)."""
    layers: int = 7
    """Residual blocks (pixelcnn) or gated layers after the first."""
    first_kernel: int = 7
    """Kernel size of the first, type-A masked layer."""
    kernel: int = 3
    """Kernel size of the later layers."""
    output: Literal["bernoulli", "categorical"] = "bernoulli"
    """Bernoulli logits for binarized images, or 256-way logits per channel for 8-bit images."""
    num_classes: int = 0
    """Number of classes for a class-conditional model; 0 for an unconditional one."""

    def __post_init__(self):
        channels = self.image_shape[2]
        if self.filters < 1 or self.filters % channels:
            raise ValueError(f"filters must be a positive multiple of the {channels} image channels, "
                             f"got {self.filters}")
        if self.output == "bernoulli" and channels != 1:
            raise ValueError("Bernoulli outputs are for binarized one-channel images; use output=categorical")
        for name in ("first_kernel", "kernel"):
            if getattr(self, name) < 1 or getattr(self, name) % 2 == 0:
                raise ValueError(f"{name} must be a positive odd number, got {getattr(self, name)}")
        if self.layers < 0 or self.num_classes < 0:
            raise ValueError("layers and num_classes must be 0 or more")

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def levels(self) -> int:
        """Values a channel can take: 2 (binarized) or 256."""
        return 2 if self.output == "bernoulli" else 256


def channel_groups(count: int, channels: int, parts: int = 1) -> np.ndarray:
    """The colour group of each of `count` feature channels: contiguous blocks, repeated `parts`
    times (a gated layer's 2F outputs are two halves, f and g, with the same grouping)."""
    per_part = count // parts
    return np.tile(np.arange(per_part) * channels // per_part, parts)


def causal_mask(kernel: tuple[int, int], center: tuple[int, int], in_channels: int, out_channels: int,
                channels: int, mask_type: Literal["A", "B"], parts: int = 1) -> np.ndarray:
    """[kh, kw, in, out] mask: 1 where the output at `center` may see the input, 0 elsewhere.

    Positions after the center in raster order are hidden; at the center, output group j
    sees input groups i < j (type A) or i <= j (type B).
    """
    kh, kw = kernel
    cy, cx = center
    mask = np.ones((kh, kw, in_channels, out_channels), dtype=np.float32)
    mask[cy, cx + 1:] = 0
    mask[cy + 1:] = 0
    seen = channel_groups(in_channels, channels)[:, None]
    seeing = channel_groups(out_channels, channels, parts)[None, :]
    mask[cy, cx] = (seen < seeing) if mask_type == "A" else (seen <= seeing)
    return mask


class MaskedConv2D(keras.layers.Layer):
    """A 2-D convolution whose kernel is multiplied by a fixed causal mask in the forward pass.

    `center` is the kernel position aligned with the output pixel; the input is padded so
    that output (y, x) is computed at input (y, x). The mask is a constant, applied as
    `kernel * mask` on every call, never written into the kernel.
    """

    def __init__(self, filters: int, kernel_size: int | tuple[int, int], mask_type: Literal["A", "B"] | None,
                 channels: int, center: tuple[int, int] | None = None, parts: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.center = center or (self.kernel_size[0] // 2, self.kernel_size[1] // 2)
        self.mask_type, self.channels, self.parts = mask_type, channels, parts

    def build(self, input_shape):
        in_channels = input_shape[-1]
        self.kernel = self.add_weight(name="kernel", shape=(*self.kernel_size, in_channels, self.filters),
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
        # numpy, so that each graph that calls the layer gets its own constant
        self.mask = None if self.mask_type is None else causal_mask(
            self.kernel_size, self.center, in_channels, self.filters, self.channels, self.mask_type, self.parts)
        (kh, kw), (cy, cx) = self.kernel_size, self.center
        self.padding = [[0, 0], [cy, kh - 1 - cy], [cx, kw - 1 - cx], [0, 0]]

    def call(self, inputs):
        kernel = self.kernel if self.mask is None else self.kernel * self.mask
        padded = tf.pad(inputs, self.padding)
        return tf.nn.conv2d(padded, tf.cast(kernel, inputs.dtype), strides=1, padding="VALID") + self.bias


def gate(features: tf.Tensor) -> tf.Tensor:
    """tanh(f) * sigmoid(g) of the two halves of the last axis."""
    f, g = tf.split(features, 2, axis=-1)
    return tf.tanh(f) * tf.sigmoid(g)


def shift_down(features: tf.Tensor) -> tf.Tensor:
    """Row y takes row y-1 (row 0 takes zeros): the vertical stack then sees strictly above."""
    return tf.pad(features, [[0, 0], [1, 0], [0, 0], [0, 0]])[:, :-1]


class GatedLayer(keras.layers.Layer):
    """One layer of the Gated PixelCNN: vertical and horizontal stacks, gated, with a residual."""

    def __init__(self, filters: int, kernel: int, channels: int, first: bool, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        half = kernel // 2
        mask = "A" if first else "B"
        self.first = first
        # vertical: rows y-half..y (all columns within reach); shifted down before the horizontal stack uses it
        self.vertical = MaskedConv2D(2 * filters, (half + 1, kernel), None, channels, center=(half, half))
        # horizontal: the row's pixels x-half..x, the current one masked by colour group
        self.horizontal = MaskedConv2D(2 * filters, (1, half + 1), mask, channels, center=(0, half), parts=2)
        self.link = keras.layers.Conv2D(2 * filters, 1)
        self.output_conv = MaskedConv2D(filters, 1, "B", channels)
        self.label_bias = keras.layers.Embedding(num_classes, 4 * filters) if num_classes else None

    def call(self, vertical, horizontal, labels=None):
        v = self.vertical(vertical)
        h = self.horizontal(horizontal) + self.link(shift_down(v))
        if self.label_bias is not None:
            bias_v, bias_h = tf.split(self.label_bias(labels)[:, None, None, :], 2, axis=-1)
            v, h = v + bias_v, h + bias_h
        h_out = self.output_conv(gate(h))
        return gate(v), h_out if self.first else horizontal + h_out


class PixelCNN(keras.Model):
    """A (gated) PixelCNN: `call` gives logits, `log_prob` scores, `sample` draws in raster order."""

    def __init__(self, config: PixelCNNConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        c = config
        channels = c.image_shape[2]
        self.out_per_channel = 1 if c.output == "bernoulli" else 256
        if c.architecture == "gated":
            self.gated = [GatedLayer(c.filters, c.first_kernel if i == 0 else c.kernel, channels, i == 0,
                                     c.num_classes) for i in range(c.layers + 1)]
        else:
            self.first = MaskedConv2D(2 * c.filters, c.first_kernel, "A", channels)
            self.blocks = [[MaskedConv2D(c.filters, 1, "B", channels), MaskedConv2D(c.filters, c.kernel, "B", channels),
                            MaskedConv2D(2 * c.filters, 1, "B", channels)] for _ in range(c.layers)]
            self.label_bias = keras.layers.Embedding(c.num_classes, 2 * c.filters) if c.num_classes else None
        self.head = [MaskedConv2D(c.filters, 1, "B", channels),
                     MaskedConv2D(channels * self.out_per_channel, 1, "B", channels)]

    def build_all(self) -> None:
        """Create every weight by one forward pass (before restoring a checkpoint)."""
        images = tf.zeros((1, *self.config.image_shape))
        self.logits(images, tf.zeros((1,), tf.int64) if self.config.conditional else None)

    def call(self, inputs):
        """Logits of images, or of (images, labels): [b, H, W, C] (Bernoulli) or [b, H, W, C, 256]."""
        images, labels = inputs if isinstance(inputs, (tuple, list)) else (inputs, None)
        return self.logits(images, labels)

    def logits(self, images: tf.Tensor, labels: tf.Tensor | None = None) -> tf.Tensor:
        x = 2.0 * tf.cast(images, tf.float32) - 1.0  # [0, 1] -> [-1, 1]
        if self.config.architecture == "gated":
            vertical = horizontal = x
            for layer in self.gated:
                vertical, horizontal = layer(vertical, horizontal, labels)
            h = horizontal
        else:
            h = self.first(x)
            if self.label_bias is not None:
                h += self.label_bias(labels)[:, None, None, :]
            for reduce, conv, expand in self.blocks:
                h = h + expand(tf.nn.elu(conv(tf.nn.elu(reduce(tf.nn.elu(h))))))
        logits = self.head[1](tf.nn.elu(self.head[0](tf.nn.elu(h))))
        if self.out_per_channel == 1:
            return logits
        height, width, channels = self.config.image_shape
        return tf.reshape(logits, [-1, height, width, channels, 256])

    def distribution(self, logits: tf.Tensor) -> tfd.Distribution:
        """p(x_i | x_<i) for every pixel and channel, over the values 0..levels-1."""
        if self.out_per_channel == 1:
            return tfd.Bernoulli(logits=logits, dtype=tf.float32)
        return tfd.Categorical(logits=logits, dtype=tf.float32)

    def values(self, images: tf.Tensor) -> tf.Tensor:
        """Images in [0, 1] as the integer values the distribution is over (as floats)."""
        return tf.round(tf.cast(images, tf.float32) * (self.config.levels - 1))

    def log_prob(self, images: tf.Tensor, labels: tf.Tensor | None = None) -> tf.Tensor:
        """log p(x) in nats, shape [b]."""
        terms = self.distribution(self.logits(images, labels)).log_prob(self.values(images))
        return tf.reduce_sum(terms, axis=[1, 2, 3])

    def bits_per_dim(self, log_prob: tf.Tensor) -> tf.Tensor:
        """-log2 p(x) per channel value."""
        return -log_prob / (math.prod(self.config.image_shape) * math.log(2.0))

    # ---------------------------------------------------------------- sampling
    def noise(self, seeds: tf.Tensor) -> tf.Tensor:
        """Per-row uniform noise for a whole image, from the row's seed alone: [b, H, W, C, levels or 1]."""
        width = 1 if self.out_per_channel == 1 else 256
        shape = [*self.config.image_shape, width]

        def one(seed):
            return tf.random.stateless_uniform(shape, seed=tf.stack([seed, tf.constant(0x5EED, tf.int64)]),
                                               minval=1e-7, maxval=1.0)
        return tf.map_fn(one, tf.cast(seeds, tf.int64), fn_output_signature=tf.float32)

    def draw(self, logits: tf.Tensor, noise: tf.Tensor, temperature: float | tf.Tensor) -> tf.Tensor:
        """A value in [0, 1] drawn from the logits with the given noise (Gumbel-max for categorical)."""
        logits = logits / temperature
        if self.out_per_channel == 1:
            return tf.cast(noise[..., 0] < tf.sigmoid(logits), tf.float32)
        gumbel = -tf.math.log(-tf.math.log(noise))
        return tf.cast(tf.argmax(logits + gumbel, axis=-1), tf.float32) / 255.0

    def complete(self, images: tf.Tensor, known_rows: tf.Tensor, seeds: tf.Tensor,
                 labels: tf.Tensor | None = None, temperature: float | tf.Tensor = 1.0) -> tf.Tensor:
        """Keep each row's first `known_rows` image rows and sample the rest, one value at a time.

        The naive sampler: one pass of the whole network per pixel and channel.
        """
        height, width, channels = self.config.image_shape
        canvas = tf.identity(tf.cast(images, tf.float32))
        noise = self.noise(seeds)
        known = tf.cast(known_rows, tf.int32)[:, None, None, None]
        rows = tf.range(height)[None, :, None, None]
        start = tf.reduce_min(known) * width * channels

        def step(position, canvas):
            y, rest = position // (width * channels), position % (width * channels)
            x, c = rest // channels, rest % channels
            logits = self.logits(canvas, labels)[:, y, x, c]
            value = self.draw(logits, noise[:, y, x, c], temperature)
            target = tf.one_hot(y * width * channels + x * channels + c, height * width * channels)
            target = tf.reshape(target, [1, height, width, channels]) * tf.cast(rows >= known, tf.float32)
            return position + 1, canvas * (1 - target) + value[:, None, None, None] * target

        _, canvas = tf.while_loop(lambda p, _: p < height * width * channels, step, [start, canvas])
        return canvas

    def sample(self, seeds: tf.Tensor, labels: tf.Tensor | None = None,
               temperature: float | tf.Tensor = 1.0) -> tf.Tensor:
        """Images [b, H, W, C] in [0, 1], drawn in raster and channel order from each row's seed."""
        blank = tf.zeros([tf.shape(seeds)[0], *self.config.image_shape])
        return self.complete(blank, tf.zeros_like(seeds, tf.int32), seeds, labels, temperature)
