"""Run in .venv-tf-agents (TF_USE_LEGACY_KERAS=1): load policy exports with tf-agents'
SavedModelPyTFEagerPolicy and play one CartPole-v1 episode with each, as a tf-agents program would.

    python tests/export/tf_agents_play.py VERSION_DIR SEED [VERSION_DIR SEED ...]  ->  a JSON list on stdout
"""
import json
import sys

import gymnasium as gym
import numpy as np
from tf_agents.policies import py_tf_eager_policy
from tf_agents.trajectories import time_step as ts


def play(version_dir: str, seed: int) -> dict:
    policy = py_tf_eager_policy.SavedModelPyTFEagerPolicy(version_dir, load_specs_from_pbtxt=True)
    env = gym.make("CartPole-v1")
    observation, _ = env.reset(seed=seed)
    step = ts.restart(observation.astype(np.float32))
    policy_state = policy.get_initial_state(batch_size=1)
    observations, actions, total = [], [], 0.0
    while not step.is_last():
        policy_step = policy.action(step, policy_state)
        action = int(policy_step.action)
        observations.append(observation.tolist())
        actions.append(action)
        observation, reward, terminated, truncated, _ = env.step(action)
        total += reward
        observation32 = observation.astype(np.float32)
        if terminated:
            step = ts.termination(observation32, np.float32(reward))
        elif truncated:
            step = ts.truncation(observation32, np.float32(reward))
        else:
            step = ts.transition(observation32, np.float32(reward))
    return {
        "return": total, "actions": actions, "observations": observations,
        "train_step": int(policy.get_train_step()),
        "time_step_spec": str(policy.time_step_spec.observation), "action_spec": str(policy.action_spec),
    }


print(json.dumps([play(version_dir, int(seed)) for version_dir, seed in zip(sys.argv[1::2], sys.argv[2::2])]))
