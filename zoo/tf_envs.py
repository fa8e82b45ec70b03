"""CartPole-v1, Acrobot-v1 and Pendulum-v1 as pure TensorFlow functions, batched and float32,
for training runs compiled into one graph (tf.function, tf.while_loop, XLA).

    env = tf_envs.make("CartPole-v1")
    state, observation = env.reset(seed)        # seed [*b] int64: one environment per row
    state, observation, reward, terminated, truncated = env.step(state, action)

The equations, constants, start-state distributions, termination and time limits are those of
gymnasium 1.4's classic-control environments wrapped in the TimeLimit of their registration
(500 steps for CartPole and Acrobot, 200 for Pendulum); `observation_space` and
`action_space` are gymnasium's own, so a policy network is built from them as from
`gym.make(id)`. Everything is computed in float32 (gymnasium simulates in float64 and casts
the observation), and the batch shape `[*b]` may be anything (e.g. `[seeds, envs]`).

**Auto-reset.** `step` ends an episode and begins the next one in the same call: where
`terminated | truncated`, `observation` is the first observation of the new episode, and
`state.final_observation` is the observation the step reached before that reset, i.e. the
last observation of the ended episode (in the other rows it equals `observation`). A
learner bootstraps a truncated episode from `state.final_observation`, and a replay buffer
stores it as every transition's next observation. This is gymnasium's "same-step"
autoreset (its `info["final_obs"]`), not the vector environments' default "next-step" mode
that spends one ignored action per episode.

**Randomness.** Each row carries its own seed, and its k-th episode starts from draws k of its
own counter-based stream (`uniform_rows`), so a row's episodes do not depend on the rest of
the batch: 32 seeds x 16 environments in one tensor give, row by row, what each row would
give alone. (TensorFlow's `tf.random.stateless_*` take one seed per call, and vectorizing
them over seeds falls back to a loop, hence a per-row generator.)

**Deviation, unobservable.** Pendulum's angle grows without bound in gymnasium (its state
is never wrapped; only the cost normalizes it); here it is wrapped to [-pi, pi) after every
step, which changes neither observation (cos, sin) nor reward and keeps float32's precision
(about 2e-7 rad near pi, against 8e-6 at the 80 rad a 200-step episode can reach).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import tensorflow as tf

# SplitMix64 (Steele, Lea & Flood, 2014): value i of the stream seeded s is mix(s' + i * GOLDEN)
# with s' = mix(s), a counter-based generator that passes BigCrush.
_GOLDEN = 0x9E3779B97F4A7C15
_MIX_1, _MIX_2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _mix64(z: tf.Tensor) -> tf.Tensor:
    """SplitMix64's finalizer: a bijection of uint64 whose output bits all depend on every input bit."""
    z = (z ^ tf.bitwise.right_shift(z, tf.constant(30, tf.uint64))) * tf.constant(_MIX_1, tf.uint64)
    z = (z ^ tf.bitwise.right_shift(z, tf.constant(27, tf.uint64))) * tf.constant(_MIX_2, tf.uint64)
    return z ^ tf.bitwise.right_shift(z, tf.constant(31, tf.uint64))


def uniform_rows(seed: tf.Tensor, counter: tf.Tensor, n: int) -> tf.Tensor:
    """[*b, n] float32 in [0, 1): draws counter*n, ..., counter*n + n-1 of each row's stream.

    `seed` [*b] int64 names the row's stream and `counter` [*b] (any integer type) is which
    block of n draws to take; the same (seed, counter) gives the same numbers whatever the
    batch holds. Each number keeps the top 24 bits of a 64-bit draw (exact in float32).
    """
    stream = _mix64(tf.cast(seed, tf.uint64))  # neighbouring seeds -> unrelated streams
    first = tf.cast(counter, tf.uint64)[..., None] * n  # [*b, 1]
    index = first + tf.constant(np.arange(1, n + 1, dtype=np.uint64))  # [*b, n]
    bits = _mix64(stream[..., None] + index * tf.constant(_GOLDEN, tf.uint64))
    return tf.cast(tf.bitwise.right_shift(bits, tf.constant(40, tf.uint64)), tf.float32) * 2.0 ** -24


class EnvState(NamedTuple):
    """A batch of environments: a nest of tensors that tf.while_loop carries."""

    physics: tf.Tensor
    """[*b, n] float32: the simulator's state, what gymnasium keeps in env.unwrapped.state."""
    steps: tf.Tensor
    """[*b] int32: steps taken in the current episode (the TimeLimit's counter)."""
    episodes: tf.Tensor
    """[*b] int32: episodes begun so far; episode k starts from block k of the row's stream."""
    seed: tf.Tensor
    """[*b] int64: the row's random stream."""
    final_observation: tf.Tensor
    """[*b, *obs] float32: what the last step reached, before any reset (see the module docstring)."""


class TFEnv:
    """An environment as pure functions of tensors; subclasses give its physics.

    A subclass sets `id`, `max_episode_steps`, `observation_space`, `action_space` and
    `start_high` (episodes start uniformly in [-start_high, start_high] per physics
    component) and defines `observe(physics)` and `transition(physics, action) ->
    (next_physics, reward, terminated)`, one step of gymnasium's `step` without the time
    limit.
    """

    id: str
    max_episode_steps: int
    observation_space: gym.spaces.Box
    action_space: gym.spaces.Space
    start_high: tuple[float, ...]

    def observe(self, physics: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def transition(self, physics: tf.Tensor, action: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        raise NotImplementedError

    def start(self, seed: tf.Tensor, episode: tf.Tensor) -> tf.Tensor:
        """[*b, n] the physics episode `episode` of each row starts from (uniform, as gymnasium's reset)."""
        high = tf.constant(self.start_high, tf.float32)
        return -high + 2.0 * high * uniform_rows(seed, episode, len(self.start_high))

    def reset(self, seed: tf.Tensor) -> tuple[EnvState, tf.Tensor]:
        """A new batch, one environment per row of `seed` [*b] (int64): (state, observation [*b, *obs])."""
        seed = tf.cast(seed, tf.int64)
        episodes = tf.zeros_like(seed, tf.int32)
        physics = self.start(seed, episodes)
        observation = self.observe(physics)
        state = EnvState(physics=physics, steps=tf.zeros_like(episodes), episodes=episodes + 1, seed=seed,
                         final_observation=observation)
        return state, observation

    def step(self, state: EnvState, action: tf.Tensor
             ) -> tuple[EnvState, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        """One step of every row: (state, observation, reward [*b], terminated [*b], truncated [*b]).

        Rows whose episode ends (terminated or truncated; both at once when the time limit
        falls on a terminal step, as gymnasium's TimeLimit reports it) start their next
        episode: `observation` is its first, `state.final_observation` the ended one's last.
        """
        next_physics, reward, terminated = self.transition(state.physics, action)
        steps = state.steps + 1
        truncated = steps >= self.max_episode_steps
        done = terminated | truncated
        reached = self.observe(next_physics)
        fresh = self.start(state.seed, state.episodes)  # drawn in every row, used where done
        physics = tf.where(done[..., None], fresh, next_physics)
        observation = tf.where(done[..., None], self.observe(fresh), reached)
        state = EnvState(physics=physics, steps=tf.where(done, 0, steps),
                         episodes=state.episodes + tf.cast(done, tf.int32), seed=state.seed, final_observation=reached)
        return state, observation, reward, terminated, truncated


class CartPole(TFEnv):
    """gymnasium's CartPoleEnv (Barto, Sutton & Anderson, 1983), explicit Euler, reward 1 a step
    (the terminal step included). Physics = observation = [x, x_dot, theta, theta_dot]; actions
    0 (push left) and 1 (push right); terminated when |x| > 2.4 or |theta| > 12 degrees."""

    id = "CartPole-v1"
    max_episode_steps = 500
    start_high = (0.05,) * 4
    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    total_mass = masspole + masscart
    polemass_length = masspole * length  # length is half the pole's
    theta_threshold = 12 * 2 * math.pi / 360
    x_threshold = 2.4
    _high = np.array([x_threshold * 2, np.inf, theta_threshold * 2, np.inf], np.float32)
    observation_space = gym.spaces.Box(-_high, _high, dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def observe(self, physics):
        return physics

    def transition(self, physics, action):
        x, x_dot, theta, theta_dot = tf.unstack(physics, axis=-1)
        force = tf.where(tf.equal(action, 1), self.force_mag, -self.force_mag)
        costheta, sintheta = tf.cos(theta), tf.sin(theta)
        temp = (force + self.polemass_length * tf.square(theta_dot) * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * tf.square(costheta) / self.total_mass))
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        x, x_dot = x + self.tau * x_dot, x_dot + self.tau * xacc
        theta, theta_dot = theta + self.tau * theta_dot, theta_dot + self.tau * thetaacc
        terminated = (tf.abs(x) > self.x_threshold) | (tf.abs(theta) > self.theta_threshold)
        return tf.stack([x, x_dot, theta, theta_dot], axis=-1), tf.ones_like(x), terminated


def _wrap(x: tf.Tensor, low: float, high: float) -> tf.Tensor:
    """gymnasium's acrobot `wrap`: add or subtract (high - low) until low <= x <= high."""
    width = high - low
    x = x - width * tf.math.ceil(tf.maximum(x - high, 0.0) / width)
    return x + width * tf.math.ceil(tf.maximum(low - x, 0.0) / width)


class Acrobot(TFEnv):
    """gymnasium's AcrobotEnv (Sutton & Barto's "book" dynamics, no torque noise): one RK4 step of
    dt = 0.2 s, angles wrapped to [-pi, pi], velocities clipped to 4 pi and 9 pi; reward -1 a
    step, 0 on the step that lifts the tip above the bar (-cos th1 - cos(th1 + th2) > 1), which
    terminates. Physics = [th1, th2, dth1, dth2]; observation = [cos th1, sin th1, cos th2,
    sin th2, dth1, dth2]; actions 0, 1, 2 apply torque -1, 0, +1."""

    id = "Acrobot-v1"
    max_episode_steps = 500
    start_high = (0.1,) * 4
    dt = 0.2
    m1 = m2 = 1.0  # link masses [kg]
    l1 = 1.0  # length of link 1 [m]
    lc1 = lc2 = 0.5  # positions of the links' centres of mass [m]
    moment = 1.0  # moment of inertia of each link
    g = 9.8
    max_vel_1, max_vel_2 = 4 * math.pi, 9 * math.pi
    _high = np.array([1.0, 1.0, 1.0, 1.0, max_vel_1, max_vel_2], np.float32)
    observation_space = gym.spaces.Box(-_high, _high, dtype=np.float32)
    action_space = gym.spaces.Discrete(3)

    def observe(self, physics):
        th1, th2, dth1, dth2 = tf.unstack(physics, axis=-1)
        return tf.stack([tf.cos(th1), tf.sin(th1), tf.cos(th2), tf.sin(th2), dth1, dth2], axis=-1)

    def derivatives(self, physics: tf.Tensor, torque: tf.Tensor) -> tf.Tensor:
        """d/dt [th1, th2, dth1, dth2]: gymnasium's `_dsdt` with book_or_nips = "book"."""
        th1, th2, dth1, dth2 = tf.unstack(physics, axis=-1)
        m1, m2, l1, lc1, lc2, i1, i2, g = self.m1, self.m2, self.l1, self.lc1, self.lc2, self.moment, self.moment, self.g
        d1 = m1 * lc1 ** 2 + m2 * (l1 ** 2 + lc2 ** 2 + 2 * l1 * lc2 * tf.cos(th2)) + i1 + i2
        d2 = m2 * (lc2 ** 2 + l1 * lc2 * tf.cos(th2)) + i2
        phi2 = m2 * lc2 * g * tf.cos(th1 + th2 - math.pi / 2.0)
        phi1 = (-m2 * l1 * lc2 * dth2 ** 2 * tf.sin(th2) - 2 * m2 * l1 * lc2 * dth2 * dth1 * tf.sin(th2)
                + (m1 * lc1 + m2 * l1) * g * tf.cos(th1 - math.pi / 2) + phi2)
        ddth2 = ((torque + d2 / d1 * phi1 - m2 * l1 * lc2 * dth1 ** 2 * tf.sin(th2) - phi2)
                 / (m2 * lc2 ** 2 + i2 - d2 ** 2 / d1))
        ddth1 = -(d2 * ddth2 + phi1) / d1
        return tf.stack([dth1, dth2, ddth1, ddth2], axis=-1)

    def transition(self, physics, action):
        torque = tf.cast(action, tf.float32) - 1.0  # AVAIL_TORQUE = [-1, 0, +1][action]
        dt = self.dt
        k1 = self.derivatives(physics, torque)
        k2 = self.derivatives(physics + dt / 2 * k1, torque)
        k3 = self.derivatives(physics + dt / 2 * k2, torque)
        k4 = self.derivatives(physics + dt * k3, torque)
        th1, th2, dth1, dth2 = tf.unstack(physics + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4), axis=-1)
        th1, th2 = _wrap(th1, -math.pi, math.pi), _wrap(th2, -math.pi, math.pi)
        dth1 = tf.clip_by_value(dth1, -self.max_vel_1, self.max_vel_1)
        dth2 = tf.clip_by_value(dth2, -self.max_vel_2, self.max_vel_2)
        terminated = -tf.cos(th1) - tf.cos(th2 + th1) > 1.0
        reward = tf.where(terminated, 0.0, -1.0)
        return tf.stack([th1, th2, dth1, dth2], axis=-1), reward, terminated


def _angle_normalize(x: tf.Tensor) -> tf.Tensor:
    """gymnasium's pendulum `angle_normalize`, ((x + pi) mod 2 pi) - pi, written so that an angle
    already in [-pi, pi) comes back exact (float32's x + pi would round it by up to 2.4e-7)."""
    return x - 2 * math.pi * tf.floor((x + math.pi) / (2 * math.pi))


class Pendulum(TFEnv):
    """gymnasium's PendulumEnv (g = 10): semi-implicit Euler with dt = 0.05, the speed clipped to 8,
    the torque to [-2, 2]; reward -(angle^2 + 0.1 speed^2 + 0.001 torque^2) of the state
    *before* the step; never terminates. Physics = [theta, theta_dot] (theta wrapped, see the
    module docstring); observation = [cos theta, sin theta, theta_dot]; action [*b, 1]."""

    id = "Pendulum-v1"
    max_episode_steps = 200
    start_high = (math.pi, 1.0)
    max_speed, max_torque, dt, g, m, l = 8.0, 2.0, 0.05, 10.0, 1.0, 1.0
    observation_space = gym.spaces.Box(-np.array([1.0, 1.0, max_speed], np.float32),
                                       np.array([1.0, 1.0, max_speed], np.float32), dtype=np.float32)
    action_space = gym.spaces.Box(-max_torque, max_torque, shape=(1,), dtype=np.float32)

    def observe(self, physics):
        theta, theta_dot = tf.unstack(physics, axis=-1)
        return tf.stack([tf.cos(theta), tf.sin(theta), theta_dot], axis=-1)

    def transition(self, physics, action):
        th, thdot = tf.unstack(physics, axis=-1)
        u = tf.clip_by_value(tf.cast(action, tf.float32)[..., 0], -self.max_torque, self.max_torque)
        costs = _angle_normalize(th) ** 2 + 0.1 * thdot ** 2 + 0.001 * u ** 2
        newthdot = thdot + (3 * self.g / (2 * self.l) * tf.sin(th) + 3.0 / (self.m * self.l ** 2) * u) * self.dt
        newthdot = tf.clip_by_value(newthdot, -self.max_speed, self.max_speed)
        newth = _angle_normalize(th + newthdot * self.dt)
        return tf.stack([newth, newthdot], axis=-1), -costs, tf.zeros_like(th, tf.bool)


ENVIRONMENTS: dict[str, type[TFEnv]] = {env.id: env for env in (CartPole, Acrobot, Pendulum)}


def make(env_id: str) -> TFEnv:
    """The TensorFlow version of gymnasium's `env_id`; a ValueError names the ones there are."""
    if env_id not in ENVIRONMENTS:
        raise ValueError(f"no TensorFlow version of environment {env_id!r}; there are {', '.join(ENVIRONMENTS)}")
    return ENVIRONMENTS[env_id]()
