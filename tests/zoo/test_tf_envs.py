"""The TensorFlow environments against gymnasium 1.4: one-step parity along gymnasium's own
trajectories, whole trajectories as far as float32 lets them agree, auto-reset, time limits,
and tracing inside tf.while_loop with XLA on a [seeds, envs] batch."""
import functools

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from zoo import tf_envs

ENV_IDS = ["CartPole-v1", "Acrobot-v1", "Pendulum-v1"]
# One step from the same float32 state: a few float32 ulps (1 ulp = 1.2e-7 relative). Measured
# along the runs below: at most 9.5e-7 absolute on observations (Acrobot's speeds, up to 28),
# 2.0e-6 on Pendulum's rewards (of up to 16 in size: 2e-7 relative).
ONE_STEP = dict(rtol=2e-6, atol=2e-6)


def policy(name: str, env_id: str, rng: np.random.Generator):
    """Actions from gymnasium's observation: uniformly random, or a controller that makes episodes
    end the way the test needs (CartPole balanced to its time limit, Acrobot swung over the bar)."""
    if name == "random" and env_id == "Pendulum-v1":
        return lambda obs: rng.uniform(-3.0, 3.0, (1,)).astype(np.float32)  # beyond +-2: clipped
    if name == "random":
        actions = tf_envs.make(env_id).action_space.n
        return lambda obs: int(rng.integers(actions))
    if name == "balance":  # CartPole: push towards where the pole is falling
        return lambda obs: int(obs[2] + 0.5 * obs[3] + 0.01 * obs[0] + 0.1 * obs[1] > 0)
    if name == "pump":  # Acrobot: torque along the second joint's velocity; over the bar in 65-125 steps
        return lambda obs: 2 if obs[5] > 0 else 0
    raise ValueError(name)


def physics_of(env_id: str, gym_state) -> np.ndarray:
    """gymnasium's float64 state as our float32 physics (Pendulum's angle taken modulo 2 pi first)."""
    state = np.array(gym_state, np.float64)
    if env_id == "Pendulum-v1":
        state[0] = (state[0] + np.pi) % (2 * np.pi) - np.pi
    return state.astype(np.float32)


def gymnasium_run(env_id: str, policies: list[str], steps: int, seed: int, starts: np.ndarray | None = None,
                  actions: np.ndarray | None = None, float32_state: bool = False) -> dict:
    """`steps` steps of gymnasium's registered environment (with its TimeLimit), episode k acting
    with policies[min(k, last)], or replaying `actions`. Each episode starts from starts[k] when
    given (set into env.unwrapped.state), else from gymnasium's own reset; `float32_state`
    rounds the state to float32 after every step (float64 arithmetic, float32 storage).
    Returns, per step: the state before it, the step's index in its episode, the action, and
    what gymnasium returned."""
    env, tf_env = gym.make(env_id), tf_envs.make(env_id)
    rng = np.random.default_rng(seed)
    record = {k: [] for k in ("state", "index", "action", "observation", "reward", "terminated", "truncated")}
    episode, index = 0, 0

    def begin():
        observation, _ = env.reset(seed=seed * 1000 + episode)
        if starts is not None:
            env.unwrapped.state = starts[episode].astype(np.float64)
            observation = tf_env.observe(tf.constant(starts[episode])).numpy()
        return observation, policy(policies[min(episode, len(policies) - 1)], env_id, rng)

    observation, act = begin()
    for t in range(steps):
        action = act(observation) if actions is None else actions[t]
        record["state"].append(np.array(env.unwrapped.state, np.float64))
        record["index"].append(index)
        record["action"].append(action)
        observation, reward, terminated, truncated, _ = env.step(action)
        if float32_state:
            env.unwrapped.state = np.asarray(env.unwrapped.state, np.float32).astype(np.float64)
        for key, value in zip(("observation", "reward", "terminated", "truncated"),
                              (observation, reward, terminated, truncated)):
            record[key].append(value)
        index += 1
        if terminated or truncated:
            episode, index = episode + 1, 0
            observation, act = begin()
    return {k: np.array(v) for k, v in record.items()}


TEACHER_FORCED = {  # env id -> policies of its episodes in turn (the last one repeats)
    "CartPole-v1": ["balance", "random"],  # 500 steps truncated, then ~25 falls
    "Acrobot-v1": ["random", "pump"],  # 500 steps truncated, then ~5 swings over the bar
    "Pendulum-v1": ["random"],  # truncated every 200 steps, torques beyond the clip
}


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_every_step_of_gymnasiums_trajectory_is_reproduced_from_its_state(env_id):
    """Teacher forcing: 1,000 transitions, each from gymnasium's own state along its own run
    (rounded to float32), with the step's count in its episode, computed as one batch of
    1,000 rows. Observations and rewards agree to ONE_STEP, the flags exactly, time limits
    included; and every row that ends starts its next episode (auto-reset)."""
    run = gymnasium_run(env_id, TEACHER_FORCED[env_id], 1000, seed=0)
    env = tf_envs.make(env_id)
    rows = len(run["index"])
    seed, episodes = tf.range(rows, dtype=tf.int64), tf.fill([rows], 3)
    state = tf_envs.EnvState(
        physics=tf.constant(np.stack([physics_of(env_id, s) for s in run["state"]])),
        steps=tf.constant(run["index"], tf.int32), episodes=episodes, seed=seed,
        final_observation=tf.zeros((rows,) + env.observation_space.shape))
    new_state, observation, reward, terminated, truncated = env.step(state, tf.constant(run["action"]))

    np.testing.assert_allclose(new_state.final_observation, run["observation"], **ONE_STEP)
    np.testing.assert_allclose(reward, run["reward"], **ONE_STEP)
    np.testing.assert_array_equal(terminated, run["terminated"])
    np.testing.assert_array_equal(truncated, run["truncated"])
    # the run covers what it claims: time limits hit, and CartPole's and Acrobot's terminations
    limit = gym.spec(env_id).max_episode_steps
    assert run["truncated"].sum() == {"CartPole-v1": 1, "Acrobot-v1": 1, "Pendulum-v1": 5}[env_id]
    assert np.all(run["index"][run["truncated"]] == limit - 1)  # the 500th (200th) step truncates
    assert run["terminated"].sum() >= {"CartPole-v1": 20, "Acrobot-v1": 4, "Pendulum-v1": 0}[env_id]

    done = run["terminated"] | run["truncated"]
    fresh = env.observe(env.start(seed, episodes)).numpy()  # episode 3 of each row's stream
    np.testing.assert_array_equal(observation.numpy()[done], fresh[done])
    np.testing.assert_array_equal(observation.numpy()[~done], new_state.final_observation.numpy()[~done])
    np.testing.assert_array_equal(new_state.steps, np.where(done, 0, run["index"] + 1))
    np.testing.assert_array_equal(new_state.episodes, np.where(done, 4, 3))


WHOLE_TOLERANCE = 1e-4
# For how many steps from its start each episode of a whole trajectory must agree to 1e-4:
# half the fewest after which any episode of seeds 0-9 departed (1,000 random actions each),
# ours or gymnasium's own with its state rounded to float32 after every step. CartPole's
# random episodes (under 100 steps) never departed. Measured by
# `python benchmarks/tf_envs.py --agreement`.
AGREES_FOR = {"CartPole-v1": 500, "Acrobot-v1": 155, "Pendulum-v1": 36}


@functools.cache
def tf_trajectory(env_id: str):
    """run(seed, actions): the TensorFlow environment's own run from reset([seed]) taking
    `actions`, through tf.scan (a tf.while_loop) inside one tf.function; per step, the
    observation it reached before any reset, the reward and the flags."""
    env = tf_envs.make(env_id)

    @tf.function
    def run(seed, actions):
        state, observation = env.reset(seed[None])

        def step(carry, action):
            state, _, reward, terminated, truncated = env.step(carry[0], action[None])
            return state, state.final_observation[0], reward[0], terminated[0], truncated[0]

        first = (state, observation[0], tf.constant(0.0), tf.constant(False), tf.constant(False))
        return dict(zip(("observation", "reward", "terminated", "truncated"),
                        tf.scan(step, actions, initializer=first)[1:]))

    return run


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_whole_trajectories_agree_as_far_as_float32_allows(env_id):
    """Our environment runs on its own for 1,000 steps (auto-resets and time limits included);
    gymnasium takes the same actions (uniformly random), each of its episodes started from the
    state ours drew. Episode ends agree on every step, and observations and rewards agree to
    1e-4 for the first AGREES_FOR[env_id] steps of every episode.

    Why not every step: Acrobot (a double pendulum), and Pendulum and CartPole near their
    upright equilibria, amplify a rounding difference exponentially (near upright, Pendulum's
    grows by e^(dt sqrt(3g/2l)) = 1.21 a step: 1e-7 becomes 1e-4 in 36 steps). gymnasium
    itself, its float64 state rounded to float32 after every step, departs from gymnasium
    after about as many steps as we do (seeds 0-9, the first step beyond 1e-4 from an
    episode's start: Acrobot 311-371, ours 311-476; Pendulum 73-158, ours 88-173; CartPole
    balanced by a controller 117-160, ours 98-144; the other episodes agree whole). The
    limit is float32's, not the port's: the one-step test above checks every transition of
    gymnasium's trajectories for 1,000 steps.
    """
    env = tf_envs.make(env_id)
    for seed in (0, 1, 2):
        starts = env.start(tf.fill([100], tf.constant(seed, tf.int64)), tf.range(100)).numpy()  # episodes 0..99
        theirs = gymnasium_run(env_id, ["random"], 1000, seed, starts)
        ours = {k: v.numpy() for k, v in tf_trajectory(env_id)(tf.constant(seed, tf.int64), theirs["action"]).items()}
        np.testing.assert_array_equal(ours["terminated"], theirs["terminated"])
        np.testing.assert_array_equal(ours["truncated"], theirs["truncated"])
        early = theirs["index"] < AGREES_FOR[env_id]
        for key in ("observation", "reward"):
            np.testing.assert_allclose(ours[key][early], theirs[key][early], rtol=0, atol=WHOLE_TOLERANCE)
        ends = theirs["terminated"] | theirs["truncated"]
        assert ends.sum() >= {"CartPole-v1": 30, "Acrobot-v1": 2, "Pendulum-v1": 5}[env_id]  # auto-resets happened


def test_spaces_and_time_limits_are_gymnasiums():
    for env_id in ENV_IDS:
        env, theirs = tf_envs.make(env_id), gym.make(env_id)
        assert env.observation_space == theirs.observation_space
        assert env.action_space == theirs.action_space
        assert env.max_episode_steps == gym.spec(env_id).max_episode_steps
    with pytest.raises(ValueError, match="no TensorFlow version of environment 'MountainCar-v0'"):
        tf_envs.make("MountainCar-v0")


def controller(env_id: str, observation: tf.Tensor) -> tf.Tensor:
    """An in-graph policy per environment (as `policy` above; Pendulum: torque 2.5 along the spin, clipped to 2)."""
    if env_id == "CartPole-v1":
        x, x_dot, theta, theta_dot = tf.unstack(observation, axis=-1)
        return tf.cast(theta + 0.5 * theta_dot + 0.01 * x + 0.1 * x_dot > 0, tf.int32)
    if env_id == "Acrobot-v1":
        return tf.where(observation[..., 5] > 0, 2, 0)
    return 2.5 * tf.sign(observation[..., 2:])


def compiled_run(env_id: str, steps: int, jit_compile: bool):
    """run(seed [b1, b2]) -> (state, return [b1, b2], episodes ended [b1, b2]) after `steps` steps of
    `controller` in a tf.while_loop, traced once for any b1 and b2."""
    env = tf_envs.make(env_id)

    @tf.function(jit_compile=jit_compile, input_signature=[tf.TensorSpec([None, None], tf.int64)])
    def run(seed):
        state, observation = env.reset(seed)
        zeros = tf.zeros_like(seed, tf.float32)

        def body(t, state, observation, total, ends):
            state, observation, reward, terminated, truncated = env.step(state, controller(env_id, observation))
            return t + 1, state, observation, total + reward, ends + tf.cast(terminated | truncated, tf.int32)

        _, state, _, total, ends = tf.while_loop(lambda t, *_: t < steps, body,
                                                 (0, state, observation, zeros, tf.zeros_like(seed, tf.int32)))
        return state, total, ends

    return run


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_a_seeds_by_envs_batch_runs_in_a_while_loop_under_xla_row_by_row_as_alone(env_id):
    """30 steps of a [2, 3] batch (seeds x environments) in one tf.while_loop: compiled by XLA, it
    gives what the plain graph gives; each row gives what it gives alone, as a batch of one;
    one trace serves every batch size."""
    seed = tf.constant([[0, 1, 2], [10, 11, 12]], tf.int64)
    xla, graph = compiled_run(env_id, 30, jit_compile=True), compiled_run(env_id, 30, jit_compile=False)
    (state, total, ends), (graph_state, graph_total, graph_ends) = xla(seed), graph(seed)
    np.testing.assert_allclose(state.physics, graph_state.physics, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(total, graph_total, rtol=1e-5)
    np.testing.assert_array_equal(ends, graph_ends)
    for row in np.ndindex(2, 3):
        alone, alone_total, _ = graph(seed[row][None, None])
        np.testing.assert_allclose(alone.physics[0, 0], graph_state.physics[row], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(alone_total[0, 0], graph_total[row], rtol=1e-6)
    assert xla.experimental_get_tracing_count() == 1 and graph.experimental_get_tracing_count() == 1


def test_cartpole_balanced_in_graph_is_truncated_at_each_500th_step():
    """1,000 steps of a controller that keeps every pole up: each environment's episode is cut
    by the time limit at steps 500 and 1,000 (two ends, none terminal; 1 reward a step), and
    the state has just begun its third episode."""
    state, total, ends = compiled_run("CartPole-v1", 1000, jit_compile=False)(tf.range(4, dtype=tf.int64)[None])
    np.testing.assert_array_equal(ends, [[2, 2, 2, 2]])
    np.testing.assert_array_equal(total, [[1000.0] * 4])
    np.testing.assert_array_equal(state.steps, [[0] * 4])
    np.testing.assert_array_equal(state.episodes, [[3] * 4])


def test_uniform_rows_are_uniform_independent_and_batch_free():
    seed = tf.range(10_000, dtype=tf.int64)
    u = tf_envs.uniform_rows(seed, tf.zeros_like(seed), 4).numpy()
    # U(0, 1): mean 1/2 and variance 1/12 = 0.0833, each within 4 standard errors over 40,000 draws
    assert abs(u.mean() - 0.5) < 4 * np.sqrt(1 / 12 / u.size)
    assert abs(u.var() - 1 / 12) < 4 * np.sqrt(1 / 180 / u.size)  # Var of (U - 1/2)^2 is 1/180
    # neighbouring seeds and counters: uncorrelated (|r| < 4 / sqrt(n))
    assert abs(np.corrcoef(u[:-1, 0], u[1:, 0])[0, 1]) < 4 / np.sqrt(len(u))
    later = tf_envs.uniform_rows(seed, tf.ones_like(seed), 4).numpy()
    assert abs(np.corrcoef(u[:, 0], later[:, 0])[0, 1]) < 4 / np.sqrt(len(u))
    # a row's draws depend only on its own seed and counter
    np.testing.assert_array_equal(tf_envs.uniform_rows(seed[7:8], tf.zeros([1], tf.int32), 4)[0], u[7])
    assert 0.0 <= u.min() and u.max() < 1.0
