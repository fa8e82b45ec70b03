"""Environments as the training loops make them: an Atari game pickled mid-game (as a
checkpoint keeps it) continues exactly as the original does, sticky actions included."""
import pickle

import numpy as np

from training.envs import make_env, make_vector_env


def play(env, actions) -> list[np.ndarray]:
    return [np.concatenate([np.ravel(part) for part in env.step(action)[:4]]) for action in actions]


def test_an_atari_game_pickled_mid_game_continues_exactly():
    env = make_env("ALE/Pong-v5")  # ALE with sticky actions, frame skip, 84x84 grey, 4 frames, clipped rewards
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    play(env, rng.integers(0, 6, 50))
    copy = pickle.loads(pickle.dumps(env))
    actions = rng.integers(0, 6, 100)  # changing actions: a sticky action's repeat depends on the emulator's rng
    for original, restored in zip(play(env, actions), play(copy, actions)):
        np.testing.assert_array_equal(original, restored)


def test_vector_environments_pickle_mid_episode():
    envs = make_vector_env("CartPole-v1", 3)
    envs.reset(seed=0)
    rng = np.random.default_rng(1)
    for _ in range(30):
        envs.step(rng.integers(0, 2, 3))
    copy = pickle.loads(pickle.dumps(envs))
    actions = rng.integers(0, 2, (200, 3))  # long enough for episodes to end and reset
    for original, restored in zip(play(envs, actions), play(copy, actions)):
        np.testing.assert_array_equal(original, restored)
