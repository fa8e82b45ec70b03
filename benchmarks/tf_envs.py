"""Steps per second of the TensorFlow environments (zoo/tf_envs.py) stepped inside one
tf.function by a tf.while_loop, against gymnasium's own environments stepped from Python.

    .venv/bin/python benchmarks/tf_envs.py [--envs CartPole-v1,Acrobot-v1,Pendulum-v1] [--repeats 3]

For each environment: a batch of 1 and of 32 x 16 (seeds x environments), each with and
without XLA (`jit_compile`). The loop acts with a fixed controller of the observation (one
comparison: the environment's own cost dominates) and accumulates the rewards. Reported:
the first call's seconds (tracing, and XLA's compile, included) and the median environment
steps per second of `--repeats` further calls. gymnasium's rows: one environment stepped in a
Python loop, and for CartPole its numpy-vectorized CartPoleVectorEnv with 512 environments.

    .venv/bin/python benchmarks/tf_envs.py --agreement

measures instead how long whole trajectories agree with gymnasium's (the figures quoted in
tests/zoo/test_tf_envs.py and docs/environments.md): for seeds 0-9, 1,000 steps each, ours
and gymnasium's own float64 run with its state rounded to float32 after every step, each
against gymnasium, from the same start states with the same actions; printed: the step of
each episode at which the first departure beyond 1e-4 comes (counted from the episode's
start; the comparison stops there), and how many episodes agree whole.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from zoo import tf_envs  # noqa: E402

BATCHES = {"1": [1], "32x16": [32, 16]}
STEPS = {"1": 20_000, "32x16": 2_000}  # loop iterations per call


def act(env_id: str, observation: tf.Tensor) -> tf.Tensor:
    """A fixed, cheap controller of the observation."""
    if env_id == "CartPole-v1":
        return tf.cast(observation[..., 2] + 0.5 * observation[..., 3] > 0, tf.int32)
    if env_id == "Acrobot-v1":
        return tf.where(observation[..., 5] > 0, 2, 0)
    return 2.0 * tf.sign(observation[..., 2:])


def loop(env_id: str, steps: int, jit_compile: bool):
    """run(seed) -> (summed rewards [*b], final physics) after `steps` steps, inside one tf.function.

    Both are returned: XLA and Grappler drop whatever does not reach an output (CartPole's
    rewards are all 1, so its summed rewards alone would let them drop the physics).
    """
    env = tf_envs.make(env_id)

    @tf.function(jit_compile=jit_compile)
    def run(seed):
        state, observation = env.reset(seed)

        def body(t, state, observation, total):
            state, observation, reward, _, _ = env.step(state, act(env_id, observation))
            return t + 1, state, observation, total + reward

        _, state, _, total = tf.while_loop(lambda t, *_: t < steps, body,
                                           (0, state, observation, tf.zeros_like(seed, tf.float32)))
        return total, state.physics

    return run


def measure_tf(env_id: str, batch: str, jit_compile: bool, repeats: int) -> tuple[float, float]:
    """(first call's seconds, median steps/s of the next `repeats` calls)."""
    shape, steps = BATCHES[batch], STEPS[batch]
    run = loop(env_id, steps, jit_compile)
    seed = tf.reshape(tf.range(int(np.prod(shape)), dtype=tf.int64), shape)
    started = time.perf_counter()
    [x.numpy() for x in run(seed)]
    first = time.perf_counter() - started
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        [x.numpy() for x in run(seed)]
        rates.append(np.prod(shape) * steps / (time.perf_counter() - started))
    return first, statistics.median(rates)


def measure_gymnasium(env_id: str, repeats: int, steps: int = 20_000) -> float:
    """Median steps/s of one gymnasium environment (TimeLimit and all) stepped from Python."""
    env = gym.make(env_id)
    rates = []
    for repeat in range(repeats):
        env.reset(seed=repeat)
        sample = env.action_space.sample
        started = time.perf_counter()
        for _ in range(steps):
            _, _, terminated, truncated, _ = env.step(sample())
            if terminated or truncated:
                env.reset()
        rates.append(steps / (time.perf_counter() - started))
    return statistics.median(rates)


def measure_gymnasium_vector(repeats: int, num_envs: int = 512, steps: int = 2_000) -> float:
    """Median steps/s of gymnasium's numpy CartPoleVectorEnv (its autoreset included)."""
    envs = gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="vector_entry_point")
    rates = []
    for repeat in range(repeats):
        envs.reset(seed=repeat)
        actions = np.zeros(num_envs, np.int64)
        started = time.perf_counter()
        for t in range(steps):
            envs.step(actions ^ (t & 1))
        rates.append(num_envs * steps / (time.perf_counter() - started))
    return statistics.median(rates)


def departures(env_id: str, kind: str, seeds: range = range(10), tolerance: float = 1e-4) -> None:
    """Print, for ours and for float32-rounded gymnasium, where episodes first depart from gymnasium."""
    from tests.zoo.test_tf_envs import gymnasium_run, tf_trajectory

    env, found = tf_envs.make(env_id), {"ours": ([], 0), "gymnasium, float32 state": ([], 0)}
    for seed in seeds:
        starts = env.start(tf.fill([100], tf.constant(seed, tf.int64)), tf.range(100)).numpy()
        theirs = gymnasium_run(env_id, [kind], 1000, seed, starts)
        ours = {k: v.numpy() for k, v in tf_trajectory(env_id)(tf.constant(seed, tf.int64), theirs["action"]).items()}
        rounded = gymnasium_run(env_id, [kind], 1000, seed, starts, actions=theirs["action"], float32_state=True)
        for name, other in (("ours", ours), ("gymnasium, float32 state", rounded)):
            error = np.maximum(np.abs(other["observation"] - theirs["observation"]).max(axis=1),
                               np.abs(other["reward"] - theirs["reward"]))
            bad = (error > tolerance) | (other["terminated"] != theirs["terminated"]) | (
                other["truncated"] != theirs["truncated"])
            first = np.flatnonzero(bad)[:1]
            ends = np.flatnonzero(theirs["terminated"] | theirs["truncated"])
            whole = int((ends < first[0]).sum()) if len(first) else len(ends)
            steps, agreed = found[name]
            found[name] = (steps + [int(theirs["index"][i]) for i in first], agreed + whole)
    for name, (steps, whole) in found.items():
        print(f"{env_id} {kind}, {name}: departs at steps {sorted(steps)} of an episode; {whole} episodes agree whole")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default=",".join(tf_envs.ENVIRONMENTS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--agreement", action="store_true", help="how long whole trajectories agree with gymnasium's")
    args = parser.parse_args(argv)
    if args.agreement:
        for env_id, kind in (("CartPole-v1", "random"), ("CartPole-v1", "balance"), ("Acrobot-v1", "random"),
                             ("Acrobot-v1", "pump"), ("Pendulum-v1", "random")):
            departures(env_id, kind)
        return
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print(f"{'environment':<13} {'batch':<7} {'XLA':<4} {'first call s':>12} {'steps/s':>12}")
    for env_id in args.envs.split(","):
        for batch in BATCHES:
            for jit_compile in (False, True):
                first, rate = measure_tf(env_id, batch, jit_compile, args.repeats)
                print(f"{env_id:<13} {batch:<7} {'on' if jit_compile else 'off':<4} {first:>12.1f} {rate:>12,.0f}",
                      flush=True)
        print(f"{env_id:<13} {'1':<7} {'gymnasium, Python loop':<17} {measure_gymnasium(env_id, args.repeats):>12,.0f}")
        if env_id == "CartPole-v1":
            print(f"{env_id:<13} {'512':<7} {'gymnasium, numpy vector':<17} "
                  f"{measure_gymnasium_vector(args.repeats):>11,.0f}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
