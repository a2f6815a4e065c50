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
import warnings

import keras
import tensorflow as tf

from keras_brainprop import _checks


def _is_label_vector(y, num_actions):
    """Whether `y` holds labels (else a table); a bool tensor if its rank
    is unknown, as when Keras traces fit() after other target forms."""
    if y.shape.rank is None:
        shape = tf.shape(y)
        one_per_sample = tf.equal(tf.size(y), shape[0])
        return tf.logical_or(
            tf.equal(tf.rank(y), 1),
            tf.logical_and(tf.equal(tf.rank(y), 2), one_per_sample)
            if num_actions != 1
            else False,
        )
    if y.shape.rank == 1:
        return True
    return y.shape.rank == 2 and y.shape[-1] == 1 and num_actions != 1


def _passed(checks):
    # A tensor that is ready once `checks` pass (for tf.cond branches).
    with tf.control_dependencies(checks):
        return tf.constant(True)


def _assert_all(valid, message, value):
    """Fails unless `valid` is all true, naming the first offending `value`.

    Raises `InvalidInputError` (a `ValueError` and a
    `tf.errors.InvalidArgumentError`) at once in eager mode; in graph mode
    returns the assertion ops, to run before anything that uses the checked
    tensor. Either way the message ends with "Received: <value>".
    """
    valid = tf.reshape(valid, [-1])
    value = tf.reshape(value, [-1])
    # The first offending entry (argmax finds the first True), picked with
    # fixed shapes so that this also compiles under XLA and never indexes
    # out of range.
    first_bad = tf.argmax(tf.cast(tf.logical_not(valid), "int32"))
    picked = tf.equal(tf.range(tf.size(value, out_type=tf.int64)), first_bad)
    received = tf.reduce_sum(tf.where(picked, value, tf.zeros_like(value)))
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(valid)):
            raise _checks.InvalidInputError(f"{message} {received.numpy()}")
        return []
    return [tf.debugging.Assert(tf.reduce_all(valid), [message, received])]


def _check_labels(labels, num_actions):
    checks = []
    if labels.dtype.is_floating:
        checks += _assert_all(
            tf.equal(labels, tf.floor(labels)),
            "Labels must be whole numbers (class indices). Received: label",
            labels,
        )
    checks += _assert_all(
        labels >= 0, "Labels must be >= 0. Received: label", labels
    )
    checks += _assert_all(
        labels < tf.cast(num_actions, labels.dtype),
        f"Labels must be < {num_actions}, the number of actions (the width "
        "of the model's output). Received: label",
        labels,
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

    def check_targets(self, y, num_actions):
        """Checks the targets `y` alone, before the training step runs.

        Raises at once in eager mode (and for static problems); in graph
        mode returns the assertion ops, which the model runs before the
        forward pass. The default checks nothing.
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
    >>> reward(tf.constant([2, 0]), tf.constant([2, 1]), num_actions=3)
    <tf.Tensor: ... numpy=array([1., 0.], dtype=float32)>
    """

    def check_targets(self, y, num_actions):
        if y is None:
            raise ValueError(
                "The reward `correct_choice` needs targets: pass `y` (labels "
                "or a reward table) to fit(), or give wrap() a reward "
                "function that needs none. Received: y=None"
            )
        _checks.check_target_dtype(y)
        y = tf.convert_to_tensor(y)

        def check_labels():
            return _check_labels(tf.reshape(y, [-1]), num_actions)

        def check_table():
            checks = _assert_all(
                tf.logical_and(
                    tf.equal(tf.rank(y), 2),
                    tf.equal(tf.shape(y)[-1], num_actions),
                ),
                f"The reward table's width must equal the number of actions "
                f"({num_actions}). Received: width",
                tf.shape(y)[-1],
            )
            if not y.dtype.is_floating:
                return checks
            # Every entry, not only those the policy picks.
            return checks + _assert_all(
                tf.math.is_finite(y),
                "One-hot labels and reward tables must be finite. Received: "
                "entry",
                y,
            )

        is_labels = _is_label_vector(y, num_actions)
        if isinstance(is_labels, tf.Tensor):
            return [
                tf.cond(
                    is_labels,
                    lambda: _passed(check_labels()),
                    lambda: _passed(check_table()),
                )
            ]
        if is_labels:
            return check_labels()
        _check_table_width(y, num_actions)
        return check_table()

    def __call__(self, y, actions, num_actions):
        with tf.control_dependencies(self.check_targets(y, num_actions)):
            table = self.table(y, num_actions)
        return tf.gather(table, tf.cast(actions, "int32"), batch_dims=1)

    def table(self, y, num_actions):
        """Returns every action's reward, float32 `[batch, num_actions]`.

        The one-hot rows of class labels, or the reward table itself.
        """
        y = tf.convert_to_tensor(y)

        def from_labels():
            labels = tf.cast(tf.reshape(y, [-1]), "int32")
            return tf.one_hot(labels, num_actions, dtype="float32")

        def from_table():
            return tf.reshape(tf.cast(y, "float32"), [-1, num_actions])

        is_labels = _is_label_vector(y, num_actions)
        if isinstance(is_labels, tf.Tensor):
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
        tf.errors.InvalidArgumentError: at run time for a wrong dynamic
            shape or non-finite values (in eager mode an
            `InvalidInputError`, also a `ValueError`).
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
    rewards = tf.cast(rewards, "float32")
    batch_size = tf.cast(batch_size, "int32")
    checks = _assert_all(
        tf.equal(tf.shape(rewards)[0], batch_size),
        "The reward function must return one reward per sample, as many as "
        "the batch has samples. Received: number of rewards",
        tf.shape(rewards)[0],
    )
    checks += _assert_all(
        tf.math.is_finite(rewards),
        "The reward function returned NaN or Inf. Received: reward",
        rewards,
    )
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
