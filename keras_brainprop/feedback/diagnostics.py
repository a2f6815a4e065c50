"""What a network's feedback does: weight and update angles, attention maps.

`BrainPropMonitor` writes these to TensorBoard for a network converted by
`feedback.apply()`; they can also be computed directly, e.g. in a notebook.
They run on every Keras backend and give the same numbers on each for the
same weights, data and actions: angles and norms are computed on the host
in float64 NumPy (JAX computes in float32 unless x64 is enabled). A policy
that explores draws its actions with the backend's own random numbers, so
its draws, and the numbers that follow from them, differ between backends.
"""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_brainprop import backend
from keras_brainprop.feedback.conversion import _network_of
from keras_brainprop.feedback.conversion import feedback_layers
from keras_brainprop.feedback.conversion import to_plain
from keras_brainprop.step import brainprop_step

__all__ = [
    "attention_maps",
    "update_alignment",
    "weight_alignment",
    "write_summaries",
]


def _to_numpy(values):
    """`values` (a backend tensor, a variable or an array) as NumPy."""
    if isinstance(values, keras.Variable):
        # Read through a tensor: NumPy 2 warns on the array protocol of
        # Keras' and TensorFlow's variables.
        values = ops.copy(values)
    return ops.convert_to_numpy(values)


def _flat_float64(values):
    return np.ravel(_to_numpy(values)).astype("float64")


def _norm(values):
    return float(np.linalg.norm(_flat_float64(values)))


def _angle_degrees(a, b):
    a, b = _flat_float64(a), _flat_float64(b)
    with np.errstate(invalid="ignore", over="ignore"):
        norms = np.linalg.norm(a) * np.linalg.norm(b)
        if norms == 0.0:
            return float("nan")  # No direction to compare.
        cosine = float(np.dot(a, b) / norms)
    if math.isnan(cosine):
        # NaN or Inf entries: no angle. (Clamped, NaN would read as 180.)
        return float("nan")
    return math.degrees(math.acos(min(1.0, max(-1.0, cosine))))


def weight_alignment(network):
    """Angle and norm ratio between each layer's forward and feedback weights.

    Args:
        network: a network converted by `feedback.apply()`, or a
            `BrainPropModel` (its `network`).

    Returns:
        A dict from the layer's name to `(angle, norm_ratio)`: the angle in
        degrees between `kernel` and `feedback_kernel` (0 when the feedback
        is the forward weights, about 90 for independent random weights)
        and `||feedback_kernel|| / ||kernel||`. Either is NaN when it has no
        value: for zero weights, and for weights holding NaN or Inf (a
        diverged layer). Empty for a network without feedback weights
        (`Symmetric`).

    Example:

    >>> net = keras.Sequential([
    ...     keras.Input((64,)),
    ...     keras.layers.Dense(32, name="hidden"),
    ...     keras.layers.Dense(10, name="output"),
    ... ])
    >>> net = feedback.apply(net, "feedback_alignment")
    >>> alignment = feedback.diagnostics.weight_alignment(net)
    >>> sorted(alignment)
    ['hidden', 'output']
    >>> angle, norm_ratio = alignment["hidden"]
    >>> 80 < angle < 100  # Random feedback: about orthogonal to the kernel.
    True
    """
    alignment = {}
    for layer in feedback_layers(_network_of(network)):
        kernel_norm = _norm(layer.kernel)
        feedback_norm = _norm(layer.feedback_kernel)
        ratio = feedback_norm / kernel_norm if kernel_norm else float("nan")
        alignment[layer.name] = (
            _angle_degrees(layer.kernel, layer.feedback_kernel),
            ratio,
        )
    return alignment


def _kernel_gradients(network, kernels, x, y, reward, policy, step, seed):
    """The loss's gradients in `kernels`, flat float64 NumPy arrays.

    A kernel the network does not train (a frozen layer) has no update:
    zeros, so that its angle is NaN and the overall angle leaves it out.
    """

    def loss(q_values):
        q_values = ops.cast(q_values, "float32")
        return brainprop_step(q_values, y, reward, policy, step, seed).loss

    grads = backend.gradients(network, x, loss)
    by_variable = {
        id(variable): grad
        for variable, grad in zip(network.trainable_variables, grads)
    }
    return [
        np.zeros(math.prod(kernel.shape))
        if by_variable.get(id(kernel)) is None
        else _flat_float64(by_variable[id(kernel)])
        for kernel in kernels
    ]


def _policy_inputs(step, seed):
    # Tensors, not the optimizer's step variable: under JAX the network
    # runs as a pure function of arrays.
    step = None if step is None else ops.convert_to_tensor(step)
    return step, ops.convert_to_tensor(seed, "int32")


def update_alignment(
    network, x, y, reward, policy=None, step=0, seed=(0, 0), plain=None
):
    """Angle between the feedback's update and backprop's, per layer.

    Both updates are the gradients of the same BrainProp loss (the probe's
    `0.5 * mean(delta**2)` of the actions `policy` takes, greedy if None)
    with respect to each converted layer's kernel: once through the
    network's feedback weights, once through the forward weights (what
    `Symmetric` would apply, i.e. backprop of `Q[action]`). The top layer's
    angle is 0: its error comes straight from the prediction error. A
    frozen layer has no update: its angle is NaN.

    Args:
        network: a network converted by `feedback.apply()`, or a
            `BrainPropModel` (its `network`).
        x: a probe batch.
        y: its targets.
        reward: the model's reward function.
        policy: the model's policy, or None for greedy actions.
        step: the policy's step.
        seed: the policy's stateless seed `[2]`.
        plain: `feedback.to_plain(network)`, if already made (it shares
            every weight with `network`).

    Returns:
        A dict from the layer's name to the angle in degrees, and "all"
        for the concatenated update of every converted layer; NaN where an
        update is zero or not finite (NaN weights or probe). Empty for a
        network without feedback weights.
    """
    network = _network_of(network)
    layers = feedback_layers(network)
    if not layers:
        return {}
    plain = to_plain(network) if plain is None else plain
    # The plain network shares these kernels: the same variables, reached
    # through the forward weights instead of the feedback ones.
    kernels = [layer.kernel for layer in layers]
    step, seed = _policy_inputs(step, seed)
    through_feedback, backprop = (
        _kernel_gradients(net, kernels, x, y, reward, policy, step, seed)
        for net in (network, plain)
    )
    angles = {
        layer.name: _angle_degrees(ours, exact)
        for layer, ours, exact in zip(layers, through_feedback, backprop)
    }
    angles["all"] = _angle_degrees(
        np.concatenate(through_feedback), np.concatenate(backprop)
    )
    return angles


def attention_maps(
    network, images, y, reward, policy=None, step=0, seed=(0, 0)
):
    """The feedback that reaches the input: the chosen action's "attention".

    For each image, the error signal that the chosen output unit's feedback
    delivers to the input pixels under the network's own feedback rule
    (the gradient of `Q[action]` with respect to the input, sent down
    through the feedback weights), summed in absolute value over channels
    and scaled to [0, 1] per image. The action is chosen as in
    `update_alignment`.

    Args:
        network: a network (converted by `feedback.apply()` or not, or a
            `BrainPropModel`) whose input is images
            `[n, height, width, channels]`.
        images: the images, float `[n, height, width, channels]`.
        y: the images' targets.
        reward: the model's reward function.
        policy: the model's policy, or None for greedy actions.
        step: the policy's step.
        seed: the policy's stateless seed `[2]`.

    Returns:
        Float32 maps `[n, height, width, 1]` in [0, 1], a tensor of the
        Keras backend.

    Raises:
        ValueError: if `images` is not a batch of images (rank 4).
    """
    images = ops.convert_to_tensor(images, "float32")
    if len(images.shape) != 4:
        raise ValueError(
            "attention_maps() shows the feedback reaching input images, "
            "float [n, height, width, channels]; for other inputs use "
            "weight_alignment() or update_alignment(). Received: images "
            f"with shape {tuple(images.shape)}"
        )
    network = _network_of(network)
    step, seed = _policy_inputs(step, seed)

    def chosen_q_value(q_values):
        q_values = ops.cast(q_values, "float32")
        actions = brainprop_step(
            ops.stop_gradient(q_values), y, reward, policy, step, seed
        ).actions
        chosen = ops.take_along_axis(
            q_values, ops.expand_dims(actions, -1), axis=-1
        )
        return ops.sum(chosen)

    _, input_gradient = backend.gradients(
        network, images, chosen_q_value, wrt_inputs=True
    )
    maps = ops.sum(ops.abs(input_gradient), axis=-1, keepdims=True)
    return _unit_range(maps)


def _unit_range(images):
    low = ops.min(images, axis=(1, 2, 3), keepdims=True)
    high = ops.max(images, axis=(1, 2, 3), keepdims=True)
    return ops.divide_no_nan(images - low, high - low)


def write_summaries(prefix, network, x, y, model, step, seed, plain=None):
    """Writes the feedback diagnostics as TensorBoard summaries.

    Scalars `PREFIX/angle/LAYER`, `PREFIX/norm_ratio/LAYER`,
    `PREFIX/update_angle/LAYER` and `PREFIX/update_angle/all`; with probe
    images `[n, h, w, c]`, images `PREFIX/input` and `PREFIX/attention`
    (`attention_maps`) of the first three. Call it inside a default
    summary writer (`tf.summary`, on every Keras backend: the values are
    handed to it as NumPy). Nothing is written for a network without
    feedback weights.

    Args:
        prefix: the tags' prefix.
        network: the model's (converted) network.
        x: probe inputs (e.g. the monitor's probe chunk).
        y: probe targets.
        model: the `BrainPropModel` (its reward, policy and step counter).
        step: the summary step.
        seed: the policy's stateless seed `[2]` on the probe.
        plain: `feedback.to_plain(network)`, if already made.
    """
    if not feedback_layers(network):
        return
    for name, (angle, ratio) in weight_alignment(network).items():
        tf.summary.scalar(f"{prefix}/angle/{name}", angle, step)
        tf.summary.scalar(f"{prefix}/norm_ratio/{name}", ratio, step)
    iterations = model.optimizer.iterations
    angles = update_alignment(
        network, x, y, model.reward, model.policy, iterations, seed, plain
    )
    for name, angle in angles.items():
        tf.summary.scalar(f"{prefix}/update_angle/{name}", angle, step)
    if not keras.tree.is_nested(x) and len(x.shape) == 4:
        few = 3
        y_few = (
            None
            if y is None
            else keras.tree.map_structure(lambda t: t[:few], y)
        )
        maps = attention_maps(
            network,
            x[:few],
            y_few,
            model.reward,
            model.policy,
            iterations,
            seed,
        )
        images = _unit_range(ops.cast(x[:few], "float32"))
        if images.shape[-1] not in (1, 3, 4):
            images = ops.mean(images, axis=-1, keepdims=True)
        tf.summary.image(
            f"{prefix}/input",
            ops.convert_to_numpy(images),
            step,
            max_outputs=few,
        )
        tf.summary.image(
            f"{prefix}/attention",
            ops.convert_to_numpy(maps),
            step,
            max_outputs=few,
        )
