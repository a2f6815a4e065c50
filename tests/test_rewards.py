"""Tests of the reward functions against NumPy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

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
