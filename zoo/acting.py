"""Acting in numpy, from a snapshot of an MLP agent's weights.

An RL loop asks its policy for an action at every environment step. On these CPUs one call
into TensorFlow costs about 0.3 ms, a CartPole step about 10 us and a small MLP in numpy
about 10 us, so MLP agents act through these copies of their Keras networks, refreshed with
the weights each update returns (`{variable.path: value}`). tests/zoo/test_acting.py holds
each copy to the network it mirrors.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from zoo.dqn import QNetwork
from zoo.policy_gradient import PolicyNetwork

Weights = dict[str, np.ndarray]
"""A snapshot of a network's variables: {variable.path: value}."""


def snapshot(variables: Sequence) -> Weights:
    """The current values of `variables`, by path."""
    return {v.path: v.numpy() for v in variables}


def _dense(layers: Sequence, weights: Weights) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel, bias) of each Dense layer, from the snapshot."""
    return [(np.asarray(weights[layer.kernel.path]), np.asarray(weights[layer.bias.path])) for layer in layers]


def _mlp(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray,
         activation: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Dense layers with `activation` between them and none after the last."""
    for kernel, bias in layers[:-1]:
        x = activation(x @ kernel + bias)
    kernel, bias = layers[-1]
    return x @ kernel + bias


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


class NumpyQNetwork:
    """A QNetwork with the MLP torso: Q-values [b, A] and greedy actions [b]."""

    def __init__(self, network: QNetwork, weights: Weights):
        if network.config.torso != "mlp":
            raise ValueError("numpy Q-values are for the MLP torso; call the network for frames")
        self.layers = _dense([*network.torso, network.head], weights)

    def q_values(self, observation: np.ndarray) -> np.ndarray:
        return _mlp(self.layers, np.asarray(observation, np.float32), _relu)

    def greedy(self, observation: np.ndarray) -> np.ndarray:
        """argmax_a Q(s, a) (ties go to the lowest action, as in the network's greedy_action)."""
        return self.q_values(observation).argmax(axis=-1)


class NumpyPolicy:
    """A PolicyNetwork: the distribution's parameters, sampled and greedy actions, and v(s)."""

    def __init__(self, network: PolicyNetwork, weights: Weights):
        self.config = network.config
        self.policy = _dense([*network.policy_torso.layers, network.action_head], weights)
        continuous = self.config.action_kind == "continuous"
        self.log_stddev = np.asarray(weights[network.log_stddev.path]) if continuous else None
        self.value = None
        if self.config.critic == "separate":
            self.value = _dense([*network.value_torso.layers, network.value_head], weights)
        elif self.config.critic == "shared":
            self.value = self.policy[:-1] + _dense([network.value_head], weights)

    def outputs(self, observation: np.ndarray) -> np.ndarray:
        """The logits (discrete) or the Gaussian's mean (continuous), [b, num_actions]."""
        return _mlp(self.policy, np.asarray(observation, np.float32), np.tanh)

    def act(self, observation: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """Actions drawn with `rng`, or the distribution's mode when rng is None."""
        out = self.outputs(observation)
        if self.config.action_kind == "continuous":
            if rng is None:
                return out
            return out + np.exp(self.log_stddev) * rng.standard_normal(out.shape)
        if rng is None:
            return out.argmax(axis=-1)
        # inverse-CDF sampling of the softmax
        probabilities = np.exp(out - out.max(axis=-1, keepdims=True))
        cumulative = np.cumsum(probabilities, axis=-1)
        draws = rng.random((len(out), 1)) * cumulative[:, -1:]
        return np.minimum((cumulative < draws).sum(axis=-1), out.shape[-1] - 1)

    def values(self, observation: np.ndarray) -> np.ndarray:
        """v(s) [b]."""
        return _mlp(self.value, np.asarray(observation, np.float32), np.tanh)[:, 0]
