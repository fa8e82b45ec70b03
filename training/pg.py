"""Train policy-gradient agents on gymnasium environments.

    python -m training reinforce --preset cartpole --out runs/reinforce
    python -m training reinforce_baseline --preset cartpole --out runs/reinforce-baseline
    python -m training a2c --preset cartpole --out runs/a2c

Order of work: environments -> policy (and critic), optimizer -> loop (collect with the
current policy -> returns or n-step targets -> one update -> evaluate) -> final greedy
evaluation, metrics.json, learning curves.

- REINFORCE (with or without a baseline) collects whole episodes from one environment,
  `episodes_per_update` of them, and weights each log-probability by its return G_t (minus
  v(s_t) with the baseline).
- A2C steps `num_envs` environments together for `n_steps`, and bootstraps each target
  with the critic: an episode's end cuts it, and a time limit adds gamma * v(last state).

Acting runs in numpy on a snapshot of the weights that each update returns (one call into
TensorFlow costs about 0.3 ms, a CartPole step 10 us).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

import zoo
from training.config import flat_dict, parse_config
from training.envs import make_env, make_vector_env
from training.rl import Checkpoints, Evaluator, RLOptions
from training.loop import check_resumable
from training.optim import FusedAdam
from training.runtime import UserError, write_json
from zoo.policy_gradient import (PolicyConfig, PolicyNetwork, a2c_loss, discounted_returns, n_step_targets,
                                 reinforce_baseline_loss, reinforce_loss)

ALGORITHMS = ("reinforce", "reinforce_baseline", "a2c")


@dataclasses.dataclass(frozen=True)
class TrainConfig(RLOptions):
    """A policy-gradient run: environment, network, algorithm's settings (and the shared evaluation options)."""

    env: str = "CartPole-v1"
    """Gymnasium environment id (discrete or continuous actions)."""
    model: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    """Policy and critic (its fields are options too: --hidden=64,64, --critic=shared)."""
    total_steps: int = 100_000
    """Environment steps to train for (summed over the parallel environments)."""
    gamma: float = 0.99
    """Discount factor (1 suits finite episodes, as the lectures use)."""
    reward_scale: float = 1.0
    """Multiply rewards by this while learning (returns are reported unscaled)."""
    learning_rate: float = 1e-3
    """Adam step size (TensorFlow's fused Adam kernel, training/optim.py)."""
    anneal_learning_rate: bool = False
    """Decay the step size linearly to 0 over total_steps (RL-Zoo's lin_ schedules)."""
    max_grad_norm: float | None = 0.5
    """Clip each update's gradient to this global norm (none: no clipping)."""
    episodes_per_update: int = 2
    """REINFORCE: whole episodes per update."""
    normalize_returns: bool = True
    """REINFORCE: scale each batch's returns to mean 0 and standard deviation 1."""
    num_envs: int = 8
    """A2C: environments stepped together."""
    n_steps: int = 5
    """A2C: steps per environment between updates (the bootstrap horizon)."""
    gae_lambda: float = 1.0
    """A2C: lambda of the TD(lambda) targets (1: n-step returns; below 1: GAE's advantages)."""
    value_weight: float = 0.5
    """Weight of the critic's squared error in the loss."""
    entropy_weight: float = 0.0
    """A2C: weight of the entropy bonus."""
    seed: int = 0
    """Seed of initialisation, sampling and environment resets."""
    jit_compile: bool = False
    """A2C: compile the update with XLA (its compile, about 1 s here, outweighs what it saves
    in a CartPole run; REINFORCE's batches vary in length, so it never compiles)."""

    def __post_init__(self):
        super().__post_init__()
        for name in ("total_steps", "episodes_per_update", "num_envs", "n_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        for name in ("gamma", "gae_lambda"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


DERIVED = frozenset({"observation_shape", "action_kind", "num_actions", "action_low", "action_high"})  # from the environment


def cartpole(algorithm: str) -> TrainConfig:
    """CartPole-v1, each algorithm with the settings it was measured with (README)."""
    if algorithm == "a2c":
        # seeds 0, 1, 2 reach 475 at 8k, 6k, 15k steps, after 0.6, 0.5, 0.8 s: 16 environments
        # halve the updates per step (each costs about 1 ms)
        return TrainConfig(learning_rate=3e-3, entropy_weight=0.01, num_envs=16, n_steps=5, stop_return=475.0,
                           total_steps=100_000)
    critic = "separate" if algorithm == "reinforce_baseline" else "none"
    return TrainConfig(model=PolicyConfig(critic=critic), learning_rate=3e-3, episodes_per_update=2,
                       normalize_returns=algorithm == "reinforce", stop_return=475.0, total_steps=100_000)


def acrobot() -> TrainConfig:
    """A2C on Acrobot-v1: CartPole's settings on 8 environments at a third of the step size,
    for 200k steps (README: seeds 0, 1, 2 end at -81, -88, -83; the threshold is -100). At
    CartPole's 3e-3 one seed of three stalled near -160."""
    return dataclasses.replace(cartpole("a2c"), env="Acrobot-v1", num_envs=8, learning_rate=1e-3,
                               total_steps=200_000, stop_return=None)


def pendulum() -> TrainConfig:
    """A2C with a Gaussian policy on Pendulum-v1: short horizon (gamma 0.9), TD(0.9) targets,
    rewards scaled by 0.1, 16 environments x 8 steps, the step size annealed to 0 (README:
    seeds 0, 1, 2 end at -172, -190, -172, where a random policy scores about -1,200; with a
    constant step size one seed of three ended at -362)."""
    return TrainConfig(env="Pendulum-v1", gamma=0.9, gae_lambda=0.9, reward_scale=0.1, num_envs=16, n_steps=8,
                       learning_rate=1e-3, anneal_learning_rate=True, entropy_weight=0.0, total_steps=2_000_000,
                       eval_every=50_000, checkpoint_every=200_000)


def smoke(algorithm: str) -> TrainConfig:
    """For tests: a few seconds of CartPole (A2C's 16 environments need more steps to show learning)."""
    return dataclasses.replace(cartpole(algorithm), total_steps=10_000 if algorithm == "a2c" else 5_000,
                               eval_episodes=5, final_eval_episodes=5, stop_return=None)


class NumpyPolicy:
    """The policy (and critic) in numpy, from a {variable path: value} snapshot."""

    def __init__(self, network: PolicyNetwork, weights: dict[str, np.ndarray]):
        def dense(layers):
            return [(weights[layer.kernel.path], weights[layer.bias.path]) for layer in layers]

        self.config = network.config
        self.policy = dense([*network.policy_torso.layers, network.action_head])
        self.log_stddev = weights[network.log_stddev.path] if network.config.action_kind == "continuous" else None
        self.value = None
        if network.config.critic == "separate":
            self.value = dense([*network.value_torso.layers, network.value_head])
        elif network.config.critic == "shared":
            self.value = self.policy[:-1] + dense([network.value_head])

    @staticmethod
    def _mlp(layers, x):
        for kernel, bias in layers[:-1]:
            x = np.tanh(x @ kernel + bias)
        kernel, bias = layers[-1]
        return x @ kernel + bias

    def act(self, observation: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """Sampled actions (greedy ones when rng is None: the mode)."""
        out = self._mlp(self.policy, np.asarray(observation, np.float32))
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
        return self._mlp(self.value, np.asarray(observation, np.float32))[:, 0]


def make_update(network: PolicyNetwork, optimizer: FusedAdam, algorithm: str,
                config: TrainConfig):
    """A traced function (observations, actions, returns or targets, weights) -> loss terms
    and the network's new weights; `weights` masks out steps that are not transitions.

    It is the tf.function's concrete function: calling that directly skips the per-call
    argument binding (about 0.7 of the 1.7 ms an A2C update on CartPole takes).
    """
    variables = network.trainable_variables

    continuous = config.model.action_kind == "continuous"
    # REINFORCE's batches vary in length: one trace for all of them, without XLA (which
    # would compile again for every new length); A2C's rollouts have one shape.
    signature = [tf.TensorSpec([None, *config.model.observation_shape], tf.float32),
                 tf.TensorSpec([None, config.model.num_actions] if continuous else [None],
                               tf.float32 if continuous else tf.int32),
                 tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float32)]

    # ALGO LOGIC: one gradient step on the algorithm's loss.
    @tf.function(jit_compile=config.jit_compile and algorithm == "a2c", autograph=False, input_signature=signature)
    def update(observation, action, target, mask):
        with tf.GradientTape() as tape:
            outputs = network(observation)
            distribution = network.distribution(outputs)
            log_probs = distribution.log_prob(action) * mask
            if algorithm == "reinforce":
                terms = {"loss": reinforce_loss(log_probs, target)}
            elif algorithm == "reinforce_baseline":
                terms = reinforce_baseline_loss(log_probs, target, outputs["value"] * mask, config.value_weight)
            else:
                terms = a2c_loss(log_probs, distribution.entropy() * mask, outputs["value"] * mask, target * mask,
                                 config.value_weight, config.entropy_weight)
        optimizer.apply(tape.gradient(terms["loss"], variables), variables)
        return terms, {v.path: tf.identity(v) for v in variables}

    return update.get_concrete_function()


def _space_config(env: gym.Env, config: TrainConfig, env_id: str) -> PolicyConfig:
    space = env.action_space
    if isinstance(space, gym.spaces.Discrete):
        kind, actions = "discrete", int(space.n)
    elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        kind, actions = "continuous", int(space.shape[0])
    else:
        raise UserError(f"{env_id} has a {type(space).__name__} action space; expected Discrete or a 1-D Box")
    if len(env.observation_space.shape) != 1:
        raise UserError(f"{env_id} has observations of shape {env.observation_space.shape}; expected vectors")
    bounds = {}
    if kind == "continuous":
        bounds = {"action_low": float(np.min(space.low)), "action_high": float(np.max(space.high))}
    return dataclasses.replace(config.model, observation_shape=tuple(env.observation_space.shape),
                               action_kind=kind, num_actions=actions, **bounds)


def train(algorithm: str, config: TrainConfig, run_dir: Path, *, progress: bool = True) -> dict:
    """Train (or resume) a policy-gradient agent into `run_dir`; return the final metrics (also in metrics.json)."""
    if algorithm not in ALGORITHMS:
        raise UserError(f"unknown algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}")
    keras.utils.set_random_seed(config.seed)
    eval_env = make_env(config.env, training=False)
    model_config = _space_config(eval_env, config, config.env)
    if algorithm != "reinforce" and model_config.critic == "none":
        raise UserError(f"{algorithm} needs a critic; use --critic=separate or --critic=shared")
    config = dataclasses.replace(config, model=model_config)
    check_resumable(run_dir, config)
    write_json(run_dir / "config.json", {"algorithm": algorithm, **flat_dict(config)})
    write_json(run_dir / "model.json", {"family": "policy_gradient", "algorithm": algorithm,
                                        "config": dataclasses.asdict(model_config)})

    network = PolicyNetwork(model_config)
    optimizer = FusedAdam(network.trainable_variables, config.learning_rate, clipnorm=config.max_grad_norm)
    rng = np.random.default_rng(config.seed)
    low, high = (eval_env.action_space.low, eval_env.action_space.high) if model_config.action_kind == "continuous" \
        else (None, None)

    def to_env(action):
        return np.clip(action, low, high) if low is not None else action

    checkpoints = Checkpoints(run_dir, config.checkpoint_every, **zoo.checkpointed(network), optimizer=optimizer)
    step, state = checkpoints.restore(rng)
    if (metrics := checkpoints.finished_metrics(step)) is not None:
        return metrics
    policy = NumpyPolicy(network, {v.path: v.numpy() for v in network.trainable_variables})
    evaluator = Evaluator(config, eval_env, lambda observation: to_env(policy.act(observation, None)), config.seed,
                          history=state.get("history"), train_seconds=state.get("train_seconds", 0.0))
    episode_returns = state.get("episode_returns", [])
    update = make_update(network, optimizer, algorithm, config)  # traced here: on the training clock
    writer = tf.summary.create_file_writer(str(run_dir / "tensorboard"))
    bar = tqdm(total=config.total_steps, initial=step, unit="step", disable=not progress, dynamic_ncols=True,
               desc=f"{algorithm} {config.env}")

    if algorithm == "a2c":
        envs = make_vector_env(config.env, config.num_envs, native=True)
        observation, _ = envs.reset(seed=config.seed + step)
        just_reset = np.zeros(config.num_envs, bool)
    else:
        env = make_env(config.env)
        episode_seed = state.get("episode_seed", config.seed)

    while step < config.total_steps:
        previous = step
        # ALGO LOGIC: collect with the current policy, compute the targets.
        if algorithm == "a2c":
            shape = (config.n_steps, config.num_envs)
            observations = np.zeros((*shape, *model_config.observation_shape), np.float32)
            actions = np.zeros((*shape, model_config.num_actions) if model_config.action_kind == "continuous"
                               else shape, np.float32 if model_config.action_kind == "continuous" else np.int32)
            rewards, cut, mask = np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.zeros(shape, np.float32)
            for t in range(config.n_steps):
                action = policy.act(observation, rng)
                next_observation, reward, terminated, truncated, info = envs.step(to_env(action))
                observations[t], actions[t], mask[t] = observation, action, ~just_reset
                rewards[t] = reward * config.reward_scale
                if truncated.any():  # a time limit is no end: bootstrap from the last state
                    rewards[t] += config.gamma * truncated * policy.values(next_observation)
                cut[t] = terminated | truncated | just_reset
                if "_episode" in info:
                    episode_returns.extend(info["episode"]["r"][info["_episode"]].tolist())
                just_reset = terminated | truncated
                observation = next_observation
            step += config.n_steps * config.num_envs
            # n-step (or TD(lambda)) targets, bootstrapped from v(s) after the rollout; an
            # episode's end cuts the sum (a step that only reset an environment is masked out)
            values = policy.values(observations.reshape(-1, *model_config.observation_shape)).reshape(shape) \
                if config.gae_lambda < 1 else 0.0
            targets, _ = n_step_targets(rewards, cut, values, policy.values(observation), config.gamma,
                                        config.gae_lambda)
            batch = (observations.reshape(-1, *model_config.observation_shape), actions.reshape(-1, *actions.shape[2:]),
                     targets.reshape(-1), mask.reshape(-1))
        else:
            episodes = []
            for _ in range(config.episodes_per_update):
                observation, _ = env.reset(seed=episode_seed)
                episode_seed += 1
                obs_list, act_list, rew_list = [], [], []
                done = False
                while not done:
                    action = policy.act(observation[None], rng)[0]
                    next_observation, reward, terminated, truncated, info = env.step(to_env(action))
                    obs_list.append(observation)
                    act_list.append(action)
                    rew_list.append(reward * config.reward_scale)
                    observation, done = next_observation, terminated or truncated
                episode_returns.append(float(info["episode"]["r"]))
                rewards = np.asarray(rew_list, np.float32)
                returns = discounted_returns(rewards, np.zeros_like(rewards), config.gamma)
                episodes.append((np.asarray(obs_list, np.float32), np.asarray(act_list), returns))
            step += sum(len(e[2]) for e in episodes)
            returns = np.concatenate([e[2] for e in episodes])
            if config.normalize_returns:
                returns = (returns - returns.mean()) / (returns.std() + 1e-8)
            batch = (np.concatenate([e[0] for e in episodes]),
                     np.concatenate([e[1] for e in episodes]).astype(np.float32 if model_config.action_kind == "continuous"
                                                                     else np.int32),
                     returns.astype(np.float32), np.ones(len(returns), np.float32))
        bar.update(step - previous)

        # ALGO LOGIC: one update; act with its new weights.
        if config.anneal_learning_rate:
            optimizer.learning_rate.assign(config.learning_rate * max(0.0, 1.0 - previous / config.total_steps))
        terms, weights = update(*batch)
        policy = NumpyPolicy(network, {path: w.numpy() for path, w in weights.items()})

        if evaluator.due(previous, step, config.total_steps):
            record = evaluator.evaluate(
                step, writer, train_return=float(np.mean(episode_returns[-20:])) if episode_returns else None,
                **{name: float(value) for name, value in terms.items()})
            bar.set_postfix(eval=f"{record['eval_return']:.1f}")
        if evaluator.stopped or checkpoints.due(previous, step) or step >= config.total_steps:
            checkpoints.save(step, rng, **evaluator.state(), episode_returns=episode_returns[-100:],
                             **({} if algorithm == "a2c" else {"episode_seed": episode_seed}))
        if evaluator.stopped:
            break
    bar.close()

    metrics = evaluator.finish(run_dir, step, config.total_steps, episode_returns, f"{algorithm} on {config.env}",
                               algorithm=algorithm, env=config.env)
    writer.flush()
    return metrics


def main(algorithm: str, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m training {algorithm}",
                                     description=f"Train a {algorithm} agent on a gymnasium environment.")
    parser.add_argument("--out", type=Path, required=True, help="run directory (created; resumed if it exists)")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    presets = {"cartpole": lambda: cartpole(algorithm), "smoke": lambda: smoke(algorithm)}
    if algorithm == "a2c":
        presets.update(acrobot=acrobot, pendulum=pendulum)
    config, args = parse_config(argv, parser, presets, "cartpole", hidden=DERIVED)
    try:
        metrics = train(algorithm, config, args.out, progress=not args.no_progress)
    except UserError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print(f"final greedy return {metrics['final_eval_return']:.1f} over {metrics['final_eval_episodes']} episodes; "
          f"{metrics['steps']} steps in {metrics['train_seconds']:.1f} s of training")
    return 0
