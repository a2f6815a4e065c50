"""Policy parameters: a real number, a schedule or a callable of the step.

Checked when a policy is made (constants) or read at each step (schedules).
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_brainprop import backend


def _serialize_parameter(value):
    if isinstance(value, float):
        return value
    return keras.saving.serialize_keras_object(value)


def _deserialize_parameter(value):
    if isinstance(value, (int, float)):
        return float(value)
    return keras.saving.deserialize_keras_object(value)


def _real_scalar(value):
    """Returns `value` as a Python float if it is a real scalar, else None.

    Python ints and floats, NumPy scalars, 0-d arrays and 0-d eager tensors
    qualify; bools, complex numbers and anything with a shape do not.
    """
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if tf.is_tensor(value) and not hasattr(value, "numpy"):
        return None  # A symbolic tensor has no value yet.
    try:
        array = np.asarray(value)
    except Exception:  # Not array-like at all.
        return None
    if array.ndim != 0 or array.dtype.kind not in "iuf":
        return None
    # str() gives the shortest decimal of the scalar's own precision, so
    # np.float32(0.1) is stored as 0.1.
    return float(str(array[()]))


def _check_parameter(name, value, low, high):
    """Validates a constant parameter (to a float) or passes a schedule."""
    if callable(value) and not ops.is_tensor(value):
        return value
    number = _real_scalar(value)
    if number is None:
        raise ValueError(
            f"`{name}` must be a real number, a LearningRateSchedule or a "
            f"callable of the training step. Received: {name}={value!r}"
        )
    if not low <= number <= high:
        raise ValueError(
            f"`{name}` must be in {_interval(low, high)}. "
            f"Received: {name}={number}"
        )
    return number


def _interval(low, high):
    return f"[{low:g}, {high:g}]"


_MAX = float(np.finfo("float32").max)
# The smallest positive normal float32. Smaller temperatures are denormals,
# which CPUs may flush to zero, and Q / 0 is not a distribution.
_TINY = float(np.finfo("float32").tiny)


def _value_at(name, parameter, step, low, high):
    """Evaluates a constant or a schedule at `step` as a float32 scalar.

    A schedule's value is checked at run time: a value outside `[low,
    high]` (or NaN) fails with an error naming the parameter, the step and
    the value. TensorFlow's XLA drops assertions, so the value is also
    clipped into the range (NaN to `low`): under `jit_compile` a bad
    schedule cannot make the policy return an action outside `[0, actions)`.
    """
    if not callable(parameter):
        return ops.convert_to_tensor(parameter, "float32")
    value = ops.cast(parameter(step), "float32")
    in_range = ops.logical_and(value >= low, value <= high)
    message = (
        f"`{name}` must be in {_interval(low, high)}, but its schedule left it"
    )
    if backend.NAME == "tensorflow":
        checks = _tf_schedule_checks(in_range, message, step, name, value)
    else:
        checks = backend.assert_all(
            in_range, f"{message} {_at_step(step)}. Received: {name}=", value
        )
    clipped = ops.where(in_range, value, ops.where(value > high, high, low))
    return backend.with_checks(checks, clipped)


def _at_step(step):
    try:
        return f"at step {int(ops.convert_to_numpy(step))}"
    except TypeError:  # A step traced by `jax.jit` has no value to name.
        return "out of range in a compiled step"


def _tf_schedule_checks(in_range, message, step, name, value):
    # TensorFlow names the step in every mode (`backend.assert_all` names
    # one value): eagerly a `tf.errors.InvalidArgumentError` with the step
    # and value as Python numbers, in a graph an assertion printing both.
    if tf.executing_eagerly():
        if not bool(in_range):
            raise tf.errors.InvalidArgumentError(
                None,
                None,
                f"{message} at step {int(step)}. Received: {name}="
                f"{float(value)}",
            )
        return []
    return [
        tf.debugging.Assert(
            in_range, [f"{message} at step", step, f"Received: {name}=", value]
        )
    ]
