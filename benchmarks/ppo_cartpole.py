"""PPO on CartPole-v1: ours against Stable-Baselines3's PPO and tf-agents' PPOClipAgent, seeds 0, 1, 2.

    make bench-venv
    .venv/bin/python benchmarks/ppo_cartpole.py [--seeds 0,1,2] [--agents ...] [--json F] [--plot F.png]

The evaluation protocol is benchmarks/cartpole_runs.py's (10 greedy episodes every 1,000
environment steps, clock paused; the first step at 475, its training seconds, steps per
second, and the final 20-episode greedy average).

- ours: `python -m training ppo --preset cartpole` (RL-Zoo's settings, 100,000 steps, its
  whole budget: no early stop).
- SB3 2.9 PPO with RL-Zoo's CartPole-v1 hyperparameters: 8 environments x 32 steps, 20
  epochs of minibatches of 256, gamma 0.98, lambda 0.8, no entropy bonus, step size 1e-3 and
  clip range 0.2 both linear to 0 ("lin_"), 100,000 steps (RL-Zoo's n_timesteps); one torch thread.
- tf-agents 0.19 `PPOClipAgent` with the settings of its example
  (agents/ppo/examples/v2/train_eval_clip_agent.py): actor and value networks (200, 100)
  tanh, Adam 1e-3, 25 epochs on each batch, ratio clipping 0.2, GAE (lambda 0.95, gamma 0.99),
  no entropy bonus, no observation or reward normalisation, 30 environments and 30 episodes
  per iteration; the environments are stepped as one batch in this process (the example's
  30 processes would only contend for 2 cores), 100,000 steps.

Every agent computes on one thread (torch.set_num_threads(1); TensorFlow's inter- and
intra-op pools of one thread), as suits 2 cores shared with other work (docs/ppo.md measures
what it saves).

Ratios: SB3's and tf-agents' median seconds to 475 over ours, and our steps per second over theirs.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cartpole_runs import (let_tf_agents_count_actions_under_numpy_2, main, sb3_run,  # noqa: E402
                           tf_agents_cartpole, tf_agents_episodes_run, train_ours)

REFERENCE_STEPS = 100_000


def run_ours(seed: int) -> dict:
    from training import ppo
    from training.config import use_threads

    use_threads(1)  # as `python -m training ppo` does by default
    return train_ours("ours_ppo", ppo.train, ppo.cartpole(), seed)


def run_sb3(seed: int) -> dict:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)

    def linear(start: float):  # RL-Zoo's lin_ schedules: SB3 passes the progress remaining, 1 -> 0
        return lambda progress_remaining: progress_remaining * start

    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8, seed=seed), n_steps=32, batch_size=256,
                gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0, learning_rate=linear(1e-3),
                clip_range=linear(0.2), seed=seed, device="cpu", verbose=0)
    return sb3_run(model, seed, REFERENCE_STEPS)


def run_tf_agents(seed: int) -> dict:
    import tensorflow as tf
    from tf_agents.agents.ppo import ppo_clip_agent
    from tf_agents.networks import actor_distribution_network, value_network

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    let_tf_agents_count_actions_under_numpy_2()
    tf.random.set_seed(seed)
    train_env = tf_agents_cartpole(seed, num_envs=30)
    actor_net = actor_distribution_network.ActorDistributionNetwork(
        train_env.observation_spec(), train_env.action_spec(), fc_layer_params=(200, 100),
        activation_fn=tf.keras.activations.tanh)
    value_net = value_network.ValueNetwork(train_env.observation_spec(), fc_layer_params=(200, 100),
                                           activation_fn=tf.keras.activations.tanh)
    agent = ppo_clip_agent.PPOClipAgent(
        train_env.time_step_spec(), train_env.action_spec(), tf.compat.v1.train.AdamOptimizer(learning_rate=1e-3),
        actor_net=actor_net, value_net=value_net, entropy_regularization=0.0, importance_ratio_clipping=0.2,
        normalize_observations=False, normalize_rewards=False, use_gae=True, num_epochs=25,
        train_step_counter=tf.Variable(0, dtype=tf.int64))
    agent.initialize()
    return tf_agents_episodes_run(agent, actor_net, train_env, seed, episodes=30, max_length=1001,
                                  keep_going=lambda iterations, steps: steps < REFERENCE_STEPS)


RUNNERS = {"ours_ppo": run_ours, "sb3": run_sb3, "tf_agents": run_tf_agents}

if __name__ == "__main__":
    sys.exit(main(__file__, __doc__.splitlines()[0], RUNNERS, [("sb3", "ours_ppo"), ("tf_agents", "ours_ppo")],
                  "PPO on CartPole-v1"))
