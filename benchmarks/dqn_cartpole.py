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

Each run is its own subprocess (`--run AGENT --seed N`), so no library warms another's caches;
benchmarks/cartpole_runs.py holds what the CartPole benchmarks share.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cartpole_runs import (Clock, main, sb3_run, train_ours,  # noqa: E402
                           tf_agents_cartpole)


def run_ours(seed: int) -> dict:
    from training import dqn

    return train_ours("ours", dqn.train, dqn.cartpole(), seed)


def run_tf_agents(seed: int) -> dict:
    import tensorflow as tf
    from tf_agents.agents.dqn import dqn_agent
    from tf_agents.drivers import dynamic_step_driver
    from tf_agents.networks import sequential
    from tf_agents.policies import random_tf_policy
    from tf_agents.replay_buffers import tf_uniform_replay_buffer
    from tf_agents.utils import common

    tf.random.set_seed(seed)
    train_env = tf_agents_cartpole(seed)

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
        clock.catch_up(steps)
    clock.train_seconds += time.perf_counter() - clock.started
    return clock.result("tf_agents", steps)


def run_sb3(seed: int) -> dict:
    import gymnasium as gym
    import torch
    from stable_baselines3 import DQN

    torch.set_num_threads(1)
    model = DQN("MlpPolicy", gym.make("CartPole-v1"), learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
                learning_starts=1_000, gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
                exploration_fraction=0.16, exploration_final_eps=0.04, policy_kwargs={"net_arch": [256, 256]},
                seed=seed, device="cpu", verbose=0)
    return sb3_run(model, seed, 50_000)


RUNNERS = {"ours": run_ours, "tf_agents": run_tf_agents, "sb3": run_sb3}


if __name__ == "__main__":
    sys.exit(main(__file__, __doc__.splitlines()[0], RUNNERS, [("tf_agents", "ours"), ("sb3", "ours")],
                  "DQN on CartPole-v1"))
