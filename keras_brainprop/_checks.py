"""BrainPropModel's input checks: the network, its Q-values, a batch."""

import warnings

import keras
import tensorflow as tf


def check_network(network):
    """Checks what `wrap()` gets: one Q-value output, ideally linear."""
    if not isinstance(network, keras.Model):
        raise ValueError(f"wrap() takes a keras.Model. Received: {network!r}")
    try:
        outputs = network.outputs
    except (AttributeError, ValueError):
        outputs = None  # Subclassed or unbuilt: checked at the first call.
    if outputs is not None:
        check_q_values(outputs[0] if len(outputs) == 1 else outputs)
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
    """Checks that the network's output is Q-values `[batch, actions]`."""
    if isinstance(outputs, (list, tuple, dict)):
        raise ValueError(
            "BrainProp needs a network with a single output, the Q-values "
            "[batch, actions]. Received: a network with "
            f"{len(outputs)} outputs"
        )
    shape = tuple(outputs.shape)
    if len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            "The network's output must be Q-values of shape [batch, actions] "
            "with a known number of actions. Received: output shape "
            f"{shape}"
        )


def check_batch(x, y, reward, network):
    """Returns `x` guarded by the checks of a training batch.

    The inputs must be finite: one NaN or Inf input turns every weight into
    NaN in a single step. The reward checks the targets; when the number of
    actions is known before the forward pass, bad targets stop the step
    before it, since it would update batch-norm statistics. In eager mode
    the checks raise at once; in graph mode they run before `x` is used.
    """
    x = tf.nest.map_structure(_check_finite, x)
    num_actions = _static_num_actions(network)
    if num_actions is None:
        return x
    with tf.control_dependencies(reward.check_targets(y, num_actions)):
        return tf.nest.map_structure(_after_checks, x)


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
            "Training inputs must be finite; a NaN or Inf input would "
            "make every weight NaN. Received: inputs with NaN or Inf",
        )
    return value


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
