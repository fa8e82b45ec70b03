"""What the CartPole benchmarks share: one evaluation protocol for every agent, a training
clock that pauses for it, one subprocess per run, the summary table and the picture.

Every agent is evaluated the same way: 10 greedy episodes of gymnasium's CartPole-v1 every
1,000 environment steps, with its training clock paused. Reported per run: training wall
seconds and environment steps until an evaluation first reaches 475, steps per second, and
the final greedy average over 20 fresh episodes.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_PYTHON = ROOT / ".venv-tf-agents" / "bin" / "python"
EVAL_EVERY, EVAL_EPISODES, FINAL_EPISODES, SOLVED = 1_000, 10, 20, 475.0


class Clock:
    """Training time with evaluations paused; the evaluation record of one run."""

    def __init__(self, act, seed: int):
        import gymnasium as gym

        self.act, self.seed = act, seed
        self.env = gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1"))
        self.history: list[dict] = []
        self.train_seconds, self.started = 0.0, time.perf_counter()
        self.next_eval = EVAL_EVERY

    def returns(self, episodes: int, seed: int) -> list[float]:
        from training.envs import play_episodes

        return play_episodes(self.env, self.act, episodes, seed)

    def evaluate(self, step: int) -> None:
        self.train_seconds += time.perf_counter() - self.started
        mean = float(sum(r := self.returns(EVAL_EPISODES, self.seed + 10_000)) / len(r))
        self.history.append({"step": step, "train_seconds": self.train_seconds, "eval_return": mean})
        self.started = time.perf_counter()

    def catch_up(self, step: int) -> None:
        """Evaluate at each multiple of EVAL_EVERY up to `step` not evaluated yet (an agent
        that steps many environments at once, or collects whole episodes, crosses several)."""
        while self.next_eval <= step:
            self.evaluate(self.next_eval)
            self.next_eval += EVAL_EVERY

    def result(self, agent: str, steps: int) -> dict:
        final = self.returns(FINAL_EPISODES, self.seed + 20_000)
        solved = next((r for r in self.history if r["eval_return"] >= SOLVED), None)
        return {"agent": agent, "seed": self.seed, "steps": steps, "train_seconds": self.train_seconds,
                "steps_per_second": steps / self.train_seconds,
                "first_475_step": solved and solved["step"], "first_475_seconds": solved and solved["train_seconds"],
                "final_return": sum(final) / len(final), "curve": [round(r["eval_return"]) for r in self.history]}


def train_ours(agent: str, train, config, seed: int) -> dict:
    """Train one of our presets (`train(config, run_dir)`, a training module's train) with this
    protocol's evaluation schedule and the given seed; its record."""
    run_dir = Path(f"/tmp/{agent}-benchmark-{seed}-{os.getpid()}")
    config = dataclasses.replace(config, seed=seed, eval_every=EVAL_EVERY, eval_episodes=EVAL_EPISODES,
                                 final_eval_episodes=FINAL_EPISODES)
    train(config, run_dir, progress=False)
    return ours(agent, run_dir, seed)


def ours(agent: str, run_dir: Path, seed: int) -> dict:
    """The record of one of our runs, from its run directory (history.json and metrics.json)."""
    history = json.loads((run_dir / "history.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    solved = next((r for r in history if r["eval_return"] >= SOLVED), None)
    return {"agent": agent, "seed": seed, "steps": metrics["steps"], "train_seconds": metrics["train_seconds"],
            "steps_per_second": metrics["steps_per_second"],
            "first_475_step": solved and solved["step"], "first_475_seconds": solved and solved["train_seconds"],
            "final_return": metrics["final_eval_return"], "curve": [round(r["eval_return"]) for r in history]}


def sb3_run(model, seed: int, steps: int) -> dict:
    """Train a Stable-Baselines3 model for `steps` environment steps, evaluating its
    deterministic policy on the protocol's schedule (at each multiple of EVAL_EVERY its
    environments cross); the run's record."""
    from stable_baselines3.common.callbacks import BaseCallback

    clock = Clock(lambda observation: model.predict(observation, deterministic=True)[0], seed)

    class Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            clock.catch_up(self.num_timesteps)
            return True

    clock.started = time.perf_counter()
    model.learn(steps, callback=Evaluate())
    clock.train_seconds += time.perf_counter() - clock.started
    return clock.result("sb3", steps)


def tf_agents_cartpole(seed: int, num_envs: int = 1):
    """gymnasium's CartPole-v1 as a tf-agents TFPyEnvironment (tf-agents knows only gym); with
    num_envs > 1, that many copies (seeds seed, seed + 1, ...) stepped as one batch in this process."""
    import gymnasium as gym
    import numpy as np
    from tf_agents.environments import batched_py_environment, py_environment, tf_py_environment
    from tf_agents.specs import array_spec
    from tf_agents.trajectories import time_step as ts

    class GymnasiumEnv(py_environment.PyEnvironment):
        """gymnasium's CartPole-v1 as a tf-agents PyEnvironment (tf-agents knows only gym)."""

        def __init__(self, seed: int):
            super().__init__(handle_auto_reset=True)  # reset after a LAST step, as gym wrappers do
            self.env, self.seed, self.first = gym.make("CartPole-v1"), seed, True
            self._observation_spec = array_spec.ArraySpec((4,), np.float32, "observation")
            self._action_spec = array_spec.BoundedArraySpec((), np.int64, 0, 1, "action")

        def observation_spec(self):
            return self._observation_spec

        def action_spec(self):
            return self._action_spec

        def _reset(self):
            observation, _ = self.env.reset(seed=self.seed if self.first else None)
            self.first = False
            return ts.restart(observation.astype(np.float32))

        def _step(self, action):
            observation, reward, terminated, truncated, _ = self.env.step(int(np.asarray(action).reshape(-1)[0]))
            observation, reward = observation.astype(np.float32), np.float32(reward)
            if terminated:
                return ts.termination(observation, reward)
            if truncated:
                return ts.truncation(observation, reward)
            return ts.transition(observation, reward)

    if num_envs == 1:
        return tf_py_environment.TFPyEnvironment(GymnasiumEnv(seed))
    return tf_py_environment.TFPyEnvironment(batched_py_environment.BatchedPyEnvironment(
        [GymnasiumEnv(seed + i) for i in range(num_envs)], multithreading=False))


def tf_agents_episodes_run(agent, actor_net, train_env, seed: int, episodes: int, max_length: int,
                           keep_going: Callable[[int, int], bool]) -> dict:
    """Train a tf-agents agent that learns from whole episodes (REINFORCE, PPO) as its
    examples do: an episode driver puts `episodes` episodes in a replay buffer (`max_length`
    steps per environment), the agent trains on all of it, the buffer is emptied; while
    keep_going(iterations, steps). The greedy policy is evaluated on the protocol's schedule."""
    import tensorflow as tf
    from tf_agents.drivers import dynamic_episode_driver
    from tf_agents.replay_buffers import tf_uniform_replay_buffer
    from tf_agents.utils import common

    replay_buffer = tf_uniform_replay_buffer.TFUniformReplayBuffer(
        data_spec=agent.collect_data_spec, batch_size=train_env.batch_size, max_length=max_length)
    steps = tf.Variable(0, dtype=tf.int64)

    def count(trajectory):
        return steps.assign_add(tf.reduce_sum(tf.cast(~trajectory.is_boundary(), tf.int64)))

    driver = dynamic_episode_driver.DynamicEpisodeDriver(
        train_env, agent.collect_policy, observers=[replay_buffer.add_batch, count], num_episodes=episodes)
    driver.run = common.function(driver.run)
    agent.train = common.function(agent.train)

    greedy = tf.function(lambda observation: tf.argmax(
        actor_net(observation, step_type=None, network_state=())[0].logits_parameter(), axis=-1))
    clock = Clock(lambda observation: greedy(observation).numpy(), seed)
    iterations = 0
    while keep_going(iterations, int(steps.numpy())):
        driver.run()
        agent.train(replay_buffer.gather_all())
        replay_buffer.clear()
        iterations += 1
        clock.catch_up(int(steps.numpy()))
    clock.train_seconds += time.perf_counter() - clock.started
    return clock.result("tf_agents", int(steps.numpy()))


def let_tf_agents_count_actions_under_numpy_2() -> None:
    """tf-agents 0.19's CategoricalProjectionNetwork calls int() on np.unique(...), a
    one-element array, which numpy 2.4 refuses; give that module a numpy whose unique()
    returns an array that int() accepts (the arithmetic is unchanged)."""
    import types

    import numpy as np
    from tf_agents.networks import categorical_projection_network

    class Countable(np.ndarray):
        def __int__(self):
            return int(self.reshape(-1)[0])

    shim = types.ModuleType("numpy_for_tf_agents")
    shim.__dict__.update({name: getattr(np, name) for name in dir(np) if not name.startswith("__")})
    shim.unique = lambda values, *args, **kwargs: np.unique(values, *args, **kwargs).view(Countable)
    categorical_projection_network.np = shim


def launch(script: str, agent: str, seed: int) -> dict | None:
    """One run in its own process; None (with the reason) when its library is not installed."""
    python = sys.executable if agent.startswith("ours") else str(REFERENCE_PYTHON)
    if not Path(python).exists():
        print(f"  {agent}: skipped ({python} missing: run `make bench-venv`)", flush=True)
        return None
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "TF_USE_LEGACY_KERAS": "1" if agent == "tf_agents" else "0"}
    result = subprocess.run([python, script, "--run", agent, "--seed", str(seed)], env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        print(f"  {agent} seed {seed}: FAILED\n{result.stderr[-2000:]}", flush=True)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def summarize(results: list[dict], agents: list[str], ratios: list[tuple[str, str]]) -> None:
    """The table of medians, and median seconds to 475 of each (reference, ours) pair."""
    def median(values):
        values = [float("inf") if v is None else v for v in values]
        return statistics.median(values) if values else None

    print("\nagent                seeds  first 475: steps (median)  seconds (median, range)  steps/s  final returns")
    medians = {}
    for agent in agents:
        runs = [r for r in results if r["agent"] == agent]
        if not runs:
            continue
        seconds = [r["first_475_seconds"] for r in runs]
        medians[agent] = median(seconds)
        shown = [f"{s:.1f}" if s is not None else "never" for s in seconds]
        finals = ", ".join(f"{r['final_return']:.0f}" for r in runs)
        print(f"{agent:<20} {len(runs):>5}  {median([r['first_475_step'] for r in runs]):>24,.0f}  "
              f"{medians[agent]:>8.1f} ({', '.join(shown)})  {median([r['steps_per_second'] for r in runs]):>7,.0f}  "
              f"{finals}")
    for reference, own in ratios:
        if reference in medians and own in medians:
            print(f"median seconds to 475: {reference} / {own} = {medians[reference] / medians[own]:.1f}x")
            speeds = [median([r["steps_per_second"] for r in results if r["agent"] == a]) for a in (own, reference)]
            print(f"median steps per second: {own} / {reference} = {speeds[0] / speeds[1]:.1f}x")


def plot(results: list[dict], path: Path, title: str) -> None:
    """Greedy evaluation return against environment steps, one line per run, a colour per agent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    agents = list(dict.fromkeys(r["agent"] for r in results))
    for r in results:
        steps = [EVAL_EVERY * (i + 1) for i in range(len(r["curve"]))]
        ax.plot(steps, r["curve"], color=f"C{agents.index(r['agent'])}", alpha=0.8,
                label=r["agent"] if r["seed"] == min(x["seed"] for x in results) else None)
    ax.axhline(SOLVED, color="grey", linestyle=":")
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"greedy return ({EVAL_EPISODES} episodes)")
    ax.set_title(f"{title}, seeds " + ", ".join(sorted({str(r["seed"]) for r in results})))
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(path, bbox_inches="tight", dpi=80)
    plt.close(fig)


def main(script: str, description: str, runners: dict[str, Callable[[int], dict]],
         ratios: list[tuple[str, str]], title: str) -> int:
    """The command line every CartPole benchmark has: --seeds, --agents, --json, --plot."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--agents", default=",".join(runners))
    parser.add_argument("--run", choices=sorted(runners), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write every run's record here")
    parser.add_argument("--plot", type=Path, help="also draw the learning curves here (PNG)")
    args = parser.parse_args()
    if args.run:  # a child process: one run, one JSON line
        sys.path.insert(0, str(ROOT))
        from quiet import quiet_tensorflow

        quiet_tensorflow()
        print(json.dumps(runners[args.run](args.seed)))
        return 0
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for agent in args.agents.split(","):
            record = launch(script, agent, seed)
            if record:
                results.append(record)
                print(f"  {agent} seed {seed}: first 475 at {record['first_475_step']} steps, "
                      f"{record['first_475_seconds'] and round(record['first_475_seconds'], 1)} s; "
                      f"{record['steps_per_second']:,.0f} steps/s; final {record['final_return']:.1f}; "
                      f"curve {record['curve']}", flush=True)
    summarize(results, list(runners), ratios)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.plot:
        plot(results, args.plot, title)
    return 0
