"""Reward functions: the scalar feedback the agent gets for each action.

A reward maps the targets `y` of a batch and the chosen `actions` `[batch]`
to one float reward per sample `[batch]`. The network never sees `y` itself.

`y` may be:
- integer class labels, shape `[batch]` or `[batch, 1]`;
- one-hot labels, shape `[batch, actions]`;
- a float per-action reward table, shape `[batch, actions]`, for
  cost-sensitive tasks: entry `[i, a]` is the reward of action `a` on
  sample `i`.

Checks run inside the training step, before any weight moves: eagerly on
PyTorch and in eager mode, as assertions in TensorFlow graphs (XLA, i.e.
`jit_compile=True`, compiles TensorFlow assertions away) and as host
callbacks in compiled JAX steps (see `keras_brainprop.backend`).
"""

import inspect
import warnings

import keras
import tensorflow as tf
from keras import ops

from keras_brainprop import _checks
from keras_brainprop import backend

__all__ = [
    "CorrectChoice",
    "Reward",
    "RewardFunction",
    "check_rewards",
    "correct_choice",
    "get",
]


def _is_label_vector(y, num_actions):
    """Whether `y` holds labels (else a table); a bool tensor if its rank
    is unknown, as when Keras traces fit() after other target forms (on
    TensorFlow only: the other backends' shapes are static)."""
    rank = ops.ndim(y)
    if rank is None:
        shape = tf.shape(y)
        one_per_sample = tf.equal(tf.size(y), shape[0])
        return tf.logical_or(
            tf.equal(tf.rank(y), 1),
            tf.logical_and(tf.equal(tf.rank(y), 2), one_per_sample)
            if num_actions != 1
            else False,
        )
    if rank == 1:
        return True
    return rank == 2 and y.shape[-1] == 1 and num_actions != 1


def _passed(checks):
    # A tensor that is ready once `checks` pass (for tf.cond branches).
    with tf.control_dependencies(checks):
        return tf.constant(True)


def _is_floating(x):
    return "float" in keras.backend.standardize_dtype(x.dtype)


def _check_labels(labels, num_actions):
    checks = []
    if _is_floating(labels):
        checks += backend.assert_all(
            ops.equal(labels, ops.floor(labels)),
            "Labels must be whole numbers (class indices). Received: label",
            labels,
        )
    checks += backend.assert_all(
        labels >= 0, "Labels must be >= 0. Received: label", labels
    )
    checks += backend.assert_all(
        labels < ops.cast(num_actions, labels.dtype),
        f"Labels must be < {num_actions}, the number of actions (the width "
        "of the model's output). Received: label",
        labels,
    )
    return checks


def _check_table(table, num_actions, rank, width):
    checks = backend.assert_all(
        ops.logical_and(ops.equal(rank, 2), ops.equal(width, num_actions)),
        f"The reward table's width must equal the number of actions "
        f"({num_actions}). Received: width",
        width,
    )
    if not _is_floating(table):
        return checks
    # Every entry, not only those the policy picks.
    return checks + backend.assert_all(
        ops.isfinite(table),
        "One-hot labels and reward tables must be finite. Received: entry",
        table,
    )


def _check_table_width(table, num_actions):
    if ops.ndim(table) != 2 or table.shape[-1] not in (None, num_actions):
        raise ValueError(
            "Targets `y` must be labels [batch] or [batch, 1], or one-hot "
            f"labels / a reward table [batch, {num_actions}] matching the "
            f"model's {num_actions} actions. Received: y with shape "
            f"{_shape(table)}"
        )


def _shape(x):
    # As TensorFlow prints a shape, also for the other backends' tensors.
    return x.shape if ops.ndim(x) is None else tuple(x.shape)


def _one_hot(labels, num_actions):
    # A row of zeros for a label out of range, on every backend (PyTorch's
    # one_hot raises for one).
    actions = ops.arange(num_actions, dtype="int32")
    return ops.cast(ops.equal(labels[:, None], actions), "float32")


def _take(table, actions):
    """`table[i, actions[i]]` for each row `i`."""
    actions = ops.expand_dims(ops.cast(actions, "int32"), -1)
    return ops.take_along_axis(table, actions, axis=-1)[:, 0]


@keras.saving.register_keras_serializable(package="keras_brainprop")
class Reward:
    """Base class of reward functions.

    Subclasses implement `__call__(y, actions, num_actions)` returning
    float32 rewards of shape `[batch]`, and `get_config()`.
    """

    def __call__(self, y, actions, num_actions):
        raise NotImplementedError

    def check_targets(self, y, num_actions):
        """Checks the targets `y` alone, before the training step runs.

        Raises at once where checks run eagerly (and for static problems);
        otherwise returns the checks, which the model passes through
        `keras_brainprop.backend.with_checks` before the forward pass. The
        default checks nothing.
        """
        return []

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
    >>> keras.ops.convert_to_numpy(reward([2, 0], [2, 1], num_actions=3))
    array([1., 0.], dtype=float32)
    """

    def check_targets(self, y, num_actions):
        if y is None:
            raise ValueError(
                "The reward `correct_choice` needs targets: pass `y` (labels "
                "or a reward table) to fit(), or give wrap() a reward "
                "function that needs none. Received: y=None"
            )
        _checks.check_target_dtype(y)
        y = ops.convert_to_tensor(y)
        is_labels = _is_label_vector(y, num_actions)
        if ops.ndim(y) is None:  # TensorFlow only: both forms are traced.
            return [
                tf.cond(
                    is_labels,
                    lambda: _passed(
                        _check_labels(tf.reshape(y, [-1]), num_actions)
                    ),
                    lambda: _passed(
                        _check_table(
                            y, num_actions, tf.rank(y), tf.shape(y)[-1]
                        )
                    ),
                )
            ]
        if is_labels:
            return _check_labels(ops.reshape(y, [-1]), num_actions)
        _check_table_width(y, num_actions)
        return _check_table(y, num_actions, 2, ops.shape(y)[-1])

    def __call__(self, y, actions, num_actions):
        checks = self.check_targets(y, num_actions)
        # The table is made from checked targets: a bad width fails the
        # check, not the reshape.
        y = backend.with_checks(checks, ops.convert_to_tensor(y))
        return _take(self.table(y, num_actions), actions)

    def table(self, y, num_actions):
        """Returns every action's reward, float32 `[batch, num_actions]`.

        The one-hot rows of class labels, or the reward table itself.
        """
        y = ops.convert_to_tensor(y)

        def from_labels():
            labels = ops.cast(ops.reshape(y, [-1]), "int32")
            return _one_hot(labels, num_actions)

        def from_table():
            return ops.reshape(ops.cast(y, "float32"), [-1, num_actions])

        is_labels = _is_label_vector(y, num_actions)
        if ops.ndim(y) is None:  # TensorFlow only: both forms are traced.
            return tf.cond(is_labels, from_labels, from_table)
        return from_labels() if is_labels else from_table()


@keras.saving.register_keras_serializable(package="keras_brainprop")
class RewardFunction(Reward):
    """Adapts a user function `fn(y, actions) -> [batch] rewards`.

    Use it for noisy, delayed-by-design or probabilistic rewards. To save and
    reload a model that uses it, register the function with
    `keras.saving.register_keras_serializable()`; `get_config()` (called
    when a model is saved) warns when it is not registered, since the saved
    model would then not load in another process.

    Args:
        fn: a callable of `(y, actions)`; `y` is whatever the dataset gives
            as targets (possibly None) and `actions` the int32 actions
            `[batch]`. It returns one float reward per sample.

    Example:

    >>> from keras import ops
    >>> def signed_reward(y, actions):
    ...     labels = ops.cast(ops.reshape(y, [-1]), "int32")
    ...     return ops.where(ops.equal(labels, actions), 1.0, -1.0)
    >>> reward = RewardFunction(signed_reward)
    """

    def __init__(self, fn):
        if not callable(fn):
            raise ValueError(f"`fn` must be callable. Received: fn={fn!r}")
        self.fn = fn

    def __call__(self, y, actions, num_actions):
        return self.fn(y, actions)

    def get_config(self):
        # A function, or a callable object of a serializable class.
        fn = self.fn if hasattr(self.fn, "__name__") else type(self.fn)
        name = keras.saving.get_registered_name(fn)
        if keras.saving.get_registered_object(name) is not fn:
            warnings.warn(
                f"The reward function {name!r} is not registered, so a model "
                "saved with it will not load in another process. Register "
                "it with @keras.saving.register_keras_serializable(). "
                f"Received: reward={self.fn!r}",
                stacklevel=2,
            )
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
        batch_size: the number of samples in the batch, an int (checked
            when tracing) or a scalar int tensor.

    Returns:
        The rewards as a float32 tensor of shape `[batch]`.

    Raises:
        ValueError: for a wrong static shape or a non-numeric dtype.
        InvalidInputError: (a `ValueError` and a
            `tf.errors.InvalidArgumentError`) for a wrong number of rewards
            or non-finite ones, at once where the step runs eagerly; inside
            a compiled step the backend's own error (a
            `tf.errors.InvalidArgumentError` on TensorFlow, see
            `keras_brainprop.backend.clear_errors`).
    """
    rewards = ops.convert_to_tensor(rewards)
    dtype = keras.backend.standardize_dtype(rewards.dtype)
    if "float" not in dtype and "int" not in dtype:
        raise ValueError(
            "The reward function must return numbers. Received: rewards with "
            f"dtype {dtype}"
        )
    if ops.ndim(rewards) != 1:
        raise ValueError(
            "The reward function must return one reward per sample, shape "
            f"[batch]. Received: rewards with shape {_shape(rewards)}"
        )
    if backend.NAME == "tensorflow":
        _tf_check_static_batch_size(rewards, batch_size)
    rewards = ops.cast(rewards, "float32")
    num_rewards = ops.shape(rewards)[0]
    checks = backend.assert_all(
        ops.equal(num_rewards, ops.cast(batch_size, "int32")),
        "The reward function must return one reward per sample, as many as "
        "the batch has samples. Received: number of rewards",
        num_rewards,
    )
    checks += backend.assert_all(
        ops.isfinite(rewards),
        "The reward function returned NaN or Inf. Received: reward",
        rewards,
    )
    return backend.with_checks(checks, rewards)


def _tf_check_static_batch_size(rewards, batch_size):
    # A TensorFlow graph may know both sizes before it runs: a mismatch is
    # then a ValueError when tracing. (JAX and PyTorch shapes are static,
    # and `backend.assert_all` raises at once for them.)
    static_batch_size = tf.get_static_value(batch_size)
    if (
        not tf.executing_eagerly()
        and static_batch_size is not None
        and rewards.shape[0] is not None
        and rewards.shape[0] != static_batch_size
    ):
        raise ValueError(
            "The reward function must return one reward per sample, as many "
            f"as the batch has samples ({static_batch_size}). Received: "
            f"number of rewards {rewards.shape[0]}"
        )


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
