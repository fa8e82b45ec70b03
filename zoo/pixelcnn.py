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

from zoo import signatures as checks

tfd = tfp.distributions


class PixelOutputs:
    """What a pixel model's config says about its outputs (its `image_shape`, `output` and `num_classes`)."""

    image_shape: tuple[int, int, int]
    output: Literal["bernoulli", "categorical"]
    num_classes: int

    def check_outputs(self) -> None:
        """Bernoulli outputs only for one channel; no negative number of classes."""
        if self.output == "bernoulli" and self.image_shape[2] != 1:
            raise ValueError("Bernoulli outputs are for binarized one-channel images; use output=categorical")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be 0 or more, got {self.num_classes}")

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def levels(self) -> int:
        """Values a channel can take: 2 (binarized) or 256."""
        return 2 if self.output == "bernoulli" else 256


@dataclasses.dataclass(frozen=True)
class PixelCNNConfig(PixelOutputs):
    """Architecture and output distribution of a (gated) PixelCNN."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    """Height, width and channels of the images (set from the data by the trainer)."""
    architecture: Literal["pixelcnn", "gated"] = "gated"
    """Masked residual blocks (with a blind spot), or gated vertical and horizontal stacks."""
    filters: int = 64
    """Feature channels per layer; a multiple of the image's channels (one group per colour)."""
    layers: int = 8
    """Masked layers before the output head, the first (type A) included: gated layers, or the
    plain model's first convolution followed by layers - 1 residual blocks."""
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
        self.check_outputs()
        for name in ("first_kernel", "kernel"):
            if getattr(self, name) < 1 or getattr(self, name) % 2 == 0:
                raise ValueError(f"{name} must be a positive odd number, got {getattr(self, name)}")
        if self.layers < 1:
            raise ValueError(f"layers must be at least 1 (the first, type-A layer), got {self.layers}")

    @property
    def title(self) -> str:
        """The model's name in pictures and tables."""
        return f"{'Gated PixelCNN' if self.architecture == 'gated' else 'PixelCNN'}, {self.layers} x {self.filters}"


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

    @property
    def masked_kernel(self) -> tf.Tensor:
        """The kernel times its mask: what the convolution applies."""
        return self.kernel if self.mask is None else self.kernel * self.mask

    def call(self, inputs):
        padded = tf.pad(inputs, self.padding)
        return tf.nn.conv2d(padded, tf.cast(self.masked_kernel, inputs.dtype), strides=1, padding="VALID") + self.bias


def gate(features: tf.Tensor) -> tf.Tensor:
    """tanh(f) * sigmoid(g) of the two halves of the last axis."""
    f, g = tf.split(features, 2, axis=-1)
    return tf.tanh(f) * tf.sigmoid(g)


def shift_down(features: tf.Tensor) -> tf.Tensor:
    """Row y takes row y-1 (row 0 takes zeros): the vertical stack then sees strictly above."""
    return tf.pad(features, [[0, 0], [1, 0], [0, 0], [0, 0]])[:, :-1]


class GatedLayer(keras.layers.Layer):
    """One layer of the Gated PixelCNN: vertical and horizontal stacks, gated, with a residual."""

    def __init__(self, filters: int, kernel: int, channels: int, is_first: bool, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        half = kernel // 2
        mask = "A" if is_first else "B"
        self.is_first = is_first  # the first layer sees the image (type-A mask) and has no residual
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
        bias_v, bias_h = self.biases(labels)
        h_out = self.output_conv(gate(h + bias_h))
        return gate(v + bias_v), h_out if self.is_first else horizontal + h_out

    def biases(self, labels) -> tuple[tf.Tensor | float, tf.Tensor | float]:
        """The label's additive biases for the vertical and horizontal pre-activations (0 without labels)."""
        if self.label_bias is None:
            return 0.0, 0.0
        bias_v, bias_h = tf.split(self.label_bias(labels)[:, None, None, :], 2, axis=-1)
        return bias_v, bias_h


def output_head(units: int, config) -> list[MaskedConv2D]:
    """The two 1x1 mask-B output layers: `units` features, then the logits of every channel value
    (1 per channel for Bernoulli, 256 for categorical; grouped so R comes before G before B)."""
    channels = config.image_shape[2]
    return [MaskedConv2D(units, 1, "B", channels),
            MaskedConv2D(channels * (1 if config.output == "bernoulli" else 256), 1, "B", channels)]


class PixelModel(keras.Model):
    """What the autoregressive pixel models share (PixelCNN here, PixelRNN in zoo/pixelrnn.py).

    A subclass sets `config` (with `image_shape`, `output`, `levels`, `conditional` and
    `num_classes`) and `head` (`output_head`), and gives `logits(images, labels)` and its
    state-reusing sampler `complete_fast`. From them come the likelihood in nats and bits
    per dimension, the seeded noise, the naive sampler and the serving signatures.
    """

    @property
    def out_per_channel(self) -> int:
        """Logits per channel value: 1 (Bernoulli) or 256 (categorical)."""
        return 1 if self.config.output == "bernoulli" else 256

    def build_all(self) -> None:
        """Create every weight by one forward pass (before restoring a checkpoint)."""
        images = tf.zeros((1, *self.config.image_shape))
        self((images, tf.zeros((1,), tf.int64)) if self.config.conditional else images)

    def call(self, inputs):
        """Logits of images, or of (images, labels): [b, H, W, C] (Bernoulli) or [b, H, W, C, 256]."""
        images, labels = inputs if isinstance(inputs, (tuple, list)) else (inputs, None)
        return self.logits(images, labels)

    def head_logits(self, hidden: tf.Tensor) -> tf.Tensor:
        """The output layers on the last hidden map: [b, H, W, C] (Bernoulli) or [b, H, W, C, 256]."""
        logits = self.head[1](tf.nn.elu(self.head[0](tf.nn.elu(hidden))))
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

    def loss_terms(self, images: tf.Tensor, labels: tf.Tensor | None, seed: tf.Tensor) -> dict[str, tf.Tensor]:
        """Per-image training terms: `loss` = -log p(x) in nats, and bits per dimension.

        `seed` is unused (the likelihood is exact); it keeps the trainer's one signature.
        """
        log_prob = self.log_prob(images, labels)
        return {"loss": -log_prob, "bits_per_dim": self.bits_per_dim(log_prob)}

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
        # a table, not a division: graph rewrites turn x / 255 into x * (1 / 255), an ulp away
        return tf.gather(tf.constant(np.arange(256, dtype=np.float32) / 255), tf.argmax(logits + gumbel, axis=-1))

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
               temperature: float | tf.Tensor = 1.0, fast: bool = True) -> tf.Tensor:
        """Images [b, H, W, C] in [0, 1], drawn in raster and channel order from each row's seed."""
        blank = tf.zeros([tf.shape(seeds)[0], *self.config.image_shape])
        complete = self.complete_fast if fast else self.complete
        return complete(blank, tf.zeros_like(seeds, tf.int32), seeds, labels, temperature)

    def _draw_at(self, hidden, canvas, noise, known, y, x, c, temperature, rows_index):
        """Head at one position, draw channel c there (known rows keep theirs); the new canvas and
        the pixel scaled to [-1, 1], for the caches."""
        channels = self.config.image_shape[2]
        logits = at_point(tf.nn.elu(at_point(tf.nn.elu(hidden), self.head[0])), self.head[1])
        if self.out_per_channel > 1:
            logits = tf.reshape(logits, [-1, channels, 256])
        value = self.draw(logits[:, c], noise[:, y, x, c], temperature)
        value = tf.where(y >= known, value, canvas[:, y, x, c])
        one_hot = tf.one_hot(c, channels)
        pixel = canvas[:, y, x] * (1 - one_hot) + value[:, None] * one_hot
        return put(canvas, rows_index, y, x, pixel), 2.0 * pixel - 1.0

    # ---------------------------------------------------------------- serving signatures (DESIGN.md)
    def serving_signatures(self) -> dict:
        """Signature name -> (function, input specs): sample, log_prob, complete (+ label when conditional).

        Sampling and completion in the SavedModel use the fast sampler.
        """
        config = self.config
        height = config.image_shape[0]
        images_spec = tf.TensorSpec([None, *config.image_shape], tf.float32, name="images")
        seed_spec = tf.TensorSpec([None], tf.int64, name="seed")
        rows_spec = tf.TensorSpec([None], tf.int64, name="known_rows")
        cond = [tf.TensorSpec([None], tf.int64, name="label")] if config.conditional else []

        def labels_of(label):
            return checks.checked_range(label, 0, config.num_classes, "label")

        def sample(seed, label=None):
            return {"images": self.sample(tf.ensure_shape(seed, [None]), labels_of(label))}

        def log_prob(images, label=None):
            log_prob = self.log_prob(checks.checked_images(images, config.image_shape), labels_of(label))
            return {"log_prob": log_prob, "bits_per_dim": self.bits_per_dim(log_prob)}

        def complete(images, known_rows, seed, label=None):
            images = checks.checked_images(images, config.image_shape)
            known_rows = checks.checked_range(known_rows, 0, height + 1, "known_rows")
            return {"images": self.complete_fast(images, known_rows, tf.ensure_shape(seed, [None]), labels_of(label))}

        return {
            "serving_default": (sample, [seed_spec, *cond]),
            "sample": (sample, [seed_spec, *cond]),
            "log_prob": (log_prob, [images_spec, *cond]),
            "complete": (complete, [images_spec, rows_spec, seed_spec, *cond]),
        }

    def signature_expectations(self) -> dict[str, dict[str, dict]]:
        """Output shapes (-1 = batch) and value ranges per signature, for the model card."""
        images = {"shape": [-1, *self.config.image_shape], "min": 0.0, "max": 1.0}
        return {"serving_default": {"images": images}, "sample": {"images": images}, "complete": {"images": images},
                "log_prob": {"log_prob": {"shape": [-1], "max": 0.0}, "bits_per_dim": {"shape": [-1], "min": 0.0}}}


class PixelCNN(PixelModel):
    """A (gated) PixelCNN: `call` gives logits, `log_prob` scores, `sample` draws in raster order."""

    def __init__(self, config: PixelCNNConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        c = config
        channels = c.image_shape[2]
        if c.architecture == "gated":
            self.gated = [GatedLayer(c.filters, c.first_kernel if i == 0 else c.kernel, channels, i == 0,
                                     c.num_classes) for i in range(c.layers)]
        else:
            self.input_conv = MaskedConv2D(2 * c.filters, c.first_kernel, "A", channels)
            self.blocks = [[MaskedConv2D(c.filters, 1, "B", channels), MaskedConv2D(c.filters, c.kernel, "B", channels),
                            MaskedConv2D(2 * c.filters, 1, "B", channels)] for _ in range(c.layers - 1)]
            self.label_bias = keras.layers.Embedding(c.num_classes, 2 * c.filters) if c.num_classes else None
        self.head = output_head(c.filters, c)
        self.build_all()

    def logits(self, images: tf.Tensor, labels: tf.Tensor | None = None) -> tf.Tensor:
        x = 2.0 * tf.cast(images, tf.float32) - 1.0  # [0, 1] -> [-1, 1]
        if self.config.architecture == "gated":
            vertical = horizontal = x
            for layer in self.gated:
                vertical, horizontal = layer(vertical, horizontal, labels)
            h = horizontal
        else:
            h = self.input_conv(x) + self.plain_label_bias(labels)
            for reduce, conv, expand in self.blocks:
                h = h + expand(tf.nn.elu(conv(tf.nn.elu(reduce(tf.nn.elu(h))))))
        return self.head_logits(h)

    def plain_label_bias(self, labels: tf.Tensor | None) -> tf.Tensor | float:
        """The plain model's additive label bias after its first layer, [b, 1, 1, 2F] (0 without labels)."""
        return 0.0 if self.label_bias is None else self.label_bias(labels)[:, None, None, :]

    # ---------------------------------------------------------------- fast sampling
    def complete_fast(self, images: tf.Tensor, known_rows: tf.Tensor, seeds: tf.Tensor,
                      labels: tf.Tensor | None = None, temperature: float | tf.Tensor = 1.0) -> tf.Tensor:
        """`complete`, computing only what each new value changes (after Ramachandran et al., 2017).

        Every layer keeps its input so far in a cache; a new value is drawn from the layers
        evaluated at its one position (a kernel-sized window of each cache), and written
        back into the caches. The noise and the arithmetic per position are the naive
        sampler's, so the samples are the same.
        """
        if self.config.architecture == "gated":
            return self._complete_gated(images, known_rows, seeds, labels, temperature)
        return self._complete_plain(images, known_rows, seeds, labels, temperature)

    def _complete_plain(self, images, known_rows, seeds, labels, temperature) -> tf.Tensor:
        """The plain model: each step runs the first layer, every block and the head at one position."""
        height, width, channels = self.config.image_shape
        batch = tf.shape(images)[0]
        canvas = tf.cast(images, tf.float32)
        noise = self.noise(seeds)
        known = tf.cast(known_rows, tf.int32)
        rows_index = tf.range(batch)

        # one full pass over the starting canvas fills the caches: the image, and each block's k x k input
        x = 2.0 * canvas - 1.0
        label_bias = self.plain_label_bias(labels)
        h = self.input_conv(x) + label_bias
        block_pad = []
        for reduce, conv, expand in self.blocks:
            b = tf.nn.elu(reduce(tf.nn.elu(h)))
            block_pad.append(tf.pad(b, conv.padding))
            h = h + expand(tf.nn.elu(conv(b)))
        image_pad = tf.pad(x, self.input_conv.padding)

        def step(position, canvas, image_pad, block_pad):
            y, rest = position // (width * channels), position % (width * channels)
            x, c = rest // channels, rest % channels
            h = (at_position(image_pad, y, x, self.input_conv)[:, None, None] + label_bias)[:, 0, 0]
            block_pad = list(block_pad)
            for i, (reduce, conv, expand) in enumerate(self.blocks):
                b = tf.nn.elu(at_point(tf.nn.elu(h), reduce))
                block_pad[i] = put(block_pad[i], rows_index, y + conv.center[0], x + conv.center[1], b)
                h = h + at_point(tf.nn.elu(at_position(block_pad[i], y, x, conv)), expand)
            canvas, scaled = self._draw_at(h, canvas, noise, known, y, x, c, temperature, rows_index)
            image_pad = put(image_pad, rows_index, y + self.input_conv.center[0], x + self.input_conv.center[1], scaled)
            return position + 1, canvas, image_pad, block_pad

        start = tf.reduce_min(known) * width * channels
        _, canvas, *_ = tf.while_loop(lambda p, *_: p < height * width * channels, step,
                                      [start, canvas, image_pad, block_pad])
        return canvas

    def _complete_gated(self, images, known_rows, seeds, labels, temperature) -> tf.Tensor:
        """The gated model: the horizontal stack at one position per step, the vertical stack once per row."""
        height, width, channels = self.config.image_shape
        layers = self.gated
        batch = tf.shape(images)[0]
        canvas = tf.cast(images, tf.float32)
        noise = self.noise(seeds)
        known = tf.cast(known_rows, tf.int32)
        start_row = tf.reduce_min(known)
        rows_index = tf.range(batch)

        # one full pass over the starting canvas fills every cache (rows above start_row are final)
        v_in, h_in, v_pre = [], [], []
        vertical = horizontal = 2.0 * canvas - 1.0
        for layer in layers:
            v_in.append(vertical)
            h_in.append(horizontal)
            v_pre.append(layer.vertical(vertical))
            vertical, horizontal = layer(vertical, horizontal, labels)
        h_in.append(horizontal)
        v_pad = [tf.pad(v, layer.vertical.padding) for v, layer in zip(v_in, layers)]
        h_pad = [tf.pad(h, layer.horizontal.padding) for h, layer in zip(h_in, layers)] + [h_in[-1]]
        links = [tf.zeros_like(v[:, 0]) for v in v_pre]  # shift_down(v) of row y: v_pre of row y-1
        biases = [layer.biases(labels) for layer in layers]  # (vertical, horizontal) per layer, looked up once

        def row_start(y, v_pad, links):
            """The vertical stack over row y-1 (complete now), and its link input for row y."""
            new_pad, new_links = list(v_pad), []
            for i, layer in enumerate(layers):
                conv = layer.vertical
                window = new_pad[i][:, y - 1:y - 1 + conv.kernel_size[0]]
                pre = tf.nn.conv2d(window, conv.kernel, strides=1, padding="VALID")[:, 0] + conv.bias
                new_links.append(pre)
                out = gate(pre[:, None] + biases[i][0])[:, 0]
                if i + 1 < len(layers):
                    nxt = layers[i + 1].vertical
                    cy, cx = nxt.center
                    row = tf.pad(out, [[0, 0], [cx, nxt.kernel_size[1] - 1 - cx], [0, 0]])
                    index = tf.stack([rows_index, tf.fill([batch], y - 1 + cy)], axis=1)
                    new_pad[i + 1] = tf.tensor_scatter_nd_update(new_pad[i + 1], index, row)
            return new_pad, new_links

        def value_step(y, x, c, canvas, v_pad, h_pad, links):
            h_pad = list(h_pad)
            for i, layer in enumerate(layers):
                pre = at_position(h_pad[i], y, x, layer.horizontal) + at_point(links[i][:, x], layer.link)
                out = at_point(gate((pre[:, None, None] + biases[i][1])[:, 0, 0]), layer.output_conv)
                if not layer.is_first:
                    cx = layer.horizontal.center[1]
                    out += h_pad[i][:, y, x + cx]
                if i + 1 < len(layers):
                    h_pad[i + 1] = put(h_pad[i + 1], rows_index, y, x + layers[i + 1].horizontal.center[1], out)
                else:
                    final = out
            canvas, scaled = self._draw_at(final, canvas, noise, known, y, x, c, temperature, rows_index)
            h_pad[0] = put(h_pad[0], rows_index, y, x + layers[0].horizontal.center[1], scaled)
            cy, cx = layers[0].vertical.center
            v_pad = list(v_pad)
            v_pad[0] = put(v_pad[0], rows_index, y + cy, x + cx, scaled)
            return canvas, v_pad, h_pad

        def row(y, canvas, v_pad, h_pad, links):
            v_pad, links = tf.cond(y > start_row, lambda: row_start(y, v_pad, links), lambda: (v_pad, links))

            def position(p, canvas, v_pad, h_pad):
                canvas, v_pad, h_pad = value_step(y, p // channels, p % channels, canvas, v_pad, h_pad, links)
                return p + 1, canvas, v_pad, h_pad
            _, canvas, v_pad, h_pad = tf.while_loop(lambda p, *_: p < width * channels, position,
                                                    [0, canvas, v_pad, h_pad])
            return y + 1, canvas, v_pad, h_pad, links

        _, canvas, *_ = tf.while_loop(lambda y, *_: y < height, row, [start_row, canvas, v_pad, h_pad, links])
        return canvas



def at_position(padded: tf.Tensor, y, x, conv: MaskedConv2D) -> tf.Tensor:
    """`conv`'s output at (y, x), [b, out], from its padded input: one kernel-sized window, one product."""
    kh, kw = conv.kernel_size
    return tf.einsum("bhwi,hwio->bo", padded[:, y:y + kh, x:x + kw, :], conv.masked_kernel) + conv.bias


def at_point(values: tf.Tensor, conv) -> tf.Tensor:
    """A 1x1 convolution (masked or Keras) applied to one position's features [b, in] -> [b, out]."""
    return conv(values[:, None, None])[:, 0, 0]


def put(cache: tf.Tensor, rows_index: tf.Tensor, y, x, values: tf.Tensor) -> tf.Tensor:
    """`cache` with position (y, x) of every row set to `values`."""
    batch = tf.shape(rows_index)[0]
    index = tf.stack([rows_index, tf.fill([batch], y), tf.fill([batch], x)], axis=1)
    return tf.tensor_scatter_nd_update(cache, index, values)
