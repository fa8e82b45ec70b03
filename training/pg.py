"""Train policy-gradient agents on gymnasium environments.

    python -m training reinforce --preset cartpole --out runs/reinforce
    python -m training reinforce_baseline --preset cartpole --out runs/reinforce-baseline
    python -m training a2c --preset cartpole --out runs/a2c
    python -m training reinforce --preset aliased_grid --out runs/reinforce-aliased
    python -m training a2c --preset pong --out runs/a2c-pong          # from pixels: hours

Order of work: environments -> policy (and critic), optimizer -> loop (collect with the
current policy -> returns or n-step targets -> one update -> evaluate -> checkpoint) ->
final greedy evaluation, metrics.json, learning curves. Two loops, each read top to bottom:

- `reinforce_loop` (REINFORCE, with or without a baseline) plays whole episodes from one
  environment, `episodes_per_update` of them, and weights each log-probability by its
  reward to go G_t or the episode's return r(tau) (`weights`), less a baseline: a moving
  average of past batches, or the critic's v(s_t) (`reinforce_baseline`);
- `a2c_loop` steps `num_envs` environments together for `n_steps`, and bootstraps each
  target with the critic: an episode's end cuts it, and a time limit adds gamma * v(last state).

What they share (`Agent`): the network, its numpy copy that acts (one call into TensorFlow
costs about 0.3 ms, a CartPole step 10 us; frames go through the network itself, the Nature
DQN torso), the update, the evaluator and the checkpoints.
A resumed run ends as the uninterrupted one would: REINFORCE's episodes are seeded one by
one, and A2C's environments are checkpointed mid-episode.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Literal

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from rundir import Restored, Run, UserError
from training.config import check_at_least_one, run_command
from training.envs import make_env, make_vector_env
from training.optim import FusedAdam
from training.rl import Evaluator, RLOptions, VectorRollout
from zoo import worlds
from zoo.acting import NetworkPolicy, NumpyPolicy, snapshot
from zoo.policy_gradient import (PolicyConfig, PolicyNetwork, a2c_loss, n_step_targets, reinforce_baseline_loss,
                                 reinforce_loss, reinforce_weights)
from zoo.tabular import evaluate_policy

ALGORITHMS = ("reinforce", "reinforce_baseline", "a2c")


@dataclasses.dataclass(frozen=True)
class TrainConfig(RLOptions):
    """A policy-gradient run: algorithm, environment, network, the algorithm's settings (and the shared evaluation options)."""

    algorithm: Literal["reinforce", "reinforce_baseline", "a2c"] = "a2c"
    """REINFORCE, REINFORCE with a learned baseline, or A2C (the command names it)."""
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
    weights: Literal["reward_to_go", "trajectory"] = "reward_to_go"
    """REINFORCE: weight log pi(a_t|s_t) by the return from step t on (G_t), or every step by the
    whole episode's return r(tau) = G_0 (the same gradient in expectation, with more variance)."""
    baseline: Literal["none", "moving_average", "learned"] = "learned"
    """What is subtracted from the weights: nothing (reinforce), a moving average of past batches'
    mean weight (reinforce), or the critic's v(s_t) (reinforce_baseline and a2c: their critic)."""
    baseline_rate: float = 0.1
    """moving_average: b <- b + rate (batch mean - b), bias-corrected as Adam's moments are."""
    normalize_returns: bool = True
    """REINFORCE: scale each batch's weights (after the baseline) to mean 0 and standard deviation 1."""
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
        check_at_least_one(self, "total_steps", "episodes_per_update", "num_envs", "n_steps")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        for name in ("gamma", "gae_lambda"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.algorithm != "reinforce" and self.model.critic == "none":
            raise ValueError(f"{self.algorithm} needs a critic; use --critic=separate or --critic=shared")
        if self.algorithm == "reinforce" and self.baseline == "learned":
            raise ValueError("reinforce with a learned baseline is the reinforce_baseline command; "
                             "reinforce takes --baseline=none or moving_average")
        if self.algorithm != "reinforce" and self.baseline != "learned":
            raise ValueError(f"{self.algorithm} subtracts its critic's v(s) (--baseline=learned); "
                             f"a moving average is for reinforce")
        if self.baseline == "moving_average" and self.normalize_returns:
            raise ValueError("a moving-average baseline is one number per batch, which normalize_returns subtracts "
                             "again (the batch mean): set normalize_returns=false with it")
        if not 0 < self.baseline_rate <= 1:
            raise ValueError(f"baseline_rate must be in (0, 1], got {self.baseline_rate}")


DERIVED = frozenset({"algorithm", "observation_shape", "observation_dtype", "torso", "action_kind", "num_actions",
                     "action_low", "action_high"})  # from the command and the environment

# Presets: with no overrides, each reproduces the figures docs/policy-gradients.md quotes.


def cartpole(algorithm: str) -> TrainConfig:
    """CartPole-v1, each algorithm with the settings it was measured with."""
    if algorithm == "a2c":  # 16 environments halve the updates per step (each costs about 1 ms)
        return TrainConfig(algorithm="a2c", learning_rate=3e-3, entropy_weight=0.01, num_envs=16, n_steps=5,
                           stop_return=475.0, total_steps=100_000)
    critic, baseline = ("separate", "learned") if algorithm == "reinforce_baseline" else ("none", "none")
    return TrainConfig(algorithm=algorithm, model=PolicyConfig(critic=critic), baseline=baseline, learning_rate=3e-3,
                       episodes_per_update=2, normalize_returns=algorithm == "reinforce", stop_return=475.0,
                       total_steps=100_000)


def acrobot() -> TrainConfig:
    """A2C on Acrobot-v1: CartPole's settings on 8 environments at a third of the step size,
    for 200k steps (at CartPole's 3e-3 one seed of three stalled near -160)."""
    return dataclasses.replace(cartpole("a2c"), env="Acrobot-v1", num_envs=8, learning_rate=1e-3,
                               total_steps=200_000, stop_return=None)


def pendulum() -> TrainConfig:
    """A2C with a Gaussian policy on Pendulum-v1: short horizon (gamma 0.9), TD(0.9) targets,
    rewards scaled by 0.1, 16 environments x 8 steps, the step size annealed to 0 (with a
    constant step size one seed of three ended far below the others)."""
    return TrainConfig(algorithm="a2c", env="Pendulum-v1", gamma=0.9, gae_lambda=0.9, reward_scale=0.1, num_envs=16,
                       n_steps=8, learning_rate=1e-3, anneal_learning_rate=True, entropy_weight=0.0,
                       total_steps=2_000_000, eval_every=50_000, checkpoint_every=200_000)


def aliased_grid() -> TrainConfig:
    """REINFORCE on AliasedGridWorld-v0 (David Silver's lecture 7): undiscounted returns less a
    moving average, a small tanh network on the observed walls, the step size annealed to 0
    (without it the grey cells' coin wanders, 37/63 at the end of one seed: the return is
    flat near 50/50). Its greedy evaluation gets stuck as every deterministic policy must;
    metrics.json's policy_return is what sampling from it earns."""
    return TrainConfig(algorithm="reinforce", env="AliasedGridWorld-v0",
                       model=PolicyConfig(hidden=(32,), critic="none"), baseline="moving_average",
                       normalize_returns=False, gamma=1.0, learning_rate=1e-2, anneal_learning_rate=True,
                       episodes_per_update=8, total_steps=30_000, eval_every=5_000, checkpoint_every=30_000)


def pong() -> TrainConfig:
    """A2C on ALE/Pong-v5 from pixels, through the Nature DQN torso (training/envs.py's Atari
    preprocessing: frame skip 4, 84x84 grey, 4 frames stacked, rewards clipped to their sign).
    A3C's settings (Mnih et al., 2016) run synchronously: 16 environments x 5 steps, entropy
    weight 0.01, one torso for the policy and the value, gradients clipped to norm 0.5,
    2.5M agent steps (10M frames). Adam at 7e-4 where A3C used RMSProp. A user's run of hours,
    not CI's (docs/policy-gradients.md gives the speed measured here)."""
    return TrainConfig(algorithm="a2c", env="ALE/Pong-v5", model=PolicyConfig(critic="shared"), num_envs=16, n_steps=5,
                       learning_rate=7e-4, entropy_weight=0.01, max_grad_norm=0.5, total_steps=2_500_000,
                       eval_every=100_000, eval_episodes=3, final_eval_episodes=10, checkpoint_every=100_000)


def pong_smoke(algorithm: str) -> TrainConfig:
    """For tests: one update from Pong frames (A2C: 2 environments x 5 steps; REINFORCE: one
    whole game), one game of evaluation."""
    small = {"eval_episodes": 1, "final_eval_episodes": 1, "checkpoint_every": 1_000_000}
    if algorithm == "a2c":
        return dataclasses.replace(pong(), num_envs=2, n_steps=5, total_steps=10, eval_every=10, **small)
    critic, baseline = ("shared", "learned") if algorithm == "reinforce_baseline" else ("none", "none")
    return TrainConfig(algorithm=algorithm, env="ALE/Pong-v5", model=PolicyConfig(critic=critic), baseline=baseline,
                       learning_rate=7e-4, episodes_per_update=1, total_steps=1, eval_every=1, **small)


def smoke(algorithm: str) -> TrainConfig:
    """For tests: a few seconds of CartPole (A2C's 16 environments need more steps to show learning)."""
    return dataclasses.replace(cartpole(algorithm), total_steps=10_000 if algorithm == "a2c" else 5_000,
                               eval_episodes=5, final_eval_episodes=5, stop_return=None, checkpoint_every=2_000)


def presets(algorithm: str) -> dict[str, Callable[[], TrainConfig]]:
    """The command's presets: cartpole, smoke and pong_smoke for every algorithm; aliased_grid
    for REINFORCE; acrobot, pendulum and pong for A2C."""
    named = {"cartpole": lambda: cartpole(algorithm), "smoke": lambda: smoke(algorithm),
             "pong_smoke": lambda: pong_smoke(algorithm)}
    if algorithm == "reinforce":
        named["aliased_grid"] = aliased_grid
    return {**named, "acrobot": acrobot, "pendulum": pendulum, "pong": pong} if algorithm == "a2c" else named


# ALGO LOGIC: each algorithm's loss on a batch of steps; `mask` zeroes the steps that are not transitions.


def reinforce_terms(outputs: dict, distribution, action, returns, mask, config: TrainConfig) -> dict:
    return {"loss": reinforce_loss(distribution.log_prob(action) * mask, returns)}


def reinforce_baseline_terms(outputs: dict, distribution, action, returns, mask, config: TrainConfig) -> dict:
    return reinforce_baseline_loss(distribution.log_prob(action) * mask, returns, outputs["value"] * mask,
                                   config.value_weight)


def a2c_terms(outputs: dict, distribution, action, targets, mask, config: TrainConfig) -> dict:
    return a2c_loss(distribution.log_prob(action) * mask, distribution.entropy() * mask, outputs["value"] * mask,
                    targets * mask, config.value_weight, config.entropy_weight)


LOSSES = {"reinforce": reinforce_terms, "reinforce_baseline": reinforce_baseline_terms, "a2c": a2c_terms}


def make_update(network: PolicyNetwork, optimizer: FusedAdam, config: TrainConfig):
    """A traced function (observations, actions, returns or targets, mask) -> loss terms and
    the network's new weights, one gradient step on the algorithm's loss.

    It is the tf.function's concrete function: calling that directly skips the per-call
    argument binding (about 0.7 of the 1.7 ms an A2C update on CartPole takes). REINFORCE's
    batches vary in length: one trace for all of them, without XLA (which would compile
    again for every new length); A2C's rollouts have one shape.
    """
    variables, terms_of = network.trainable_variables, LOSSES[config.algorithm]
    continuous = config.model.action_kind == "continuous"
    signature = [tf.TensorSpec([None, *config.model.observation_shape], config.model.observation_dtype),
                 tf.TensorSpec([None, config.model.num_actions] if continuous else [None],
                               tf.float32 if continuous else tf.int32),
                 tf.TensorSpec([None], tf.float32), tf.TensorSpec([None], tf.float32)]

    @tf.function(jit_compile=config.jit_compile and config.algorithm == "a2c", autograph=False,
                 input_signature=signature)
    def update(observation, action, target, mask):
        with tf.GradientTape() as tape:
            outputs = network(observation)
            terms = terms_of(outputs, network.distribution(outputs), action, target, mask, config)
        optimizer.apply(tape.gradient(terms["loss"], variables), variables)
        return terms, {v.path: tf.identity(v) for v in variables}

    return update.get_concrete_function()


def policy_config(env: gym.Env, config: TrainConfig) -> PolicyConfig:
    """The policy's config with what the environment decides: observations and actions."""
    space = env.action_space
    if isinstance(space, gym.spaces.Discrete):
        kind, actions = "discrete", int(space.n)
    elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        kind, actions = "continuous", int(space.shape[0])
    else:
        raise UserError(f"{config.env} has a {type(space).__name__} action space; expected Discrete or a 1-D Box")
    shape = tuple(int(d) for d in env.observation_space.shape)
    frames = len(shape) == 3 and env.observation_space.dtype == np.uint8
    if len(shape) != 1 and not frames:
        raise UserError(f"{config.env} has observations of shape {shape} ({env.observation_space.dtype}); "
                        f"expected vectors or uint8 frames [height, width, frames]")
    bounds = {}
    if kind == "continuous":
        bounds = {"action_low": float(np.min(space.low)), "action_high": float(np.max(space.high))}
    return dataclasses.replace(config.model, observation_shape=shape, action_kind=kind, num_actions=actions,
                               observation_dtype="uint8" if frames else "float32", torso="nature" if frames else "mlp",
                               **bounds)


class Agent:
    """What both loops share: the network and the numpy copy that acts, the optimizer and its
    update, the random generator, the evaluator, the checkpoints and the progress bar."""

    def __init__(self, config: TrainConfig, run: Run, eval_env: gym.Env, progress: bool):
        self.config = config
        self.network = PolicyNetwork(config.model)
        self.optimizer = FusedAdam(self.network.trainable_variables, config.learning_rate,
                                   clipnorm=config.max_grad_norm)
        self.rng = np.random.default_rng(config.seed)
        self.checkpoints = run.checkpoints(config.checkpoint_every, model=self.network, optimizer=self.optimizer,
                                           rng=self.rng)
        self._through_network = NetworkPolicy(self.network) if config.model.torso == "nature" else None
        self.policy = self.acting(snapshot(self.network.trainable_variables))
        space = eval_env.action_space
        self.bounds = (space.low, space.high) if config.model.action_kind == "continuous" else None
        self.evaluator = Evaluator(config, eval_env, lambda observation: self.to_env(self.policy.act(observation, None)),
                                   config.seed, run)
        self._update = make_update(self.network, self.optimizer, config)  # traced here: on the training clock
        self.bar = tqdm(total=config.total_steps, unit="step", disable=not progress, dynamic_ncols=True,
                        desc=f"{config.algorithm} {config.env}")

    def acting(self, weights: dict) -> NumpyPolicy | NetworkPolicy:
        """The policy that acts with `weights`: a numpy copy of an MLP, or the network itself for frames."""
        return self._through_network or NumpyPolicy(self.network, weights)

    def to_env(self, action: np.ndarray) -> np.ndarray:
        """Continuous actions clipped to the action space's bounds, as the environment takes them."""
        return np.clip(action, *self.bounds) if self.bounds is not None else action

    def restore(self) -> Restored | None:
        """The latest checkpoint (network, optimizer, generator, evaluator restored), or None."""
        saved = self.checkpoints.restore()
        if saved is not None:
            self.evaluator.restore(saved.state["evaluator"])
            self.policy = self.acting(snapshot(self.network.trainable_variables))
            self.bar.update(saved.step)
        return saved

    @property
    def running(self) -> bool:
        return not self.evaluator.stopped

    def update(self, batch: tuple[np.ndarray, ...], previous: int) -> dict[str, float]:
        """One update on `batch`, taken at step `previous`; act with its new weights after it."""
        if self.config.anneal_learning_rate:
            self.optimizer.learning_rate.assign(
                self.config.learning_rate * max(0.0, 1.0 - previous / self.config.total_steps))
        terms, weights = self._update(*batch)
        self.policy = self.acting(weights)
        return {name: float(value) for name, value in terms.items()}

    def evaluate_and_save(self, previous: int, step: int, terms: dict[str, float], episode_returns: list[float],
                          state: dict, arrays: dict | None = None, pickled: dict | None = None) -> None:
        """Evaluate when one falls due between `previous` and `step`; checkpoint when one falls
        due, at the end, or once stop_return is confirmed."""
        self.bar.update(step - previous)
        if self.evaluator.due(previous, step, self.config.total_steps):
            train_return = float(np.mean(episode_returns[-20:])) if episode_returns else None
            record = self.evaluator.evaluate(step, train_return=train_return, **terms)
            self.bar.set_postfix(eval=f"{record['eval_return']:.1f}")
        if self.evaluator.stopped or self.checkpoints.due(previous, step) or step >= self.config.total_steps:
            self.checkpoints.save(step, state={"evaluator": self.evaluator.state(), **state}, arrays=arrays,
                                  pickled=pickled)

    def finish(self, step: int, episode_returns: list[float]) -> dict:
        self.bar.close()
        return self.evaluator.finish(step, self.config.total_steps, episode_returns,
                                     f"{self.config.algorithm} on {self.config.env}",
                                     algorithm=self.config.algorithm, env=self.config.env,
                                     **exact_policy_metrics(self.evaluator.env, self.policy))


def exact_policy_metrics(env: gym.Env, policy: NumpyPolicy | NetworkPolicy) -> dict:
    """On the small worlds of zoo/worlds.py (their model is known): what the trained policy
    does in each true state, `state_probabilities` [S][A] (states that look alike get the same),
    and `policy_return`, the exact expected return of sampling from it over the time limit (the
    greedy evaluation shows only its mode, which may get stuck where sampling does not).
    Nothing for other environments."""
    world = env.unwrapped
    if not isinstance(world, worlds.TabularWorld) or policy.config.action_kind != "discrete":
        return {}
    logits = policy.outputs(np.array([world.observe(s) for s in range(len(world.P))], np.float32))
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    values = evaluate_policy(env, probabilities, env.spec.max_episode_steps)
    return {"state_probabilities": probabilities.tolist(), "policy_return": float(world.initial_state_distrib @ values)}


@dataclasses.dataclass
class Episode:
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    """Scaled by reward_scale, as the loss sees them."""
    score: float
    """The episode's return as the environment reports it (unscaled)."""


def play_episode(env: gym.Env, agent: Agent, seed: int) -> Episode:
    """One whole episode with actions drawn from the agent's policy, from the reset with `seed`."""
    observation, _ = env.reset(seed=seed)
    observations, actions, rewards, done = [], [], [], False
    while not done:
        action = agent.policy.act(observation[None], agent.rng)[0]
        next_observation, reward, terminated, truncated, info = env.step(agent.to_env(action))
        observations.append(observation)
        actions.append(action)
        rewards.append(reward * agent.config.reward_scale)
        observation, done = next_observation, terminated or truncated
    action_dtype = np.float32 if agent.config.model.action_kind == "continuous" else np.int32
    return Episode(np.asarray(observations, agent.config.model.observation_dtype),
                   np.asarray(actions).astype(action_dtype), np.asarray(rewards, np.float32),
                   float(info["episode"]["r"]))


@dataclasses.dataclass
class MovingAverage:
    """REINFORCE's moving-average baseline: b <- b + rate (x - b) from b = 0, read bias-corrected
    as b / (1 - (1 - rate)^n) after n values (Adam's correction), and 0 before the first."""

    rate: float
    average: float = 0.0
    count: int = 0

    @property
    def value(self) -> float:
        return self.average / (1.0 - (1.0 - self.rate) ** self.count) if self.count else 0.0

    def add(self, x: float) -> None:
        self.average += self.rate * (x - self.average)
        self.count += 1


def reinforce_loop(agent: Agent) -> tuple[int, list[float]]:
    """REINFORCE (with or without a baseline): whole episodes, their returns, one update; (steps, episode returns)."""
    config = agent.config
    env = make_env(config.env)
    step, episode_seed, episode_returns = 0, config.seed, []
    average = MovingAverage(config.baseline_rate)
    if (saved := agent.restore()) is not None:
        step, episode_seed = saved.step, saved.state["episode_seed"]
        episode_returns = list(saved.state["episode_returns"])
        average = MovingAverage(config.baseline_rate, *saved.state["moving_average"])
    while step < config.total_steps and agent.running:
        # ALGO LOGIC: whole episodes with the current policy; each step's weight (G_t or r(tau)),
        # less the moving average of the batches before this one.
        episodes = [play_episode(env, agent, episode_seed + k) for k in range(config.episodes_per_update)]
        episode_seed += config.episodes_per_update
        episode_returns += [episode.score for episode in episodes]
        returns = np.concatenate([reinforce_weights(e.rewards, config.gamma, config.weights) for e in episodes])
        if config.baseline == "moving_average":
            baseline = average.value
            average.add(float(returns.mean()))
            returns = returns - baseline
        if config.normalize_returns:
            returns = (returns - returns.mean()) / (returns.std() + 1e-8)
        previous, step = step, step + len(returns)

        # ALGO LOGIC: one update on every step of the episodes.
        terms = agent.update((np.concatenate([e.observations for e in episodes]),
                              np.concatenate([e.actions for e in episodes]), returns.astype(np.float32),
                              np.ones(len(returns), np.float32)), previous)
        agent.evaluate_and_save(previous, step, terms, episode_returns,
                                state={"episode_seed": episode_seed, "episode_returns": episode_returns,
                                       "moving_average": [average.average, average.count]})
    env.close()
    return step, episode_returns


def a2c_loop(agent: Agent) -> tuple[int, list[float]]:
    """A2C: n steps of every environment, bootstrapped targets, one update; (steps, episode returns)."""
    config, model = agent.config, agent.config.model
    rollout = VectorRollout(make_vector_env(config.env, config.num_envs, native=True), config.seed)
    step = 0
    if (saved := agent.restore()) is not None:
        step = saved.step
        rollout.restore(saved, step)
    shape = (config.n_steps, config.num_envs)
    continuous = model.action_kind == "continuous"
    while step < config.total_steps and agent.running:
        # ALGO LOGIC: n steps of every environment with the current policy.
        observations = np.zeros((*shape, *model.observation_shape), model.observation_dtype)
        actions = np.zeros((*shape, model.num_actions) if continuous else shape, np.float32 if continuous else np.int32)
        rewards, cut, mask = np.zeros(shape, np.float32), np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        for t in range(config.n_steps):
            action = agent.policy.act(rollout.observation, agent.rng)
            step_t = rollout.step(action, agent.to_env(action))
            observations[t], actions[t], mask[t] = step_t.observation, action, step_t.valid
            rewards[t] = step_t.reward * config.reward_scale
            if step_t.truncated.any():  # a time limit is no end: bootstrap from the last state
                rewards[t] += config.gamma * step_t.truncated * agent.policy.values(step_t.next_observation)
            cut[t] = step_t.terminated | step_t.truncated | ~step_t.valid
        previous, step = step, step + config.n_steps * config.num_envs

        # ALGO LOGIC: n-step (or TD(lambda)) targets, bootstrapped from v(s) after the rollout;
        # an episode's end cuts the sum (a step that only reset an environment is masked out).
        flat_observations = observations.reshape(-1, *model.observation_shape)
        values = agent.policy.values(flat_observations).reshape(shape) if config.gae_lambda < 1 else 0.0
        targets, _ = n_step_targets(rewards, cut, values, agent.policy.values(rollout.observation), config.gamma,
                                    config.gae_lambda)

        # ALGO LOGIC: one update on every step of the rollout.
        terms = agent.update((flat_observations, actions.reshape(-1, *actions.shape[2:]), targets.reshape(-1),
                              mask.reshape(-1)), previous)
        kept = rollout.checkpoint()
        agent.evaluate_and_save(previous, step, terms, rollout.episode_returns, **kept)
    rollout.envs.close()
    return step, rollout.episode_returns


LOOPS = {"reinforce": reinforce_loop, "reinforce_baseline": reinforce_loop, "a2c": a2c_loop}


def train(config: TrainConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Train (or resume) `config.algorithm`'s agent into the run directory `out`; return the
    final metrics (also in metrics.json)."""
    keras.utils.set_random_seed(config.seed)
    eval_env = make_env(config.env, training=False)
    config = dataclasses.replace(config, model=policy_config(eval_env, config))
    run = Run.open(out, config, family="policy_gradient", kind="policy", model=config.model)
    if run.finished:
        return run.metrics
    agent = Agent(config, run, eval_env, progress)
    step, episode_returns = LOOPS[config.algorithm](agent)
    return agent.finish(step, episode_returns)


def main(algorithm: str, argv: list[str] | None = None) -> int:
    """`python -m training ALGORITHM`: parse, train, print the final greedy return."""
    in_graph = (" (--env_backend=tf: the whole run in one TensorFlow graph, many seeds at once; "
                "--env_backend=tf --help lists its options)") if algorithm == "a2c" else ""
    metrics, _ = run_command(argv, algorithm, f"Train a {algorithm} agent on a gymnasium environment{in_graph}.",
                             presets(algorithm), "cartpole", train, hidden=DERIVED)
    print(f"final greedy return {metrics['final_eval_return']:.1f} over {metrics['final_eval_episodes']} episodes; "
          f"{metrics['steps']} steps in {metrics['train_seconds']:.1f} s of training")
    if "policy_return" in metrics:
        print(f"sampling from the policy: an expected return of {metrics['policy_return']:.2f} (exact, from the "
              f"world's model; each state's action probabilities are in metrics.json)")
    return 0


def main_reinforce(argv: list[str] | None = None) -> int:
    return main("reinforce", argv)


def main_reinforce_baseline(argv: list[str] | None = None) -> int:
    return main("reinforce_baseline", argv)


def main_a2c(argv: list[str] | None = None) -> int:
    """`python -m training a2c`; with `--env_backend=tf`, the whole run in one graph (training/ingraph.py)."""
    from training import ingraph

    backend, argv = ingraph.split_backend(argv)
    return ingraph.main("a2c", argv) if backend == "tf" else main("a2c", argv)
