"""Independent references the tests compare the library with."""

import numpy as np


def numpy_brainprop_step(
    kernels, biases, feedbacks, x, y, learning_rate, decay=0.0, actions=None
):
    """One BrainProp step of a ReLU network, from the paper's equations.

    Forward: h_0 = x, z_l = h_{l-1} W_l + b_l, h_l = relu(z_l), Q = z_L.
    The action a (greedy, argmax Q, unless `actions` are given) earns
    r = [a == y]; RPE delta = r - Q_a. Only unit a sends feedback: g_L =
    delta at a, 0 elsewhere, and layer l receives
    g_l = (g_{l+1} B_{l+1}^T) * relu'(z_l) through the feedback weights B.
    Tags: h_{l-1}^T g_l (batch mean); every W_l and b_l moves by learning
    rate x tag (the RPE is in g). Kolen-Pollack's B get the same change,
    and decay shrinks W and B by `learning rate x decay`.

    Returns:
        `(kernels, biases, feedbacks)` after the step.
    """
    activities, pre_activations = [x.astype("float64")], []
    for index, (kernel, bias) in enumerate(zip(kernels, biases)):
        z = activities[-1] @ kernel + bias
        pre_activations.append(z)
        last = index == len(kernels) - 1
        activities.append(z if last else np.maximum(z, 0.0))
    q_values = activities[-1]
    rows = np.arange(len(x))
    if actions is None:
        actions = np.argmax(q_values, axis=-1)
    rpe = (actions == y).astype("float64") - q_values[rows, actions]
    gate = np.zeros_like(q_values)
    gate[rows, actions] = rpe
    tags = [None] * len(kernels)
    bias_tags = [None] * len(kernels)
    for index in reversed(range(len(kernels))):
        tags[index] = activities[index].T @ gate / len(x)
        bias_tags[index] = gate.mean(axis=0)
        if index:
            derivative = (pre_activations[index - 1] > 0).astype("float64")
            gate = (gate @ feedbacks[index].T) * derivative
    new_kernels = [
        w + learning_rate * (t - decay * w) for w, t in zip(kernels, tags)
    ]
    new_biases = [b + learning_rate * t for b, t in zip(biases, bias_tags)]
    new_feedbacks = [
        f + learning_rate * (t - decay * f) for f, t in zip(feedbacks, tags)
    ]
    return new_kernels, new_biases, new_feedbacks
