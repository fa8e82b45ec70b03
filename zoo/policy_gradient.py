"""Policy-gradient agents: REINFORCE (Williams, 1992), REINFORCE with a learned state-value
baseline, the advantage actor-critic (A2C; Mnih et al., 2016, synchronous) and proximal
policy optimisation (PPO; Schulman et al., 2017, the clipped objective).

- `PolicyNetwork`: a Keras 3 model from observations to a TFP distribution over actions
  (`tfd.Categorical` for discrete actions, a diagonal Gaussian for continuous ones) and,
  when it has a critic, to a state value v(s); the critic has its own torso or shares the
  policy's.
- The losses are pure functions of tensors, written after the math:
  `discounted_returns`, `reinforce_loss`, `reinforce_baseline_loss`, `n_step_targets`
  and `a2c_loss`; for PPO `gae_targets`, `normalize_advantages`, `clipped_surrogate_loss`,
  `clipped_value_loss` and `ppo_loss`. Log-probabilities and entropies come from the
  distribution.

The policy gradient theorem: grad J = E[grad log pi(a|s) (G - b(s))] for any baseline b that
does not depend on the action; b = v(s) leaves the expectation alone and lowers the variance.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

from zoo.signatures import Signature


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """Architecture of a policy (observation shape and actions are set from the environment)."""

    observation_shape: tuple[int, ...] = (4,)
    """Shape of one observation vector."""
    action_kind: Literal["discrete", "continuous"] = "discrete"
    """Categorical over actions, or a diagonal Gaussian over an action vector."""
    num_actions: int = 2
    """Number of discrete actions, or the dimension of a continuous action."""
    hidden: tuple[int, ...] = (64, 64)
    """Widths of the tanh layers of each torso."""
    critic: Literal["none", "separate", "shared"] = "separate"
    """No value head (REINFORCE), a value network of its own, or a value head on the policy's torso."""
    action_low: float = -1.0
    """Continuous actions: the smallest value of each component (actions are clipped to it)."""
    action_high: float = 1.0
    """Continuous actions: the largest value of each component."""

    def __post_init__(self):
        if self.num_actions < 1:
            raise ValueError(f"num_actions must be at least 1, got {self.num_actions}")


# ALGO LOGIC: returns, advantages and the three losses.


def discounted_returns(rewards: np.ndarray, terminated: np.ndarray, gamma: float,
                       bootstrap: np.ndarray | float = 0.0) -> np.ndarray:
    """G_t = r_t + gamma (1 - terminated_t) G_{t+1}, backwards along axis 0 of [T, ...].

    `bootstrap` stands for G_T after the last step (0 for whole episodes, v(s_T) for a
    truncated piece); a terminal step cuts the sum there.
    """
    returns = np.zeros_like(rewards, dtype=np.float64)
    following = np.asarray(bootstrap, dtype=np.float64)
    for t in reversed(range(len(rewards))):
        following = rewards[t] + gamma * (1.0 - terminated[t]) * following
        returns[t] = following
    return returns.astype(np.float32)


def n_step_targets(rewards: np.ndarray, terminated: np.ndarray, values: np.ndarray | float,
                   last_values: np.ndarray, gamma: float, lam: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A2C's bootstrapped targets and advantages for a rollout [T, envs].

    G_t = r_t + gamma (1 - terminated_t) [(1 - lam) v(s_{t+1}) + lam G_{t+1}], with
    G_T = v(s_T) after the rollout, and advantage_t = G_t - v(s_t). With lam = 1 (the
    default) the target is the n-step return r_t + gamma r_{t+1} + ... + gamma^{T-t} v(s_T),
    cut at the first terminal step (no bootstrap across an episode's end); lam < 1 gives
    TD(lambda) targets, whose advantages are GAE's (Schulman et al., 2016), and lam = 0 the
    one-step r_t + gamma v(s_{t+1}). `values` (v(s_t) for the rollout) matters only when lam < 1.
    """
    values = np.broadcast_to(np.asarray(values, np.float64), rewards.shape)
    targets = np.zeros_like(rewards, dtype=np.float64)
    following = next_value = np.asarray(last_values, dtype=np.float64)
    for t in reversed(range(len(rewards))):
        following = rewards[t] + gamma * (1.0 - terminated[t]) * ((1.0 - lam) * next_value + lam * following)
        targets[t], next_value = following, values[t]
    return targets.astype(np.float32), (targets - values).astype(np.float32)


def reinforce_loss(log_probs: tf.Tensor, returns: tf.Tensor) -> tf.Tensor:
    """-mean(log pi(a_t|s_t) G_t): its gradient is REINFORCE's estimate of -grad J."""
    return -tf.reduce_mean(log_probs * tf.stop_gradient(returns))


def reinforce_baseline_loss(log_probs: tf.Tensor, returns: tf.Tensor, values: tf.Tensor,
                            value_weight: float = 0.5) -> dict[str, tf.Tensor]:
    """Policy term -mean(log pi (G - v(s))) with the advantage held fixed, plus
    value_weight * mean((G - v(s))^2) to fit the baseline."""
    advantages = tf.stop_gradient(returns - values)
    policy = -tf.reduce_mean(log_probs * advantages)
    value = tf.reduce_mean(tf.square(tf.stop_gradient(returns) - values))
    return {"loss": policy + value_weight * value, "policy_loss": policy, "value_loss": value}


def a2c_loss(log_probs: tf.Tensor, entropy: tf.Tensor, values: tf.Tensor, targets: tf.Tensor,
             value_weight: float = 0.5, entropy_weight: float = 0.01) -> dict[str, tf.Tensor]:
    """-mean(log pi A) + value_weight mean((target - v)^2) - entropy_weight mean(H[pi]),
    with A = target - v(s) held fixed in the policy term."""
    advantages = tf.stop_gradient(targets - values)
    policy = -tf.reduce_mean(log_probs * advantages)
    value = tf.reduce_mean(tf.square(tf.stop_gradient(targets) - values))
    bonus = tf.reduce_mean(entropy)
    return {"loss": policy + value_weight * value - entropy_weight * bonus,
            "policy_loss": policy, "value_loss": value, "entropy": bonus}


# ALGO LOGIC: PPO's targets and losses. `weights` (1 for a transition, 0 for a step that
# only reset an environment) turns each mean into sum(w x) / sum(w).


def gae_targets(rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray, values: np.ndarray,
                final_values: np.ndarray, last_values: np.ndarray, gamma: float,
                lam: float) -> tuple[np.ndarray, np.ndarray]:
    """PPO's value targets and GAE(lambda) advantages for a rollout [T, envs].

    delta_t = r_t + gamma v(s_{t+1}) - v(s_t) and A_t = delta_t + gamma lam A_{t+1}, both cut
    where an episode ends; the target is A_t + v(s_t) (the TD(lambda) return). A step that
    hits a time limit (`truncated`) is no end of the task: its reward gains gamma v(s_final),
    the value of the observation the episode stopped at (`final_values`, read where
    truncated), and the sum is cut there as at a terminal step. `last_values` is v(s_T) after
    the rollout. This is `n_step_targets` with lam < 1 after that one change to the rewards.
    """
    truncated = np.asarray(truncated, bool)
    rewards = rewards + np.where(truncated, gamma * np.asarray(final_values, np.float64), 0.0)
    return n_step_targets(rewards, np.asarray(terminated, bool) | truncated, values, last_values, gamma, lam)


def _mean(x: tf.Tensor, weights: tf.Tensor | None) -> tf.Tensor:
    if weights is None:
        return tf.reduce_mean(x)
    return tf.reduce_sum(weights * x) / tf.maximum(tf.reduce_sum(weights), 1.0)


def normalize_advantages(advantages: tf.Tensor, weights: tf.Tensor | None = None,
                         epsilon: float = 1e-8) -> tf.Tensor:
    """(A - mean(A)) / (std(A) + epsilon) over a minibatch (the population std; SB3 and
    CleanRL divide by torch's sample std, which differs by a factor sqrt(n / (n - 1)))."""
    mean = _mean(advantages, weights)
    std = tf.sqrt(_mean(tf.square(advantages - mean), weights))
    return (advantages - mean) / (std + epsilon)


def clipped_surrogate_loss(log_probs: tf.Tensor, old_log_probs: tf.Tensor, advantages: tf.Tensor,
                           clip_ratio: float | tf.Tensor, weights: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
    """-mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A)) with rho = exp(log pi(a|s) - log pi_old(a|s)).

    The minimum takes the clipped term only where it is the more pessimistic one, so a
    step gains nothing from moving rho past 1 +- eps in the direction A favours. Also
    reported: the fraction of steps whose rho lies outside [1 - eps, 1 + eps] and
    mean((rho - 1) - log rho), an estimate of KL(pi_old || pi) that is never negative.
    """
    log_ratio = log_probs - tf.stop_gradient(old_log_probs)
    ratio = tf.exp(log_ratio)
    advantages = tf.stop_gradient(advantages)
    surrogate = tf.minimum(ratio * advantages, tf.clip_by_value(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio) * advantages)
    clipped = tf.cast(tf.abs(ratio - 1.0) > clip_ratio, tf.float32)
    return {"policy_loss": -_mean(surrogate, weights), "clip_fraction": _mean(clipped, weights),
            "approx_kl": tf.stop_gradient(_mean(ratio - 1.0 - log_ratio, weights))}


def clipped_value_loss(values: tf.Tensor, old_values: tf.Tensor, targets: tf.Tensor,
                       clip_value: float | None = None, weights: tf.Tensor | None = None) -> tf.Tensor:
    """mean((v(s) - G)^2); with clip_value c, mean(max((v - G)^2, (v_old + clip(v - v_old, -c, c) - G)^2)),
    which stops v from gaining by moving more than c from the values the rollout saw
    (Schulman et al.'s baselines code; CleanRL's clip_vloss)."""
    targets = tf.stop_gradient(targets)
    squared = tf.square(values - targets)
    if clip_value is not None:
        old_values = tf.stop_gradient(old_values)
        clipped = old_values + tf.clip_by_value(values - old_values, -clip_value, clip_value)
        squared = tf.maximum(squared, tf.square(clipped - targets))
    return _mean(squared, weights)


def ppo_loss(log_probs: tf.Tensor, old_log_probs: tf.Tensor, advantages: tf.Tensor, entropy: tf.Tensor,
             values: tf.Tensor, old_values: tf.Tensor, targets: tf.Tensor, clip_ratio: float | tf.Tensor,
             clip_value: float | None = None, value_weight: float = 0.5, entropy_weight: float = 0.0,
             weights: tf.Tensor | None = None) -> dict[str, tf.Tensor]:
    """clipped_surrogate_loss + value_weight clipped_value_loss - entropy_weight mean(H[pi]),
    the loss of one PPO minibatch (advantages as given: normalise them first if wanted)."""
    terms = clipped_surrogate_loss(log_probs, old_log_probs, advantages, clip_ratio, weights)
    terms["value_loss"] = clipped_value_loss(values, old_values, targets, clip_value, weights)
    terms["entropy"] = _mean(entropy, weights)
    terms["loss"] = terms["policy_loss"] + value_weight * terms["value_loss"] - entropy_weight * terms["entropy"]
    return terms


def _torso(hidden: tuple[int, ...], name: str) -> keras.Sequential:
    return keras.Sequential([keras.layers.Dense(w, activation="tanh") for w in hidden], name=name)


class PolicyNetwork(keras.Model):
    """Observations [b, d] -> a distribution over actions, and v(s) [b] when it has a critic."""

    def __init__(self, config: PolicyConfig, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.policy_torso = _torso(config.hidden, "policy_torso")
        self.action_head = keras.layers.Dense(config.num_actions, name="action_head",
                                              kernel_initializer=keras.initializers.Orthogonal(0.01))
        if config.action_kind == "continuous":
            self.log_stddev = self.add_weight(shape=(config.num_actions,), initializer="zeros", name="log_stddev")
        if config.critic == "separate":
            self.value_torso = _torso(config.hidden, "value_torso")
        if config.critic != "none":
            self.value_head = keras.layers.Dense(1, name="value_head")
        self(tf.zeros((1, *config.observation_shape)))

    def call(self, observation: tf.Tensor) -> dict[str, tf.Tensor]:
        """The distribution's parameters (logits, or mean and stddev) and the value, as tensors."""
        features = self.policy_torso(observation)
        outputs = {}
        if self.config.action_kind == "discrete":
            outputs["logits"] = self.action_head(features)
        else:
            outputs["mean"] = self.action_head(features)
            outputs["stddev"] = tf.exp(self.log_stddev) * tf.ones_like(outputs["mean"])
        if self.config.critic != "none":
            value_features = self.value_torso(observation) if self.config.critic == "separate" else features
            outputs["value"] = tf.squeeze(self.value_head(value_features), axis=-1)
        return outputs

    def distribution(self, outputs: dict[str, tf.Tensor]) -> tfd.Distribution:
        """pi(.|s) from `call`'s outputs: Categorical, or a diagonal Normal (one event of num_actions)."""
        if self.config.action_kind == "discrete":
            return tfd.Categorical(logits=outputs["logits"])
        return tfd.Independent(tfd.Normal(outputs["mean"], outputs["stddev"]), reinterpreted_batch_ndims=1)

    # Serving: sampled and greedy actions, the distribution's parameters, the value.

    def observation_spec(self, name: str = "observation") -> tf.TensorSpec:
        return tf.TensorSpec([None, *self.config.observation_shape], tf.float32, name=name)

    def action_spec(self) -> tuple:
        """(shape, dtype, minimum, maximum) of one action, for tf-agents' policy specs."""
        if self.config.action_kind == "discrete":
            return (), tf.int64, 0, self.config.num_actions - 1
        return (self.config.num_actions,), tf.float32, self.config.action_low, self.config.action_high

    def _to_action(self, action: tf.Tensor) -> tf.Tensor:
        if self.config.action_kind == "discrete":
            return tf.cast(action, tf.int64)
        return tf.clip_by_value(action, self.config.action_low, self.config.action_high)

    def greedy_action(self, observation: tf.Tensor) -> tf.Tensor:
        """The distribution's mode: argmax of the logits, or the Gaussian's mean (clipped)."""
        outputs = self(observation)
        if self.config.action_kind == "discrete":
            return tf.argmax(outputs["logits"], axis=-1, output_type=tf.int64)
        return self._to_action(outputs["mean"])

    def sample_action(self, observation: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """One action per row drawn from pi(.|s), reproducibly from that row's int64 seed.

        The noise of each row comes from its own stateless draw (Gumbel noise added to the
        logits for a categorical, a standard normal for a Gaussian), so a row's action
        depends on its observation and seed only, not on the rest of the batch.
        """
        outputs = self(observation)
        width = self.config.num_actions
        if self.config.action_kind == "discrete":
            uniform = tf.map_fn(lambda s: tf.random.stateless_uniform(
                [width], tf.stack([s, 0]), minval=1e-20, maxval=1.0), seed, fn_output_signature=tf.float32)
            gumbel = -tf.math.log(-tf.math.log(uniform))
            return tf.argmax(outputs["logits"] + gumbel, axis=-1, output_type=tf.int64)
        noise = tf.map_fn(lambda s: tf.random.stateless_normal([width], tf.stack([s, 0])), seed,
                          fn_output_signature=tf.float32)
        return self._to_action(outputs["mean"] + outputs["stddev"] * noise)

    def serving_signatures(self) -> dict[str, Signature]:
        """Signature name -> (function, input specs)."""
        shape = self.config.observation_shape
        observation_spec = [self.observation_spec()]

        def checked(observation):
            return tf.ensure_shape(observation, [None, *shape])

        def sampled(observation, seed):
            return {"action": self.sample_action(checked(observation), tf.ensure_shape(seed, [None]))}

        def greedy(observation):
            return {"action": self.greedy_action(checked(observation))}

        def parameters(observation):
            outputs = self(checked(observation))
            if self.config.action_kind == "discrete":
                return {"probabilities": tf.nn.softmax(outputs["logits"])}
            return {"mean": outputs["mean"], "stddev": outputs["stddev"]}

        signatures = {
            "serving_default": (sampled, [*observation_spec, tf.TensorSpec([None], tf.int64, name="seed")]),
            "greedy": (greedy, observation_spec),
            "probabilities" if self.config.action_kind == "discrete" else "distribution": (parameters, observation_spec),
        }
        if self.config.critic != "none":
            signatures["value"] = (lambda observation: {"value": self(checked(observation))["value"]}, observation_spec)
        return signatures

    def signature_expectations(self) -> dict[str, dict[str, dict]]:
        """Output shapes (-1 = batch) and value ranges per signature, for the model card."""
        width = self.config.num_actions
        if self.config.action_kind == "discrete":
            action = {"shape": [-1], "min": 0, "max": width - 1}
            parameters = {"probabilities": {"shape": [-1, width], "min": 0.0, "max": 1.0}}
        else:
            action = {"shape": [-1, width], "min": self.config.action_low, "max": self.config.action_high}
            parameters = {"mean": {"shape": [-1, width]}, "stddev": {"shape": [-1, width], "min": 0.0}}
        expectations = {"serving_default": {"action": action}, "greedy": {"action": action}, "action": {"action": action},
                        "probabilities" if self.config.action_kind == "discrete" else "distribution": parameters}
        if self.config.critic != "none":
            expectations["value"] = {"value": {"shape": [-1]}}
        return expectations
