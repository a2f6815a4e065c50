"""SquareCB against its definition, p(a) = 1 / (K + gamma * gap)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from scipy import stats

import keras_brainprop as kbp
from keras_brainprop import policies

NUM_DRAWS = 20_000


def draw(policy, q_row, step=0, seed=(3, 4)):
    q_values = tf.tile(tf.constant([q_row], "float32"), [NUM_DRAWS, 1])
    return policy(q_values, tf.constant(step), tf.constant(seed)).numpy()


def inverse_gap_weights(q_row, gamma):
    """SquareCB's distribution, recomputed in NumPy from the paper."""
    q_row = np.asarray(q_row, "float64")
    best = int(np.argmax(q_row))
    probabilities = 1.0 / (len(q_row) + gamma * (q_row[best] - q_row))
    probabilities[best] = 0.0
    probabilities[best] = 1.0 - probabilities.sum()
    return probabilities


@pytest.mark.parametrize("gamma", [0.0, 20.0, 400.0])
def test_square_cb_draws_inverse_gap_weights(gamma):
    q_row = [0.1, 0.6, 0.55, -0.3, 0.2]
    observed = np.bincount(draw(policies.SquareCB(gamma), q_row), minlength=5)
    expected = inverse_gap_weights(q_row, gamma) * NUM_DRAWS
    assert stats.chisquare(observed, expected).pvalue > 1e-4


def test_square_cb_is_uniform_at_equal_values_and_greedy_far_apart():
    counts = np.bincount(draw(policies.SquareCB(1e3), [0.0] * 4), minlength=4)
    assert stats.chisquare(counts).pvalue > 1e-4
    far = draw(policies.SquareCB(1e9), [0.0, 1.0, 0.0])
    assert np.mean(far == 1) > 0.9999


def test_square_cb_gamma_schedule_takes_effect():
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [10], [0.0, 1e9]
    )
    policy = policies.SquareCB(schedule)
    q_row = [0.0, 1.0, 0.5]
    assert np.mean(draw(policy, q_row, step=0) != 1) > 0.6
    assert np.mean(draw(policy, q_row, step=20) != 1) < 1e-3


@pytest.mark.slow
def test_square_cb_by_name_config_and_saved_model(tmp_path):
    assert type(policies.get("square_cb")) is policies.SquareCB
    assert policies.name(policies.SquareCB(50.0)) == "square_cb"
    config = keras.saving.serialize_keras_object(policies.SquareCB(50.0))
    assert keras.saving.deserialize_keras_object(config).gamma == 50.0
    net = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(4, use_bias=False)]
    )
    model = kbp.wrap(net, policy=policies.SquareCB(np.float32(300)), seed=1)
    model.compile(metrics=["accuracy"])
    x = np.random.default_rng(0).uniform(size=(32, 6)).astype("float32")
    model.fit(x, np.arange(32) % 4, batch_size=8, epochs=1, verbose=0)
    model.save(tmp_path / "square_cb.keras")
    loaded = keras.saving.load_model(tmp_path / "square_cb.keras")
    assert repr(loaded.policy) == "SquareCB(gamma=300.0)"


@pytest.mark.parametrize(
    "gamma, received",
    [(-1.0, "gamma=-1.0"), (float("nan"), "gamma=nan"), ("big", "gamma='big'")],
)
def test_bad_square_cb_gamma(gamma, received):
    with pytest.raises(ValueError, match=f"Received: {received}"):
        policies.SquareCB(gamma)


def test_square_cb_stays_in_range_for_non_finite_values_under_xla():
    @tf.function(jit_compile=True)
    def select(q_values):
        return policies.SquareCB(10.0)(q_values, 0, tf.constant([1, 1]))

    actions = select(tf.constant([[np.nan, 0.0, 1.0], [np.inf, 0.0, 0.0]]))
    assert np.all((0 <= actions.numpy()) & (actions.numpy() < 3))


# Every backend (`KERAS_BACKEND=jax python -m pytest -m backends`): the
# bodies use keras.ops and NumPy only.


def select_row(policy, q_row, step=0, seed=(3, 4)):
    q_values = np.tile(np.asarray([q_row], "float32"), [NUM_DRAWS, 1])
    actions = policy(
        ops.convert_to_tensor(q_values),
        ops.convert_to_tensor(step, "int32"),
        ops.convert_to_tensor(seed, "int32"),
    )
    assert keras.backend.standardize_dtype(actions.dtype) == "int32"
    return ops.convert_to_numpy(actions)


@pytest.mark.backends
@pytest.mark.parametrize("gamma", [0.0, 20.0, 400.0])
def test_every_backend_square_cb_draws_inverse_gap_weights(gamma):
    q_row = [0.1, 0.6, 0.55, -0.3, 0.2]
    actions = select_row(policies.SquareCB(gamma), q_row)
    observed = np.bincount(actions, minlength=5)
    expected = inverse_gap_weights(q_row, gamma) * NUM_DRAWS
    assert stats.chisquare(observed, expected).pvalue > 1e-4


@pytest.mark.backends
def test_every_backend_square_cb_uniform_greedy_and_scheduled():
    actions = select_row(policies.SquareCB(1e3), [0.0] * 4)
    assert stats.chisquare(np.bincount(actions, minlength=4)).pvalue > 1e-4
    far = select_row(policies.SquareCB(1e9), [0.0, 1.0, 0.0])
    assert np.mean(far == 1) > 0.9999
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [10], [0.0, 1e9]
    )
    policy = policies.SquareCB(schedule)
    q_row = [0.0, 1.0, 0.5]
    assert np.mean(select_row(policy, q_row, step=0) != 1) > 0.6
    assert np.mean(select_row(policy, q_row, step=20) != 1) < 1e-3
    # Same seed, same draws; another seed, others.
    first = select_row(policy, q_row, seed=(5, 6))
    np.testing.assert_array_equal(first, select_row(policy, q_row, seed=(5, 6)))
    assert np.any(first != select_row(policy, q_row, seed=(5, 7)))


@pytest.mark.backends
def test_every_backend_square_cb_stays_in_range_for_non_finite_values():
    q_values = np.array([[np.nan, 0.0, 1.0], [np.inf, 0.0, 0.0]], "float32")
    actions = policies.SquareCB(10.0)(
        ops.convert_to_tensor(q_values),
        ops.convert_to_tensor(0, "int32"),
        ops.convert_to_tensor([1, 1], "int32"),
    )
    actions = ops.convert_to_numpy(actions)
    assert np.all((0 <= actions) & (actions < 3))
