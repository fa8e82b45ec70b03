"""DQN on CartPole-v1: ours against tf-agents' DqnAgent and Stable-Baselines3's DQN, seeds 0, 1, 2.

    make bench-venv
    .venv/bin/python benchmarks/dqn_cartpole.py [--seeds 0,1,2] [--agents ours,tf_agents,sb3]

Every agent is evaluated the same way: 10 greedy episodes of gymnasium's CartPole-v1 every
1,000 environment steps, with its training clock paused. Reported per run: training wall
seconds and environment steps until an evaluation first reaches 475, steps per second, and
the final greedy average over 20 fresh episodes.

- ours: `python -m training dqn --preset cartpole` (it stops once 475 is reached and
  confirmed over 20 fresh episodes; the others train for their whole budget).
- tf-agents 0.19 `DqnAgent` with its DQN tutorial's settings: Q-network (100, 50), Adam 1e-3,
  squared TD error, epsilon 0.1, one collect step and one training step per iteration on
  batches of 64, 100 random steps first, 20,000 iterations, TFUniformReplayBuffer (Reverb
  does not install here) and a dynamic step driver, each a tf.function as the tutorial has
  them. Runs in .venv-tf-agents with TF_USE_LEGACY_KERAS=1, on gymnasium's CartPole
  through a small PyEnvironment wrapper.
- SB3 2.9 DQN with RL-Zoo's CartPole-v1 hyperparameters, 50,000 steps, one torch thread.

Each run is its own subprocess (`--run AGENT --seed N`), so no library warms another's caches.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

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

    def returns(self, episodes: int, seed: int) -> list[float]:
        from training.envs import play_episodes

        return play_episodes(self.env, self.act, episodes, seed)

    def evaluate(self, step: int) -> None:
        self.train_seconds += time.perf_counter() - self.started
        mean = float(sum(r := self.returns(EVAL_EPISODES, self.seed + 10_000)) / len(r))
        self.history.append({"step": step, "train_seconds": self.train_seconds, "eval_return": mean})
        self.started = time.perf_counter()

    def result(self, agent: str, steps: int) -> dict:
        final = self.returns(FINAL_EPISODES, self.seed + 20_000)
        solved = next((r for r in self.history if r["eval_return"] >= SOLVED), None)
        return {"agent": agent, "seed": self.seed, "steps": steps, "train_seconds": self.train_seconds,
                "steps_per_second": steps / self.train_seconds,
                "first_475_step": solved and solved["step"], "first_475_seconds": solved and solved["train_seconds"],
                "final_return": sum(final) / len(final), "curve": [round(r["eval_return"]) for r in self.history]}


def run_ours(seed: int) -> dict:
    import dataclasses

    from training import dqn

    run_dir = Path(f"/tmp/dqn-benchmark-ours-{seed}-{os.getpid()}")
    config = dataclasses.replace(dqn.cartpole(), seed=seed, eval_every=EVAL_EVERY, eval_episodes=EVAL_EPISODES,
                                 final_eval_episodes=FINAL_EPISODES)
    metrics = dqn.train(config, run_dir, progress=False)
    history = json.loads((run_dir / "history.json").read_text())
    solved = next((r for r in history if r["eval_return"] >= SOLVED), None)
    return {"agent": "ours", "seed": seed, "steps": metrics["steps"], "train_seconds": metrics["train_seconds"],
            "steps_per_second": metrics["steps_per_second"],
            "first_475_step": solved and solved["step"], "first_475_seconds": solved and solved["train_seconds"],
            "final_return": metrics["final_eval_return"], "curve": [round(r["eval_return"]) for r in history]}


def run_tf_agents(seed: int) -> dict:
    import gymnasium as gym
    import numpy as np
    import tensorflow as tf
    from tf_agents.agents.dqn import dqn_agent
    from tf_agents.drivers import dynamic_step_driver
    from tf_agents.environments import py_environment, tf_py_environment
    from tf_agents.networks import sequential
    from tf_agents.policies import random_tf_policy
    from tf_agents.replay_buffers import tf_uniform_replay_buffer
    from tf_agents.specs import array_spec
    from tf_agents.trajectories import time_step as ts
    from tf_agents.utils import common

    class GymnasiumEnv(py_environment.PyEnvironment):
        """gymnasium's CartPole-v1 as a tf-agents PyEnvironment (tf-agents knows only gym)."""

        def __init__(self):
            super().__init__(handle_auto_reset=True)  # reset after a LAST step, as gym wrappers do
            self.env, self.first = gym.make("CartPole-v1"), True
            self._observation_spec = array_spec.ArraySpec((4,), np.float32, "observation")
            self._action_spec = array_spec.BoundedArraySpec((), np.int64, 0, 1, "action")

        def observation_spec(self):
            return self._observation_spec

        def action_spec(self):
            return self._action_spec

        def _reset(self):
            observation, _ = self.env.reset(seed=seed if self.first else None)
            self.first = False
            return ts.restart(observation.astype(np.float32))

        def _step(self, action):
            observation, reward, terminated, truncated, _ = self.env.step(int(action))
            observation, reward = observation.astype(np.float32), np.float32(reward)
            if terminated:
                return ts.termination(observation, reward)
            if truncated:
                return ts.truncation(observation, reward)
            return ts.transition(observation, reward)

    tf.random.set_seed(seed)
    train_env = tf_py_environment.TFPyEnvironment(GymnasiumEnv())

    # The tutorial's network, agent, replay buffer and driver.
    def dense(units):
        return tf.keras.layers.Dense(units, activation=tf.keras.activations.relu,
                                     kernel_initializer=tf.keras.initializers.VarianceScaling(
                                         scale=2.0, mode="fan_in", distribution="truncated_normal"))

    q_net = sequential.Sequential([dense(100), dense(50), tf.keras.layers.Dense(
        2, activation=None, kernel_initializer=tf.keras.initializers.RandomUniform(minval=-0.03, maxval=0.03),
        bias_initializer=tf.keras.initializers.Constant(-0.2))])
    agent = dqn_agent.DqnAgent(train_env.time_step_spec(), train_env.action_spec(), q_network=q_net,
                               optimizer=tf.keras.optimizers.Adam(learning_rate=1e-3),
                               td_errors_loss_fn=common.element_wise_squared_loss,
                               train_step_counter=tf.Variable(0, dtype=tf.int64))
    agent.initialize()
    replay_buffer = tf_uniform_replay_buffer.TFUniformReplayBuffer(
        data_spec=agent.collect_data_spec, batch_size=train_env.batch_size, max_length=100_000)

    greedy = tf.function(lambda observation: tf.argmax(q_net(observation)[0], axis=-1))
    clock = Clock(lambda observation: greedy(observation).numpy(), seed)
    random_driver = dynamic_step_driver.DynamicStepDriver(
        train_env, random_tf_policy.RandomTFPolicy(train_env.time_step_spec(), train_env.action_spec()),
        observers=[replay_buffer.add_batch], num_steps=100)
    random_driver.run()
    dataset = replay_buffer.as_dataset(num_parallel_calls=3, sample_batch_size=64, num_steps=2).prefetch(3)
    iterator = iter(dataset)
    driver = dynamic_step_driver.DynamicStepDriver(train_env, agent.collect_policy,
                                                   observers=[replay_buffer.add_batch], num_steps=1)
    driver.run = common.function(driver.run)
    agent.train = common.function(agent.train)
    time_step, steps = train_env.current_time_step(), 100
    for _ in range(20_000):
        time_step, _ = driver.run(time_step)
        experience, _ = next(iterator)
        agent.train(experience)
        steps += 1
        if steps % EVAL_EVERY == 0:
            clock.evaluate(steps)
    clock.train_seconds += time.perf_counter() - clock.started
    return clock.result("tf_agents", steps)


def run_sb3(seed: int) -> dict:
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)
    model = DQN("MlpPolicy", gym.make("CartPole-v1"), learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
                learning_starts=1_000, gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
                exploration_fraction=0.16, exploration_final_eps=0.04, policy_kwargs={"net_arch": [256, 256]},
                seed=seed, device="cpu", verbose=0)
    clock = Clock(lambda observation: model.predict(observation, deterministic=True)[0], seed)

    class Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % EVAL_EVERY == 0:
                clock.evaluate(self.num_timesteps)
            return True

    clock.started = time.perf_counter()
    model.learn(50_000, callback=Evaluate())
    clock.train_seconds += time.perf_counter() - clock.started
    return clock.result("sb3", 50_000)


RUNNERS = {"ours": run_ours, "tf_agents": run_tf_agents, "sb3": run_sb3}


def launch(agent: str, seed: int) -> dict | None:
    """One run in its own process; None (with the reason) when its library is not installed."""
    python = sys.executable if agent == "ours" else str(REFERENCE_PYTHON)
    if not Path(python).exists():
        print(f"  {agent}: skipped ({python} missing: run `make bench-venv`)", flush=True)
        return None
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "TF_USE_LEGACY_KERAS": "1" if agent == "tf_agents" else "0"}
    result = subprocess.run([python, __file__, "--run", agent, "--seed", str(seed)], env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        print(f"  {agent} seed {seed}: FAILED\n{result.stderr[-2000:]}", flush=True)
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])


def summarize(results: list[dict]) -> None:
    def median(values):
        values = [float("inf") if v is None else v for v in values]
        return statistics.median(values) if values else None

    print("\nagent       seeds  first 475: steps (median)  seconds (median, range)  steps/s  final 20-episode returns")
    medians = {}
    for agent in RUNNERS:
        runs = [r for r in results if r["agent"] == agent]
        if not runs:
            continue
        seconds = [r["first_475_seconds"] for r in runs]
        medians[agent] = median(seconds)
        shown = [f"{s:.1f}" if s is not None else "never" for s in seconds]
        finals = ", ".join(f"{r['final_return']:.0f}" for r in runs)
        print(f"{agent:<11} {len(runs):>5}  {median([r['first_475_step'] for r in runs]):>24,.0f}  "
              f"{medians[agent]:>8.1f} ({', '.join(shown)})  {median([r['steps_per_second'] for r in runs]):>7,.0f}  "
              f"{finals}")
    if "ours" in medians:
        for agent in ("tf_agents", "sb3"):
            if agent in medians:
                print(f"median seconds to 475: {agent} / ours = {medians[agent] / medians['ours']:.1f}x")


def plot(results: list[dict], path: Path) -> None:
    """Greedy evaluation return against environment steps, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    colours = {"ours": "tab:blue", "tf_agents": "tab:orange", "sb3": "tab:green"}
    for r in results:
        steps = [EVAL_EVERY * (i + 1) for i in range(len(r["curve"]))]
        ax.plot(steps, r["curve"], color=colours[r["agent"]], alpha=0.8,
                label=r["agent"] if r["seed"] == min(x["seed"] for x in results) else None)
    ax.axhline(SOLVED, color="grey", linestyle=":")
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"greedy return ({EVAL_EPISODES} episodes)")
    ax.set_title("DQN on CartPole-v1, seeds " + ", ".join(sorted({str(r["seed"]) for r in results})))
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(path, bbox_inches="tight", dpi=80)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--agents", default="ours,tf_agents,sb3")
    parser.add_argument("--run", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write every run's record here")
    parser.add_argument("--plot", type=Path, help="also draw the learning curves here (PNG)")
    args = parser.parse_args()
    if args.run:  # a child process: one run, one JSON line
        sys.path.insert(0, str(ROOT))
        from quiet import quiet_tensorflow

        quiet_tensorflow()
        print(json.dumps(RUNNERS[args.run](args.seed)))
        return 0
    results = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for agent in args.agents.split(","):
            record = launch(agent, seed)
            if record:
                results.append(record)
                print(f"  {agent} seed {seed}: first 475 at {record['first_475_step']} steps, "
                      f"{record['first_475_seconds'] and round(record['first_475_seconds'], 1)} s; "
                      f"{record['steps_per_second']:,.0f} steps/s; final {record['final_return']:.1f}; "
                      f"curve {record['curve']}", flush=True)
    summarize(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
