"""keras_brainprop.feedback in a BrainPropModel: one step equals the
paper's equations under every rule; wrap, save, resume and weights files.

The rules, the conversion and FeedbackLayer have their own test files.
"""

import json
import os
import subprocess
import sys

import _references
import keras
import numpy as np
import pytest
from _helpers import LEARNING_RATE
from _helpers import RULE_NAMES
from _helpers import angle_degrees
from _helpers import brainprop_model
from _helpers import loccon_net
from _helpers import random_batch
from _helpers import relu_net
from _helpers import to_numpy

import keras_brainprop as kbp
from keras_brainprop import feedback

_HERE = os.path.dirname(os.path.abspath(__file__))


# The paper's equations in NumPy ----------------------------------------------


def numpy_brainprop_step(kernels, biases, feedbacks, x, y, decay=0.0):
    """One greedy BrainProp step from the paper's equations (see
    `_references.numpy_brainprop_step`), at this module's learning rate."""
    return _references.numpy_brainprop_step(
        kernels, biases, feedbacks, x, y, LEARNING_RATE, decay=decay
    )


@pytest.mark.slow
@pytest.mark.parametrize("rule_name", RULE_NAMES)
def test_one_step_equals_the_papers_equations(rule_name):
    rule = feedback.get(rule_name)
    if isinstance(rule, feedback.KolenPollack):
        rule = feedback.KolenPollack(decay=0.3, seed=5)
    network = relu_net()
    x, y = random_batch((6,), 4)
    model = kbp.wrap(network, policy="greedy", feedback=rule)
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    converted = model.network
    kernels = [layer.kernel.numpy() for layer in network.layers]
    biases = [layer.bias.numpy() for layer in network.layers]
    if rule_name == "symmetric":
        feedbacks = kernels
    elif rule_name == "sign_symmetry":
        feedbacks = [np.sign(w) * np.sqrt(np.mean(w**2)) for w in kernels]
    else:
        feedbacks = [
            to_numpy(layer.feedback_kernel) for layer in converted.layers
        ]
        for kernel, feedback_kernel in zip(kernels, feedbacks):
            assert feedback_kernel.shape == kernel.shape
            assert angle_degrees(kernel, feedback_kernel) > 45
    expected = numpy_brainprop_step(
        kernels, biases, feedbacks, x, y, decay=getattr(rule, "decay", 0.0)
    )
    model.train_on_batch(x, y)
    for index, layer in enumerate(network.layers):
        np.testing.assert_allclose(
            layer.kernel.numpy(), expected[0][index], atol=1e-6
        )
        np.testing.assert_allclose(
            layer.bias.numpy(), expected[1][index], atol=1e-6
        )
    if rule_name in ("feedback_alignment", "kolen_pollack"):
        learned = expected[2] if rule_name == "kolen_pollack" else feedbacks
        for layer, expected_feedback in zip(converted.layers, learned):
            np.testing.assert_allclose(
                layer.feedback_kernel.numpy(), expected_feedback, atol=1e-6
            )
    # The rules differ: below the output layer, the hidden kernels moved
    # differently than under backprop.
    if rule_name != "symmetric":
        backprop = numpy_brainprop_step(kernels, biases, kernels, x, y)
        assert not np.allclose(expected[0][0], backprop[0][0], atol=1e-4)


def test_wrap_with_a_feedback_rule():
    network = relu_net()
    model = kbp.wrap(network, feedback="kolen_pollack")
    assert isinstance(model.feedback, feedback.KolenPollack)
    assert len(feedback.feedback_layers(model.network)) == 3
    assert model.network.layers[0].kernel is network.layers[0].kernel
    config = model.get_config()
    assert config["feedback"]["class_name"] == "KolenPollack"
    # Re-wrapping keeps the network and its feedback weights, unless
    # another rule is asked for.
    assert kbp.wrap(model).network is model.network
    assert kbp.wrap(model, feedback="kolen_pollack").network is model.network
    plain = kbp.wrap(model, feedback="symmetric")
    assert not feedback.feedback_layers(plain.network)
    assert isinstance(plain.feedback, feedback.Symmetric)
    assert isinstance(kbp.wrap(network).feedback, feedback.Symmetric)
    assert kbp.wrap(network).network is network
    converted = feedback.apply(network, feedback.SignSymmetry())
    assert isinstance(kbp.wrap(converted).feedback, feedback.SignSymmetry)
    # apply() is idempotent for an equal rule.
    assert feedback.apply(converted, "sign_symmetry") is converted
    assert isinstance(feedback.rule_of(converted), feedback.SignSymmetry)


@pytest.mark.slow
def test_save_load_round_trip_continues_exactly(tmp_path):
    x, y = random_batch((6, 6, 2), 3, batch_size=32)
    model = kbp.wrap(
        loccon_net(),
        policy=kbp.policies.EpsilonBoltzmann(epsilon=0.3),
        seed=7,
        feedback=feedback.KolenPollack(decay=0.1),
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    model.fit(x, y, batch_size=8, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert reloaded.feedback.get_config() == model.feedback.get_config()
    layers = feedback.feedback_layers(model.network)
    reloaded_layers = feedback.feedback_layers(reloaded.network)
    assert len(reloaded_layers) == len(layers) == 3
    for ours, theirs in zip(layers, reloaded_layers):
        assert type(theirs.rule) is type(ours.rule)
        assert theirs.rule.get_config() == ours.rule.get_config()
        np.testing.assert_array_equal(
            to_numpy(theirs.feedback_kernel),
            to_numpy(ours.feedback_kernel),
        )
        assert len(theirs.weights) == len(ours.weights)
    np.testing.assert_array_equal(
        reloaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )
    model.fit(x, y, batch_size=8, verbose=0)
    reloaded.fit(x, y, batch_size=8, verbose=0)
    for ours, theirs in zip(model.get_weights(), reloaded.get_weights()):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    # The trained plain network, saved on its own, needs no feedback code.
    plain = feedback.to_plain(reloaded.network)
    plain.save(tmp_path / "plain.keras")
    plain_reloaded = keras.models.load_model(tmp_path / "plain.keras")
    assert not feedback.feedback_layers(plain_reloaded)
    np.testing.assert_allclose(
        plain_reloaded.predict(x, verbose=0),
        reloaded.predict(x, verbose=0),
        atol=1e-6,
    )


@pytest.mark.slow
def test_mirrored_training_equals_single_device_training(tmp_path):
    output = tmp_path / "result.json"
    environment = dict(os.environ, CUDA_VISIBLE_DEVICES="-1")
    environment.pop("TF_CONFIG", None)
    completed = subprocess.run(
        [
            sys.executable,
            os.path.join(_HERE, "feedback_distribute_worker.py"),
            str(output),
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(output.read_text())
    assert results["num_replicas"] == 2
    for rule_name in ("kolen_pollack", "sign_symmetry"):
        result = results[rule_name]
        # Three kernels, three biases and, for Kolen-Pollack, three feedback
        # weights.
        assert result["num_weights"] == (
            9 if rule_name == "kolen_pollack" else 6
        )
        assert result["max_difference"] < 1e-5, result
        assert result["smallest_change"] > 1e-4, result


@pytest.mark.slow
def test_interrupted_kolen_pollack_training_resumes_exactly(tmp_path):
    x, y = random_batch((6,), 4, batch_size=32)

    def fit(callbacks):
        keras.utils.set_random_seed(4)  # A restarted process.
        model = kbp.wrap(
            relu_net(), seed=2, feedback=feedback.KolenPollack(0.1, seed=1)
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
        model.fit(
            x,
            y,
            batch_size=8,
            epochs=2,
            shuffle=False,
            verbose=0,
            callbacks=callbacks,
        )
        return model

    class Interrupted(Exception):
        pass

    class Interrupt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1 and self.model.optimizer.iterations == 6:
                raise Interrupted

    expected = fit([]).get_weights()
    backup = kbp.callbacks.BackupAndRestore(tmp_path, save_freq=2)
    with pytest.raises(Interrupted):
        fit([backup, Interrupt()])
    resumed = fit([kbp.callbacks.BackupAndRestore(tmp_path, save_freq=2)])
    assert int(resumed.optimizer.iterations) == 8
    assert len(expected) == len(resumed.get_weights())
    for ours, theirs in zip(expected, resumed.get_weights()):
        np.testing.assert_allclose(theirs, ours, atol=1e-6)


# Weights files of wrapped models ---------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("rule_name", RULE_NAMES[1:])
def test_plain_network_loads_a_wrapped_models_weights_file_and_back(
    rule_name, tmp_path
):
    x, y = random_batch((6,), 4, batch_size=16)
    model = brainprop_model(relu_net(), rule_name)
    model.fit(x, y, batch_size=8, verbose=0)
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    plain = relu_net()
    plain.load_weights(path)
    np.testing.assert_allclose(plain(x), model.network(x), atol=1e-6)
    # Back: the plain network's file into a wrapped model.
    plain_path = str(tmp_path / "plain.weights.h5")
    other = relu_net()
    other.save_weights(plain_path)
    other_model = brainprop_model(relu_net(), rule_name)
    feedback_before = [
        to_numpy(layer.feedback_kernel)
        for layer in feedback.feedback_layers(other_model.network)
    ]
    other_model.load_weights(plain_path)
    np.testing.assert_allclose(other_model.network(x), other(x), atol=1e-6)
    for layer, old in zip(
        feedback.feedback_layers(other_model.network), feedback_before
    ):
        if layer.feedback_weights is not None:  # Kept as they were.
            np.testing.assert_array_equal(to_numpy(layer.feedback_kernel), old)
    # Between wrapped models the feedback weights come along too.
    other_model.load_weights(path)
    for ours, theirs in zip(
        feedback.feedback_layers(model.network),
        feedback.feedback_layers(other_model.network),
    ):
        np.testing.assert_array_equal(
            to_numpy(theirs.feedback_kernel), to_numpy(ours.feedback_kernel)
        )
    # So does a file of the converted network itself.
    converted_path = str(tmp_path / "converted.weights.h5")
    model.network.save_weights(converted_path)
    third = brainprop_model(relu_net(), rule_name)
    third.load_weights(converted_path)
    np.testing.assert_allclose(third.network(x), model.network(x), atol=1e-6)


def test_weights_file_of_other_feedback_weights_is_refused(tmp_path):
    path = str(tmp_path / "model.weights.h5")
    brainprop_model(relu_net(), "kolen_pollack").save_weights(path)
    model = brainprop_model(relu_net(num_inputs=5), "feedback_alignment")
    model.network.layers[1].kernel.assign(np.ones((8, 7)))
    with pytest.raises(ValueError, match="Received: feedback weight shapes"):
        model.load_weights(path)
    # Checked before any weight moved.
    np.testing.assert_array_equal(model.network.layers[1].kernel, 1.0)
