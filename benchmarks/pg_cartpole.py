"""Policy gradients on CartPole-v1: ours against tf-agents' ReinforceAgent and Stable-Baselines3's A2C, seeds 0, 1, 2.

    make bench-venv
    .venv/bin/python benchmarks/pg_cartpole.py [--seeds 0,1,2] [--agents ...] [--json F] [--plot F.png]

The evaluation protocol is benchmarks/cartpole_runs.py's (10 greedy episodes every 1,000
environment steps, clock paused; the first step at 475, its training seconds, steps per
second, and the final 20-episode greedy average).

- ours: `python -m training reinforce|reinforce_baseline|a2c --preset cartpole` (each
  stops once 475 is reached and confirmed over 20 fresh episodes).
- tf-agents 0.19 `ReinforceAgent` with its REINFORCE tutorial's settings:
  ActorDistributionNetwork (100,), Adam 1e-3, normalised returns, 2 episodes per
  iteration gathered by an episode driver into a TFUniformReplayBuffer, 250 iterations.
- SB3 2.9 A2C with RL-Zoo's CartPole-v1 hyperparameters (8 environments, entropy 0; the
  defaults otherwise: RMSprop 7e-4, 5 steps), 100,000 steps, one torch thread.

Ratios: tf-agents REINFORCE against our REINFORCE with baseline, SB3's A2C against ours.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cartpole_runs import (let_tf_agents_count_actions_under_numpy_2, main, sb3_run,  # noqa: E402
                           tf_agents_cartpole, tf_agents_episodes_run, train_ours)


def run_ours(algorithm: str, seed: int) -> dict:
    from training import pg

    return train_ours(f"ours_{algorithm}", pg.train, pg.cartpole(algorithm), seed)


def run_tf_agents(seed: int) -> dict:
    import tensorflow as tf
    from tf_agents.agents.reinforce import reinforce_agent
    from tf_agents.networks import actor_distribution_network

    let_tf_agents_count_actions_under_numpy_2()
    tf.random.set_seed(seed)
    train_env = tf_agents_cartpole(seed)
    actor_net = actor_distribution_network.ActorDistributionNetwork(
        train_env.observation_spec(), train_env.action_spec(), fc_layer_params=(100,))
    agent = reinforce_agent.ReinforceAgent(
        train_env.time_step_spec(), train_env.action_spec(), actor_network=actor_net,
        optimizer=tf.keras.optimizers.Adam(learning_rate=1e-3), normalize_returns=True,
        train_step_counter=tf.Variable(0, dtype=tf.int64))
    agent.initialize()
    return tf_agents_episodes_run(agent, actor_net, train_env, seed, episodes=2, max_length=2000,
                                  keep_going=lambda iterations, steps: iterations < 250)


def run_sb3(seed: int) -> dict:
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    model = A2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8, seed=seed), ent_coef=0.0, seed=seed,
                device="cpu", verbose=0)
    return sb3_run(model, seed, 100_000)


RUNNERS = {
    "ours_reinforce": lambda seed: run_ours("reinforce", seed),
    "ours_reinforce_baseline": lambda seed: run_ours("reinforce_baseline", seed),
    "ours_a2c": lambda seed: run_ours("a2c", seed),
    "tf_agents": run_tf_agents,
    "sb3": run_sb3,
}

if __name__ == "__main__":
    sys.exit(main(__file__, __doc__.splitlines()[0], RUNNERS,
                  [("tf_agents", "ours_reinforce_baseline"), ("sb3", "ours_a2c")], "Policy gradients on CartPole-v1"))
