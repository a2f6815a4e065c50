"""BrainPropModel's input checks: the network, its Q-values, a batch."""

import warnings

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_brainprop import backend
from keras_brainprop._errors import InvalidInputError  # noqa: F401


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
    """Returns the checks of a training or test batch, for `backend.after`.

    Inputs must be finite: one NaN or Inf input makes every weight NaN in
    one step. `x` and `y` must hold as many samples. With the number of
    actions known, the targets must suit the reward. Run before the step,
    a failed check stops it before the forward pass (which would update
    batch-norm statistics) and before any update.
    """
    checks = []
    for value in keras.tree.flatten(x):
        checks += _check_finite(value)
    checks += _check_same_length(x, y)
    num_actions = _static_num_actions(network)
    if num_actions is not None:
        checks += reward.check_targets(y, num_actions)
    return checks


def check_target_dtype(y):
    """Raises `ValueError` unless the targets `y` hold numbers."""
    for target in keras.tree.flatten(y):
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

    A check that fails inside a compiled train or test step surfaces as the
    backend's own error, whose message opens with its trace; the new
    error's message is the check's own ("... Received: ..."), with the
    backend's error as its cause (Keras' traceback filtering shows the new
    error alone). See `backend.clear_errors`.
    """
    # Already done, possibly under a callback's wrapper (see
    # `_keras_fixes.wrap_train_function`).
    inner = getattr(function, "kbp_unwrapped", function)
    if getattr(inner, "kbp_clear_errors", False):
        return function
    run = backend.clear_errors(function)
    if run is function:
        run = _forward(function)
    run.kbp_clear_errors = True
    return run


def _forward(function):
    def run(*args, **kwargs):
        return function(*args, **kwargs)

    return run


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
    if _is_tensor(value) and _is_floating(value):
        return backend.check_finite(
            value,
            "The inputs must be finite: a NaN or Inf input makes the "
            "Q-values NaN and, in training, every weight. Received: inputs "
            "with NaN or Inf",
        )
    return []


def _is_tensor(value):
    return ops.is_tensor(value) or isinstance(value, np.ndarray)


def _is_floating(value):
    return "float" in keras.backend.standardize_dtype(value.dtype)


def _check_same_length(x, y):
    # x's and y's batch sizes (statically when known), e.g. for a tf.data
    # pipeline zipping differently batched inputs and targets.
    inputs = [v for v in keras.tree.flatten(x) if _is_tensor(v)]
    if not inputs or _rank(inputs[0]) == 0:
        return []
    x_size = _batch_size(inputs[0])
    checks = []
    for target in keras.tree.flatten(y):
        if not _is_tensor(target) or _rank(target) == 0:
            continue
        y_size = _batch_size(target)
        message = (
            "x and y must hold as many samples, one target per input. "
            "Received: a batch of x with"
        )
        if isinstance(x_size, int) and isinstance(y_size, int):
            if x_size != y_size:
                raise InvalidInputError(
                    f"{message} {x_size} samples and y with {y_size}"
                )
            continue
        # A size known only when the step runs (TensorFlow graphs).
        checks.append(
            tf.debugging.Assert(
                tf.equal(x_size, y_size),
                [message, x_size, "samples and y with", y_size],
            )
        )
    return checks


def _rank(value):
    # None for a TensorFlow graph tensor of unknown rank.
    if hasattr(value.shape, "rank"):
        return value.shape.rank
    return len(value.shape)


def _batch_size(value):
    if _rank(value) is None:
        return tf.shape(value)[0]
    return ops.shape(value)[0]


def _static_num_actions(network):
    # Known before the first call for Sequential and functional networks.
    try:
        outputs = network.outputs
    except (AttributeError, ValueError):
        return None
    if outputs and len(outputs) == 1 and len(outputs[0].shape) == 2:
        return outputs[0].shape[-1]
    return None
