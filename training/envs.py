"""Gymnasium environments for the RL agents: vector tasks as registered, Atari through
ale-py with the standard DQN preprocessing, and greedy evaluation episodes.

Atari (Mnih et al., 2015; Machado et al., 2018), in wrapper order:
``ALE/<Game>-v5`` with frameskip=1 (sticky actions 0.25, the v5 default; pickled with the
emulator's random state) -> RecordEpisodeStatistics (game score, before any clipping) -> AtariPreprocessing (up to 30
no-op starts, max over the last two of every 4 frames, 84x84 grey, optional terminal on
life loss) -> the last 4 frames stacked as channels [84, 84, 4] uint8 -> rewards clipped to
their sign (training only).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import gymnasium as gym
import numpy as np

import zoo.worlds  # noqa: F401  registers ShortCorridor-v0, AliasedGridWorld-v0, StarGrid-v0
from rundir import UserError


@dataclasses.dataclass(frozen=True)
class AtariOptions:
    """Preprocessing of ALE/* environments (ignored for the others)."""

    frame_skip: int = 4
    """Agent steps every this many frames, repeating its action (the max of the last two frames is observed)."""
    noop_max: int = 30
    """Up to this many no-op actions at the start of an episode (random start states)."""
    frame_stack: int = 4
    """Frames stacked as channels of one observation."""
    terminal_on_life_loss: bool = False
    """End training episodes when a life is lost (the Nature paper did; evaluation always plays whole games)."""
    clip_rewards: bool = True
    """Train on the sign of each reward (scores differ by orders of magnitude across games)."""


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/")


def make_env(env_id: str, atari: AtariOptions = AtariOptions(), *, training: bool = True) -> gym.Env:
    """One environment that records episode returns in info['episode'] (raw scores for Atari)."""
    if is_atari(env_id):
        import ale_py

        gym.register_envs(ale_py)
    try:
        env = gym.make(env_id, frameskip=1) if is_atari(env_id) else gym.make(env_id)
    except gym.error.Error as error:
        raise UserError(f"cannot make environment {env_id!r}: {error}") from None
    if is_atari(env_id):
        env = PicklesWithRandomState(env)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    if is_atari(env_id):
        env = gym.wrappers.AtariPreprocessing(
            env, noop_max=atari.noop_max, frame_skip=atari.frame_skip, screen_size=84,
            terminal_on_life_loss=atari.terminal_on_life_loss and training, grayscale_obs=True)
        env = gym.wrappers.FrameStackObservation(env, atari.frame_stack)
        channels_last = gym.spaces.Box(0, 255, (84, 84, atari.frame_stack), np.uint8)
        env = gym.wrappers.TransformObservation(env, frames_last, channels_last)
        if atari.clip_rewards and training:
            env = gym.wrappers.TransformReward(env, np.sign)
    return env


class PicklesWithRandomState(gym.Wrapper):
    """An ALE environment that pickles with its emulator's random state, which ale_py's own
    pickling leaves out: sticky actions then repeat as they would have, so a checkpointed
    Atari run continues exactly (training/rl.py pickles the environments)."""

    def __getstate__(self) -> dict:
        return {**self.__dict__, "ale_state": self.env.unwrapped.clone_state(include_rng=True)}

    def __setstate__(self, state: dict) -> None:
        ale_state = state.pop("ale_state")
        self.__dict__.update(state)
        self.env.unwrapped.restore_state(ale_state)


def frames_last(frames: np.ndarray) -> np.ndarray:
    """[frames, 84, 84] -> [84, 84, frames]: stacked frames as channels (a module function, so environments pickle)."""
    return np.moveaxis(frames, 0, -1)


def make_vector_env(env_id: str, num_envs: int, atari: AtariOptions = AtariOptions(), *,
                    native: bool = False) -> gym.vector.VectorEnv:
    """`num_envs` copies stepped together; an episode that ends is reset on the next step
    (gymnasium's default next-step autoreset: that step's action is ignored).

    `native` takes the environment's own numpy-vectorized version where it has one
    (CartPole: about 9 us per environment step for 8 copies, against about 30 us for a
    SyncVectorEnv of wrapped copies); episode returns are recorded either way.
    """
    if native and not is_atari(env_id):
        try:
            envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point")
        except (gym.error.Error, ValueError):
            pass
        else:
            return gym.wrappers.vector.RecordEpisodeStatistics(envs)
    return gym.vector.SyncVectorEnv([functools.partial(make_env, env_id, atari)] * num_envs)


def discrete_actions(env: gym.Env | gym.vector.VectorEnv, env_id: str) -> int:
    """The number of actions of a discrete action space; a clear error for other spaces."""
    space = getattr(env, "single_action_space", env.action_space)
    if not isinstance(space, gym.spaces.Discrete):
        raise UserError(f"{env_id} has a {type(space).__name__} action space; this agent needs Discrete actions")
    return int(space.n)


def play_episodes(env: gym.Env, act: Callable[[np.ndarray], np.ndarray], episodes: int, seed: int,
                  epsilon: float = 0.0, rng: np.random.Generator | None = None) -> list[float]:
    """Returns of `episodes` whole episodes, the k-th reset with seed + k.

    `act` maps a batch of one observation to its action; with probability `epsilon` a
    uniformly random action is taken instead. `env` comes from make_env(training=False):
    whole games, the environment's own scores.
    """
    rng = rng or np.random.default_rng(seed)
    returns = []
    for episode in range(episodes):
        observation, _ = env.reset(seed=seed + episode)
        while True:
            if epsilon and rng.random() < epsilon:
                action = env.action_space.sample()
            else:
                action = act(observation[None])[0]
            observation, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                returns.append(float(info["episode"]["r"]))
                break
    return returns
