"""Whole training runs in one TensorFlow graph: PPO and A2C on the TensorFlow environments
(zoo/tf_envs.py), many seeds at once.

    python -m training ppo --preset cartpole --env_backend=tf --seeds 0,1,2 --out RUN
    python -m training a2c --preset cartpole --env_backend=tf --out RUN
    python -m training ppo --env_backend=tf --help       # this backend's presets and options

One `tf.function` runs the whole run: a `tf.while_loop` over evaluation periods, each of
which trains (a loop of iterations: rollout with the TensorFlow environments, GAE(lambda) or
n-step targets, the update epochs of minibatches, Adam) and then evaluates every agent
greedily on fixed episodes of the TensorFlow environment, also in the graph. Nothing returns
to Python until the run is over.

**Many seeds at once.** The agents of `--seeds` are stacked along a leading axis: parameters
and Adam's moments [S, ...] (zoo/policy_stack.py), environments [S, num_envs], one batched
matmul for all of them, and a per-seed loss (the zoo's loss functions mapped over the seeds
axis with `tf.vectorized_map`) whose sum gives each agent exactly its own gradient. Each agent
draws from its own streams (`tf_envs.uniform_rows`, keyed by seed and purpose): initial
parameters, actions, environment starts, minibatch order, evaluation starts. So an agent
trained beside others gives the curve it gives alone (tests/training/test_ingraph.py).

**Artefacts** (rundir.Run). With one seed, RUN is a `policy_gradient` policy run as the
gymnasium backend leaves it (config.json, model.json, a checkpoint of the PolicyNetwork,
TensorBoard logs, history.json, metrics.json, learning_curves.png), so `python -m export RUN`
exports it; with several, RUN/seed-N is such a run for each seed, and RUN itself a comparison
run whose metrics.json holds every seed's metrics and seeds.png their mean and range. The run
is one call, so it is not resumable mid-way; a finished run is reported as such.
"""
from __future__ import annotations

import dataclasses
import functools
import sys
import time
from pathlib import Path
from typing import Literal, NamedTuple

import gymnasium as gym
import numpy as np
import tensorflow as tf

from rundir import Run, UserError
from training import plots
from training.config import run_command
from training.pg import DERIVED
from training.ppo import PPOSettings
from training.rl import EvalOptions
from zoo import policy_stack, tf_envs
from zoo.policy_gradient import PolicyConfig, PolicyNetwork, a2c_loss, normalize_advantages, ppo_loss

@dataclasses.dataclass(frozen=True)
class InGraphConfig(EvalOptions, PPOSettings):
    """A whole-run-in-one-graph training: algorithm, environment, network, rollout and update settings
    (and the shared evaluation options: evaluations fall after whole rollouts, an agent that stops
    early stops learning, and the run ends when every agent has stopped)."""

    algorithm: Literal["ppo", "a2c"] = "ppo"
    """PPO (clipped objective, epochs of minibatches) or A2C (one gradient step per rollout)."""
    env: str = "CartPole-v1"
    """A TensorFlow environment (zoo/tf_envs.py): CartPole-v1, Acrobot-v1 or Pendulum-v1."""
    model: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    """Policy and critic (its fields are options too: --hidden=64,64, --critic=shared)."""
    seeds: tuple[int, ...] = (0,)
    """Agents trained together, one per seed (0 <= seed < 2**31), e.g. --seeds=0,1,2."""
    total_steps: int = 50_000
    """Environment steps per agent (summed over its environments)."""
    jit_compile: bool = True
    """Compile the training loop and the evaluation with XLA."""

    def __post_init__(self):
        EvalOptions.__post_init__(self)
        PPOSettings.__post_init__(self)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or not all(0 <= s < 2**31 for s in self.seeds):
            raise ValueError(f"seeds must be distinct integers in [0, 2**31), got {self.seeds}")

    @property
    def iterations(self) -> int:
        """Rollouts per agent (the last one may pass total_steps)."""
        return -(-self.total_steps // self.batch_size)

    @property
    def evaluated_after(self) -> list[int]:
        """The iterations (counted from 1) after which the agents are evaluated: whenever the
        steps pass a multiple of eval_every, and after the last."""
        b, every = self.batch_size, self.eval_every
        due = [i for i in range(1, self.iterations + 1) if (i * b) // every > ((i - 1) * b) // every]
        return due if due and due[-1] == self.iterations else [*due, self.iterations]


# ALGO LOGIC: presets, each measured (docs/ingraph.md).


def cartpole(algorithm: str) -> InGraphConfig:
    """CartPole-v1. PPO: RL-Zoo's tuned settings (8 environments x 32 steps, 20 epochs of one
    minibatch of 256, gamma 0.98, lambda 0.8, step size 1e-3 and clip range 0.2 annealed to 0,
    no entropy bonus); A2C: `python -m training a2c`'s (16 environments x 5 steps, step size
    3e-3, entropy bonus 0.01). Each agent stops once a greedy evaluation reaches 475 and 20
    fresh episodes confirm it (PPO's curves fall back from 500 at times before the annealing
    ends, so the confirmed policy is the one kept). Without XLA: these runs end after 10-35k
    steps, and XLA's compile (8-15 s) outweighs what it saves (docs/ingraph.md)."""
    if algorithm == "a2c":
        return InGraphConfig(algorithm="a2c", num_envs=16, n_steps=5, learning_rate=3e-3, anneal_learning_rate=False,
                             gae_lambda=1.0, entropy_weight=0.01, total_steps=100_000, stop_return=475.0,
                             jit_compile=False)
    return InGraphConfig(num_envs=8, n_steps=32, update_epochs=20, num_minibatches=1, gamma=0.98, gae_lambda=0.8,
                         learning_rate=1e-3, clip_ratio=0.2, anneal_clip_ratio=True, total_steps=100_000,
                         stop_return=475.0, jit_compile=False)


def smoke(algorithm: str) -> InGraphConfig:
    """For tests: seconds of CartPole."""
    return dataclasses.replace(cartpole(algorithm), total_steps=8_192 if algorithm == "ppo" else 8_000,
                               eval_every=2_048 if algorithm == "ppo" else 2_000, eval_episodes=5,
                               final_eval_episodes=5, stop_return=None)


PRESETS = {"cartpole": cartpole, "smoke": smoke}
PPO_ONLY = frozenset({"update_epochs", "num_minibatches", "clip_ratio", "anneal_clip_ratio", "clip_value",
                      "normalize_advantages"})  # A2C takes one plain step per rollout


def model_config(config: InGraphConfig, env: tf_envs.TFEnv) -> PolicyConfig:
    """The network's config with what the environment decides (observation shape, actions)."""
    space = env.action_space
    if isinstance(space, gym.spaces.Discrete):
        return dataclasses.replace(config.model, observation_shape=tuple(env.observation_space.shape),
                                   action_kind="discrete", num_actions=int(space.n))
    return dataclasses.replace(config.model, observation_shape=tuple(env.observation_space.shape),
                               action_kind="continuous", num_actions=int(space.shape[0]),
                               action_low=float(np.min(space.low)), action_high=float(np.max(space.high)))


# Each agent's random streams: row seed = seed * 2**32 + purpose * 2**24 + index.
ENVS, ACTIONS, SHUFFLE, EVALUATION, FINAL = 1, 2, 3, 4, 5


def streams(seeds: tf.Tensor, purpose: int | tf.Tensor, count: int) -> tf.Tensor:
    """[S, count] int64: stream `index` of `purpose` for each agent's seed ([S] int64)."""
    return seeds[:, None] * 2**32 + tf.cast(purpose, tf.int64) * 2**24 + tf.range(count, dtype=tf.int64)[None, :]


class State(NamedTuple):
    """What the training loop carries: S agents, each with num_envs environments."""

    params: dict
    """Network parameters {name: [S, ...]}."""
    momenta: dict
    """Adam's first moments, like params."""
    velocities: dict
    """Adam's second moments, like params."""
    env: tf_envs.EnvState
    """The environments [S, E]."""
    observation: tf.Tensor
    """[S, E, d] the environments' current observations."""
    iteration: tf.Tensor
    """Rollouts done (int32 scalar; every active agent has done as many)."""
    active: tf.Tensor
    """[S] bool: still learning (not stopped by stop_return)."""
    steps: tf.Tensor
    """[S] int32: environment steps each agent trained on."""
    episode_return: tf.Tensor
    """[S, E] return of each environment's current episode so far (unscaled)."""
    finished: tf.Tensor
    """[S, 2]: sum and count of the returns of training episodes ended since the last evaluation."""
    episodes: tf.Tensor
    """[S] int32: training episodes ended."""
    terms: dict
    """The last update's loss terms {name: [S]} (means over its minibatches)."""


TERMS = {"ppo": ("loss", "policy_loss", "value_loss", "entropy", "clip_fraction", "approx_kl"),
         "a2c": ("loss", "policy_loss", "value_loss", "entropy")}


def _where(active: tf.Tensor, new: tf.Tensor, old: tf.Tensor) -> tf.Tensor:
    """new in the rows (agents) that are active, old in the others."""
    return tf.where(tf.reshape(active, [-1] + [1] * (len(new.shape) - 1)), new, old)


def _gather(x: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    return tf.gather(x, index, batch_dims=1)  # x [S, N, ...], index [S, M] -> [S, M, ...]


def td_lambda_targets(rewards: tf.Tensor, terminated: tf.Tensor, truncated: tf.Tensor, values: tf.Tensor,
                      final_values: tf.Tensor, last_values: tf.Tensor, gamma: float,
                      lam: float) -> tuple[tf.Tensor, tf.Tensor]:
    """`zoo.policy_gradient.gae_targets` in TensorFlow, for a rollout [T, ...]: (targets, advantages).

    G_t = r'_t + gamma (1 - cut_t) [(1 - lam) v(s_{t+1}) + lam G_{t+1}], G_T = v(s_T), with
    r'_t = r_t + gamma v(s_final) where the episode was truncated and cut_t = terminated |
    truncated; advantage_t = G_t - v(s_t). lam < 1 gives PPO's GAE(lambda), lam = 1 A2C's
    n-step returns (cut at episode ends, a time limit bootstrapped from the final observation).
    """
    rewards = rewards + tf.where(truncated, gamma * final_values, 0.0)
    keep = gamma * (1.0 - tf.cast(terminated | truncated, tf.float32))
    next_values = tf.concat([values[1:], last_values[None]], axis=0)

    def backwards(following, t):
        return rewards[t] + keep[t] * ((1.0 - lam) * next_values[t] + lam * following)

    targets = tf.scan(backwards, tf.range(tf.shape(rewards)[0]), initializer=last_values, reverse=True)
    return targets, targets - values


class Engine:
    """The whole-run graph of one config: `run(seeds)` -> every agent's curves and final parameters."""

    def __init__(self, config: InGraphConfig):
        try:
            self.env = tf_envs.make(config.env)
        except ValueError as error:
            raise UserError(str(error)) from None
        self.model = model_config(config, self.env)
        if self.model.critic == "none":
            raise UserError(f"{config.algorithm} needs a critic; use --critic=separate or --critic=shared")
        self.config = dataclasses.replace(config, model=self.model)
        self.terms = TERMS[config.algorithm]
        self.evaluated_after = config.evaluated_after
        jit = config.jit_compile
        self.train_until = tf.function(self._train_until, jit_compile=jit, autograph=False)
        self.evaluate = tf.function(self._evaluate, jit_compile=jit, autograph=False)
        self.run = tf.function(self._run, autograph=False)

    # ------------------------------------------------------------------ acting

    def _to_env(self, action: tf.Tensor) -> tf.Tensor:
        return action if self.model.action_kind == "discrete" else tf.clip_by_value(
            action, self.model.action_low, self.model.action_high)

    def _evaluate(self, params: dict, seeds: tf.Tensor, purpose: tf.Tensor, episodes: tf.Tensor,
                  random: tf.Tensor) -> tf.Tensor:
        """[S, rows] returns of whole episodes from fixed starts, greedy (or uniformly random when
        `random`); rows = the most episodes any evaluation plays, of which the first `episodes` are
        played (one XLA program for every evaluation of the run)."""
        env, model, config = self.env, self.model, self.config
        rows = max(config.eval_episodes, config.final_eval_episodes)
        state, observation = env.reset(streams(seeds, purpose, rows))
        shape = tf.shape(state.steps)

        def body(t, state, observation, total, done):
            uniform = tf_envs.uniform_rows(state.seed, tf.fill(shape, t), 1)[..., 0]
            if model.action_kind == "discrete":
                chance = tf.cast(uniform * model.num_actions, tf.int32)
            else:
                chance = model.action_low + (model.action_high - model.action_low) * uniform[..., None]
            greedy = policy_stack.greedy_action(model, policy_stack.forward(model, params, observation))
            action = tf.where(random, chance, greedy)
            state, observation, reward, terminated, truncated = env.step(state, action)
            return t + 1, state, observation, total + tf.where(done, 0.0, reward), done | terminated | truncated

        unplayed = tf.broadcast_to(tf.range(rows) >= episodes, shape)  # rows past `episodes` count as done
        _, _, _, total, _ = tf.while_loop(
            lambda t, state, observation, total, done: (t < env.max_episode_steps) & ~tf.reduce_all(done),
            body, (0, state, observation, tf.zeros(shape), unplayed))
        return total

    def _returns(self, params: dict, seeds: tf.Tensor, purpose: int, episodes: int, random: bool = False):
        """[S, episodes] returns of an evaluation (see _evaluate)."""
        returns = self.evaluate(params, seeds, tf.constant(purpose, tf.int64), tf.constant(episodes),
                                tf.constant(random))
        return returns[:, :episodes]

    # ------------------------------------------------------------------ learning

    def initial_state(self, seeds: tf.Tensor) -> State:
        params = policy_stack.init_params(self.model, seeds.numpy().tolist())
        env_state, observation = self.env.reset(streams(seeds, ENVS, self.config.num_envs))
        count = len(seeds)
        zeros = {name: tf.zeros_like(p) for name, p in params.items()}
        return State(params=params, momenta=zeros, velocities=dict(zeros), env=env_state, observation=observation,
                     iteration=tf.constant(0), active=tf.ones([count], tf.bool), steps=tf.zeros([count], tf.int32),
                     episode_return=tf.zeros([count, self.config.num_envs]), finished=tf.zeros([count, 2]),
                     episodes=tf.zeros([count], tf.int32),
                     terms={name: tf.zeros([count]) for name in self.terms})

    def _adam(self, state: State, gradients: dict, step: tf.Tensor, learning_rate: tf.Tensor):
        """One Adam step of every active agent (ResourceApplyAdam's arithmetic, Keras' epsilon),
        after clipping each agent's gradient to max_grad_norm."""
        config, beta_1, beta_2, epsilon = self.config, 0.9, 0.999, 1e-7
        if config.max_grad_norm is not None:
            squares = tf.add_n([tf.reduce_sum(tf.square(g), axis=list(range(1, len(g.shape))))
                                for g in gradients.values()])  # [S]
            norm = tf.sqrt(squares)
            scale = config.max_grad_norm / tf.maximum(norm, config.max_grad_norm)  # tf.clip_by_global_norm's
            gradients = {k: g * tf.reshape(scale, [-1] + [1] * (len(g.shape) - 1)) for k, g in gradients.items()}
        t = tf.cast(step, tf.float32)
        rate = learning_rate * tf.sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t)
        params, momenta, velocities = {}, {}, {}
        for name, g in gradients.items():
            m = state.momenta[name] + (g - state.momenta[name]) * (1.0 - beta_1)
            v = state.velocities[name] + (tf.square(g) - state.velocities[name]) * (1.0 - beta_2)
            p = state.params[name] - rate * m / (tf.sqrt(v) + epsilon)
            params[name] = _where(state.active, p, state.params[name])
            momenta[name] = _where(state.active, m, state.momenta[name])
            velocities[name] = _where(state.active, v, state.velocities[name])
        return params, momenta, velocities

    def _rollout(self, state: State, seeds: tf.Tensor):
        """n_steps steps of every environment with the current policy: (state, the rollout [T, S, E, ...])."""
        config, env, model = self.config, self.env, self.model
        action_streams = streams(seeds, ACTIONS, config.num_envs)  # [S, E]
        records = {name: tf.TensorArray(dtype, config.n_steps) for name, dtype in (
            ("observation", tf.float32), ("action", tf.int32 if model.action_kind == "discrete" else tf.float32),
            ("log_prob", tf.float32), ("reward", tf.float32), ("terminated", tf.bool), ("truncated", tf.bool),
            ("final_observation", tf.float32))}

        def body(t, env_state, observation, episode_return, finished, episodes, records):
            outputs = policy_stack.forward(model, state.params, observation)
            counter = tf.fill(tf.shape(action_streams), state.iteration * config.n_steps + t)
            action = policy_stack.sample_action(model, outputs, action_streams, counter)
            log_prob = policy_stack.distribution(model, outputs).log_prob(action)
            env_state, next_observation, reward, terminated, truncated = env.step(env_state, self._to_env(action))
            episode_return += reward
            done = terminated | truncated
            finished += tf.stack([tf.reduce_sum(tf.where(done, episode_return, 0.0), axis=1),
                                  tf.reduce_sum(tf.cast(done, tf.float32), axis=1)], axis=1)
            ended = tf.reduce_sum(tf.cast(done, tf.int32), axis=1)
            episodes += tf.where(state.active, ended, 0)  # a stopped agent's environments still run
            step = {"observation": observation, "action": action, "log_prob": log_prob,
                    "reward": reward * config.reward_scale, "terminated": terminated, "truncated": truncated,
                    "final_observation": env_state.final_observation}
            records = {name: records[name].write(t, step[name]) for name in records}
            return (t + 1, env_state, next_observation, tf.where(done, 0.0, episode_return), finished, episodes,
                    records)

        _, env_state, observation, episode_return, finished, episodes, records = tf.while_loop(
            lambda t, *_: t < config.n_steps, body,
            (0, state.env, state.observation, state.episode_return, state.finished, state.episodes, records))
        state = state._replace(env=env_state, observation=observation, episode_return=episode_return,
                               finished=finished, episodes=episodes)
        return state, {name: array.stack() for name, array in records.items()}

    def _values(self, params: dict, observation: tf.Tensor) -> tf.Tensor:
        """v(s) of observations [T, S, E, d] -> [T, S, E], in one batched call per agent."""
        t, s, e = observation.shape[:3]
        flat = tf.reshape(tf.transpose(observation, [1, 0, 2, 3]), [s, t * e, -1])
        values = policy_stack.forward(self.model, params, flat)["value"]
        return tf.transpose(tf.reshape(values, [s, t, e]), [1, 0, 2])

    def _loss(self, params: dict, batch: dict, clip_ratio: tf.Tensor) -> tuple[tf.Tensor, dict]:
        """Every agent's loss on its rows of `batch` ({name: [S, M, ...]}): (their sum, terms {name: [S]}).

        The sum's gradient with respect to agent s's parameters is the gradient of agent s's own loss.
        """
        config, model = self.config, self.model
        outputs = policy_stack.forward(model, params, batch["observation"])
        distribution = policy_stack.distribution(model, outputs)
        per_row = {"log_prob": distribution.log_prob(batch["action"]), "entropy": distribution.entropy(),
                   "value": outputs["value"], **{k: batch[k] for k in ("old_log_prob", "advantage", "target",
                                                                      "old_value") if k in batch}}

        def agent_loss(rows):  # one agent's rows [M]: the zoo's loss functions, unchanged
            if config.algorithm == "a2c":
                return a2c_loss(rows["log_prob"], rows["entropy"], rows["value"], rows["target"],
                                config.value_weight, config.entropy_weight)
            advantage = normalize_advantages(rows["advantage"]) if config.normalize_advantages else rows["advantage"]
            return ppo_loss(rows["log_prob"], rows["old_log_prob"], advantage, rows["entropy"], rows["value"],
                            rows["old_value"], rows["target"], clip_ratio, config.clip_value, config.value_weight,
                            config.entropy_weight)

        terms = tf.vectorized_map(agent_loss, per_row, fallback_to_while_loop=False)
        return tf.reduce_sum(terms["loss"]), {name: terms[name] for name in self.terms}

    def _iteration(self, state: State, seeds: tf.Tensor) -> State:
        """One rollout, its targets and the update of every agent."""
        config, model = self.config, self.model
        count = seeds.shape[0]
        remaining = 1.0 - tf.cast(state.iteration * config.batch_size, tf.float32) / config.total_steps
        learning_rate = config.learning_rate * (remaining if config.anneal_learning_rate else 1.0)
        clip_ratio = config.clip_ratio * (remaining if config.anneal_clip_ratio else 1.0)

        # ALGO LOGIC: a rollout, then GAE(lambda) / n-step targets bootstrapped through time limits.
        state, rollout = self._rollout(state, seeds)
        params = state.params
        values = self._values(params, rollout["observation"])  # [T, S, E]
        final_values = self._values(params, rollout["final_observation"])
        last_values = policy_stack.forward(model, params, state.observation)["value"]  # [S, E]
        targets, advantages = td_lambda_targets(rollout["reward"], rollout["terminated"], rollout["truncated"],
                                                values, final_values, last_values, config.gamma, config.gae_lambda)

        def per_agent(x):  # [T, S, E, ...] -> [S, T * E, ...]
            x = tf.transpose(x, [1, 0, 2, *range(3, len(x.shape))])
            return tf.reshape(x, [count, config.batch_size, *x.shape[3:]])

        batch = {"observation": per_agent(rollout["observation"]), "action": per_agent(rollout["action"]),
                 "target": per_agent(targets)}
        if config.algorithm == "ppo":
            batch.update(old_log_prob=per_agent(rollout["log_prob"]), advantage=per_agent(advantages),
                         old_value=per_agent(values))
        first_step = state.iteration * (config.update_epochs * config.num_minibatches if config.algorithm == "ppo"
                                        else 1)

        # ALGO LOGIC: the update: A2C one step on the rollout; PPO update_epochs passes of shuffled minibatches.
        def gradient_step(state, rows, step):
            with tf.GradientTape() as tape:
                tape.watch(state.params)
                loss, terms = self._loss(state.params, rows, clip_ratio)
            gradients = tape.gradient(loss, state.params)
            params, momenta, velocities = self._adam(state, gradients, step, learning_rate)
            return state._replace(params=params, momenta=momenta, velocities=velocities), terms

        if config.algorithm == "a2c":
            state, terms = gradient_step(state, batch, first_step + 1)
        else:
            epochs, size = config.update_epochs, config.batch_size // config.num_minibatches
            shuffle = tf.tile(streams(seeds, SHUFFLE, 1), [1, epochs])  # [S, epochs]
            counter = state.iteration * epochs + tf.range(epochs)[None, :] + tf.zeros_like(shuffle, tf.int32)
            order = tf.argsort(tf_envs.uniform_rows(shuffle, counter, config.batch_size), axis=-1)  # [S, epochs, N]
            order = tf.reshape(order, [count, epochs * config.num_minibatches, size])  # every minibatch's rows
            steps = epochs * config.num_minibatches

            def minibatch(j, state, totals):
                rows = {name: _gather(x, order[:, j]) for name, x in batch.items()}
                state, terms = gradient_step(state, rows, first_step + j + 1)
                return j + 1, state, {name: totals[name] + terms[name] for name in self.terms}

            _, state, totals = tf.while_loop(lambda j, *_: j < steps, minibatch,
                                             (0, state, {name: tf.zeros([count]) for name in self.terms}))
            terms = {name: total / steps for name, total in totals.items()}

        terms = {name: _where(state.active, terms[name], state.terms[name]) for name in self.terms}
        steps = state.steps + tf.where(state.active, config.batch_size, 0)
        return state._replace(iteration=state.iteration + 1, steps=steps, terms=terms)

    def _train_until(self, state: State, seeds: tf.Tensor, iteration: tf.Tensor) -> State:
        """Iterate until `iteration` rollouts are done (an XLA program when jit_compile)."""
        return tf.while_loop(lambda state: state.iteration < iteration, lambda state: (self._iteration(state, seeds),),
                             (state,))[0]

    # ------------------------------------------------------------------ the run

    def train(self, seeds: list[int]) -> tuple[dict, dict]:
        """Trace, dry-run (compile) and run the graph for agents `seeds`: (the run's results as
        numpy, timing). The timing holds seconds of each part and the wall-clock time
        (time.time()) at which the compiled run began, `run_started`."""
        seeds = tf.constant(seeds, tf.int64)
        state = self.initial_state(seeds)
        started = time.time()
        self.run.get_concrete_function(state, seeds, tf.constant(True))
        traced = time.time()
        tf.nest.map_structure(lambda x: x.numpy(), self.run(state, seeds, tf.constant(True)))
        compiled = time.time()
        result = tf.nest.map_structure(lambda x: x.numpy(), self.run(state, seeds, tf.constant(False)))
        finished = time.time()
        return result, {"trace_seconds": traced - started, "compile_seconds": compiled - traced,
                        "run_seconds": finished - compiled, "train_seconds": float(result["train_seconds"]),
                        "run_started": compiled}

    def _run(self, state: State, seeds: tf.Tensor, dry_run: tf.Tensor) -> dict:
        """Train and evaluate on the schedule until total_steps (or until every agent has stopped).

        A dry run (`dry_run` true) goes once through every part with no training iteration:
        it leaves the graph and its XLA programs compiled for the real run.
        """
        config = self.config
        count, periods = seeds.shape[0], len(self.evaluated_after)
        schedule = tf.constant(self.evaluated_after, tf.int32)
        history = {name: tf.TensorArray(tf.float32, periods) for name in (
            "eval_return", "eval_return_std", "confirm_return", "train_return", *self.terms)}
        clocks = {name: tf.TensorArray(tf.float64, periods) for name in ("train_seconds", "wall_seconds")}
        steps_history = tf.TensorArray(tf.int32, periods)
        started = tf.timestamp()

        def period(k, state, evaluating, history, clocks, steps_history):
            state = self.train_until(state, seeds, tf.where(dry_run, state.iteration, schedule[k]))
            before = tf.timestamp()
            returns = self._returns(state.params, seeds, EVALUATION, config.eval_episodes)  # [S, episodes]
            mean = tf.reduce_mean(returns, axis=1)
            confirm, stopped = tf.fill([count], np.nan), tf.zeros([count], tf.bool)
            if config.stop_return is not None:  # confirm on the final evaluation's episodes (no NaN compared)
                reached = state.active & (mean >= config.stop_return)
                confirmed = tf.cond(tf.reduce_any(reached), lambda: tf.reduce_mean(
                    self._returns(state.params, seeds, FINAL, config.final_eval_episodes), axis=1),
                    lambda: tf.zeros([count]))
                confirm, stopped = tf.where(reached, confirmed, np.nan), reached & (confirmed >= config.stop_return)
            after = tf.timestamp()
            record = {"eval_return": mean, "eval_return_std": tf.math.reduce_std(returns, axis=1),
                      "confirm_return": confirm,
                      "train_return": state.finished[:, 0] / state.finished[:, 1],  # NaN if none ended
                      **state.terms}
            history = {name: history[name].write(k, record[name]) for name in history}
            clocks = {"train_seconds": clocks["train_seconds"].write(k, before - started - evaluating),
                      "wall_seconds": clocks["wall_seconds"].write(k, after - started)}  # when its result is known
            steps_history = steps_history.write(k, state.steps)
            state = state._replace(active=state.active & ~stopped, finished=tf.zeros_like(state.finished))
            return k + 1, state, evaluating + (after - before), history, clocks, steps_history

        evaluations, state, evaluating, history, clocks, steps_history = tf.while_loop(
            lambda k, state, *_: (k < tf.where(dry_run, 1, periods)) & tf.reduce_any(state.active), period,
            (0, state, tf.constant(0.0, tf.float64), history, clocks, steps_history))
        train_seconds = tf.timestamp() - started - evaluating
        return {"params": state.params, "evaluations": evaluations, "steps": state.steps,
                "episodes": state.episodes, "train_seconds": train_seconds,
                "final_returns": self._returns(state.params, seeds, FINAL, config.final_eval_episodes),
                "random_returns": self._returns(state.params, seeds, FINAL, config.final_eval_episodes, random=True),
                "history": {name: array.stack() for name, array in history.items()},
                "clocks": {name: array.stack() for name, array in clocks.items()},
                "step": steps_history.stack()}


# ---------------------------------------------------------------------- training command


def seed_config(config: InGraphConfig, seed: int) -> InGraphConfig:
    """The config of seed `seed`'s own run directory."""
    return dataclasses.replace(config, seeds=(seed,))


def train(config: InGraphConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Train every seed's agent in one graph into `out`; return {seed: its metrics}.

    One seed: `out` is that agent's policy run. Several: `out` is a comparison run (its
    metrics.json holds every seed's metrics, seeds.png their mean and range) and out/seed-N
    each agent's policy run. Each agent's metrics also give the run's timing: tracing (Python
    builds the graph), compiling (a dry run through every part: graph optimisation and XLA)
    and running. The run is one call, so an interrupted one trains again from the start.
    `progress` is accepted for the commands' interface; there is no progress to show.
    """
    engine = Engine(config)
    config = engine.config
    many = len(config.seeds) > 1
    summary = Run.open(out, config, family="policy_gradient", kind="comparison") if many else None
    if summary is not None and summary.finished:
        return {int(seed): metrics for seed, metrics in summary.metrics["seeds"].items()}
    runs = {seed: Run.open(Path(out) / f"seed-{seed}" if many else out, seed_config(config, seed),
                           family="policy_gradient", kind="policy", model=config.model) for seed in config.seeds}
    if not many and runs[config.seeds[0]].finished:
        return {seed: run.metrics for seed, run in runs.items()}

    result, timing = engine.train(list(config.seeds))
    timing = {k: v for k, v in timing.items() if k != "run_started"}
    metrics = {seed: finish_seed(config, runs[seed], index, result, timing) for index, seed in enumerate(config.seeds)}
    if summary is not None:
        curves = {seed: [(r["step"], r["eval_return"]) for r in runs[seed].history] for seed in config.seeds}
        plots.seeds_band(curves, summary.directory / "seeds.png",
                         f"{config.algorithm} on {config.env} (in graph), {len(config.seeds)} seeds: "
                         f"greedy evaluation over {config.eval_episodes} episodes")
        summary.history = [{"seed": seed, "step": step, "eval_return": value}
                           for seed, curve in curves.items() for step, value in curve]
        summary.finish({"algorithm": config.algorithm, "env": config.env, "seeds": metrics})
    return metrics


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def finish_seed(config: InGraphConfig, run: Run, index: int, result: dict, timing: dict) -> dict:
    """Agent `index`'s run: its history, a checkpoint of its PolicyNetwork (what export reads),
    TensorBoard scalars, learning_curves.png and metrics.json; returns its metrics."""
    seed = config.seeds[index]
    history, clocks = result["history"], result["clocks"]
    stopped = np.flatnonzero(history["confirm_return"][:, index] >= (config.stop_return or np.inf))
    evaluations = int(stopped[0]) + 1 if len(stopped) else int(result["evaluations"])
    for k in range(evaluations):
        step, seconds = int(result["step"][k, index]), float(clocks["train_seconds"][k])
        record = {"step": step, "train_seconds": seconds, "wall_seconds": float(clocks["wall_seconds"][k]),
                  "steps_per_second": step / seconds if seconds > 0 else None}
        record.update({name: _finite(values[k, index]) for name, values in history.items()})
        if record["confirm_return"] is None:
            del record["confirm_return"]
        run.history.append(record)
        run.log(step, record)
    records = run.history
    steps = int(result["steps"][index])
    threshold = gym.spec(config.env).reward_threshold
    solved = next((r for r in records if threshold is not None and r["eval_return"] >= threshold), None)
    final, random = result["final_returns"][index], result["random_returns"][index]
    seconds = records[-1]["train_seconds"] if len(stopped) else timing["train_seconds"]
    metrics = {
        "algorithm": config.algorithm, "env": config.env, "env_backend": "tf", "seed": seed, "steps": steps,
        "train_seconds": seconds, "steps_per_second": steps / seconds if seconds > 0 else None,
        "stopped_early": steps < config.total_steps,
        "final_eval_return": float(np.mean(final)), "final_eval_return_std": float(np.std(final)),
        "final_eval_episodes": len(final), "random_policy_return": float(np.mean(random)),
        "reward_threshold": threshold,
        "first_solved_step": solved["step"] if solved else None,
        "first_solved_seconds": solved["train_seconds"] if solved else None,
        "best_eval_return": max(r["eval_return"] for r in records),
        "training_episodes": int(result["episodes"][index]),
        "seeds_trained_together": len(config.seeds), **{k: v for k, v in timing.items() if k != "train_seconds"},
    }

    network = PolicyNetwork(config.model)
    policy_stack.assign(network, {name: tf.constant(p) for name, p in result["params"].items()}, index)
    run.checkpoints(config.total_steps, model=network).save(steps)
    limit = f" (threshold {threshold:g})" if threshold is not None else ""
    plots.learning_curves(records, ["eval_return", "train_return"], run.directory / "learning_curves.png",
                          f"{config.algorithm} on {config.env} (in graph), seed {seed}: greedy evaluation over "
                          f"{config.eval_episodes} episodes{limit}")
    return run.finish(metrics)


BACKENDS = ("gymnasium", "tf")


def split_backend(argv: list[str] | None) -> tuple[str, list[str]]:
    """(the --env_backend value, gymnasium by default; the other arguments), for the ppo and
    a2c commands, which hand `--env_backend=tf` runs to `main` here. An unknown backend exits
    with status 2 and one sentence naming the two there are."""
    backend, rest, argv = "gymnasium", [], list(sys.argv[1:] if argv is None else argv)
    while argv:
        arg = argv.pop(0)
        if arg == "--env_backend" and argv:
            backend = argv.pop(0)
        elif arg.startswith("--env_backend="):
            backend = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if backend not in BACKENDS:
        sys.stderr.write(f"error: --env_backend must be one of {', '.join(BACKENDS)}, got {backend!r}\n")
        raise SystemExit(2)
    return backend, rest


def main(algorithm: str, argv: list[str]) -> int:
    """`python -m training ALGORITHM --env_backend=tf ...` (ppo or a2c): parse, train every
    seed in one graph, print each seed's result and the run's timing."""
    presets = {name: functools.partial(preset, algorithm) for name, preset in PRESETS.items()}
    results, _ = run_command(argv, f"{algorithm} --env_backend=tf",
                             f"Train {algorithm} agents, one per seed, on a TensorFlow environment, the whole run "
                             f"in one graph (one seed: RUN is its run; several: RUN/seed-N each, and seeds.png).",
                             presets, "cartpole", train,
                             hidden=DERIVED | (PPO_ONLY if algorithm == "a2c" else frozenset()))
    for seed, metrics in results.items():
        solved = metrics["first_solved_step"]
        print(f"seed {seed}: final greedy return {metrics['final_eval_return']:.1f} over "
              f"{metrics['final_eval_episodes']} episodes; first solved at "
              f"{'never' if solved is None else f'{solved} steps'}; {metrics['steps']} steps")
    timing = next(iter(results.values()))
    print(f"trace {timing['trace_seconds']:.1f} s, compile {timing['compile_seconds']:.1f} s, "
          f"run {timing['run_seconds']:.1f} s")
    return 0
