"""BrainPropModel's input checks: the network, its Q-values, a batch."""

import re
import warnings

import keras
import numpy as np
import tensorflow as tf


class InvalidInputError(ValueError, tf.errors.InvalidArgumentError):
    """A failed input check: a `ValueError` whose message is the check's.

    Also a `tf.errors.InvalidArgumentError`, which TensorFlow raises for a
    check that fails inside a traced step, so that code catching either
    catches it.
    """

    def __init__(self, message):
        tf.errors.InvalidArgumentError.__init__(self, None, None, message)
        self.args = (message,)

    def __reduce__(self):
        return type(self), (self.message,)


def check_network(network):
    """Checks what `wrap()` gets: one Q-value output, ideally linear."""
    if not isinstance(network, keras.Model):
        raise ValueError(f"wrap() takes a keras.Model. Received: {network!r}")
    try:
        outputs = network.outputs
    except (AttributeError, ValueError):
        outputs = None  # Subclassed or unbuilt: checked at the first call.
    if outputs is not None:
        check_q_values(outputs)
    activation = _output_activation_name(network)
    if activation is not None:
        warnings.warn(
            f"The network's output layer applies {activation}. BrainProp "
            "reads the outputs as Q-values, estimates of the reward of each "
            "action, and regresses them onto rewards; a squashing output "
            "slows or stalls learning. Use a linear output layer.",
            stacklevel=3,
        )


def check_q_values(outputs):
    """Returns the network's output, checked to be Q-values.

    The Q-values are one tensor `[batch, actions]` with at least two
    actions; a list, tuple or dict holding one such tensor stands for it.
    """
    if isinstance(outputs, (list, tuple, dict)):
        if len(outputs) != 1:
            raise ValueError(
                "BrainProp needs a network with a single output, the "
                "Q-values [batch, actions]. Received: a network with "
                f"{len(outputs)} outputs"
            )
        (outputs,) = outputs.values() if isinstance(outputs, dict) else outputs
    shape = tuple(outputs.shape)
    if len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            "The network's output must be Q-values of shape [batch, actions] "
            "with a known number of actions. Received: output shape "
            f"{shape}"
        )
    if shape[-1] < 2:
        raise ValueError(
            "BrainProp learns from the choice between actions, one output "
            "unit per action: with one action the choice and its reward are "
            "always the same, and nothing is learned. Give the network at "
            "least two outputs (two classes for a binary task). Received: "
            f"output shape {shape}"
        )
    return outputs


def check_batch(x, y, reward, network):
    """Returns `x` guarded by the checks of a training or test batch.

    Inputs must be finite: one NaN or Inf input makes every weight NaN in
    one step. `x` and `y` must hold as many samples. Bad targets stop the
    step before the forward pass (which would update batch-norm statistics)
    when the number of actions is known.
    """
    x = tf.nest.map_structure(_check_finite, x)
    checks = _check_same_length(x, y)
    num_actions = _static_num_actions(network)
    if num_actions is not None:
        checks += reward.check_targets(y, num_actions)
    with tf.control_dependencies(checks):
        return tf.nest.map_structure(_after_checks, x)


def check_target_dtype(y):
    """Raises `ValueError` unless the targets `y` hold numbers."""
    for target in tf.nest.flatten(y):
        dtype = getattr(target, "dtype", None)
        if dtype is None:
            continue
        if isinstance(dtype, np.dtype) and dtype.kind not in "biuf":
            name = dtype.name
        elif isinstance(dtype, tf.DType) and not (
            dtype.is_integer or dtype.is_floating or dtype.is_bool
        ):
            name = dtype.name
        else:
            continue
        raise ValueError(
            "Targets `y` must be numbers: integer class indices, one-hot "
            "rows or a float reward table (map string labels to class "
            f"indices first). Received: y with dtype {name}"
        )


def with_clear_errors(function):
    """Returns `function` raising a failed check as `InvalidInputError`.

    A check that fails inside a traced train or test step surfaces as a
    `tf.errors.InvalidArgumentError` whose message opens with TensorFlow's
    trace; the new error's message is the check's own ("... Received:
    ..."), with TensorFlow's error as its cause (Keras' traceback filtering
    shows the new error alone).
    """
    # Already done, possibly under a callback's wrapper (see
    # `_keras_fixes.wrap_train_function`).
    inner = getattr(function, "kbp_unwrapped", function)
    if getattr(inner, "kbp_clear_errors", False):
        return function

    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except InvalidInputError:
            raise
        except tf.errors.InvalidArgumentError as error:
            message = _failed_check(error.message)
            if message is None:
                raise
            raise InvalidInputError(message) from error

    run.kbp_clear_errors = True
    return run


def _failed_check(message):
    # The line of a check's message (all end with "Received: ..."), from
    # tf.debugging.Assert ("assertion failed: [text] [value]") or
    # check_numerics ("text : Tensor had NaN values"), without TensorFlow's
    # node and op names.
    for line in reversed(message.splitlines()):
        line = re.sub(r"^\s*\{\{function_node [^}]*\}\}\s*", "", line)
        line = re.sub(r"\s*\[Op:[^\]]*\].*$", "", line).strip()
        prefix = "assertion failed: ["
        if line.startswith(prefix) and line.endswith("]"):
            line = " ".join(line[len(prefix) : -1].split("] ["))
            line = line.replace("\\'", "'").replace('\\"', '"')
        if "Received" in line:
            return line
    return None


def _output_activation_name(network):
    layers = getattr(network, "layers", None)
    if not layers:
        return None
    last = layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return "softmax"
    activation = getattr(last, "activation", None)
    name = getattr(activation, "__name__", None)
    return name if name in ("softmax", "sigmoid") else None


def _check_finite(value):
    if isinstance(value, tf.Tensor) and value.dtype.is_floating:
        return tf.debugging.check_numerics(
            value,
            "The inputs must be finite: a NaN or Inf input makes the "
            "Q-values NaN and, in training, every weight. Received: inputs "
            "with NaN or Inf",
        )
    return value


def _check_same_length(x, y):
    # x's and y's batch sizes (statically when known), e.g. for a tf.data
    # pipeline zipping differently batched inputs and targets.
    inputs = [v for v in tf.nest.flatten(x) if isinstance(v, tf.Tensor)]
    if not inputs or inputs[0].shape.rank == 0:
        return []
    x_size = inputs[0].shape[0]
    if x_size is None:
        x_size = tf.shape(inputs[0])[0]
    checks = []
    for target in tf.nest.flatten(y):
        if not isinstance(target, tf.Tensor) or target.shape.rank == 0:
            continue
        y_size = target.shape[0]
        if y_size is None:
            y_size = tf.shape(target)[0]
        message = (
            "x and y must hold as many samples, one target per input. "
            "Received: a batch of x with"
        )
        static = [tf.get_static_value(s) for s in (x_size, y_size)]
        if None not in static:
            if static[0] != static[1]:
                raise InvalidInputError(
                    f"{message} {static[0]} samples and y with {static[1]}"
                )
            continue
        checks.append(
            tf.debugging.Assert(
                tf.equal(x_size, y_size),
                [message, x_size, "samples and y with", y_size],
            )
        )
    return checks


def _static_num_actions(network):
    # Known before the first call for Sequential and functional networks.
    try:
        outputs = network.outputs
    except (AttributeError, ValueError):
        return None
    if outputs and len(outputs) == 1 and len(outputs[0].shape) == 2:
        return outputs[0].shape[-1]
    return None


def _after_checks(value):
    return tf.identity(value) if isinstance(value, tf.Tensor) else value
