"""Tests of the feedback diagnostics and their TensorBoard summaries.

The tests marked `backends` run on every Keras backend; the event files are
read back with TensorFlow's summary iterator, which needs no TensorFlow
backend.
"""

import glob
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_brainprop as kbp
from keras_brainprop.feedback import diagnostics

RNG = np.random.default_rng(0)
IMAGES = RNG.random((8, 6, 6, 1)).astype("float32")
LABELS = RNG.integers(0, 3, 8).astype("int32")


def _network(activation="relu"):
    init = keras.initializers.RandomNormal(stddev=0.3, seed=1)
    return keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(
                2, 3, activation=activation, kernel_initializer=init
            ),
            keras.layers.Flatten(),
            keras.layers.Dense(
                5, activation=activation, kernel_initializer=init
            ),
            keras.layers.Dense(3, use_bias=False, kernel_initializer=init),
        ]
    )


def _numpy_angle(a, b):
    a, b = np.ravel(a).astype("float64"), np.ravel(b).astype("float64")
    cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return math.degrees(math.acos(np.clip(cosine, -1, 1)))


def _numpy(value):
    return keras.ops.convert_to_numpy(keras.ops.copy(value))


# A tiny dense network with weights set from NumPy: the same numbers on
# every backend, and a NumPy reference of its gradients.
DENSE_RNG = np.random.default_rng(5)
DENSE_X = DENSE_RNG.normal(size=(6, 2, 2, 1)).astype("float32")
DENSE_Y = np.array([0, 1, 2, 0, 1, 2], "int32")
DENSE_WEIGHTS = [
    DENSE_RNG.normal(size=(4, 5)).astype("float32"),  # Hidden kernel.
    DENSE_RNG.normal(size=5).astype("float32") * 0.1,  # Hidden bias.
    DENSE_RNG.normal(size=(5, 3)).astype("float32"),  # Output kernel.
]
DENSE_FEEDBACK = [
    DENSE_RNG.normal(size=(4, 5)).astype("float32"),
    DENSE_RNG.normal(size=(5, 3)).astype("float32"),
]


def _dense_network(rule):
    network = keras.Sequential(
        [
            keras.Input((2, 2, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(5, activation="relu"),
            keras.layers.Dense(3, use_bias=False),
        ]
    )
    network.set_weights(DENSE_WEIGHTS)
    network = kbp.feedback.apply(network, rule)
    for layer, feedback in zip(
        kbp.feedback.feedback_layers(network), DENSE_FEEDBACK
    ):
        if layer.feedback_weights is not None:
            layer.feedback_weights.assign(feedback)
    return network


def _numpy_feedback(rule_name):
    """The feedback kernels that `_dense_network(rule_name)` sends through."""
    if rule_name == "sign_symmetry":
        kernels = [DENSE_WEIGHTS[0], DENSE_WEIGHTS[2]]
        return [
            np.sign(kernel) * np.sqrt(np.mean(np.square(kernel)))
            for kernel in kernels
        ]
    return DENSE_FEEDBACK


def _numpy_backward(rule_name):
    """BrainProp's greedy step on the dense network, in NumPy.

    Returns the kernels' updates through the feedback and through the
    forward weights, and the chosen units' error at the input through the
    feedback.
    """
    hidden_kernel, bias, output_kernel = (
        w.astype("float64") for w in DENSE_WEIGHTS
    )
    feedback_hidden, feedback_output = (
        b.astype("float64") for b in _numpy_feedback(rule_name)
    )
    x = DENSE_X.reshape(len(DENSE_X), -1).astype("float64")
    pre_activation = x @ hidden_kernel + bias
    hidden = np.maximum(pre_activation, 0.0)
    q_values = hidden @ output_kernel
    actions = q_values.argmax(axis=1)
    rows = np.arange(len(actions))
    delta = (actions == DENSE_Y) - q_values[rows, actions]
    # d(mean 0.5 * delta**2) / dQ: only the chosen unit's error.
    error = np.zeros_like(q_values)
    error[rows, actions] = -delta / len(actions)
    active = pre_activation > 0
    output_update = hidden.T @ error
    updates = {}
    for name, down in [("feedback", feedback_output), ("backprop", None)]:
        down = output_kernel if down is None else down
        hidden_error = (error @ down.T) * active
        updates[name] = [x.T @ hidden_error, output_update]
    chosen = np.zeros_like(q_values)
    chosen[rows, actions] = 1.0
    input_error = ((chosen @ feedback_output.T) * active) @ feedback_hidden.T
    return updates["feedback"], updates["backprop"], input_error


RULES = ["feedback_alignment", "kolen_pollack", "sign_symmetry"]


@pytest.mark.backends
@pytest.mark.parametrize("rule", RULES)
def test_weight_alignment_matches_numpy_on_set_weights(rule):
    network = _dense_network(rule)
    alignment = diagnostics.weight_alignment(network)
    layers = kbp.feedback.feedback_layers(network)
    assert list(alignment) == [layer.name for layer in layers]
    kernels = [DENSE_WEIGHTS[0], DENSE_WEIGHTS[2]]
    for layer, kernel, feedback in zip(layers, kernels, _numpy_feedback(rule)):
        angle, ratio = alignment[layer.name]
        assert angle == pytest.approx(_numpy_angle(kernel, feedback), 1e-5)
        assert ratio == pytest.approx(
            np.linalg.norm(feedback) / np.linalg.norm(kernel), 1e-5
        )


@pytest.mark.backends
@pytest.mark.parametrize("rule", RULES)
def test_update_alignment_matches_numpy_on_set_weights(rule):
    network = _dense_network(rule)
    through_feedback, backprop, _ = _numpy_backward(rule)
    angles = diagnostics.update_alignment(
        network, DENSE_X, DENSE_Y, kbp.rewards.CorrectChoice()
    )
    hidden, output = (
        layer.name for layer in kbp.feedback.feedback_layers(network)
    )
    assert set(angles) == {hidden, output, "all"}
    expected = _numpy_angle(through_feedback[0], backprop[0])
    assert expected > 1.0
    assert angles[hidden] == pytest.approx(expected, 1e-5)
    # The output layer's update is backprop's: an angle of 0, up to the
    # float32 rounding that acos magnifies near 0.
    assert angles[output] == pytest.approx(0.0, abs=1e-2)
    flat = [
        np.concatenate([np.ravel(u) for u in updates])
        for updates in (through_feedback, backprop)
    ]
    assert angles["all"] == pytest.approx(_numpy_angle(*flat), 1e-5)


@pytest.mark.backends
@pytest.mark.parametrize("rule", RULES)
def test_attention_maps_match_numpy_on_set_weights(rule):
    network = _dense_network(rule)
    maps = diagnostics.attention_maps(
        network, DENSE_X, DENSE_Y, kbp.rewards.CorrectChoice()
    )
    _, _, input_error = _numpy_backward(rule)
    magnitude = np.abs(input_error).reshape(DENSE_X.shape).sum(-1)
    low = magnitude.min(axis=(1, 2), keepdims=True)
    high = magnitude.max(axis=(1, 2), keepdims=True)
    maps = _numpy(maps)
    assert maps.shape == (6, 2, 2, 1)
    assert maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    # An image whose map is flat (no pixel gets more feedback than another)
    # is all zeros.
    flat = np.isclose(high, low, rtol=1e-5)
    expected = np.where(flat, 0.0, magnitude - low) / np.where(
        flat, 1.0, high - low
    )
    np.testing.assert_allclose(maps[..., 0], expected, atol=1e-5)


@pytest.mark.backends
def test_weight_alignment_matches_numpy():
    network = kbp.feedback.apply(
        _network(), kbp.feedback.FeedbackAlignment(seed=3)
    )
    alignment = diagnostics.weight_alignment(network)
    layers = kbp.feedback.feedback_layers(network)
    assert list(alignment) == [layer.name for layer in layers]
    for layer in layers:
        kernel = _numpy(layer.kernel)
        feedback = _numpy(layer.feedback_kernel)
        angle, ratio = alignment[layer.name]
        assert angle == pytest.approx(_numpy_angle(kernel, feedback), 1e-6)
        assert ratio == pytest.approx(
            np.linalg.norm(feedback) / np.linalg.norm(kernel), 1e-6
        )
    assert diagnostics.weight_alignment(_network()) == {}


@pytest.mark.backends
def test_update_alignment_is_zero_for_feedback_equal_to_the_kernel():
    network = kbp.feedback.apply(
        _network(), kbp.feedback.FeedbackAlignment(seed=3)
    )
    reward = kbp.rewards.CorrectChoice()
    angles = diagnostics.update_alignment(network, IMAGES, LABELS, reward)
    # The top layer's error is the prediction error itself; below it the
    # random feedback turns the update away from backprop's.
    top = kbp.feedback.feedback_layers(network)[-1].name
    assert angles[top] == pytest.approx(0.0, abs=1e-3)
    assert min(v for k, v in angles.items() if k != top) > 1.0
    for layer in kbp.feedback.feedback_layers(network):
        layer.feedback_weights.assign(layer.kernel)
    angles = diagnostics.update_alignment(network, IMAGES, LABELS, reward)
    assert max(angles.values()) == pytest.approx(0.0, abs=1e-3)
    # Without feedback weights (Symmetric), there is nothing to compare.
    assert (
        diagnostics.update_alignment(_network(), IMAGES, LABELS, reward) == {}
    )


@pytest.mark.backends
def test_update_alignment_of_a_frozen_layer_is_nan():
    network = _dense_network("feedback_alignment")
    hidden, output = kbp.feedback.feedback_layers(network)
    hidden.trainable = False
    angles = diagnostics.update_alignment(
        network, DENSE_X, DENSE_Y, kbp.rewards.CorrectChoice()
    )
    assert math.isnan(angles[hidden.name])
    assert angles[output.name] == pytest.approx(0.0, abs=1e-2)
    assert angles["all"] == pytest.approx(0.0, abs=1e-2)


@pytest.mark.backends
def test_attention_maps_are_the_input_gradient_through_the_feedback():
    # Linear network: the error at the input through the feedback weights
    # is the input gradient of the same network with every kernel set to B.
    network = kbp.feedback.apply(
        _network(activation=None), kbp.feedback.FeedbackAlignment(seed=3)
    )
    twin = _network(activation=None)
    layers = kbp.feedback.feedback_layers(network)
    twin_layers = [layer for layer in twin.layers if layer.weights]
    for layer, twin_layer in zip(layers, twin_layers):
        twin_layer.kernel.assign(layer.feedback_kernel)
    reward = kbp.rewards.CorrectChoice()
    maps = diagnostics.attention_maps(network, IMAGES, LABELS, reward)
    actions = np.argmax(_numpy(network(IMAGES)), axis=-1)  # Greedy.
    chosen = keras.ops.convert_to_tensor(np.eye(3, dtype="float32")[actions])
    # The twin has no feedback weights: plain autodiff of its chosen units.
    _, gradient = kbp.backend.gradients(
        twin,
        IMAGES,
        lambda q_values: keras.ops.sum(q_values * chosen),
        wrt_inputs=True,
    )
    gradient = np.abs(_numpy(gradient)).sum(-1)
    low = gradient.min(axis=(1, 2), keepdims=True)
    high = gradient.max(axis=(1, 2), keepdims=True)
    expected = (gradient - low) / (high - low)
    assert tuple(maps.shape) == (8, 6, 6, 1)
    np.testing.assert_allclose(_numpy(maps)[..., 0], expected, atol=1e-5)


def _tags(directory):
    scalars, images = {}, set()
    paths = glob.glob(os.path.join(directory, "events.out.tfevents.*"))
    for path in paths:
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name
                if plugin == "images":
                    images.add(value.tag)
                elif plugin == "scalars":
                    scalars[value.tag] = float(tf.make_ndarray(value.tensor))
    return scalars, images


@pytest.mark.slow
@pytest.mark.backends
@pytest.mark.parametrize("run_eagerly", [False, True])
def test_monitor_writes_the_feedback_diagnostics(tmp_path, run_eagerly):
    keras.utils.set_random_seed(0)
    model = kbp.wrap(_network(), feedback="kolen_pollack")
    model.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=run_eagerly)
    monitor = kbp.callbacks.BrainPropMonitor(
        str(tmp_path), probe_data=(IMAGES, LABELS)
    )
    model.fit(IMAGES, LABELS, epochs=1, verbose=0, callbacks=[monitor])
    scalars, images = _tags(str(tmp_path / "brainprop"))
    alignment = diagnostics.weight_alignment(model.network)
    for name, (angle, ratio) in alignment.items():
        assert scalars[f"epoch/feedback/angle/{name}"] == pytest.approx(
            angle, 1e-4
        )
        assert scalars[f"epoch/feedback/norm_ratio/{name}"] == pytest.approx(
            ratio, 1e-4
        )
        assert f"epoch/feedback/update_angle/{name}" in scalars
    assert 0.0 <= scalars["epoch/feedback/update_angle/all"] <= 180.0
    assert images == {"epoch/feedback/input", "epoch/feedback/attention"}


@pytest.mark.slow
@pytest.mark.backends
def test_monitor_writes_no_feedback_diagnostics_for_symmetric(tmp_path):
    model = kbp.wrap(_network())
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    monitor = kbp.callbacks.BrainPropMonitor(
        str(tmp_path), probe_data=(IMAGES, LABELS)
    )
    model.fit(IMAGES, LABELS, epochs=1, verbose=0, callbacks=[monitor])
    scalars, images = _tags(str(tmp_path / "brainprop"))
    assert not images
    assert not any(tag.startswith("epoch/feedback/") for tag in scalars)


@pytest.mark.backends
def test_nan_weights_or_probe_give_nan_angles_not_180():
    network = kbp.feedback.apply(_network(), kbp.feedback.KolenPollack(seed=3))
    reward = kbp.rewards.CorrectChoice()
    top = kbp.feedback.feedback_layers(network)[-1].name
    nan_probe = np.full_like(IMAGES, np.nan)
    angles = diagnostics.update_alignment(network, nan_probe, LABELS, reward)
    assert all(math.isnan(angle) for angle in angles.values())
    # A diverged layer: NaN in its kernel.
    first = kbp.feedback.feedback_layers(network)[0]
    kernel = _numpy(first.kernel).copy()
    kernel[0, 0, 0, 0] = np.nan
    first.kernel.assign(kernel)
    alignment = diagnostics.weight_alignment(network)
    assert all(math.isnan(value) for value in alignment[first.name])
    assert 0.0 < alignment[top][0] < 180.0


@pytest.mark.backends
def test_diagnostics_given_a_brainprop_model_use_its_network():
    model = kbp.wrap(_network(), feedback=kbp.feedback.KolenPollack(seed=3))
    reward = kbp.rewards.CorrectChoice()
    assert diagnostics.weight_alignment(model) == (
        diagnostics.weight_alignment(model.network)
    )
    assert diagnostics.weight_alignment(model)
    assert diagnostics.update_alignment(
        model, IMAGES, LABELS, reward
    ) == diagnostics.update_alignment(model.network, IMAGES, LABELS, reward)
    np.testing.assert_array_equal(
        _numpy(diagnostics.attention_maps(model, IMAGES, LABELS, reward)),
        _numpy(
            diagnostics.attention_maps(model.network, IMAGES, LABELS, reward)
        ),
    )


@pytest.mark.backends
def test_attention_maps_refuse_inputs_that_are_not_images():
    network = kbp.feedback.apply(
        keras.Sequential([keras.Input((64,)), keras.layers.Dense(10)]),
        "feedback_alignment",
    )
    with pytest.raises(ValueError, match=r"Received: images with shape \(4,"):
        diagnostics.attention_maps(
            network,
            np.zeros((4, 64), "float32"),
            np.arange(4),
            kbp.rewards.CorrectChoice(),
        )
