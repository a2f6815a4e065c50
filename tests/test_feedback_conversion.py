"""feedback.apply, to_plain, feedback_layers, rule_of
(keras_brainprop/feedback/conversion.py): which networks convert, what
they share with the original, and how they save and load.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from _helpers import RULE_NAMES
from _helpers import loccon_net
from _helpers import random_batch
from _helpers import relu_net
from _helpers import to_numpy

import keras_brainprop as kbp
from keras_brainprop import feedback


def test_symmetric_returns_the_network_itself():
    network = relu_net()
    assert feedback.apply(network) is network
    assert feedback.apply(network, "symmetric") is network


@pytest.mark.slow
def test_converted_network_shares_the_original_weights():
    network = loccon_net()
    x, y = random_batch((6, 6, 2), 3, batch_size=16)
    converted = feedback.apply(network, "feedback_alignment")
    assert [type(layer).__name__ for layer in converted.layers] == [
        "FeedbackLayer",
        "ReLU",
        "BatchNormalization",
        "FeedbackLayer",
        "Flatten",
        "Dropout",
        "FeedbackLayer",
    ]
    assert converted.layers[0].name == network.layers[0].name
    np.testing.assert_array_equal(converted(x), network(x))
    model = kbp.wrap(converted, policy="greedy")
    model.compile()
    model.fit(x, y, batch_size=8, verbose=0)
    # Training the converted network trained the original's weights.
    np.testing.assert_array_equal(converted(x), network(x))
    for layer in feedback.feedback_layers(converted):
        assert layer.kernel is layer.layer.kernel
    plain = feedback.to_plain(converted)
    assert not feedback.feedback_layers(plain)
    assert [type(layer) for layer in plain.layers] == [
        type(layer) for layer in network.layers
    ]
    np.testing.assert_array_equal(plain(x), network(x))
    assert feedback.to_plain(network) is network
    # A new rule starts from the plain network, with new feedback weights.
    again = feedback.apply(converted, "kolen_pollack")
    assert all(
        isinstance(layer.rule, feedback.KolenPollack)
        for layer in feedback.feedback_layers(again)
    )
    assert feedback.apply(converted, "symmetric").layers[0] is network.layers[0]


def test_layers_with_per_unit_weights_pass_the_feedback_on():
    normalization = keras.layers.Normalization(mean=0.5, variance=4.0)
    inputs = keras.Input((4,), dtype="int32")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(10, 3)(inputs))
    hidden = keras.layers.Dense(5)(normalization(embedded))
    hidden = keras.layers.LayerNormalization()(keras.layers.PReLU()(hidden))
    network = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    converted = feedback.apply(network, "sign_symmetry")
    wrapped = [
        type(layer.layer) for layer in feedback.feedback_layers(converted)
    ]
    assert wrapped == [keras.layers.Dense, keras.layers.Dense]
    x = np.random.default_rng(0).integers(0, 10, (3, 4))
    np.testing.assert_allclose(converted(x), network(x), atol=1e-6)


def test_subclassed_network_is_rejected():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(5)

        def call(self, x):
            return self.hidden(x)

    network = Subclassed()
    network(np.zeros((1, 3), "float32"))
    assert feedback.apply(network, "symmetric") is network
    with pytest.raises(ValueError, match="subclassed model.*functional"):
        feedback.apply(network, "feedback_alignment")
    with pytest.raises(ValueError, match="subclassed model"):
        kbp.wrap(network, feedback="sign_symmetry")
    assert kbp.wrap(network, feedback="symmetric").network is network
    # Also when it sits inside a functional network.
    inputs = keras.Input((3,))
    outer = keras.Model(inputs, keras.layers.Dense(2)(Subclassed()(inputs)))
    with pytest.raises(ValueError, match="subclassed model"):
        feedback.apply(outer, "kolen_pollack")


@pytest.mark.parametrize(
    "layer, input_shape",
    [
        (keras.layers.DepthwiseConv2D(3), (5, 5, 2)),
        (keras.layers.Conv2DTranspose(2, 3), (5, 5, 2)),
        (keras.layers.LSTM(3), (4, 2)),
        (keras.layers.EinsumDense("ab,bc->ac", output_shape=3), (4,)),
    ],
    ids=lambda value: getattr(value, "name", None) and type(value).__name__,
)
def test_layer_without_feedback_weights_is_named(layer, input_shape):
    network = keras.Sequential(
        [
            keras.Input(input_shape),
            layer,
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    match = f"layer '{layer.name}' of class {type(layer).__name__}"
    with pytest.raises(ValueError, match=match):
        feedback.apply(network, "sign_symmetry")


def test_subclass_of_a_convertible_layer_is_named():
    class MyDense(keras.layers.Dense):
        pass

    network = keras.Sequential([keras.Input((3,)), MyDense(2, name="mine")])
    with pytest.raises(ValueError, match="layer 'mine' of class MyDense"):
        feedback.apply(network, "feedback_alignment")


def test_other_errors():
    with pytest.raises(ValueError, match="must be built"):
        feedback.apply(
            keras.Sequential([keras.layers.Dense(2)]), "feedback_alignment"
        )
    constant = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2, kernel_initializer="ones")]
    )
    with pytest.raises(ValueError, match="not random.*initializer="):
        feedback.apply(constant, "kolen_pollack")
    with pytest.raises(ValueError, match="Received: decay=-1"):
        feedback.KolenPollack(decay=-1)
    with pytest.raises(ValueError, match="Received: seed=1.5"):
        feedback.FeedbackAlignment(seed=1.5)
    with pytest.raises(ValueError, match="Symmetric"):
        feedback.FeedbackLayer(keras.layers.Dense(2), "symmetric")
    with pytest.raises(ValueError, match="keras.Model"):
        feedback.apply(keras.layers.Dense(2), "feedback_alignment")


@pytest.mark.parametrize("rule_name", RULE_NAMES[1:])
def test_converted_network_alone_saves_and_loads(rule_name, tmp_path):
    network = feedback.apply(loccon_net(), rule_name)
    network.save(tmp_path / "network.keras")
    reloaded = keras.models.load_model(tmp_path / "network.keras")
    assert len(reloaded.weights) == len(network.weights)
    for ours, theirs in zip(network.weights, reloaded.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    for ours, theirs in zip(
        feedback.feedback_layers(network), feedback.feedback_layers(reloaded)
    ):
        for key in ("name", "rule", "feedback_initializer"):
            assert theirs.get_config()[key] == ours.get_config()[key]
        np.testing.assert_array_equal(
            to_numpy(theirs.feedback_kernel), to_numpy(ours.feedback_kernel)
        )
    x, _ = random_batch((6, 6, 2), 3)
    np.testing.assert_array_equal(reloaded(x), network(x))


def test_nested_functional_model_inside_a_sequential():
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(6, name="inner_a")(inputs)
    inner = keras.Model(inputs, keras.layers.Dense(4, name="inner_b")(hidden))
    network = keras.Sequential(
        [keras.Input((5,)), inner, keras.layers.Dense(3, name="outer")]
    )
    converted = feedback.apply(network, feedback.FeedbackAlignment(seed=1))
    layers = feedback.feedback_layers(converted)
    assert [layer.name for layer in layers] == ["inner_a", "inner_b", "outer"]
    x, _ = random_batch((5,), 1, batch_size=4)
    np.testing.assert_allclose(converted(x), network(x), atol=1e-6)
    # A linear network: the error at its input is the chain of the B's.
    upstream = np.random.default_rng(2).normal(size=(4, 3)).astype("float32")
    x_tensor = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_tensor)
        outputs = converted(x_tensor)
    grad_x = tape.gradient(outputs, x_tensor, upstream)
    expected = upstream
    for layer in reversed(layers):
        expected = expected @ layer.feedback_kernel.numpy().T
    np.testing.assert_allclose(grad_x, expected, atol=1e-5)


@pytest.mark.slow
def test_resnet50_gets_feedback_weights_on_every_conv_and_dense():
    network = keras.applications.ResNet50(
        weights=None,
        classifier_activation=None,
        input_shape=(32, 32, 3),
        classes=10,
    )
    kinds = (keras.layers.Conv2D, keras.layers.Dense)
    expected = [
        layer.name for layer in network.layers if isinstance(layer, kinds)
    ]
    converted = feedback.apply(network, feedback.FeedbackAlignment(seed=1))
    layers = feedback.feedback_layers(converted)
    assert [layer.name for layer in layers] == expected
    assert len(layers) == 54
    for layer in layers:
        assert layer.feedback_kernel.shape == layer.kernel.shape
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype="float32")
    np.testing.assert_allclose(
        converted(x, training=False), network(x, training=False), atol=1e-5
    )


# Helpers given the wrapped model ---------------------------------------------


def test_helpers_given_a_brainprop_model_use_its_network():
    model = kbp.wrap(relu_net(), feedback=feedback.KolenPollack(seed=1))
    assert feedback.rule_of(model) is model.feedback
    assert feedback.feedback_layers(model) == feedback.feedback_layers(
        model.network
    )
    plain = feedback.to_plain(model)
    assert plain is not model and not feedback.feedback_layers(plain)
    assert plain.layers[0] is model.network.layers[0].layer
    with pytest.raises(ValueError, match="kbp.wrap|keras_brainprop.wrap"):
        feedback.apply(model, "feedback_alignment")
    backprop = kbp.BackpropModel(feedback.apply(relu_net(), "sign_symmetry"))
    assert isinstance(feedback.rule_of(backprop), feedback.SignSymmetry)


@pytest.mark.slow
def test_converted_network_loads_where_keras_brainprop_is_imported(tmp_path):
    # Keras imports no package's classes by itself: the documented way is
    # to import keras_brainprop first, or to save feedback.to_plain().
    path = str(tmp_path / "network.keras")
    feedback.apply(relu_net(), "kolen_pollack").save(path)
    feedback.to_plain(feedback.apply(relu_net(), "kolen_pollack")).save(
        str(tmp_path / "plain.keras")
    )
    script = (
        "import sys, keras\n"
        "keras.models.load_model(sys.argv[1] + '/plain.keras')\n"
        "try:\n"
        "    keras.models.load_model(sys.argv[1] + '/network.keras')\n"
        "except Exception as error:\n"
        "    print('FAILED', 'keras_brainprop' in str(error))\n"
        "import keras_brainprop\n"
        "keras.models.load_model(sys.argv[1] + '/network.keras')\n"
        "print('LOADED')\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env=dict(os.environ, CUDA_VISIBLE_DEVICES="-1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.split() == ["FAILED", "True", "LOADED"]
