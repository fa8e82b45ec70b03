"""Train a DQN agent on any gymnasium environment with discrete actions.

    python -m training dqn --env CartPole-v1 --preset cartpole --out runs/dqn-cartpole

Order of work: environments -> online and target Q-networks, optimizer, replay memory ->
loop (act epsilon-greedily -> store -> update -> evaluate -> checkpoint) -> final greedy
evaluation, metrics.json, learning curves. Started again with the same command, a run
resumes from its last checkpoint (network, target, optimizer, replay memory, random state,
the environments mid-episode) and ends as the uninterrupted run would.

Where the time goes, measured on 2 cores: a call into TensorFlow costs about 0.3 ms, a
CartPole step 10 us and a small MLP in numpy 10 us. So MLP agents act in numpy on a
snapshot of the online weights taken after each update; an update runs all its gradient
steps (and target updates) inside one tf.function; evaluation plays in numpy too.
Frame-based agents act through the network itself.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from rundir import Run, UserError  # noqa: F401  (UserError: what train raises for bad input)
from training.config import check_at_least_one, run_command
from training.envs import AtariOptions, discrete_actions, make_env, make_vector_env
from training.rl import Evaluator, RLOptions, VectorRollout
from zoo.acting import NumpyQNetwork, snapshot
from zoo.dqn import DQNConfig, QNetwork, td_loss, td_target


@dataclasses.dataclass(frozen=True)
class TrainConfig(RLOptions):
    """A DQN run: environment, network, replay, schedule (and the evaluation options it shares)."""

    env: str = "CartPole-v1"
    """Gymnasium environment id with a discrete action space (ALE/Pong-v5 and other Atari games included)."""
    model: DQNConfig = dataclasses.field(default_factory=DQNConfig)
    """Q-network (its fields are options too: --hidden=64,64)."""
    atari: AtariOptions = dataclasses.field(default_factory=AtariOptions)
    """Atari preprocessing (its fields are options too: --frame_skip=4, ...)."""
    total_steps: int = 50_000
    """Environment steps to train for (summed over the parallel environments)."""
    num_envs: int = 1
    """Environments stepped together (one action batch per step)."""
    buffer_size: int = 50_000
    """Transitions the replay memory holds (the oldest are overwritten)."""
    learning_starts: int = 1_000
    """Environment steps of acting before the first update."""
    batch_size: int = 64
    """Transitions per gradient step."""
    learning_rate: float = 1e-3
    """Adam step size."""
    adam_epsilon: float = 1e-7
    """Adam's epsilon (the Atari literature uses 1.5e-4 with its larger, noisier errors)."""
    max_grad_norm: float | None = 10.0
    """Clip each update's gradient to this global norm (none: no clipping)."""
    gamma: float = 0.99
    """Discount factor."""
    train_frequency: int = 4
    """Environment steps between updates."""
    gradient_steps: int = 1
    """Gradient steps per update, run inside one tf.function."""
    target_update: int = 500
    """Gradient steps between target-network updates."""
    tau: float = 1.0
    """Target update: 1 copies the online network; below 1, target <- tau*online + (1-tau)*target (Polyak)."""
    double_dqn: bool = True
    """Double DQN target: the online network picks the next action, the target network values it."""
    loss: Literal["huber", "mse"] = "huber"
    """TD error loss."""
    epsilon_start: float = 1.0
    """Exploration rate at the first step."""
    epsilon_end: float = 0.05
    """Exploration rate after the decay."""
    epsilon_fraction: float = 0.1
    """Fraction of total_steps over which epsilon decays linearly."""
    eval_epsilon: float = 0.0
    """Exploration rate while evaluating (0: greedy)."""
    seed: int = 0
    """Seed of initialisation, exploration, replay sampling and environment resets."""
    jit_compile: bool = True
    """Compile the update with XLA: for a small MLP it halves the time of a gradient step on a 2-core CPU."""
    checkpoint_replay: bool = True
    """Save the replay memory with each checkpoint (resuming without it refills it first)."""

    def __post_init__(self):
        super().__post_init__()
        check_at_least_one(self, "total_steps", "num_envs", "buffer_size", "batch_size", "train_frequency",
                           "gradient_steps", "target_update")
        if self.learning_starts < 0:
            raise ValueError(f"learning_starts must be at least 0, got {self.learning_starts}")
        for name in ("learning_rate", "adam_epsilon"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("gamma", "epsilon_start", "epsilon_end", "epsilon_fraction", "eval_epsilon"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 < self.tau <= 1:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")


DERIVED = frozenset({"observation_shape", "observation_dtype", "num_actions", "torso"})  # from the environment


# Presets: with no overrides, each reproduces the figures docs/dqn.md quotes beside its command.


def cartpole() -> TrainConfig:
    """CartPole-v1 to a greedy return of 475 over 20 fresh episodes, then stop.

    One gradient step per environment step (32 per update) on a soft-updated target
    (tau 0.01) with a constant epsilon of 0.1, as tf-agents' DQN tutorial explores.
    """
    return TrainConfig(total_steps=30_000, buffer_size=100_000, learning_starts=200, batch_size=32,
                       learning_rate=2.5e-3, train_frequency=32, gradient_steps=32, target_update=1, tau=0.01,
                       epsilon_start=0.1, epsilon_end=0.1, stop_return=475.0)


def smoke() -> TrainConfig:
    """For tests: 4,000 steps of the cartpole preset, seconds of training."""
    return dataclasses.replace(cartpole(), total_steps=4_000, eval_episodes=5, final_eval_episodes=5,
                               checkpoint_every=2_000, stop_return=None)


def pong() -> TrainConfig:
    """ALE/Pong-v5 as in the Nature paper's schedule, scaled as CleanRL's dqn_atari (10M frames
    is 2.5M agent steps at frame skip 4): a user's run of hours, not CI's."""
    return TrainConfig(env="ALE/Pong-v5", total_steps=2_500_000, buffer_size=100_000, learning_starts=80_000,
                       batch_size=32, learning_rate=1e-4, adam_epsilon=1.5e-4, max_grad_norm=None,
                       train_frequency=4, target_update=250, epsilon_end=0.01, epsilon_fraction=0.1,
                       double_dqn=False, eval_every=100_000, eval_episodes=3, final_eval_episodes=10,
                       eval_epsilon=0.05, checkpoint_every=100_000, checkpoint_replay=False,
                       jit_compile=False)  # XLA gains nothing for convolutions on a CPU (DESIGN.md); try it on a GPU


def breakout() -> TrainConfig:
    """ALE/Breakout-v5, as pong (Breakout needs its lives: episodes end when one is lost)."""
    return dataclasses.replace(pong(), env="ALE/Breakout-v5",
                               atari=AtariOptions(terminal_on_life_loss=True), total_steps=5_000_000)


def atari_smoke() -> TrainConfig:
    """For tests: a few hundred steps of ALE/Pong-v5 through the full preprocessing."""
    return dataclasses.replace(pong(), total_steps=400, buffer_size=400, learning_starts=200,
                               train_frequency=4, gradient_steps=1, target_update=20,
                               eval_every=400, eval_episodes=1, final_eval_episodes=1, checkpoint_every=200,
                               checkpoint_replay=True)


PRESETS = {"smoke": smoke, "cartpole": cartpole, "pong": pong, "breakout": breakout, "atari_smoke": atari_smoke}


class ReplayMemory:
    """Transitions in preallocated arrays; the oldest are overwritten when it is full."""

    FIELDS = ("observation", "action", "reward", "next_observation", "terminated")

    def __init__(self, capacity: int, observation_shape: tuple[int, ...], observation_dtype: str):
        self.capacity, self.size, self.position = capacity, 0, 0
        self.arrays = {
            "observation": np.zeros((capacity, *observation_shape), observation_dtype),
            "action": np.zeros(capacity, np.int32),
            "reward": np.zeros(capacity, np.float32),
            "next_observation": np.zeros((capacity, *observation_shape), observation_dtype),
            "terminated": np.zeros(capacity, np.float32),
        }

    def add(self, valid: np.ndarray | None = None, **batch: np.ndarray) -> None:
        """Append a batch of transitions (one row per environment), the rows where `valid` holds."""
        if valid is not None and not valid.all():
            batch = {name: value[valid] for name, value in batch.items()}
        count = len(batch["action"])
        rows = (self.position + np.arange(count)) % self.capacity
        for name in self.FIELDS:
            self.arrays[name][rows] = batch[name]
        self.position = (self.position + count) % self.capacity
        self.size = min(self.size + count, self.capacity)

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        """Uniformly drawn transitions, arrays of `shape` rows (with replacement)."""
        rows = rng.integers(0, self.size, size=shape)
        return {name: array[rows] for name, array in self.arrays.items()}

    def state(self) -> dict[str, np.ndarray]:
        """The memory as arrays, for a checkpoint."""
        return {"size": np.array(self.size), "position": np.array(self.position), **self.arrays}

    def load(self, state: dict[str, np.ndarray]) -> None:
        self.size, self.position = int(state["size"]), int(state["position"])
        for name in self.FIELDS:
            self.arrays[name][...] = state[name]


def epsilon_at(step: int, config: TrainConfig) -> float:
    """Linear decay from epsilon_start to epsilon_end over the first epsilon_fraction of training."""
    decay_steps = max(1.0, config.epsilon_fraction * config.total_steps)
    progress = min(1.0, step / decay_steps)
    return config.epsilon_start + progress * (config.epsilon_end - config.epsilon_start)


def make_update(online: QNetwork, target: QNetwork, optimizer: keras.optimizers.Optimizer, config: TrainConfig):
    """A tf.function taking K minibatches ([K, B, ...] per field) and taking K gradient steps.

    Each step regresses Q(s, a) on td_target with the target network; the target is
    updated after a step when the optimizer's step count reaches a multiple of
    `target_update` (copy, tau = 1) or after every step (Polyak, tau < 1). Returns the
    mean loss and mean Q(s, a) over the K steps, and the online network's new weights.
    """
    online_vars, target_vars = online.trainable_variables, target.trainable_variables

    # ALGO LOGIC: one gradient step on the TD loss, then the target-network update.
    def gradient_step(observation, action, reward, next_observation, terminated):
        batch = tf.shape(observation)[0]
        next_q_target = target(next_observation)
        with tf.GradientTape() as tape:
            # One pass over s and s' (Double DQN's online values of s' are not differentiated).
            q_both = online(tf.concat([observation, next_observation], axis=0))
            q_values, next_q_online = q_both[:batch], tf.stop_gradient(q_both[batch:])
            targets = td_target(reward, config.gamma * (1.0 - terminated), next_q_target,
                                next_q_online if config.double_dqn else None)
            loss = td_loss(q_values, action, targets, config.loss)
        optimizer.apply(tape.gradient(loss, online_vars), online_vars)
        if config.tau < 1:
            for t, o in zip(target_vars, online_vars):
                t.assign(config.tau * o + (1.0 - config.tau) * t)
        else:
            def copy():
                for t, o in zip(target_vars, online_vars):
                    t.assign(o)
                return tf.constant(True)
            tf.cond(optimizer.iterations % config.target_update == 0, copy, lambda: tf.constant(False))
        taken = tf.gather(q_values, action, axis=-1, batch_dims=1)
        return loss, tf.reduce_mean(taken)

    # No autograph (its source conversion costs about 0.5 s per trace): the loop is a tf.while_loop.
    @tf.function(jit_compile=config.jit_compile, autograph=False)
    def update(observation, action, reward, next_observation, terminated):
        steps = tf.shape(action)[0]

        def body(k, total_loss, total_q):
            loss, q = gradient_step(observation[k], action[k], reward[k], next_observation[k], terminated[k])
            return k + 1, total_loss + loss, total_q + q

        _, total_loss, total_q = tf.while_loop(lambda k, *_: k < steps, body,
                                               (tf.constant(0), tf.constant(0.0), tf.constant(0.0)))
        count = tf.cast(steps, tf.float32)
        # The new weights come back with the losses: reading them separately would cost a call each.
        return total_loss / count, total_q / count, {v.path: tf.identity(v) for v in online_vars}

    return update


class Actor:
    """Greedy actions for a batch of observations: in numpy from a snapshot of an MLP's
    weights (refresh with the weights each update returns), else through the network."""

    def __init__(self, online: QNetwork):
        self.online = online
        if online.config.torso == "mlp":
            self.refresh(snapshot(online.trainable_variables))
        else:
            greedy = tf.function(online.greedy_action)
            self.act = lambda observation: greedy(observation).numpy()

    def refresh(self, weights: dict) -> None:
        if self.online.config.torso == "mlp":
            self.act = NumpyQNetwork(self.online, weights).greedy


def q_network_config(config: TrainConfig, envs: gym.vector.VectorEnv) -> DQNConfig:
    """The Q-network's config with what the environment decides: observations and actions."""
    space = envs.single_observation_space
    return dataclasses.replace(
        config.model, observation_shape=tuple(int(d) for d in space.shape),
        observation_dtype="uint8" if space.dtype == np.uint8 else "float32",
        num_actions=discrete_actions(envs, config.env), torso="nature" if len(space.shape) == 3 else "mlp")


def train(config: TrainConfig, out: str | Path, *, progress: bool = True) -> dict:
    """Train (or resume) a DQN agent into the run directory `out`; return the final metrics (also in metrics.json)."""
    # Environments, seeds, and what they decide about the network.
    keras.utils.set_random_seed(config.seed)
    envs = make_vector_env(config.env, config.num_envs, config.atari)
    eval_env = make_env(config.env, config.atari, training=False)
    config = dataclasses.replace(config, model=q_network_config(config, envs))
    run = Run.open(out, config, family="dqn", kind="policy", model=config.model)
    if run.finished:
        return run.metrics

    # Networks, optimizer, replay memory, random state, checkpoints.
    online, target = QNetwork(config.model, name="online"), QNetwork(config.model, name="target")
    target.set_weights(online.get_weights())
    optimizer = keras.optimizers.Adam(config.learning_rate, epsilon=config.adam_epsilon,
                                      global_clipnorm=config.max_grad_norm)
    optimizer.build(online.trainable_variables)
    replay = ReplayMemory(config.buffer_size, config.model.observation_shape, config.model.observation_dtype)
    rng = np.random.default_rng(config.seed)
    checkpoints = run.checkpoints(config.checkpoint_every, model=online, target=target, optimizer=optimizer, rng=rng)
    update = make_update(online, target, optimizer, config)
    actor = Actor(online)
    evaluator = Evaluator(config, eval_env, lambda observation: actor.act(observation), config.seed, run,
                          config.eval_epsilon)
    rollout = VectorRollout(envs, config.seed)
    step, loss, q_mean = 0, float("nan"), float("nan")
    if (saved := checkpoints.restore()) is not None:
        step, loss, q_mean = saved.step, saved.state["loss"], saved.state["q"]
        evaluator.restore(saved.state["evaluator"])
        rollout.restore(saved, step)
        if "replay" in saved.arrays:
            replay.load(saved.arrays["replay"])
        actor.refresh(snapshot(online.trainable_variables))
    refill_until = step + config.learning_starts if replay.size == 0 else 0  # resumed without a replay memory

    def save() -> None:
        kept = rollout.checkpoint()
        checkpoints.save(step, state={"loss": float(loss), "q": float(q_mean), "evaluator": evaluator.state(),
                                      **kept["state"]},
                         arrays={**kept["arrays"], **({"replay": replay.state()} if config.checkpoint_replay else {})},
                         pickled=kept["pickled"])

    # Training loop.
    bar = tqdm(total=config.total_steps, initial=step, unit="step", disable=not progress,
               dynamic_ncols=True, desc=f"dqn {config.env}")
    while step < config.total_steps and not evaluator.stopped:
        # ALGO LOGIC: act epsilon-greedily, store the transition.
        epsilon = 1.0 if step < refill_until else epsilon_at(step, config)
        action = actor.act(rollout.observation)
        explore = rng.random(config.num_envs) < epsilon
        action = np.where(explore, rng.integers(0, config.model.num_actions, config.num_envs), action)
        t = rollout.step(action)
        replay.add(t.valid, observation=t.observation, action=t.action, reward=t.reward,
                   next_observation=t.next_observation, terminated=t.terminated)
        previous, step = step, step + config.num_envs
        bar.update(config.num_envs)

        # ALGO LOGIC: every train_frequency steps after learning_starts, gradient steps on replayed minibatches.
        if step > config.learning_starts and step >= refill_until and \
                step // config.train_frequency > previous // config.train_frequency:
            batch = replay.sample(rng, (config.gradient_steps, config.batch_size))
            loss, q_mean, weights = update(batch["observation"], batch["action"], batch["reward"],
                                           batch["next_observation"], batch["terminated"])
            actor.refresh(weights)

        evaluating = evaluator.due(previous, step, config.total_steps)
        if evaluating:
            episodes = rollout.episode_returns
            record = evaluator.evaluate(
                step, episodes=len(episodes), epsilon=epsilon, loss=float(loss), q=float(q_mean),
                train_return=float(np.mean(episodes[-20:])) if episodes else None)
            bar.set_postfix(eval=f"{record['eval_return']:.1f}", eps=f"{epsilon:.2f}")
        if evaluator.stopped or checkpoints.due(previous, step) or (evaluating and step >= config.total_steps):
            save()
    bar.close()

    # Final evaluation, metrics and pictures.
    metrics = evaluator.finish(step, config.total_steps, rollout.episode_returns, f"DQN on {config.env}",
                               env=config.env)
    rollout.envs.close()
    eval_env.close()
    return metrics


def main(argv: list[str] | None = None) -> int:
    metrics, out = run_command(argv, "dqn", "Train a DQN agent on a gymnasium environment with discrete actions.",
                               PRESETS, "cartpole", train, hidden=DERIVED)
    solved = metrics["first_solved_step"]
    print(f"final greedy return {metrics['final_eval_return']:.1f} +- {metrics['final_eval_return_std']:.1f} "
          f"over {metrics['final_eval_episodes']} episodes; {metrics['steps']} steps in "
          f"{metrics['train_seconds']:.1f} s of training"
          + (f"; first reached {metrics['reward_threshold']:g} at step {solved}" if solved else ""))
    print(f"run directory: {out} (metrics.json, learning_curves.png, tensorboard/)")
    return 0
