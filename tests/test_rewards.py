"""keras_brainprop/rewards.py: the reward functions against NumPy, and their
serialization."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from _helpers import compiled_model
from _helpers import toy_net
from keras import ops

from keras_brainprop import rewards

ACTIONS = np.array([0, 2, 1, 2], "int32")
LABELS = np.array([0, 1, 1, 0])


@pytest.mark.parametrize(
    "targets",
    [LABELS, LABELS[:, None], LABELS.astype("float32"), np.eye(3)[LABELS]],
    ids=["labels", "column", "float_labels", "one_hot"],
)
def test_correct_choice_on_labels(targets):
    reward = rewards.CorrectChoice()(targets, ACTIONS, num_actions=3)
    np.testing.assert_array_equal(reward.numpy(), [1.0, 0.0, 1.0, 0.0])
    assert reward.dtype == tf.float32


def test_correct_choice_on_a_reward_table():
    table = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    reward = rewards.CorrectChoice()(table, ACTIONS, num_actions=3)
    np.testing.assert_allclose(reward.numpy(), table[np.arange(4), ACTIONS])


def test_reward_function_wrapper_and_get():
    def half(y, actions):
        return tf.fill(tf.shape(actions), 0.5)

    reward = rewards.get(half)
    assert isinstance(reward, rewards.RewardFunction)
    np.testing.assert_array_equal(reward(None, ACTIONS, 3).numpy(), [0.5] * 4)
    assert isinstance(rewards.get(None), rewards.CorrectChoice)
    assert isinstance(rewards.get("correct_choice"), rewards.CorrectChoice)
    with pytest.raises(ValueError, match="Received: reward=3"):
        rewards.get(3)


def test_registered_reward_function_serializes():
    @keras.saving.register_keras_serializable(package="tests")
    def punish_zero(y, actions):
        return -tf.cast(tf.equal(actions, 0), "float32")

    config = keras.saving.serialize_keras_object(rewards.get(punish_zero))
    restored = keras.saving.deserialize_keras_object(config)
    np.testing.assert_array_equal(
        restored(None, ACTIONS, 3).numpy(), [-1.0, 0.0, 0.0, 0.0]
    )


def test_check_rewards():
    ok = rewards.check_rewards(tf.constant([1, 0, 1]), tf.constant(3))
    assert ok.dtype == tf.float32
    with pytest.raises(ValueError, match=r"shape \[batch\]"):
        rewards.check_rewards(tf.ones((3, 1)), tf.constant(3))
    with pytest.raises(tf.errors.InvalidArgumentError, match="per sample"):
        rewards.check_rewards(tf.ones((2,)), tf.constant(3))
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or Inf"):
        rewards.check_rewards(tf.constant([1.0, np.inf]), tf.constant(2))


# Every backend (`KERAS_BACKEND=jax python -m pytest -m backends`): the
# bodies use keras.ops and NumPy only.


def correct_choice(targets):
    actions = ops.convert_to_tensor(ACTIONS)
    return rewards.CorrectChoice()(ops.convert_to_tensor(targets), actions, 3)


@pytest.mark.backends
@pytest.mark.parametrize(
    "targets",
    [
        LABELS,
        LABELS[:, None],
        LABELS.astype("float32"),
        np.eye(3, dtype="int32")[LABELS],
        np.eye(3, dtype="float32")[LABELS],
    ],
    ids=["labels", "column", "float_labels", "one_hot", "float_one_hot"],
)
def test_every_backend_correct_choice_on_labels(targets):
    for given in (targets, ops.convert_to_tensor(targets)):
        reward = rewards.CorrectChoice()(given, ACTIONS, num_actions=3)
        assert keras.backend.standardize_dtype(reward.dtype) == "float32"
        np.testing.assert_array_equal(
            ops.convert_to_numpy(reward), [1.0, 0.0, 1.0, 0.0]
        )


@pytest.mark.backends
def test_every_backend_correct_choice_on_a_reward_table():
    table = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    reward = ops.convert_to_numpy(correct_choice(table))
    np.testing.assert_array_equal(reward, table[np.arange(4), ACTIONS])
    np.testing.assert_array_equal(
        ops.convert_to_numpy(rewards.CorrectChoice().table(table, 3)), table
    )
    np.testing.assert_array_equal(
        ops.convert_to_numpy(rewards.CorrectChoice().table(LABELS, 3)),
        np.eye(3)[LABELS],
    )


@pytest.mark.backends
@pytest.mark.parametrize(
    "targets, message",
    [
        ([0, 3, 1, 2], "Labels must be < 3, .* Received: label 3"),
        ([[0], [1], [-1], [2]], "Labels must be >= 0. Received: label -1"),
        ([0.0, 1.5, 1.0, 2.0], "whole numbers .*Received: label 1.5"),
        ([0.0, np.nan, 1.0, 2.0], "whole numbers .*Received: label nan"),
        (np.zeros((4, 4)), r"Received: y with shape \(4, 4\)"),
        (np.zeros((4, 2, 3)), r"Received: y with shape \(4, 2, 3\)"),
        (
            np.where(np.eye(4, 3) > 0, np.inf, 0.0),
            "must be finite. Received: entry inf",
        ),
    ],
)
def test_every_backend_bad_targets_raise(targets, message):
    targets = np.asarray(targets)
    for given in (targets, ops.convert_to_tensor(targets)):
        with pytest.raises(ValueError, match=message):
            rewards.CorrectChoice().check_targets(given, 3)
        with pytest.raises(ValueError, match=message):
            correct_choice(given)


@pytest.mark.backends
def test_every_backend_reward_functions_and_their_checks():
    def half(y, actions):
        return ops.full(ops.shape(actions), 0.5)

    reward = rewards.get(half)
    actions = ops.convert_to_tensor(ACTIONS)
    checked = rewards.check_rewards(reward(None, actions, 3), 4)
    np.testing.assert_array_equal(ops.convert_to_numpy(checked), [0.5] * 4)
    ok = rewards.check_rewards(ops.convert_to_tensor([1, 0, 1]), 3)
    assert keras.backend.standardize_dtype(ok.dtype) == "float32"

    def broken(y, actions):
        return ops.where(ops.equal(actions, 1), np.inf, 1.0)

    with pytest.raises(ValueError, match="NaN or Inf. Received: reward inf"):
        rewards.check_rewards(rewards.get(broken)(None, actions, 3), 4)
    with pytest.raises(ValueError, match="Received: number of rewards 2"):
        rewards.check_rewards(ops.ones((2,)), 4)
    with pytest.raises(ValueError, match=r"shape \[batch\]"):
        rewards.check_rewards(ops.ones((4, 1)), 4)
    with pytest.raises(ValueError, match="dtype bool"):
        rewards.check_rewards(ops.ones((4,), "bool"), 4)


def _reward_of_action_zero(y, actions):
    return tf.cast(tf.equal(actions, 0), "float32")


@keras.saving.register_keras_serializable(package="tests")
def _registered_reward(y, actions):
    return tf.cast(tf.equal(actions, 0), "float32")


def test_unregistered_reward_functions_warn_when_saved(tmp_path):
    for reward in (_reward_of_action_zero, lambda y, actions: actions * 0.0):
        model = compiled_model(toy_net(), reward=reward)
        with pytest.warns(UserWarning, match=r"is not registered.*register"):
            model.save(tmp_path / "unregistered.keras")
    model = compiled_model(toy_net(), reward=_registered_reward)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.save(tmp_path / "registered.keras")
    assert keras.saving.load_model(tmp_path / "registered.keras").reward.fn is (
        _registered_reward
    )
