"""Train a PPO agent (Schulman et al., 2017, the clipped objective) on a gymnasium environment.

    python -m training ppo --preset cartpole --out runs/ppo
    python -m training ppo --preset acrobot --out runs/ppo-acrobot
    python -m training ppo --preset pendulum --out runs/ppo-pendulum
    python -m training ppo --help     # every option (--env, --num_envs, --clip_value, ...), with its meaning

Order of work, as CleanRL's ppo.py: environments -> policy and critic (zoo's
PolicyNetwork), optimizer -> loop (a rollout of num_envs x n_steps -> GAE(lambda) ->
update_epochs epochs of num_minibatches shuffled minibatches -> log -> evaluate ->
checkpoint) -> final greedy evaluation, metrics.json, history.json, learning curves.

The environments are stepped by a numpy copy of the policy (one call into TensorFlow costs
about 0.3 ms, a CartPole step 10 us); the whole update of a rollout, every epoch and
minibatch, is one call of one traced function, which returns the new weights.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from rundir import Run, UserError
from training.config import check_at_least_one, run_command
from training.envs import make_env, make_vector_env
from training.optim import FusedAdam
from training.pg import DERIVED, policy_config
from training.rl import Evaluator, RLOptions, VectorRollout
from zoo.acting import NumpyPolicy, snapshot
from zoo.policy_gradient import PolicyConfig, PolicyNetwork, gae_targets, normalize_advantages, ppo_loss


@dataclasses.dataclass(frozen=True)
class PPOSettings:
    """PPO's rollout and update settings; the ppo command's config and the in-graph engine's
    (training/ingraph.py, whose A2C takes one step per rollout and ignores the clipping) share them."""

    total_steps: int = 100_000
    """Environment steps to train for (summed over the parallel environments)."""
    num_envs: int = 8
    """Environments stepped together."""
    n_steps: int = 32
    """Steps per environment in each rollout (a rollout is num_envs x n_steps transitions)."""
    update_epochs: int = 10
    """Passes over each rollout."""
    num_minibatches: int = 1
    """Minibatches per pass (each of num_envs x n_steps / num_minibatches transitions)."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """lambda of GAE's advantages (0: one-step TD errors; 1: Monte-Carlo returns minus v)."""
    learning_rate: float = 3e-4
    """Adam step size (TensorFlow's fused Adam kernel, training/optim.py)."""
    anneal_learning_rate: bool = True
    """Decay the step size linearly to 0 over total_steps."""
    clip_ratio: float = 0.2
    """epsilon of the clipped objective: the probability ratio is clipped to [1 - epsilon, 1 + epsilon]."""
    anneal_clip_ratio: bool = False
    """Decay clip_ratio linearly to 0 over total_steps (RL-Zoo's lin_ schedule)."""
    clip_value: float | None = None
    """Clip the critic's change from the rollout's values to this in the value loss (none: unclipped, as SB3)."""
    value_weight: float = 0.5
    """Weight of the critic's squared error in the loss."""
    entropy_weight: float = 0.0
    """Weight of the entropy bonus."""
    max_grad_norm: float | None = 0.5
    """Clip each minibatch's gradient to this global norm (none: no clipping)."""
    normalize_advantages: bool = True
    """Scale each minibatch's advantages to mean 0 and standard deviation 1."""
    reward_scale: float = 1.0
    """Multiply rewards by this while learning (returns are reported unscaled)."""

    def __post_init__(self):
        check_at_least_one(self, "total_steps", "num_envs", "n_steps", "update_epochs", "num_minibatches")
        if self.batch_size % self.num_minibatches:
            raise ValueError(f"num_minibatches ({self.num_minibatches}) must divide num_envs x n_steps "
                             f"({self.batch_size})")
        for name in ("learning_rate", "clip_ratio"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("gamma", "gae_lambda"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    @property
    def batch_size(self) -> int:
        """Transitions per rollout (per agent)."""
        return self.num_envs * self.n_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches


@dataclasses.dataclass(frozen=True)
class PPOConfig(RLOptions, PPOSettings):
    """A PPO run: environment, network, rollout and update settings (and the shared evaluation options)."""

    env: str = "CartPole-v1"
    """Gymnasium environment id (discrete or continuous actions)."""
    model: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    """Policy and critic (its fields are options too: --hidden=64,64, --critic=shared)."""
    seed: int = 0
    """Seed of initialisation, sampling, minibatch order and environment resets."""
    jit_compile: bool = False
    """Compile the update with XLA (its compile outweighs what it saves in the presets' runs: docs/ppo.md)."""

    def __post_init__(self):
        RLOptions.__post_init__(self)
        PPOSettings.__post_init__(self)


def cartpole() -> PPOConfig:
    """CartPole-v1 with RL-Zoo's tuned PPO settings, unchanged: 8 environments x 32 steps, 20
    epochs of one minibatch of 256, gamma 0.98, lambda 0.8, no entropy bonus, step size 1e-3
    and clip range 0.2 both annealed linearly to 0 over 100,000 steps (docs/ppo.md: why not
    fewer)."""
    return PPOConfig(num_envs=8, n_steps=32, update_epochs=20, num_minibatches=1, gamma=0.98, gae_lambda=0.8,
                     learning_rate=1e-3, anneal_learning_rate=True, clip_ratio=0.2, anneal_clip_ratio=True,
                     total_steps=100_000, eval_every=10_000, checkpoint_every=25_000)


def acrobot() -> PPOConfig:
    """Acrobot-v1 with RL-Zoo's settings (16 environments x 256 steps, 4 epochs of 64
    minibatches of 64, gamma 0.99, lambda 0.94, step size 3e-4, here annealed) for 30 rollouts
    (122,880 steps) instead of 1M, and without their observation normalisation: the angular
    velocities (at most 4 pi and 9 pi) need none here (docs/ppo.md)."""
    return PPOConfig(env="Acrobot-v1", num_envs=16, n_steps=256, update_epochs=4, num_minibatches=64,
                     gamma=0.99, gae_lambda=0.94, learning_rate=3e-4, total_steps=122_880, eval_every=20_480,
                     checkpoint_every=40_960)


def pendulum() -> PPOConfig:
    """Pendulum-v1, a Gaussian policy with a state-independent standard deviation: RL-Zoo's
    4 environments x 1,024 steps, 10 epochs (of 64 minibatches of 64), gamma 0.9, lambda 0.95,
    step size 1e-3 (here annealed) and 102,400 steps (their 100,000, rounded up to whole
    rollouts). RL-Zoo explores with gSDE; here plain Gaussian noise, and rewards scaled by 0.1
    so that the critic's gradient does not take the whole of the shared global-norm clip."""
    return PPOConfig(env="Pendulum-v1", num_envs=4, n_steps=1024, update_epochs=10, num_minibatches=64,
                     gamma=0.9, gae_lambda=0.95, learning_rate=1e-3, reward_scale=0.1, total_steps=102_400,
                     eval_every=10_240, checkpoint_every=40_960)


def smoke() -> PPOConfig:
    """For tests: a few seconds of CartPole."""
    return dataclasses.replace(cartpole(), total_steps=8_192, eval_every=2_048, eval_episodes=5,
                               final_eval_episodes=5, checkpoint_every=4_096)


PRESETS = {"cartpole": cartpole, "acrobot": acrobot, "pendulum": pendulum, "smoke": smoke}
TERMS = ("loss", "policy_loss", "value_loss", "entropy", "clip_fraction", "approx_kl")


def make_update(network: PolicyNetwork, optimizer: FusedAdam, config: PPOConfig):
    """The traced update of one rollout: (observations, actions, advantages, targets, values,
    weights, clip_ratio, seed) -> mean loss terms over its minibatches, and the network's new
    weights. `weights` masks out the steps that only reset an environment; `seed` ([2] int64)
    draws the minibatches' order.

    Its concrete function, called directly, once per rollout rather than once per minibatch
    (docs/ppo.md measures both). With one minibatch the whole rollout is used as it is: the
    order of a full batch does not change its gradient.
    """
    variables = network.trainable_variables
    model = config.model
    n, size = config.batch_size, config.minibatch_size
    continuous = model.action_kind == "continuous"
    signature = [tf.TensorSpec([n, *model.observation_shape], tf.float32),
                 tf.TensorSpec([n, model.num_actions] if continuous else [n], tf.float32 if continuous else tf.int32),
                 *[tf.TensorSpec([n], tf.float32)] * 4, tf.TensorSpec([], tf.float32), tf.TensorSpec([2], tf.int64)]

    # ALGO LOGIC: update_epochs passes of shuffled minibatches on the clipped objective.
    @tf.function(jit_compile=config.jit_compile, autograph=False, input_signature=signature)
    def update(observation, action, advantage, target, old_value, weight, clip_ratio, seed):
        old_log_prob = network.distribution(network(observation)).log_prob(action)  # [n], before any step
        rollout = (observation, action, advantage, target, old_value, old_log_prob, weight)
        if config.num_minibatches > 1:
            order = tf.argsort(tf.random.stateless_uniform([config.update_epochs, n], seed), axis=-1)  # [epochs, n]
            order = tf.reshape(order, [-1, size])  # [epochs * minibatches, size]: every minibatch's indices

        def minibatch(i, totals):
            if config.num_minibatches > 1:
                o, a, adv, g, v, log_p, w = [tf.gather(x, order[i]) for x in rollout]
            else:  # the whole rollout, whose order does not change the gradient
                o, a, adv, g, v, log_p, w = rollout
            if config.normalize_advantages:
                adv = normalize_advantages(adv, w)
            with tf.GradientTape() as tape:
                outputs = network(o)
                distribution = network.distribution(outputs)
                terms = ppo_loss(distribution.log_prob(a), log_p, adv, distribution.entropy(), outputs["value"], v, g,
                                 clip_ratio, config.clip_value, config.value_weight, config.entropy_weight, w)
            optimizer.apply(tape.gradient(terms["loss"], variables), variables)
            return i + 1, {name: totals[name] + terms[name] for name in TERMS}

        steps = config.update_epochs * config.num_minibatches
        _, totals = tf.while_loop(lambda i, _: i < steps, minibatch, (0, {name: 0.0 for name in TERMS}))
        return {name: total / steps for name, total in totals.items()}, {v.path: tf.identity(v) for v in variables}

    return update.get_concrete_function()


def train(config: PPOConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Train (or resume) a PPO agent into the run directory `out`; return the final metrics (also in metrics.json)."""
    keras.utils.set_random_seed(config.seed)
    eval_env = make_env(config.env, training=False)
    config = dataclasses.replace(config, model=policy_config(eval_env, config))
    if config.model.critic == "none":
        raise UserError("ppo needs a critic; use --critic=separate or --critic=shared")
    if config.model.torso != "mlp":
        raise UserError(f"ppo acts in numpy on vector observations, and {config.env}'s are frames; "
                        f"train on frames with a2c or reinforce")
    run = Run.open(out, config, family="policy_gradient", kind="policy", model=config.model)
    if run.finished:
        return run.metrics
    model_config = config.model
    continuous = model_config.action_kind == "continuous"

    def to_env(action):
        return np.clip(action, eval_env.action_space.low, eval_env.action_space.high) if continuous else action

    network = PolicyNetwork(model_config)
    optimizer = FusedAdam(network.trainable_variables, config.learning_rate, clipnorm=config.max_grad_norm)
    rng = np.random.default_rng(config.seed)
    checkpoints = run.checkpoints(config.checkpoint_every, model=network, optimizer=optimizer, rng=rng)
    policy = NumpyPolicy(network, snapshot(network.trainable_variables))
    evaluator = Evaluator(config, eval_env, lambda observation: to_env(policy.act(observation, None)), config.seed,
                          run)
    rollout = VectorRollout(make_vector_env(config.env, config.num_envs, native=True), config.seed)
    step = 0
    if (saved := checkpoints.restore()) is not None:
        step = saved.step
        evaluator.restore(saved.state["evaluator"])
        rollout.restore(saved, step)
        policy = NumpyPolicy(network, snapshot(network.trainable_variables))
    update = make_update(network, optimizer, config)  # traced here: on the training clock
    bar = tqdm(total=config.total_steps, initial=step, unit="step", disable=not progress, dynamic_ncols=True,
               desc=f"ppo {config.env}")

    shape = (config.n_steps, config.num_envs)
    observations = np.zeros((*shape, *model_config.observation_shape), np.float32)
    actions = np.zeros((*shape, model_config.num_actions) if continuous else shape,
                       np.float32 if continuous else np.int32)
    rewards, values, final_values, weights = (np.zeros(shape, np.float32) for _ in range(4))
    terminated, truncated = np.zeros(shape, bool), np.zeros(shape, bool)

    while step < config.total_steps and not evaluator.stopped:
        previous = step
        # ALGO LOGIC: a rollout with the current policy.
        for t in range(config.n_steps):
            values[t] = policy.values(rollout.observation)  # a few rows at a time: numpy's matmul stays on one thread
            action = policy.act(rollout.observation, rng)
            transition = rollout.step(action, to_env(action))
            observations[t], actions[t], weights[t] = transition.observation, action, transition.valid
            terminated[t], truncated[t] = transition.terminated, transition.truncated
            rewards[t] = transition.reward * config.reward_scale
            if truncated[t].any():  # a time limit, not an end: GAE bootstraps from the final observation
                final_values[t, truncated[t]] = policy.values(transition.next_observation[truncated[t]])
        step += config.batch_size
        bar.update(step - previous)

        # ALGO LOGIC: GAE(lambda), then the epochs of minibatches; act with the new weights.
        targets, advantages = gae_targets(rewards, terminated, truncated, values, final_values,
                                          policy.values(rollout.observation), config.gamma, config.gae_lambda)
        remaining = 1.0 - previous / config.total_steps
        if config.anneal_learning_rate:
            optimizer.learning_rate.assign(config.learning_rate * remaining)
        clip_ratio = config.clip_ratio * remaining if config.anneal_clip_ratio else config.clip_ratio
        terms, new_weights = update(
            tf.constant(observations.reshape(-1, *model_config.observation_shape)),
            tf.constant(actions.reshape(-1, *actions.shape[2:])), tf.constant(advantages.reshape(-1)),
            tf.constant(targets.reshape(-1)), tf.constant(values.reshape(-1)),
            tf.constant(weights.reshape(-1)), tf.constant(clip_ratio, tf.float32),
            tf.constant(rng.integers(2**62, size=2)))
        policy = NumpyPolicy(network, new_weights)

        episode_returns = rollout.episode_returns
        if evaluator.due(previous, step, config.total_steps):
            record = evaluator.evaluate(
                step, train_return=float(np.mean(episode_returns[-20:])) if episode_returns else None,
                learning_rate=float(optimizer.learning_rate.numpy()), clip_ratio=clip_ratio,
                **{name: float(value) for name, value in terms.items()})
            bar.set_postfix(eval=f"{record['eval_return']:.1f}")
        if evaluator.stopped or checkpoints.due(previous, step) or step >= config.total_steps:
            kept = rollout.checkpoint()
            checkpoints.save(step, state={"evaluator": evaluator.state(), **kept["state"]}, arrays=kept["arrays"],
                             pickled=kept["pickled"])
    bar.close()
    rollout.envs.close()
    return evaluator.finish(step, config.total_steps, rollout.episode_returns, f"PPO on {config.env}",
                            algorithm="ppo", env=config.env)


def main(argv: list[str] | None = None) -> int:
    """`python -m training ppo`: parse, train, print the final greedy return; with
    `--env_backend=tf`, the whole run in one graph instead (training/ingraph.py)."""
    from training import ingraph

    backend, argv = ingraph.split_backend(argv)
    if backend == "tf":
        return ingraph.main("ppo", argv)
    metrics, _ = run_command(argv, "ppo", "Train a PPO agent on a gymnasium environment (--env_backend=tf: the "
                             "whole run in one TensorFlow graph, many seeds at once; --env_backend=tf --help "
                             "lists its options).", PRESETS, "cartpole", train, hidden=DERIVED, threads=1)
    print(f"final greedy return {metrics['final_eval_return']:.1f} over {metrics['final_eval_episodes']} episodes; "
          f"{metrics['steps']} steps in {metrics['train_seconds']:.1f} s of training")
    return 0
