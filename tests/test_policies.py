"""Statistical and serialization tests of the action-selection policies."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

from keras_brainprop import policies

NUM_DRAWS = 20_000


def draw(policy, q_row, step=0, seed=(1, 2)):
    q_values = tf.tile(tf.constant([q_row], "float32"), [NUM_DRAWS, 1])
    return policy(q_values, tf.constant(step), tf.constant(seed)).numpy()


def softmax(values):
    exp = np.exp(values - np.max(values))
    return exp / exp.sum()


def assert_binomial(count, probability, n=NUM_DRAWS):
    # Two-sided 99.99% interval: a false alarm every 10,000 runs.
    low, high = stats.binom.interval(0.9999, n, probability)
    assert low <= count <= high, (count, probability * n)


def test_greedy_takes_the_argmax():
    q_values = tf.constant([[0.1, 0.9, 0.3], [2.0, -1.0, 0.0]])
    actions = policies.Greedy()(q_values, 0, tf.constant([0, 0]))
    np.testing.assert_array_equal(actions.numpy(), [1, 0])
    assert actions.dtype == tf.int32


def test_epsilon_boltzmann_explore_rate_within_binomial_bound():
    q_row = np.array([0.2, 0.5, 0.1, 0.4], "float32")
    epsilon, temperature = 0.1, 0.5
    policy = policies.EpsilonBoltzmann(epsilon, temperature)
    actions = draw(policy, q_row)
    # An exploratory draw differs from the greedy action with probability
    # 1 - softmax(Q / T)[greedy].
    p_differ = epsilon * (1.0 - softmax(q_row / temperature)[1])
    assert_binomial(np.sum(actions != 1), p_differ)


def test_epsilon_greedy_explores_uniformly():
    q_row = np.array([0.0, 1.0, 0.0, 0.0, 0.0], "float32")
    actions = draw(policies.EpsilonGreedy(0.2), q_row)
    assert_binomial(np.sum(actions != 1), 0.2 * 4 / 5)
    counts = np.bincount(actions[actions != 1], minlength=5)[[0, 2, 3, 4]]
    assert stats.chisquare(counts).pvalue > 1e-4


@pytest.mark.parametrize("temperature", [0.3, 1.0, 3.0])
def test_boltzmann_matches_softmax(temperature):
    q_row = np.array([0.1, 0.7, -0.2, 0.4], "float32")
    actions = draw(policies.Boltzmann(temperature), q_row)
    observed = np.bincount(actions, minlength=4)
    expected = softmax(q_row.astype("float64") / temperature) * NUM_DRAWS
    assert stats.chisquare(observed, expected).pvalue > 1e-4


def test_schedules_take_effect():
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [100], [1.0, 0.0]
    )
    policy = policies.EpsilonGreedy(schedule)
    q_row = np.array([0.0, 1.0, 0.0, 0.0], "float32")
    assert np.mean(draw(policy, q_row, step=0) != 1) > 0.7
    assert np.all(draw(policy, q_row, step=200) == 1)

    def cooling(step):
        return 10.0 / (1.0 + tf.cast(step, "float32"))

    policy = policies.Boltzmann(cooling)
    hot = np.bincount(draw(policy, q_row, step=0), minlength=4)
    cold = np.bincount(draw(policy, q_row, step=999), minlength=4)
    assert hot[1] < 0.4 * NUM_DRAWS and cold[1] > 0.99 * NUM_DRAWS


def test_draws_depend_only_on_the_seed():
    policy = policies.EpsilonBoltzmann(0.5)
    q_row = np.array([0.3, 0.2, 0.1], "float32")
    first = draw(policy, q_row, seed=(4, 5))
    np.testing.assert_array_equal(first, draw(policy, q_row, seed=(4, 5)))
    assert np.any(first != draw(policy, q_row, seed=(4, 6)))


def test_policies_run_under_xla():
    policy = policies.EpsilonBoltzmann(0.5)

    @tf.function(jit_compile=True)
    def select(q_values, step, seed):
        return policy(q_values, step, seed)

    actions = select(tf.ones((64, 5)), tf.constant(0), tf.constant([1, 1]))
    assert actions.shape == (64,)


@pytest.mark.parametrize(
    "policy",
    [
        policies.Greedy(),
        policies.EpsilonGreedy(0.3),
        policies.Boltzmann(0.7),
        policies.EpsilonBoltzmann(0.05, 2.0),
        policies.EpsilonGreedy(
            keras.optimizers.schedules.ExponentialDecay(0.5, 100, 0.9)
        ),
    ],
    ids=repr,
)
def test_serialization_round_trip(policy):
    config = keras.saving.serialize_keras_object(policy)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(policy)
    assert keras.saving.serialize_keras_object(restored) == config


def test_get_by_name_and_default():
    assert isinstance(policies.get(None), policies.EpsilonBoltzmann)
    assert policies.get(None).get_config() == {
        "epsilon": 0.02,
        "temperature": 1.0,
    }
    assert isinstance(policies.get("greedy"), policies.Greedy)
    assert isinstance(policies.get("EpsilonGreedy"), policies.EpsilonGreedy)
    with pytest.raises(ValueError, match="Received: policy='softmax'"):
        policies.get("softmax")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: policies.EpsilonGreedy(1.5), "epsilon=1.5"),
        (lambda: policies.EpsilonBoltzmann(-0.1), "epsilon=-0.1"),
        (lambda: policies.Boltzmann(0.0), "temperature=0.0"),
        (lambda: policies.Boltzmann("hot"), "temperature='hot'"),
    ],
)
def test_bad_parameters(make, message):
    with pytest.raises(ValueError, match=message):
        make()
