"""Neural architecture search with a recurrent controller (Zoph & Le, 2017), the lectures'
last policy-gradient example.

An LSTM controller emits an architecture one choice at a time (per layer of a small CNN:
its filters, its kernel size, and whether a skip connection carries the layer's input past
it); each choice is a draw from a `tfd.Categorical` whose logits come from the LSTM's state,
and the next step reads an embedding of the choice just made. The reward is the held-out
accuracy of the sampled network after brief training, and the controller follows REINFORCE
with a moving-average baseline b: loss = -mean((R - b) log pi(architecture)).

- `SearchSpace`: the choices and their options; `decode` turns choice indices into an
  `Architecture`, `build_child` turns that into a Keras model.
- `Controller`: `sample(batch, seed)` draws architectures reproducibly per seed;
  `log_prob_and_entropy(choices)` scores given ones (for the gradient).
- `controller_loss` and `moving_average` are the algorithm's pure pieces.
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Per layer of the child CNN: a number of filters, a kernel size, and a skip connection."""

    num_layers: int = 3
    """Convolutional layers of every child."""
    filters: tuple[int, ...] = (8, 16, 32)
    """Options for each layer's number of filters."""
    kernel_sizes: tuple[int, ...] = (1, 3, 5)
    """Options for each layer's (square) kernel size."""
    skips: tuple[bool, ...] = (False, True)
    """Options for whether the layer's input is concatenated onto its output."""

    def __post_init__(self):
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {self.num_layers}")
        for name in ("filters", "kernel_sizes", "skips"):
            if not getattr(self, name):
                raise ValueError(f"{name} needs at least one option")

    @property
    def decisions(self) -> list[tuple[str, tuple]]:
        """(name, options) of each choice, in the order the controller makes them."""
        per_layer = [("filters", self.filters), ("kernel_size", self.kernel_sizes), ("skip", self.skips)]
        return [(f"layer{i}/{name}", options) for i in range(self.num_layers) for name, options in per_layer]

    @property
    def size(self) -> int:
        """How many architectures the space holds."""
        return int(np.prod([len(options) for _, options in self.decisions]))

    def decode(self, choices: np.ndarray) -> Architecture:
        """Choice indices [num_decisions] -> the architecture they pick."""
        values = [options[int(c)] for (_, options), c in zip(self.decisions, choices)]
        return tuple(Layer(*values[i:i + 3]) for i in range(0, len(values), 3))


@dataclasses.dataclass(frozen=True)
class Layer:
    filters: int
    kernel_size: int
    skip: bool

    def __str__(self) -> str:
        return f"conv{self.filters}x{self.kernel_size}" + ("+skip" if self.skip else "")


Architecture = tuple[Layer, ...]


def describe(architecture: Architecture) -> str:
    """A short name such as 'conv16x3+skip > conv32x5 > conv8x1'."""
    return " > ".join(str(layer) for layer in architecture)


def build_child(architecture: Architecture, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """The CNN an architecture names: its ReLU convolutions ('same' padding; a skip
    concatenates the layer's input onto its output), global average pooling, then logits.

    Pooling over positions makes the kernel sizes matter: a stack of 1x1 convolutions sees
    each pixel alone and cannot tell digits apart.
    """
    inputs = keras.Input(input_shape)
    features = inputs
    for layer in architecture:
        outputs = keras.layers.Conv2D(layer.filters, layer.kernel_size, padding="same", activation="relu")(features)
        features = keras.layers.Concatenate()([features, outputs]) if layer.skip else outputs
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    return keras.Model(inputs, keras.layers.Dense(num_classes)(pooled), name="child")


class Controller(keras.Model):
    """An LSTM that makes the search space's decisions in order, each from its own softmax head."""

    def __init__(self, space: SearchSpace, units: int = 32, **kwargs):
        super().__init__(**kwargs)
        self.space, self.units = space, units
        self.cell = keras.layers.LSTMCell(units)
        self.start = self.add_weight(shape=(1, units), initializer="zeros", name="start")
        self.heads = [keras.layers.Dense(len(options), name=f"head{t}") for t, (_, options)
                      in enumerate(space.decisions)]
        self.embeddings = [keras.layers.Embedding(len(options), units, name=f"embedding{t}") for t, (_, options)
                           in enumerate(space.decisions[:-1])]  # the last choice feeds nothing
        self._unroll(1, lambda t, distribution: tf.zeros([1], tf.int32))

    def _unroll(self, batch: int, choose) -> list[tfd.Categorical]:
        """Run the LSTM over the decisions; `choose(t, distribution)` picks choice t [batch]
        (sampled, or given), whose embedding is the next step's input."""
        inputs = tf.tile(self.start, [batch, 1])
        state = [tf.zeros([batch, self.units]), tf.zeros([batch, self.units])]
        distributions = []
        for t, head in enumerate(self.heads):
            output, state = self.cell(inputs, state)
            distributions.append(tfd.Categorical(logits=head(output)))
            choice = choose(t, distributions[-1])
            if t < len(self.embeddings):
                inputs = self.embeddings[t](choice)
        return distributions

    def _decide(self, batch: int, pick) -> np.ndarray:
        """Choice indices [batch, num_decisions], each picked by `pick(t, distribution)`."""
        choices = []

        def choose(t, distribution):
            choices.append(tf.cast(pick(t, distribution), tf.int32))
            return choices[-1]

        self._unroll(batch, choose)
        return tf.stack(choices, axis=1).numpy()

    def sample(self, batch: int, seed: int) -> np.ndarray:
        """`batch` architectures' choice indices [batch, num_decisions], the same for the same seed."""
        return self._decide(batch, lambda t, distribution: distribution.sample(seed=tf.constant([seed, t], tf.int32)))

    def mode(self) -> np.ndarray:
        """The choice indices [num_decisions] picked by taking each decision's most likely option."""
        return self._decide(1, lambda t, distribution: distribution.mode())[0]

    def log_prob_and_entropy(self, choices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """log pi(architecture) and the summed entropy of its decisions, each [batch], for given choices."""
        choices = tf.convert_to_tensor(choices, tf.int32)
        distributions = self._unroll(int(choices.shape[0]), lambda t, distribution: choices[:, t])
        log_prob = tf.add_n([d.log_prob(choices[:, t]) for t, d in enumerate(distributions)])
        entropy = tf.add_n([d.entropy() for d in distributions])
        return log_prob, entropy

    def probabilities(self, choices: np.ndarray) -> np.ndarray:
        """pi(architecture) for each row of choice indices."""
        return np.exp(self.log_prob_and_entropy(choices)[0].numpy())


def controller_loss(log_probs: tf.Tensor, rewards: tf.Tensor, baseline: float | tf.Tensor,
                    entropy: tf.Tensor, entropy_weight: float = 0.0) -> tf.Tensor:
    """REINFORCE with a baseline: -mean((R - b) log pi(a)) - entropy_weight mean(H)."""
    advantages = tf.stop_gradient(tf.cast(rewards, tf.float32) - baseline)
    return -tf.reduce_mean(advantages * log_probs) - entropy_weight * tf.reduce_mean(entropy)


def moving_average(baseline: float | None, rewards: np.ndarray, decay: float) -> float:
    """b <- decay b + (1 - decay) mean(R); the first batch's mean starts it."""
    mean = float(np.mean(rewards))
    return mean if baseline is None else decay * baseline + (1.0 - decay) * mean
