"""Many PolicyNetworks as one: the parameters of S independent agents stacked along a leading
seeds axis, and the network's forward pass, distribution and actions as pure functions of
them, for whole training runs in one graph (training/ingraph.py).

    params = init_params(config, seeds=[0, 1, 2])      # {name: [S, ...]} float32
    outputs = forward(config, params, observation)     # observation [S, b, d] -> logits [S, b, A], value [S, b]
    action = sample_action(config, outputs, stream, counter)
    assign(network, params, index)                     # agent `index` into a keras PolicyNetwork

The architecture is `PolicyNetwork`'s (zoo/policy_gradient.py) for the same `PolicyConfig`:
tanh torsos, a linear action head (orthogonal initializer, gain 0.01), a state-independent
log standard deviation for a Gaussian, a value head on its own torso or on the policy's. A
matmul batched over the seeds axis runs every agent at once, and each agent's slice of every
result depends on its own parameters and inputs only, so S agents stacked compute what each
computes alone.

Randomness is an input: each agent's initial parameters come from its own seed (numpy,
`default_rng([seed, INIT])`, Keras' initializers' distributions), and each row's sampled
action from its own SplitMix64 stream (`tf_envs.uniform_rows`: counter-based, so it does
not depend on the rest of the batch, unlike `tf.random.stateless_*`, which take one seed per
call).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from zoo.policy_gradient import PolicyConfig, PolicyNetwork
from zoo.tf_envs import uniform_rows

tfd = tfp.distributions

Params = dict[str, tf.Tensor]
"""Parameter name -> [S, ...] float32: `policy/0/kernel`, ..., `action_head/bias`, `log_stddev`,
`value/0/kernel`, ..., `value_head/bias` (the names `layers` gives)."""

INIT = 0x1417  # the tag of the initialisation stream in np.random.default_rng([seed, INIT])


def layers(config: PolicyConfig) -> list[tuple[str, int, int, str]]:
    """The dense layers in PolicyNetwork's build order: (name, fan in, fan out, initializer)."""
    widths = [config.observation_shape[0], *config.hidden]
    found = [(f"policy/{i}", a, b, "glorot") for i, (a, b) in enumerate(zip(widths, widths[1:]))]
    found.append(("action_head", widths[-1], config.num_actions, "orthogonal"))
    if config.critic == "separate":
        found += [(f"value/{i}", a, b, "glorot") for i, (a, b) in enumerate(zip(widths, widths[1:]))]
    if config.critic != "none":
        found.append(("value_head", widths[-1], 1, "glorot"))
    return found


def _orthogonal(rng: np.random.Generator, fan_in: int, fan_out: int, gain: float) -> np.ndarray:
    """keras.initializers.Orthogonal's distribution: Q of the QR of a normal matrix, signs fixed by R's diagonal."""
    rows, columns = max(fan_in, fan_out), min(fan_in, fan_out)
    q, r = np.linalg.qr(rng.standard_normal((rows, columns)))
    q *= np.sign(np.diag(r))
    return gain * (q if fan_in >= fan_out else q.T)


def init_params(config: PolicyConfig, seeds: Sequence[int]) -> Params:
    """Initial parameters of one agent per seed, stacked [S, ...]; an agent's depend on its seed only.

    Kernels are drawn as keras' GlorotUniform (the Dense default) and the action head's as
    Orthogonal(0.01), as PolicyNetwork builds them; biases and the log standard deviation are 0.
    """
    agents = []
    for seed in seeds:
        rng = np.random.default_rng([int(seed), INIT])
        params = {}
        for name, fan_in, fan_out, initializer in layers(config):
            if initializer == "orthogonal":
                kernel = _orthogonal(rng, fan_in, fan_out, 0.01)
            else:
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                kernel = rng.uniform(-limit, limit, (fan_in, fan_out))
            params[f"{name}/kernel"], params[f"{name}/bias"] = kernel, np.zeros(fan_out)
        if config.action_kind == "continuous":
            params["log_stddev"] = np.zeros(config.num_actions)
        agents.append(params)
    return {name: tf.constant(np.stack([a[name] for a in agents]), tf.float32) for name in agents[0]}


def _dense(params: Params, name: str, x: tf.Tensor) -> tf.Tensor:
    """x [S, b, in] -> x W + c [S, b, out], as one batched matmul with the bias as the kernel's last row.

    Every parameter's gradient is then a batched matmul too, which gives each agent the same
    bits whatever the number of agents; the sums XLA emits for a bias's gradient (over the
    batch's rows) or for a product with one output column are ordered by the whole tensor's
    shape, so an agent beside others would round differently from the same agent alone.
    """
    kernel = tf.concat([params[f"{name}/kernel"], params[f"{name}/bias"][:, None, :]], axis=1)  # [S, in + 1, out]
    x = tf.concat([x, tf.ones_like(x[..., :1])], axis=-1)  # [S, b, in + 1]
    width = kernel.shape[-1]
    if width == 1:  # a second, zero column keeps it a matrix product
        return tf.matmul(x, tf.pad(kernel, [[0, 0], [0, 0], [0, 1]]))[..., :1]
    return tf.matmul(x, kernel)


def _torso(params: Params, prefix: str, depth: int, x: tf.Tensor) -> tf.Tensor:
    for i in range(depth):
        x = tf.tanh(_dense(params, f"{prefix}/{i}", x))
    return x


def forward(config: PolicyConfig, params: Params, observation: tf.Tensor) -> dict[str, tf.Tensor]:
    """PolicyNetwork.call for every agent: observation [S, b, d] -> logits [S, b, A] (or mean and
    stddev [S, b, A]) and value [S, b]."""
    features = _torso(params, "policy", len(config.hidden), observation)
    head = _dense(params, "action_head", features)
    outputs = {}
    if config.action_kind == "discrete":
        outputs["logits"] = head
    else:
        outputs["mean"] = head
        outputs["stddev"] = tf.exp(params["log_stddev"])[:, None, :] * tf.ones_like(head)
    if config.critic != "none":
        if config.critic == "separate":
            features = _torso(params, "value", len(config.hidden), observation)
        outputs["value"] = _dense(params, "value_head", features)[..., 0]
    return outputs


def distribution(config: PolicyConfig, outputs: dict[str, tf.Tensor]) -> tfd.Distribution:
    """pi(.|s) of every row, batch shape [S, b]: Categorical, or a diagonal Normal (one event of A)."""
    if config.action_kind == "discrete":
        return tfd.Categorical(logits=outputs["logits"])
    return tfd.Independent(tfd.Normal(outputs["mean"], outputs["stddev"]), reinterpreted_batch_ndims=1)


def sample_action(config: PolicyConfig, outputs: dict[str, tf.Tensor], stream: tf.Tensor,
                  counter: tf.Tensor) -> tf.Tensor:
    """One draw from pi(.|s) per row, from block `counter` of the row's stream (`stream`, `counter` [S, b]).

    A categorical draws by the Gumbel-max trick (argmax of logits + Gumbel noise, int32 [S, b]);
    a Gaussian as mean + stddev * Phi^-1(u) (float32 [S, b, A], unclipped: the log-probability
    is the unclipped draw's; the environment clips).
    """
    uniform = uniform_rows(stream, counter, config.num_actions) + 2.0 ** -25  # in (0, 1)
    if config.action_kind == "discrete":
        gumbel = -tf.math.log(-tf.math.log(uniform))
        return tf.argmax(outputs["logits"] + gumbel, axis=-1, output_type=tf.int32)
    return outputs["mean"] + outputs["stddev"] * tf.math.ndtri(uniform)


def greedy_action(config: PolicyConfig, outputs: dict[str, tf.Tensor]) -> tf.Tensor:
    """The distribution's mode: argmax of the logits (int32), or the Gaussian's mean clipped to the action bounds."""
    if config.action_kind == "discrete":
        return tf.argmax(outputs["logits"], axis=-1, output_type=tf.int32)
    return tf.clip_by_value(outputs["mean"], config.action_low, config.action_high)


def _variables(network: PolicyNetwork) -> dict[str, tf.Variable]:
    """The network's variables under the names of Params."""
    found = {}
    for i, layer in enumerate(network.policy_torso.layers):
        found[f"policy/{i}/kernel"], found[f"policy/{i}/bias"] = layer.kernel, layer.bias
    found["action_head/kernel"], found["action_head/bias"] = network.action_head.kernel, network.action_head.bias
    if network.config.action_kind == "continuous":
        found["log_stddev"] = network.log_stddev
    if network.config.critic == "separate":
        for i, layer in enumerate(network.value_torso.layers):
            found[f"value/{i}/kernel"], found[f"value/{i}/bias"] = layer.kernel, layer.bias
    if network.config.critic != "none":
        found["value_head/kernel"], found["value_head/bias"] = network.value_head.kernel, network.value_head.bias
    return found


def assign(network: PolicyNetwork, params: Params, index: int) -> None:
    """Set a keras PolicyNetwork's variables to agent `index`'s parameters (what export reads)."""
    for name, variable in _variables(network).items():
        variable.assign(params[name][index])


def from_networks(networks: Sequence[PolicyNetwork]) -> Params:
    """The stacked parameters of keras PolicyNetworks, one agent each."""
    named = [_variables(n) for n in networks]
    return {name: tf.constant(np.stack([np.asarray(v[name]) for v in named])) for name in named[0]}
