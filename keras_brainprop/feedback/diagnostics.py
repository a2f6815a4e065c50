"""What a network's feedback does: weight and update angles, attention maps.

`BrainPropMonitor` writes these to TensorBoard for a network converted by
`feedback.apply()`; they can also be computed directly, e.g. in a notebook.
"""

import math

import numpy as np
import tensorflow as tf

from keras_brainprop.feedback.conversion import _network_of
from keras_brainprop.feedback.conversion import feedback_layers
from keras_brainprop.feedback.conversion import to_plain
from keras_brainprop.step import brainprop_step


def _angle_degrees(a, b):
    a = tf.reshape(tf.cast(a, "float64"), [-1])
    b = tf.reshape(tf.cast(b, "float64"), [-1])
    norms = tf.norm(a) * tf.norm(b)
    if float(norms) == 0.0:
        return float("nan")  # No direction to compare.
    cosine = float(tf.reduce_sum(a * b) / norms)
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

    >>> net = feedback.apply(net, "kolen_pollack")
    >>> feedback.diagnostics.weight_alignment(net)
    {'dense': (88.7, 1.02), 'dense_1': (89.9, 0.98)}
    """
    alignment = {}
    for layer in feedback_layers(_network_of(network)):
        kernel_norm = float(tf.norm(tf.cast(layer.kernel, "float64")))
        feedback_norm = float(
            tf.norm(tf.cast(layer.feedback_kernel, "float64"))
        )
        ratio = feedback_norm / kernel_norm if kernel_norm else float("nan")
        alignment[layer.name] = (
            _angle_degrees(layer.kernel, layer.feedback_kernel),
            ratio,
        )
    return alignment


def _kernel_gradients(network, kernels, x, y, reward, policy, step, seed):
    with tf.GradientTape() as tape:
        q_values = tf.cast(network(x, training=False), "float32")
        loss = brainprop_step(q_values, y, reward, policy, step, seed).loss
    return tape.gradient(loss, kernels)


def update_alignment(
    network, x, y, reward, policy=None, step=0, seed=(0, 0), plain=None
):
    """Angle between the feedback's update and backprop's, per layer.

    Both updates are the gradients of the same BrainProp loss (the probe's
    `0.5 * mean(delta**2)` of the actions `policy` takes, greedy if None)
    with respect to each converted layer's kernel: once through the
    network's feedback weights, once through the forward weights (what
    `Symmetric` would apply, i.e. backprop of `Q[action]`). The top layer's
    angle is 0: its error comes straight from the prediction error.

    Args:
        network: a network converted by `feedback.apply()`, or a
            `BrainPropModel` (its `network`).
        x, y: a probe batch and its targets.
        reward: the model's reward function.
        policy: the model's policy, or None for greedy actions.
        step, seed: the policy's step and stateless seed `[2]`.
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
    seed = tf.cast(seed, "int32")
    through_feedback, backprop = (
        _kernel_gradients(net, kernels, x, y, reward, policy, step, seed)
        for net in (network, plain)
    )
    angles = {
        layer.name: _angle_degrees(ours, exact)
        for layer, ours, exact in zip(layers, through_feedback, backprop)
    }
    angles["all"] = _angle_degrees(
        tf.concat([tf.reshape(g, [-1]) for g in through_feedback], 0),
        tf.concat([tf.reshape(g, [-1]) for g in backprop], 0),
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
    and scaled to [0, 1] per image.

    Args:
        network: a network (converted by `feedback.apply()` or not, or a
            `BrainPropModel`) whose input is images
            `[n, height, width, channels]`.
        images: the images, float `[n, height, width, channels]`.
        y, reward, policy, step, seed: as for `update_alignment`; they
            choose the action whose feedback is shown.

    Returns:
        Float32 maps `[n, height, width, 1]` in [0, 1].

    Raises:
        ValueError: if `images` is not a batch of images (rank 4).
    """
    images = tf.convert_to_tensor(images, "float32")
    if images.shape.rank != 4:
        raise ValueError(
            "attention_maps() shows the feedback reaching input images, "
            "float [n, height, width, channels]; for other inputs use "
            "weight_alignment() or update_alignment(). Received: images "
            f"with shape {tuple(images.shape)}"
        )
    network = _network_of(network)
    with tf.GradientTape() as tape:
        tape.watch(images)
        q_values = tf.cast(network(images, training=False), "float32")
        actions = brainprop_step(
            tf.stop_gradient(q_values),
            y,
            reward,
            policy,
            step,
            tf.cast(seed, "int32"),
        ).actions
        chosen = tf.gather(q_values, actions, batch_dims=1)
    maps = tf.reduce_sum(tf.abs(tape.gradient(chosen, images)), -1, True)
    return _unit_range(maps)


def _unit_range(images):
    low = tf.reduce_min(images, axis=[1, 2, 3], keepdims=True)
    high = tf.reduce_max(images, axis=[1, 2, 3], keepdims=True)
    return tf.math.divide_no_nan(images - low, high - low)


def write_summaries(prefix, network, x, y, model, step, seed, plain=None):
    """Writes the feedback diagnostics as TensorBoard summaries.

    Scalars `PREFIX/angle/LAYER`, `PREFIX/norm_ratio/LAYER`,
    `PREFIX/update_angle/LAYER` and `PREFIX/update_angle/all`; with probe
    images `[n, h, w, c]`, images `PREFIX/input` and `PREFIX/attention`
    (`attention_maps`) of the first three. Call it inside a default
    summary writer. Nothing is written for a network without feedback
    weights.

    Args:
        prefix: the tags' prefix.
        network: the model's (converted) network.
        x, y: probe inputs and targets (e.g. the monitor's probe chunk).
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
    if isinstance(x, (tf.Tensor, np.ndarray)) and len(x.shape) == 4:
        few = 3
        y_few = (
            None if y is None else tf.nest.map_structure(lambda t: t[:few], y)
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
        images = _unit_range(tf.cast(x[:few], "float32"))
        if images.shape[-1] not in (1, 3, 4):
            images = tf.reduce_mean(images, -1, keepdims=True)
        tf.summary.image(f"{prefix}/input", images, step, max_outputs=few)
        tf.summary.image(f"{prefix}/attention", maps, step, max_outputs=few)
