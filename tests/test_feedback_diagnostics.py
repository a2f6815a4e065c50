"""Tests of the feedback diagnostics and their TensorBoard summaries."""

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


def test_weight_alignment_matches_numpy():
    network = kbp.feedback.apply(
        _network(), kbp.feedback.FeedbackAlignment(seed=3)
    )
    alignment = diagnostics.weight_alignment(network)
    layers = kbp.feedback.feedback_layers(network)
    assert list(alignment) == [layer.name for layer in layers]
    for layer in layers:
        kernel = np.asarray(layer.kernel)
        feedback = np.asarray(layer.feedback_kernel)
        angle, ratio = alignment[layer.name]
        assert angle == pytest.approx(_numpy_angle(kernel, feedback), 1e-6)
        assert ratio == pytest.approx(
            np.linalg.norm(feedback) / np.linalg.norm(kernel), 1e-6
        )
    assert diagnostics.weight_alignment(_network()) == {}


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
    actions = np.argmax(network(IMAGES), axis=-1)  # Greedy.
    images = tf.constant(IMAGES)
    with tf.GradientTape() as tape:
        tape.watch(images)
        chosen = tf.gather(twin(images), actions, batch_dims=1)
    gradient = np.abs(tape.gradient(chosen, images).numpy()).sum(-1)
    low = gradient.min(axis=(1, 2), keepdims=True)
    high = gradient.max(axis=(1, 2), keepdims=True)
    expected = (gradient - low) / (high - low)
    assert maps.shape == (8, 6, 6, 1)
    np.testing.assert_allclose(maps.numpy()[..., 0], expected, atol=1e-5)


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


def test_nan_weights_or_probe_give_nan_angles_not_180():
    network = kbp.feedback.apply(_network(), kbp.feedback.KolenPollack(seed=3))
    reward = kbp.rewards.CorrectChoice()
    top = kbp.feedback.feedback_layers(network)[-1].name
    nan_probe = np.full_like(IMAGES, np.nan)
    angles = diagnostics.update_alignment(network, nan_probe, LABELS, reward)
    assert all(math.isnan(angle) for angle in angles.values())
    # A diverged layer: NaN in its kernel.
    first = kbp.feedback.feedback_layers(network)[0]
    kernel = first.kernel.numpy()
    kernel[0, 0, 0, 0] = np.nan
    first.kernel.assign(kernel)
    alignment = diagnostics.weight_alignment(network)
    assert all(math.isnan(value) for value in alignment[first.name])
    assert 0.0 < alignment[top][0] < 180.0


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
        diagnostics.attention_maps(model, IMAGES, LABELS, reward),
        diagnostics.attention_maps(model.network, IMAGES, LABELS, reward),
    )


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
