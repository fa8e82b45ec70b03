"""Policy-gradient losses (PPO's too) with the arithmetic beside each assertion, the
baseline's effect checked by Monte Carlo, and the policy network's distributions."""
import numpy as np
import pytest
import tensorflow as tf

from zoo.policy_gradient import (PolicyConfig, PolicyNetwork, a2c_loss, clipped_surrogate_loss, clipped_value_loss,
                                 discounted_returns, gae_targets, n_step_targets, normalize_advantages, ppo_loss,
                                 reinforce_baseline_loss, reinforce_loss)


def test_returns_with_and_without_discount():
    rewards = np.array([1.0, 2.0, 3.0])
    done = np.array([0.0, 0.0, 1.0])
    # gamma = 1 (the lectures' finite episodes): G = [1+2+3, 2+3, 3] = [6, 5, 3]
    np.testing.assert_allclose(discounted_returns(rewards, done, 1.0), [6.0, 5.0, 3.0])
    # gamma = 0.5: G_2 = 3; G_1 = 2 + 0.5*3 = 3.5; G_0 = 1 + 0.5*3.5 = 2.75
    np.testing.assert_allclose(discounted_returns(rewards, done, 0.5), [2.75, 3.5, 3.0])


def test_n_step_targets_cut_at_terminals_and_bootstrap_otherwise():
    # one environment, 3 steps; the episode ends at t=1, a new one starts at t=2
    rewards = np.array([[1.0], [1.0], [1.0]])
    terminated = np.array([[0.0], [1.0], [0.0]])
    values = np.array([[0.5], [0.5], [0.5]])
    last_values = np.array([10.0])  # v(s_3), after the rollout
    targets, advantages = n_step_targets(rewards, terminated, values, last_values, gamma=0.9)
    # t=2: 1 + 0.9*10 = 10;  t=1: terminal, so 1 (no bootstrap across the end);  t=0: 1 + 0.9*1 = 1.9
    np.testing.assert_allclose(targets[:, 0], [1.9, 1.0, 10.0], rtol=1e-6)
    np.testing.assert_allclose(advantages[:, 0], [1.4, 0.5, 9.5], rtol=1e-6)


def test_lambda_targets_run_from_one_step_td_to_n_step_returns():
    rewards = np.array([[1.0], [2.0], [3.0]])
    terminated = np.zeros((3, 1))
    values = np.array([[4.0], [5.0], [6.0]])
    last_values = np.array([7.0])
    # lam = 0: r_t + 0.5 v(s_{t+1}) = [1 + 2.5, 2 + 3, 3 + 3.5]
    targets, advantages = n_step_targets(rewards, terminated, values, last_values, gamma=0.5, lam=0.0)
    np.testing.assert_allclose(targets[:, 0], [3.5, 5.0, 6.5])
    np.testing.assert_allclose(advantages[:, 0], [-0.5, 0.0, 0.5])
    # lam = 1: the n-step returns 6.5, 2 + 0.5*6.5 = 5.25, 1 + 0.5*5.25 = 3.625
    targets, _ = n_step_targets(rewards, terminated, values, last_values, gamma=0.5, lam=1.0)
    np.testing.assert_allclose(targets[:, 0], [3.625, 5.25, 6.5])
    # lam = 0.5: G_2 = 6.5; G_1 = 2 + 0.5 (0.5*6 + 0.5*6.5) = 5.125; G_0 = 1 + 0.5 (0.5*5 + 0.5*5.125) = 3.53125
    targets, advantages = n_step_targets(rewards, terminated, values, last_values, gamma=0.5, lam=0.5)
    np.testing.assert_allclose(targets[:, 0], [3.53125, 5.125, 6.5])
    # which are GAE's advantages: deltas d = [-0.5, 0, 0.5], A_t = d_t + (gamma lam) A_{t+1}
    np.testing.assert_allclose(advantages[:, 0], [-0.5 + 0.25 * (0.0 + 0.25 * 0.5), 0.125, 0.5])


def test_reinforce_and_baseline_losses():
    log_probs = tf.constant([-1.0, -2.0])
    returns = tf.constant([3.0, 1.0])
    # -mean(log_prob * G) = -(-3 - 2) / 2 = 2.5
    assert reinforce_loss(log_probs, returns).numpy() == pytest.approx(2.5)
    values = tf.constant([1.0, 2.0])
    terms = reinforce_baseline_loss(log_probs, returns, values, value_weight=0.5)
    # advantages G - v = [2, -1]: policy = -(-1*2 + -2*-1)/2 = 0; value = ((2)^2 + (-1)^2)/2 = 2.5
    assert terms["policy_loss"].numpy() == pytest.approx(0.0)
    assert terms["value_loss"].numpy() == pytest.approx(2.5)
    assert terms["loss"].numpy() == pytest.approx(1.25)
    a2c = a2c_loss(log_probs, tf.constant([0.5, 0.7]), values, returns, value_weight=0.5, entropy_weight=0.1)
    # as above, minus 0.1 * mean entropy 0.6 = 1.25 - 0.06
    assert a2c["loss"].numpy() == pytest.approx(1.19)


def test_baseline_keeps_the_gradient_expectation_and_lowers_its_variance():
    """A two-armed bandit with a softmax policy: the score-function estimate
    grad log pi(a) (r - b) for b = 0 and b = E[r] under pi, from 200,000 draws."""
    rng = np.random.default_rng(0)
    theta = np.array([0.3, -0.2])
    pi = np.exp(theta) / np.exp(theta).sum()
    mean_reward = np.array([1.0, 3.0])
    n = 200_000
    actions = rng.choice(2, size=n, p=pi)
    rewards = mean_reward[actions] + rng.normal(size=n)
    score = np.eye(2)[actions] - pi  # grad_theta log softmax(theta)[a] = onehot(a) - pi
    exact = pi * (mean_reward - pi @ mean_reward)  # d/d theta_i of sum_a pi_a r_a
    baseline = pi @ mean_reward
    plain = score * rewards[:, None]
    centred = score * (rewards - baseline)[:, None]
    np.testing.assert_allclose(plain.mean(0), exact, atol=0.02)
    np.testing.assert_allclose(centred.mean(0), exact, atol=0.01)
    assert (centred.var(0) < 0.5 * plain.var(0)).all()


@pytest.mark.parametrize("config", [PolicyConfig(), PolicyConfig(critic="none"), PolicyConfig(critic="shared"),
                                    PolicyConfig(action_kind="continuous", num_actions=1, observation_shape=(3,))])
def test_policy_network_gives_distributions_and_values(config):
    network = PolicyNetwork(config)
    observation = tf.random.stateless_normal((5, *config.observation_shape), [0, 1])
    outputs = network(observation)
    distribution = network.distribution(outputs)
    actions = distribution.sample(seed=[1, 2])
    assert distribution.log_prob(actions).shape == (5,)
    assert distribution.entropy().shape == (5,)
    if config.action_kind == "discrete":
        assert actions.shape == (5,)
        np.testing.assert_allclose(tf.reduce_sum(distribution.probs_parameter(), -1).numpy(), 1.0, rtol=1e-6)
    else:
        assert actions.shape == (5, 1)
    assert ("value" in outputs) == (config.critic != "none")
    if "value" in outputs:
        assert outputs["value"].shape == (5,)


def test_gae_bootstraps_a_time_limit_from_the_final_observation_and_cuts_a_terminal():
    # one environment, 3 steps, gamma = lam = 0.5; the episode hits its time limit at t=1
    # (v(s_final) = 10), a new one starts at t=2; v(s_3) = 5 after the rollout
    rewards = np.array([[1.0], [1.0], [1.0]])
    values = np.array([[2.0], [3.0], [4.0]])
    final_values = np.array([[np.nan], [10.0], [np.nan]])  # read only where truncated
    last_values = np.array([5.0])
    truncated = np.array([[False], [True], [False]])
    targets, advantages = gae_targets(rewards, np.zeros((3, 1), bool), truncated, values, final_values, last_values,
                                      gamma=0.5, lam=0.5)
    # deltas: d_2 = 1 + 0.5*5 - 4 = -0.5; d_1 = 1 + 0.5*10 - 3 = 3 (the cut keeps A_2 out);
    # d_0 = 1 + 0.5*3 - 2 = 0.5 and A_0 = d_0 + 0.25 A_1 = 0.5 + 0.75 = 1.25
    np.testing.assert_allclose(advantages[:, 0], [1.25, 3.0, -0.5])
    np.testing.assert_allclose(targets[:, 0], [3.25, 6.0, 3.5])  # A + v
    # the same step as a real end (terminated): no bootstrap, d_1 = 1 - 3 = -2, A_0 = 0.5 + 0.25*(-2) = 0
    _, advantages = gae_targets(rewards, truncated, np.zeros((3, 1), bool), values, final_values, last_values,
                                gamma=0.5, lam=0.5)
    np.testing.assert_allclose(advantages[:, 0], [0.0, -2.0, -0.5])


def test_clipped_surrogate_takes_the_pessimistic_term():
    # ratios rho = [1.5, 0.5, 1.1, 0.7], advantages [2, 2, -1, -1], eps = 0.2
    log_probs = tf.Variable(np.log([1.5, 0.5, 1.1, 0.7]).astype(np.float32))
    old_log_probs = tf.zeros(4)
    advantages = tf.constant([2.0, 2.0, -1.0, -1.0])
    with tf.GradientTape() as tape:
        terms = clipped_surrogate_loss(log_probs, old_log_probs, advantages, clip_ratio=0.2)
    # min(rho A, clip(rho) A): min(3, 1.2*2) = 2.4; min(1, 0.8*2) = 1; min(-1.1, -1.1) = -1.1;
    # min(-0.7, 0.8*-1) = -0.8; loss = -(2.4 + 1 - 1.1 - 0.8) / 4 = -0.375
    assert terms["policy_loss"].numpy() == pytest.approx(-0.375)
    # |rho - 1| > 0.2 for 1.5, 0.5 and 0.7
    assert terms["clip_fraction"].numpy() == pytest.approx(0.75)
    # (rho - 1) - log rho: 0.094535 + 0.193147 + 0.004690 + 0.056675 = 0.349047, / 4
    assert terms["approx_kl"].numpy() == pytest.approx(0.0872617, rel=1e-5)
    # d loss / d log pi = -rho A / 4 where the unclipped term is taken, 0 where the clipped one is
    np.testing.assert_allclose(tape.gradient(terms["policy_loss"], log_probs).numpy(),
                               [0.0, -0.5 * 2 / 4, 1.1 / 4, 0.0], rtol=1e-6)
    # a step weighted 0 leaves the mean: -(2.4 + 1 - 0.8) / 3
    weighted = clipped_surrogate_loss(log_probs, old_log_probs, advantages, 0.2, weights=tf.constant([1.0, 1, 0, 1]))
    assert weighted["policy_loss"].numpy() == pytest.approx(-2.6 / 3)


def test_value_loss_clipped_around_the_rollouts_values():
    values = tf.constant([1.0, 2.0, 3.0, 2.0])
    old_values = tf.constant([1.5, 1.5, 3.0, 0.0])
    targets = tf.constant([0.0, 3.0, 2.0, 1.0])
    # unclipped: (1-0)^2, (2-3)^2, (3-2)^2, (2-1)^2 = 1 each
    assert clipped_value_loss(values, old_values, targets).numpy() == pytest.approx(1.0)
    # c = 0.2: clipped values 1.5-0.2 = 1.3, 1.5+0.2 = 1.7, 3.0, 0.0+0.2 = 0.2; their squared errors
    # 1.69, 1.69, 1, 0.64; the max with the unclipped ones: 1.69, 1.69, 1, 1; mean 5.38 / 4
    assert clipped_value_loss(values, old_values, targets, clip_value=0.2).numpy() == pytest.approx(1.345)


def test_advantages_normalised_per_minibatch():
    # mean 3, population std sqrt(2)
    np.testing.assert_allclose(normalize_advantages(tf.constant([1.0, 2, 3, 4, 5])).numpy(),
                               np.array([-2, -1, 0, 1, 2]) / np.sqrt(2), rtol=1e-6)
    # weights [1, 1, 0]: mean 2 and std 1 over the first two; the third is shifted and scaled alike
    np.testing.assert_allclose(normalize_advantages(tf.constant([1.0, 3, 100]), tf.constant([1.0, 1, 0])).numpy(),
                               [-1.0, 1.0, 98.0], rtol=1e-6)


def test_ppo_loss_adds_the_value_and_entropy_terms():
    terms = ppo_loss(tf.constant(np.log([1.5, 0.5, 1.1, 0.7]), tf.float32), tf.zeros(4), tf.constant([2.0, 2, -1, -1]),
                     entropy=tf.constant([0.5, 0.7, 0.5, 0.7]), values=tf.constant([1.0, 2, 3, 2]),
                     old_values=tf.constant([1.5, 1.5, 3, 0]), targets=tf.constant([0.0, 3, 2, 1]),
                     clip_ratio=0.2, clip_value=0.2, value_weight=0.5, entropy_weight=0.1)
    # the two tests above: policy -0.375, clipped value loss 1.345; mean entropy 0.6
    # -0.375 + 0.5*1.345 - 0.1*0.6 = 0.2375
    assert terms["entropy"].numpy() == pytest.approx(0.6)
    assert terms["loss"].numpy() == pytest.approx(0.2375, rel=1e-5)
