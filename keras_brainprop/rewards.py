"""Reward functions: the scalar feedback the agent gets for each action.

A reward maps the targets `y` of a batch and the chosen `actions` `[batch]`
to one float reward per sample `[batch]`. The network never sees `y` itself.

`y` may be:
- integer class labels, shape `[batch]` or `[batch, 1]`;
- one-hot labels, shape `[batch, actions]`;
- a float per-action reward table, shape `[batch, actions]`, for
  cost-sensitive tasks: entry `[i, a]` is the reward of action `a` on
  sample `i`.

Checks run inside the training step, in eager and graph mode alike (XLA,
i.e. `jit_compile=True`, compiles TensorFlow assertions away).
"""

import inspect

import keras
import tensorflow as tf


def _is_label_vector(y, num_actions):
    if y.shape.rank == 1:
        return True
    return y.shape.rank == 2 and y.shape[-1] == 1 and num_actions != 1


def _check_labels(labels, num_actions):
    checks = []
    if labels.dtype.is_floating:
        checks.append(
            tf.debugging.assert_equal(
                labels,
                tf.floor(labels),
                message="Labels must be whole numbers (class indices); "
                "received non-integer float labels.",
            )
        )
    checks.append(
        tf.debugging.assert_non_negative(
            labels, message="Labels must be >= 0; received a negative label."
        )
    )
    checks.append(
        tf.debugging.assert_less(
            labels,
            tf.cast(num_actions, labels.dtype),
            message=f"Labels must be < the number of actions ({num_actions}) "
            "(the width of the model's output); received a larger label.",
        )
    )
    return checks


def _check_table_width(table, num_actions):
    width = table.shape[-1]
    if table.shape.rank != 2 or (width is not None and width != num_actions):
        raise ValueError(
            "Targets `y` must be labels [batch] or [batch, 1], or one-hot "
            f"labels / a reward table [batch, {num_actions}] matching the "
            f"model's {num_actions} actions. Received: y with shape "
            f"{table.shape}"
        )


@keras.saving.register_keras_serializable(package="keras_brainprop")
class Reward:
    """Base class of reward functions.

    Subclasses implement `__call__(y, actions, num_actions)` returning
    float32 rewards of shape `[batch]`, and `get_config()`.
    """

    def __call__(self, y, actions, num_actions):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}()"


@keras.saving.register_keras_serializable(package="keras_brainprop")
class CorrectChoice(Reward):
    """The default reward: the table's entry for the chosen action.

    With class labels (integer or one-hot) this is 1 when the action is the
    correct class and 0 otherwise, as in the BrainProp paper. With a float
    reward table it is `y[i, actions[i]]`.

    Example:

    >>> reward = CorrectChoice()
    >>> reward(tf.constant([2, 0]), tf.constant([2, 1]), num_actions=3)
    <tf.Tensor: ... numpy=array([1., 0.], dtype=float32)>
    """

    def __call__(self, y, actions, num_actions):
        if y is None:
            raise ValueError(
                "The reward `correct_choice` needs targets: pass `y` (labels "
                "or a reward table) to fit(), or give wrap() a reward "
                "function that needs none. Received: y=None"
            )
        y = tf.convert_to_tensor(y)
        actions = tf.cast(actions, "int32")
        if _is_label_vector(y, num_actions):
            labels = tf.reshape(y, [-1])
            with tf.control_dependencies(_check_labels(labels, num_actions)):
                labels = tf.cast(labels, "int32")
            return tf.cast(tf.equal(labels, actions), "float32")
        _check_table_width(y, num_actions)
        table = tf.cast(y, "float32")
        width_check = tf.debugging.assert_equal(
            tf.shape(table)[-1],
            num_actions,
            message=f"The reward table's width must equal the number of "
            f"actions ({num_actions}).",
        )
        with tf.control_dependencies([width_check]):
            return tf.gather(table, actions, batch_dims=1)


@keras.saving.register_keras_serializable(package="keras_brainprop")
class RewardFunction(Reward):
    """Adapts a user function `fn(y, actions) -> [batch] rewards`.

    Use it for noisy, delayed-by-design or probabilistic rewards. To save and
    reload a model that uses it, register the function with
    `keras.saving.register_keras_serializable()`.

    Args:
        fn: a callable of `(y, actions)`; `y` is whatever the dataset gives
            as targets (possibly None) and `actions` the int32 actions
            `[batch]`. It returns one float reward per sample.

    Example:

    >>> def noisy_reward(y, actions):
    ...     correct = tf.cast(tf.equal(tf.cast(y, "int32"), actions), "float32")
    ...     flip = tf.random.uniform(tf.shape(correct)) < 0.1
    ...     return tf.where(flip, 1.0 - correct, correct)
    >>> reward = RewardFunction(noisy_reward)
    """

    def __init__(self, fn):
        if not callable(fn):
            raise ValueError(f"`fn` must be callable. Received: fn={fn!r}")
        self.fn = fn

    def __call__(self, y, actions, num_actions):
        return self.fn(y, actions)

    def get_config(self):
        return {"fn": keras.saving.serialize_keras_object(self.fn)}

    @classmethod
    def from_config(cls, config):
        return cls(keras.saving.deserialize_keras_object(config["fn"]))

    def __repr__(self):
        return f"RewardFunction({getattr(self.fn, '__name__', self.fn)!r})"


def check_rewards(rewards, batch_size):
    """Validates a reward function's output: float `[batch]`, finite.

    Args:
        rewards: what the reward function returned.
        batch_size: scalar int tensor, the number of samples in the batch.

    Returns:
        The rewards as a float32 tensor of shape `[batch]`.

    Raises:
        ValueError: for a wrong static shape or a non-numeric dtype.
        tf.errors.InvalidArgumentError: at run time for a wrong dynamic
            shape or non-finite values.
    """
    rewards = tf.convert_to_tensor(rewards)
    if not (rewards.dtype.is_floating or rewards.dtype.is_integer):
        raise ValueError(
            "The reward function must return numbers. Received: rewards with "
            f"dtype {rewards.dtype.name}"
        )
    if rewards.shape.rank != 1:
        raise ValueError(
            "The reward function must return one reward per sample, shape "
            f"[batch]. Received: rewards with shape {rewards.shape}"
        )
    rewards = tf.cast(rewards, "float32")
    checks = [
        tf.debugging.assert_equal(
            tf.shape(rewards)[0],
            tf.cast(batch_size, "int32"),
            message="The reward function must return one reward per sample.",
        ),
        tf.debugging.assert_all_finite(
            rewards, "The reward function returned NaN or Inf rewards."
        ),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(rewards)


def correct_choice():
    """Returns the default reward, `CorrectChoice()`."""
    return CorrectChoice()


def get(identifier):
    """Returns a `Reward` from an instance, a callable, a name or None.

    `None` and "correct_choice" give `CorrectChoice()`; a plain callable of
    `(y, actions)` is wrapped in `RewardFunction`.
    """
    if identifier is None or identifier == "correct_choice":
        return CorrectChoice()
    if isinstance(identifier, Reward):
        return identifier
    if isinstance(identifier, dict):
        reward = keras.saving.deserialize_keras_object(identifier)
        if isinstance(reward, Reward):
            return reward
    if callable(identifier) and not inspect.isclass(identifier):
        return RewardFunction(identifier)
    raise ValueError(
        "`reward` must be a keras_brainprop.rewards.Reward, a callable "
        "`fn(y, actions) -> rewards [batch]`, 'correct_choice' or None. "
        f"Received: reward={identifier!r}"
    )
