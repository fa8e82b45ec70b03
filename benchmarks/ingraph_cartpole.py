"""PPO on CartPole-v1, whole runs compiled: ours (TensorFlow, training/ingraph.py) against rejax
(JAX, gymnax's CartPole) and Stable-Baselines3's PPO (PyTorch, gymnasium), side by side in one run.

    make bench-venv
    .venv/bin/python benchmarks/ingraph_cartpole.py [--seeds 0,1,2] [--agents ours,rejax,sb3] [--many 32] [--json F]

For each agent and seed, one process, timed from the moment it is launched (interpreter,
imports, tracing and compilation all count):

- seconds from launch to the first greedy evaluation that reaches 475 (10 episodes every
  1,000 environment steps, greedy actions: our TensorFlow CartPole inside the graph, gymnax's
  inside rejax's program, gymnasium's for SB3), and the same from the start of the already
  compiled run (compile excluded);
- environment steps per second of the compiled run (its evaluations included).

Then `--many` agents trained together in one program (ours: stacked; rejax: `jax.vmap` of
its train function) give the aggregate steps per second.

- ours: `python -m training ppo --env_backend=tf --preset cartpole` (RL-Zoo's settings:
  8 environments x 32 steps, 20 epochs of one minibatch of 256), 100,000 steps, without the
  preset's early stop, and without XLA as the preset (with XLA for many agents); timed
  parts: trace, compile (the dry run), run. `ours_rejax_config`: rejax's settings in our engine.
- rejax 0.1.3: PPO with its tuned gymnax CartPole config (5 environments x 100 steps, 5 epochs
  of 5 minibatches of 100, 100,000 steps), its evaluation replaced by a greedy one of 10
  episodes whose end time is recorded by `jax.experimental.io_callback`; compiled ahead
  (`jax.jit(train).lower(key).compile()`), then run.
- SB3 2.9 PPO with RL-Zoo's CartPole-v1 hyperparameters (the ones ours uses), one torch
  thread, stopped at its first greedy evaluation of 475.
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

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_PYTHON = ROOT / ".venv-tf-agents" / "bin" / "python"
TFP_FOR_JAX = ROOT / ".venv-tf-agents" / "tfp-nightly"  # distrax's TFP (installed by make bench-venv)
EVAL_EVERY, EVAL_EPISODES, SOLVED, TOTAL = 1_000, 10, 475.0, 100_000
MANY_STEPS = 20_000  # per agent, for the aggregate rate of many agents


def run_ours(seeds: list[int], total: int, launched: float, rejax_config: bool = False) -> dict:
    import numpy as np

    from training import ingraph

    # the preset (without XLA, which does not pay for one short run); XLA for many agents' throughput
    config = dataclasses.replace(ingraph.cartpole("ppo"), seeds=tuple(seeds), total_steps=total, stop_return=None,
                                 eval_every=EVAL_EVERY, eval_episodes=EVAL_EPISODES, jit_compile=len(seeds) > 1)
    if rejax_config:  # the same work per step as rejax: its hyperparameters (REJAX_CARTPOLE) in our engine
        config = dataclasses.replace(config, num_envs=5, n_steps=100, update_epochs=5, num_minibatches=5,
                                     learning_rate=0.00075, anneal_learning_rate=False, anneal_clip_ratio=False,
                                     gamma=0.99, gae_lambda=0.95, clip_ratio=0.2, clip_value=0.2, entropy_weight=0.01,
                                     value_weight=0.5, max_grad_norm=0.5)
    out, timing = ingraph.Engine(config).train(seeds)
    returns, wall = out["history"]["eval_return"][:, 0], out["clocks"]["wall_seconds"]
    solved = np.flatnonzero(returns >= SOLVED)
    k = int(solved[0]) if len(solved) else None
    return {"first_475_step": int(out["step"][k, 0]) if k is not None else None,
            "first_475_seconds": timing["run_started"] + float(wall[k]) - launched if k is not None else None,
            "first_475_run_seconds": float(wall[k]) if k is not None else None,
            "steps": int(out["steps"].sum()), "run_seconds": timing["run_seconds"],
            "startup_seconds": timing["run_started"] - timing["compile_seconds"] - timing["trace_seconds"] - launched,
            "trace_seconds": timing["trace_seconds"], "compile_seconds": timing["compile_seconds"],
            "curve": [round(float(r)) for r in returns]}


REJAX_CARTPOLE = dict(env="CartPole-v1", agent_kwargs={"activation": "tanh"}, num_envs=5, num_steps=100, num_epochs=5,
                      num_minibatches=5, learning_rate=0.00075, max_grad_norm=0.5, eval_freq=EVAL_EVERY, gamma=0.99,
                      gae_lambda=0.95, clip_eps=0.2, ent_coef=0.01, vf_coef=0.5)  # rejax's configs/gymnax/cartpole.yaml


def run_rejax(seeds: list[int], total: int, launched: float) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import rejax
    from jax.experimental import io_callback
    from rejax.evaluate import evaluate

    records = []  # (time, step, mean return) of every evaluation, one agent only

    def record(step, returns):
        records.append((time.time(), int(step), float(np.mean(returns))))
        return np.int32(0)

    def greedy_evaluation(algo, ts, rng):
        def act(observation, rng):
            dist = algo.actor.apply(ts.actor_ts.params, jnp.expand_dims(observation, 0), method="_action_dist")
            return jnp.squeeze(dist.mode())

        _, returns = evaluate(act, rng, algo.env, algo.env_params, EVAL_EPISODES, algo.env_params.max_steps_in_episode)
        if len(seeds) == 1:  # ordered host callbacks cannot be vmapped; many agents are timed as a whole
            io_callback(record, jax.ShapeDtypeStruct((), jnp.int32), ts.global_step, returns, ordered=True)
        return returns.mean()

    algo = rejax.PPO.create(**REJAX_CARTPOLE, total_timesteps=total).replace(eval_callback=greedy_evaluation)
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    train = jax.jit(jax.vmap(algo.train)) if len(seeds) > 1 else jax.jit(lambda key: algo.train(key[0]))
    started = time.time()
    program = train.lower(keys).compile()
    compiled = time.time()
    _, evaluations = program(keys)
    jax.block_until_ready(evaluations)
    finished = time.time()
    solved = next((r for r in records if r[2] >= SOLVED), None)
    return {"first_475_step": solved[1] if solved else None,
            "first_475_seconds": solved[0] - launched if solved else None,
            "first_475_run_seconds": solved[0] - compiled if solved else None,
            "steps": total * len(seeds), "run_seconds": finished - compiled, "startup_seconds": started - launched,
            "trace_seconds": None, "compile_seconds": compiled - started, "curve": [round(r[2]) for r in records]}


def run_sb3(seeds: list[int], total: int, launched: float) -> dict:
    import gymnasium as gym
    import numpy as np
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    seed = seeds[0]

    def linear(start):
        return lambda remaining: start * remaining

    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8, seed=seed), n_steps=32, batch_size=256,
                gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0, learning_rate=linear(1e-3),
                clip_range=linear(0.2), seed=seed, device="cpu", verbose=0)
    env = gym.make("CartPole-v1")
    curve, found = [], {}

    class Evaluate(BaseCallback):
        def __init__(self):
            super().__init__()
            self.next_eval = EVAL_EVERY

        def _on_step(self) -> bool:
            while self.num_timesteps >= self.next_eval:
                returns = []
                for episode in range(EVAL_EPISODES):
                    observation, _ = env.reset(seed=seed + 10_000 + episode)
                    total, done = 0.0, False
                    while not done:
                        action = model.predict(observation, deterministic=True)[0]
                        observation, reward, terminated, truncated, _ = env.step(int(action))
                        total, done = total + reward, terminated or truncated
                    returns.append(total)
                curve.append(float(np.mean(returns)))
                if curve[-1] >= SOLVED and not found:
                    found.update(step=self.next_eval, time=time.time())
                self.next_eval += EVAL_EVERY
            return not found

    started = time.time()
    model.learn(total, callback=Evaluate())
    finished = time.time()
    return {"first_475_step": found.get("step"), "first_475_seconds": found["time"] - launched if found else None,
            "first_475_run_seconds": found["time"] - started if found else None,
            "steps": model.num_timesteps, "run_seconds": finished - started, "startup_seconds": started - launched,
            "trace_seconds": None, "compile_seconds": None, "curve": [round(r) for r in curve]}


RUNNERS = {"ours": run_ours, "ours_rejax_config": lambda *args: run_ours(*args, rejax_config=True),
           "rejax": run_rejax, "sb3": run_sb3}


def launch(agent: str, seeds: list[int], total: int) -> dict | None:
    """One run in its own process, timed from its launch; None (with the reason) if it cannot run."""
    python = sys.executable if agent.startswith("ours") else str(REFERENCE_PYTHON)
    if not Path(python).exists():
        print(f"  {agent}: skipped ({python} missing: run `make bench-venv`)", flush=True)
        return None
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(TFP_FOR_JAX)] * (agent == "rejax") + [str(ROOT)])}
    launched = time.time()
    result = subprocess.run([python, __file__, "--run", agent, "--seeds", ",".join(map(str, seeds)),
                             "--total", str(total), "--launched", repr(launched)], env=env, capture_output=True,
                            text=True)
    if result.returncode != 0:
        print(f"  {agent} seeds {seeds}: FAILED\n{result.stderr[-3000:]}", flush=True)
        return None
    record = json.loads(result.stdout.strip().splitlines()[-1])
    record.update(agent=agent, seeds=seeds, steps_per_second=record["steps"] / record["run_seconds"],
                  load=os.getloadavg()[0])
    return record


def _median(values):
    values = [float("inf") if v is None else v for v in values]
    return statistics.median(values) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--agents", default=",".join(RUNNERS))
    parser.add_argument("--many", type=int, default=32, help="agents trained together for the aggregate rate (0: skip)")
    parser.add_argument("--json", type=Path, help="also write every run's record here")
    parser.add_argument("--run", choices=sorted(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, default=TOTAL, help=argparse.SUPPRESS)
    parser.add_argument("--launched", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.run:  # a child process: one run, one JSON line
        sys.path.insert(0, str(ROOT))
        print(json.dumps(RUNNERS[args.run](seeds, args.total, args.launched)))
        return 0

    agents = args.agents.split(",")
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores)", flush=True)
    results = []
    for seed in seeds:
        for agent in agents:
            record = launch(agent, [seed], TOTAL)
            if record:
                results.append(record)
                print(f"  {agent} seed {seed}: first 475 at {record['first_475_step']} steps, "
                      f"{record['first_475_seconds'] and round(record['first_475_seconds'], 1)} s from launch "
                      f"({record['first_475_run_seconds'] and round(record['first_475_run_seconds'], 2)} s of run); "
                      f"startup {record['startup_seconds']:.1f} s, trace {record['trace_seconds'] or 0:.1f} s, "
                      f"compile {record['compile_seconds'] or 0:.1f} s; {record['steps_per_second']:,.0f} steps/s; "
                      f"load {record['load']:.1f}", flush=True)
    if args.many:
        for agent in [a for a in agents if a != "sb3"]:
            record = launch(agent, list(range(args.many)), MANY_STEPS)
            if record:
                results.append(record)
                print(f"  {agent} x{args.many}: {record['steps_per_second']:,.0f} steps/s "
                      f"(compile {record['compile_seconds']:.1f} s); load {record['load']:.1f}", flush=True)

    print(f"\n{'agent':<17} {'agents':>6}  {'to 475 from launch, s':>21}  {'of run, s':>9}  {'startup':>7}  "
          f"{'trace':>5}  {'compile':>7}  {'steps/s':>9}")
    medians = {}
    for agent in agents:
        for many in (False, True):
            runs = [r for r in results if r["agent"] == agent and (len(r["seeds"]) > 1) == many]
            if not runs:
                continue
            row = {key: None if all(r[key] is None for r in runs) else _median([r[key] for r in runs]) for key in (
                "first_475_seconds", "first_475_run_seconds", "startup_seconds", "trace_seconds", "compile_seconds",
                "steps_per_second")}
            medians[agent, many] = row

            def show(value, width, digits=1):
                return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"
            print(f"{agent:<17} {len(runs[0]['seeds']):>6}  {show(row['first_475_seconds'], 21)}  "
                  f"{show(row['first_475_run_seconds'], 9, 2)}  {show(row['startup_seconds'], 7)}  "
                  f"{show(row['trace_seconds'], 5)}  {show(row['compile_seconds'], 7)}  "
                  f"{row['steps_per_second']:>9,.0f}")

    def ratio(a: str, b: str, many: bool, key: str) -> str:
        if (a, many) in medians and (b, many) in medians:
            return f"{medians[a, many][key] / medians[b, many][key]:.2f}x"
        return "n/a"
    print(f"median seconds from launch to 475, rejax / ours: {ratio('rejax', 'ours', False, 'first_475_seconds')} "
          f"(aim: at least 3x); rejax / ours_rejax_config: "
          f"{ratio('rejax', 'ours_rejax_config', False, 'first_475_seconds')}")
    print(f"steps/s, one agent, ours / rejax: {ratio('ours', 'rejax', False, 'steps_per_second')}; "
          f"ours_rejax_config / rejax: {ratio('ours_rejax_config', 'rejax', False, 'steps_per_second')}")
    print(f"steps/s, {args.many} agents, ours / rejax: {ratio('ours', 'rejax', True, 'steps_per_second')} "
          f"(aim: at least 1x); ours_rejax_config / rejax: "
          f"{ratio('ours_rejax_config', 'rejax', True, 'steps_per_second')}")
    print(f"steps/s, one agent, ours / sb3: {ratio('ours', 'sb3', False, 'steps_per_second')} (aim: at least 20x)")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
