"""Deep Q-Networks (Mnih et al., 2015): a network approximates Q(s, a) and regresses on
the one-step Bellman target of a periodically updated copy of itself.

- `QNetwork`: a Keras 3 model from observations to one Q-value per action. Vector
  observations go through an MLP; 84x84x4 uint8 frames through the Nature DQN torso
  (three convolutions and a 512-unit layer). `greedy_action` is the argmax.
- `td_target` and `td_loss`: the loss as pure functions, DQN's or Double DQN's target
  (van Hasselt et al., 2016) and the Huber or squared error.
- `serving_signatures`: `serving_default(observation) -> action, q_values` (greedy) and
  `q_values`; `export` adds the tf-agents PolicySaver signatures around `greedy_action`.

What acts apart from what learns: epsilon schedules, replay and target updates live in
training/dqn.py.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import keras
import tensorflow as tf

from zoo.signatures import Signature


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    """Architecture of a Q-network (observation shape and actions are set from the environment)."""

    observation_shape: tuple[int, ...] = (4,)
    """Shape of one observation: (d,) for vectors, (84, 84, 4) for stacked Atari frames."""
    observation_dtype: Literal["float32", "uint8"] = "float32"
    """float32 vectors, or uint8 frames (scaled to [0, 1] inside the network)."""
    num_actions: int = 2
    """Size of the discrete action space."""
    torso: Literal["mlp", "nature"] = "mlp"
    """'mlp' for vector observations; 'nature' for 84x84x4 frames (Mnih et al., 2015)."""
    hidden: tuple[int, ...] = (64, 64)
    """Widths of the MLP's ReLU layers (the Nature torso has its own: 32, 64, 64 filters, 512 units)."""

    def __post_init__(self):
        if self.num_actions < 1:
            raise ValueError(f"num_actions must be at least 1, got {self.num_actions}")
        if any(width < 1 for width in self.hidden):
            raise ValueError(f"hidden widths must be at least 1, got {self.hidden}")
        if self.torso == "nature" and len(self.observation_shape) != 3:
            raise ValueError(f"the nature torso takes [height, width, frames] observations, "
                             f"got shape {self.observation_shape}")


# ALGO LOGIC: the TD target and loss.


def td_target(reward: tf.Tensor, discount: tf.Tensor, next_q_target: tf.Tensor,
              next_q_online: tf.Tensor | None = None) -> tf.Tensor:
    """The one-step Bellman target y = r + discount * Q_target(s', a*).

    `discount` is gamma * (1 - terminal): zero after a terminal state, gamma after a
    truncated episode (the state still has a future). DQN takes a* = argmax_a
    Q_target(s', a); Double DQN (given `next_q_online`) selects a* with the online network
    and evaluates it with the target network, which removes the max's upward bias.
    """
    selector = next_q_target if next_q_online is None else next_q_online
    best = tf.argmax(selector, axis=-1, output_type=tf.int32)
    next_value = tf.gather(next_q_target, best, axis=-1, batch_dims=1)
    return reward + discount * next_value


def td_loss(q_values: tf.Tensor, action: tf.Tensor, target: tf.Tensor,
            kind: Literal["huber", "mse"] = "huber") -> tf.Tensor:
    """Mean over the batch of the error between Q(s, a) and the (fixed) target y.

    'huber': 0.5 e^2 for |e| <= 1, |e| - 0.5 beyond (the Nature paper's clipped error);
    'mse': 0.5 e^2.
    """
    taken = tf.gather(q_values, tf.cast(action, tf.int32), axis=-1, batch_dims=1)
    error = tf.stop_gradient(target) - taken
    if kind == "huber":
        magnitude = tf.abs(error)
        quadratic = tf.minimum(magnitude, 1.0)
        per_example = 0.5 * quadratic ** 2 + (magnitude - quadratic)
    elif kind == "mse":
        per_example = 0.5 * error ** 2
    else:
        raise ValueError(f"unknown loss {kind!r}; expected 'huber' or 'mse'")
    return tf.reduce_mean(per_example)


class QNetwork(keras.Model):
    """Observations [b, ...] -> Q-values [b, num_actions]."""

    def __init__(self, config: DQNConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        if config.torso == "nature":
            self.torso = [
                keras.layers.Conv2D(32, 8, strides=4, activation="relu", name="conv1"),
                keras.layers.Conv2D(64, 4, strides=2, activation="relu", name="conv2"),
                keras.layers.Conv2D(64, 3, strides=1, activation="relu", name="conv3"),
                keras.layers.Flatten(name="flatten"),
                keras.layers.Dense(512, activation="relu", name="dense"),
            ]
        else:
            self.torso = [keras.layers.Dense(width, activation="relu", name=f"dense{i}")
                          for i, width in enumerate(config.hidden)]
        self.head = keras.layers.Dense(config.num_actions, name="q")
        self.build((None, *config.observation_shape))

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.torso:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.head.build(shape)
        super().build(input_shape)

    def call(self, observation: tf.Tensor) -> tf.Tensor:
        x = tf.cast(observation, tf.float32)
        if self.config.observation_dtype == "uint8":
            x = x / 255.0
        for layer in self.torso:
            x = layer(x)
        return self.head(x)

    def greedy_action(self, observation: tf.Tensor) -> tf.Tensor:
        """argmax_a Q(s, a) as int64 [b] (ties go to the lowest action)."""
        return tf.argmax(self(observation), axis=-1, output_type=tf.int64)

    # Serving: greedy actions and Q-values; tf-agents signatures are added by export.

    def observation_spec(self, name: str = "observation") -> tf.TensorSpec:
        return tf.TensorSpec([None, *self.config.observation_shape], self.config.observation_dtype, name=name)

    def action_spec(self) -> tuple:
        """(shape, dtype, minimum, maximum) of one action, for tf-agents' policy specs."""
        return (), tf.int64, 0, self.config.num_actions - 1

    def checked_observation(self, observation: tf.Tensor) -> tf.Tensor:
        return tf.ensure_shape(observation, [None, *self.config.observation_shape])

    def serving_signatures(self) -> dict[str, Signature]:
        """Signature name -> (function, input specs): serving_default and q_values."""
        def act(observation):
            q_values = self(self.checked_observation(observation))
            return {"action": tf.argmax(q_values, axis=-1, output_type=tf.int64), "q_values": q_values}

        def q_values(observation):
            return {"q_values": self(self.checked_observation(observation))}

        spec = [self.observation_spec()]
        return {"serving_default": (act, spec), "q_values": (q_values, spec)}

    def signature_expectations(self) -> dict[str, dict[str, dict]]:
        """Output shapes (-1 = batch) and value ranges per signature, for the model card."""
        actions = {"shape": [-1], "min": 0, "max": self.config.num_actions - 1}
        q_values = {"shape": [-1, self.config.num_actions]}
        return {"serving_default": {"action": actions, "q_values": q_values}, "q_values": {"q_values": q_values},
                "action": {"action": actions}}
