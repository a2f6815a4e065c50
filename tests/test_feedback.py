"""Tests of keras_brainprop.feedback: rules, conversion, BrainProp updates."""

import json
import os
import subprocess
import sys

import _references
import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

import keras_brainprop as kbp
from keras_brainprop import feedback

LEARNING_RATE = 0.1
RULES = ["symmetric", "feedback_alignment", "sign_symmetry", "kolen_pollack"]
_HERE = os.path.dirname(os.path.abspath(__file__))


def dense_net(num_inputs=6, num_actions=4):
    """Two ReLU hidden layers and a linear output, all with biases."""
    return keras.Sequential(
        [
            keras.Input((num_inputs,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(7, activation="relu"),
            keras.layers.Dense(num_actions),
        ]
    )


def conv_net(num_actions=3, dropout=0.2):
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.ReLU(),
            keras.layers.BatchNormalization(),
            kbp.LocallyConnected2D(3, 2, strides=2),
            keras.layers.Flatten(),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(num_actions, use_bias=False),
        ]
    )


def random_batch(input_shape, num_actions, batch_size=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch_size, *input_shape)).astype("float32")
    y = rng.integers(0, num_actions, size=(batch_size,))
    return x, y


def to_numpy(value):
    """A variable's or tensor's value (`SignSymmetry`'s B is a tensor)."""
    return tf.convert_to_tensor(value).numpy()


def angle_degrees(a, b):
    a, b = np.ravel(to_numpy(a)), np.ravel(to_numpy(b))
    cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def brainprop_model(network, rule, **compile_kwargs):
    """A greedy BrainPropModel training `network` under a feedback rule."""
    model = kbp.wrap(network, policy="greedy", seed=0, feedback=rule)
    compile_kwargs.setdefault("optimizer", keras.optimizers.SGD(LEARNING_RATE))
    model.compile(**compile_kwargs)
    return model


# The paper's equations in NumPy ----------------------------------------------


def numpy_brainprop_step(kernels, biases, feedbacks, x, y, decay=0.0):
    """One greedy BrainProp step from the paper's equations (see
    `_references.numpy_brainprop_step`), at this module's learning rate."""
    return _references.numpy_brainprop_step(
        kernels, biases, feedbacks, x, y, LEARNING_RATE, decay=decay
    )


@pytest.mark.parametrize("rule_name", RULES)
def test_one_step_equals_the_papers_equations(rule_name):
    rule = feedback.get(rule_name)
    if isinstance(rule, feedback.KolenPollack):
        rule = feedback.KolenPollack(decay=0.3, seed=5)
    network = dense_net()
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


# Error at the layer's input: the transposed operation with B -----------------


def _gradients(layer, x, upstream):
    """Gradients of sum(upstream * layer(x)) in x and in the kernel."""
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = layer(x)
    return tape.gradient(
        outputs, [x, layer.kernel], output_gradients=tf.constant(upstream)
    )


def _converted_layer(layer, input_shape):
    """`layer` built on `input_shape`, and its FeedbackLayer under FA."""
    network = keras.Sequential([keras.Input(input_shape), layer])
    converted = feedback.apply(network, feedback.FeedbackAlignment(seed=2))
    return converted.layers[0]


def _postsynaptic_error(layer, x, upstream):
    """The error at the layer's pre-activation: upstream * relu'(z)."""
    assert layer.layer.activation is keras.activations.relu
    outputs = layer(x).numpy()
    return upstream * (outputs > 0)


def test_conv2d_error_goes_down_through_the_feedback_kernel():
    layer = keras.layers.Conv2D(
        3, (3, 2), strides=2, padding="same", activation="relu"
    )
    wrapped = _converted_layer(layer, (7, 6, 2))
    x, _ = random_batch((7, 6, 2), 1, batch_size=2)
    upstream = np.random.default_rng(1).normal(size=(2, 4, 3, 3))
    upstream = upstream.astype("float32")
    grad_x, grad_kernel = _gradients(wrapped, x, upstream)
    expected_x = tf.nn.conv2d_transpose(
        _postsynaptic_error(wrapped, x, upstream),
        wrapped.feedback_kernel,
        output_shape=x.shape,
        strides=2,
        padding="SAME",
    )
    np.testing.assert_allclose(grad_x, expected_x, atol=1e-5)
    plain_x, plain_kernel = _gradients(layer, x, upstream)
    np.testing.assert_allclose(grad_kernel, plain_kernel, atol=1e-6)
    assert not np.allclose(grad_x, plain_x, atol=1e-3)


def test_conv1d_error_goes_down_through_the_feedback_kernel():
    layer = keras.layers.Conv1D(3, 3, strides=2, activation="relu")
    wrapped = _converted_layer(layer, (9, 2))
    x, _ = random_batch((9, 2), 1, batch_size=2)
    upstream = np.random.default_rng(1).normal(size=(2, 4, 3))
    upstream = upstream.astype("float32")
    grad_x, grad_kernel = _gradients(wrapped, x, upstream)
    expected_x = tf.nn.conv1d_transpose(
        _postsynaptic_error(wrapped, x, upstream),
        wrapped.feedback_kernel,
        output_shape=x.shape,
        strides=2,
        padding="VALID",
    )
    np.testing.assert_allclose(grad_x, expected_x, atol=1e-5)
    _, plain_kernel = _gradients(layer, x, upstream)
    np.testing.assert_allclose(grad_kernel, plain_kernel, atol=1e-6)


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_locally_connected_error_goes_down_through_the_feedback_kernel(
    padding,
):
    layer = kbp.LocallyConnected2D(
        3, (2, 3), strides=(1, 2), padding=padding, activation="relu"
    )
    rows, cols, channels = 5, 6, 2
    wrapped = _converted_layer(layer, (rows, cols, channels))
    x, _ = random_batch((rows, cols, channels), 1, batch_size=2)
    out_rows, out_cols = layer.output_rows, layer.output_cols
    upstream = np.random.default_rng(1).normal(size=(2, out_rows, out_cols, 3))
    upstream = upstream.astype("float32")
    grad_x, grad_kernel = _gradients(wrapped, x, upstream)
    # Each position's window gets B[position] times its error.
    error = _postsynaptic_error(wrapped, x, upstream)
    feedback_kernel = wrapped.feedback_kernel.numpy()
    top, left = (1, 1) if padding == "same" else (0, 0)
    expected_x = np.zeros((2, rows + 2 * 2, cols + 2 * 3, channels))
    for sample in range(2):
        for i in range(out_rows):
            for j in range(out_cols):
                window = feedback_kernel[i * out_cols + j] @ error[sample, i, j]
                r, c = i * 1, j * 2
                expected_x[sample, r : r + 2, c : c + 3] += window.reshape(
                    2, 3, channels
                )
    expected_x = expected_x[:, top : top + rows, left : left + cols]
    np.testing.assert_allclose(grad_x, expected_x, atol=1e-5)
    _, plain_kernel = _gradients(layer, x, upstream)
    np.testing.assert_allclose(grad_kernel, plain_kernel, atol=1e-6)


@pytest.mark.parametrize(
    "make_layer, input_shape",
    [
        (lambda: keras.layers.Dense(3), (4, 5)),
        (
            lambda: keras.layers.Conv1D(
                4, 3, padding="causal", dilation_rate=2
            ),
            (8, 2),
        ),
        (
            lambda: keras.layers.Conv2D(4, 3, groups=2, dilation_rate=2),
            (7, 7, 4),
        ),
        (lambda: keras.layers.Conv3D(2, 2, strides=(1, 2, 1)), (3, 4, 3, 2)),
    ],
    ids=["dense_3d_input", "conv1d_causal", "conv2d_grouped", "conv3d"],
)
def test_error_equals_backprop_through_a_twin_whose_kernel_is_b(
    make_layer, input_shape
):
    layer = make_layer()
    wrapped = _converted_layer(layer, input_shape)
    x, _ = random_batch(input_shape, 1, batch_size=2)
    outputs = wrapped(x)
    np.testing.assert_allclose(outputs, layer(x), atol=1e-6)
    upstream = np.random.default_rng(1).normal(size=outputs.shape)
    upstream = upstream.astype("float32")
    grad_x, grad_kernel = _gradients(wrapped, x, upstream)
    plain_x, plain_kernel = _gradients(layer, x, upstream)
    np.testing.assert_allclose(grad_kernel, plain_kernel, atol=1e-5)
    # The layers are linear: backprop through a twin with kernel B sends
    # exactly the error the feedback weights send.
    twin = make_layer()
    twin.build((None, *input_shape))
    twin.kernel.assign(wrapped.feedback_kernel)
    twin_x, _ = _gradients(twin, x, upstream)
    np.testing.assert_allclose(grad_x, twin_x, atol=1e-5)
    assert not np.allclose(grad_x, plain_x, atol=1e-3)


# The rules over training -----------------------------------------------------


class _KernelRecorder(keras.callbacks.Callback):
    """Records every FeedbackLayer's kernel and feedback weights per step."""

    def __init__(self, network):
        super().__init__()
        self.layers = feedback.feedback_layers(network)
        self.steps = []

    def record(self):
        self.steps.append(
            [
                (layer.kernel.numpy(), to_numpy(layer.feedback_kernel))
                for layer in self.layers
            ]
        )

    def on_train_begin(self, logs=None):
        self.record()

    def on_train_batch_end(self, batch, logs=None):
        self.record()


def test_feedback_alignment_weights_do_not_change_during_fit():
    x, y = random_batch((6, 6, 2), 3, batch_size=32)
    model = brainprop_model(conv_net(), feedback.FeedbackAlignment(seed=1))
    recorder = _KernelRecorder(model.network)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[recorder])
    assert len(recorder.steps) == 9
    for (kernel, fixed), (trained, after) in zip(
        recorder.steps[0], recorder.steps[-1]
    ):
        np.testing.assert_array_equal(after, fixed)
        assert not np.allclose(kernel, trained)
    assert not any(
        layer.feedback_kernel.trainable
        for layer in feedback.feedback_layers(model.network)
    )


def test_sign_symmetry_feedback_has_the_kernels_signs_and_norm():
    network = feedback.apply(conv_net(), "sign_symmetry")
    for layer in feedback.feedback_layers(network):
        kernel = layer.kernel.numpy()
        feedback_kernel = layer.feedback_kernel.numpy()
        np.testing.assert_array_equal(np.sign(feedback_kernel), np.sign(kernel))
        assert len(np.unique(np.abs(feedback_kernel))) == 1
        np.testing.assert_allclose(
            np.linalg.norm(feedback_kernel), np.linalg.norm(kernel), rtol=1e-5
        )
        assert layer.weights[0] is not layer.feedback_kernel


def test_kolen_pollack_shrinks_the_difference_exactly_every_step():
    decay, l2 = 0.4, 0.05
    network = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(
                8,
                activation="relu",
                kernel_regularizer=keras.regularizers.L2(l2),
            ),
            keras.layers.Dense(7, activation="relu"),
            keras.layers.Dense(4),
        ]
    )
    x, y = random_batch((6,), 4, batch_size=40)
    model = brainprop_model(network, feedback.KolenPollack(decay, seed=1))
    recorder = _KernelRecorder(model.network)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[recorder])
    assert len(recorder.steps) == 11
    # The kernel's L2 regularizer acts on the feedback weights too.
    factors = [1 - LEARNING_RATE * (decay + 2 * l2)] + [
        1 - LEARNING_RATE * decay
    ] * 2
    for before, after in zip(recorder.steps, recorder.steps[1:]):
        for factor, (kernel, feedback_kernel), (
            new_kernel,
            new_feedback,
        ) in zip(factors, before, after):
            np.testing.assert_allclose(
                new_kernel - new_feedback,
                factor * (kernel - feedback_kernel),
                atol=1e-6,
            )
            assert not np.allclose(new_kernel, kernel, atol=1e-4)


def test_kolen_pollack_feedback_aligns_with_the_kernels_on_digits():
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    initializer = keras.initializers.RandomNormal(stddev=0.05)
    network = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(
                32, activation="relu", kernel_initializer=initializer
            ),
            keras.layers.Dense(10, kernel_initializer=initializer),
        ]
    )
    # A large decay (W - B shrinks by 2.5 % per step) keeps the test short.
    rule = feedback.KolenPollack(decay=0.05, seed=1)
    model = kbp.wrap(network, seed=1, feedback=rule)
    model.compile(optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy"])
    layers = feedback.feedback_layers(model.network)
    angles_before = [
        angle_degrees(layer.kernel, layer.feedback_kernel) for layer in layers
    ]
    history = model.fit(x, digits.target, batch_size=16, epochs=2, verbose=0)
    angles = [
        angle_degrees(layer.kernel, layer.feedback_kernel) for layer in layers
    ]
    assert min(angles_before) > 80
    assert max(angles) < 5, angles
    assert history.history["accuracy"][-1] > 0.15  # Chance: 0.1.


# Rules and conversion --------------------------------------------------------


def test_get_maps_names_objects_and_configs():
    assert isinstance(feedback.get(None), feedback.Symmetric)
    assert isinstance(feedback.get("kolen_pollack"), feedback.KolenPollack)
    assert isinstance(feedback.get("SignSymmetry"), feedback.SignSymmetry)
    rule = feedback.FeedbackAlignment(seed=3)
    assert feedback.get(rule) is rule
    config = keras.saving.serialize_keras_object(rule)
    assert feedback.get(config).get_config() == rule.get_config()
    assert feedback.NAMES == tuple(RULES)


@pytest.mark.parametrize(
    "rule",
    [
        feedback.Symmetric(),
        feedback.FeedbackAlignment(initializer="he_normal", seed=4),
        feedback.SignSymmetry(),
        feedback.KolenPollack(decay=0.01, seed=2),
    ],
    ids=RULES,
)
def test_rule_config_round_trip(rule):
    config = keras.saving.serialize_keras_object(rule)
    restored = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(config))
    )
    assert type(restored) is type(rule)
    assert restored.get_config() == rule.get_config()


def test_symmetric_returns_the_network_itself():
    network = dense_net()
    assert feedback.apply(network) is network
    assert feedback.apply(network, "symmetric") is network


def test_converted_network_shares_the_original_weights():
    network = conv_net()
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


def test_feedback_alignment_seeds():
    def feedback_kernels(rule):
        converted = feedback.apply(dense_net(), rule)
        return [layer.feedback_kernel.numpy() for layer in converted.layers]

    keras.utils.set_random_seed(5)
    first = feedback_kernels(feedback.FeedbackAlignment(seed=1))
    same = feedback_kernels(feedback.FeedbackAlignment(seed=1))
    other = feedback_kernels(feedback.FeedbackAlignment(seed=2))
    keras.utils.set_random_seed(5)
    global_a = feedback_kernels(feedback.FeedbackAlignment())
    keras.utils.set_random_seed(5)
    global_b = feedback_kernels(feedback.FeedbackAlignment())
    for a, b, c, d, e in zip(first, same, other, global_a, global_b):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(d, e)
        assert not np.allclose(a, c)
    # Layers of one shape still draw different weights.
    network = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(5), keras.layers.Dense(5)]
    )
    converted = feedback.apply(network, feedback.FeedbackAlignment(seed=1))
    a, b = [layer.feedback_kernel.numpy() for layer in converted.layers]
    assert not np.allclose(a, b)


def test_feedback_weights_have_the_kernel_initializers_scale():
    network = keras.Sequential(
        [
            keras.Input((400,)),
            keras.layers.Dense(
                300,
                kernel_initializer=keras.initializers.RandomNormal(stddev=0.3),
            ),
            keras.layers.Dense(200),  # glorot_uniform: std sqrt(2 / 500).
        ]
    )
    converted = feedback.apply(network, "feedback_alignment")
    first, second = [
        layer.feedback_kernel.numpy() for layer in converted.layers
    ]
    assert abs(first.std() - 0.3) < 0.01
    assert abs(second.std() - np.sqrt(2 / 500)) < 0.002
    explicit = feedback.apply(
        network,
        feedback.FeedbackAlignment(
            initializer=keras.initializers.RandomUniform(0.0, 1.0)
        ),
    )
    assert explicit.layers[1].feedback_kernel.numpy().min() >= 0.0


def test_wrap_with_a_feedback_rule():
    network = dense_net()
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


# Errors ----------------------------------------------------------------------


def test_unknown_rule_is_rejected():
    with pytest.raises(ValueError, match="'feedback_alignment'.*Received: "):
        feedback.get("direct_feedback_alignment")
    with pytest.raises(ValueError, match="Received: feedback=3"):
        feedback.apply(dense_net(), 3)


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


# Compilation, precision, saving, nesting, distribution -----------------------


def test_compiled_step_has_backprops_convolutions_and_products():
    # The backward pass computes each input error and kernel gradient once;
    # the forward calls inside it are dropped by the compiler.
    x, _ = random_batch((6, 6, 2), 3, batch_size=4)

    def operation_counts(rule):
        network = feedback.apply(conv_net(dropout=0.0), rule)

        @tf.function(jit_compile=True)
        def gradients(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(network(x, training=True) ** 2)
                if network.losses:
                    loss += tf.add_n(network.losses)
            return tape.gradient(loss, network.trainable_variables)

        hlo = gradients.experimental_get_compiler_ir(x)(stage="optimized_hlo")
        return hlo.count(" convolution("), hlo.count(" dot(")

    symmetric = operation_counts("symmetric")
    assert symmetric[0] > 0 and symmetric[1] > 0
    # Kolen-Pollack: its feedback weights' gradient is the kernel's.
    assert operation_counts(feedback.KolenPollack(seed=1)) == symmetric


def test_jit_compiled_steps_equal_graph_steps():
    x, y = random_batch((6, 6, 2), 3, batch_size=16)
    weights = []
    for jit_compile in (False, True):
        keras.utils.set_random_seed(3)
        # No dropout: XLA draws other random numbers than TensorFlow.
        network = conv_net(dropout=0.0)
        rule = feedback.KolenPollack(decay=0.1, seed=1)
        model = brainprop_model(network, rule, jit_compile=jit_compile)
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    for graph, jit in zip(*weights):
        np.testing.assert_allclose(graph, jit, atol=1e-5)


def test_mixed_precision_keeps_the_kolen_pollack_contraction_exact():
    keras.config.set_dtype_policy("mixed_float16")
    decay = 0.2
    network = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    x, y = random_batch((6, 6, 2), 3, batch_size=32)
    model = brainprop_model(network, feedback.KolenPollack(decay, seed=1))
    recorder = _KernelRecorder(model.network)
    model.fit(x, y, batch_size=8, verbose=0, callbacks=[recorder])
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    for layer in feedback.feedback_layers(model.network):
        assert layer.compute_dtype == "float16"
        assert layer.feedback_kernel.dtype == "float32"
    # The scaled loss carries the decay: unscaled, W - B still shrinks by
    # exactly 1 - lr * decay, and the weights learn.
    for before, after in zip(recorder.steps, recorder.steps[1:]):
        for (kernel, feedback_kernel), (new_kernel, new_feedback) in zip(
            before, after
        ):
            np.testing.assert_allclose(
                new_kernel - new_feedback,
                (1 - LEARNING_RATE * decay) * (kernel - feedback_kernel),
                atol=1e-6,
            )
            assert not np.allclose(new_kernel, kernel, atol=1e-4)
    assert model.network(x).dtype == "float16"


def test_save_load_round_trip_continues_exactly(tmp_path):
    x, y = random_batch((6, 6, 2), 3, batch_size=32)
    model = kbp.wrap(
        conv_net(),
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


@pytest.mark.parametrize("rule_name", RULES[1:])
def test_converted_network_alone_saves_and_loads(rule_name, tmp_path):
    network = feedback.apply(conv_net(), rule_name)
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


def test_interrupted_kolen_pollack_training_resumes_exactly(tmp_path):
    x, y = random_batch((6,), 4, batch_size=32)

    def fit(callbacks):
        keras.utils.set_random_seed(4)  # A restarted process.
        model = kbp.wrap(
            dense_net(), seed=2, feedback=feedback.KolenPollack(0.1, seed=1)
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


# Behaving as the wrapped layer -----------------------------------------------


def _masked_net():
    # Embedding's mask reaches the pooling through the Dense in between.
    return keras.Sequential(
        [
            keras.Input((6,), dtype="int32"),
            keras.layers.Embedding(20, 4, mask_zero=True),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.GlobalAveragePooling1D(),
            keras.layers.Dense(4),
        ]
    )


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
@pytest.mark.parametrize("rule_name", RULES[1:])
def test_masks_pass_through_as_through_the_wrapped_layer(rule_name, graph):
    network = _masked_net()
    converted = feedback.apply(network, rule_name)
    x = np.array([[3, 5, 0, 0, 0, 0], [1, 2, 3, 4, 5, 0]], "int32")
    call = tf.function(lambda net, x: net(x)) if graph else (lambda n, x: n(x))
    np.testing.assert_allclose(call(converted, x), call(network, x), atol=1e-6)
    layer = feedback.feedback_layers(converted)[0]
    assert layer.supports_masking == layer.layer.supports_masking
    mask = np.array([[True, False]])
    np.testing.assert_array_equal(layer.compute_mask(None, mask), mask)
    # A layer that drops masks still drops them.
    conv = keras.layers.Conv1D(3, 1)
    assert feedback.FeedbackLayer(conv, rule_name).supports_masking is False


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "graph"])
@pytest.mark.parametrize("rule_name", RULES[1:])
def test_activity_regularizer_loss_is_that_of_the_plain_network(
    rule_name, graph
):
    network = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(
                8,
                activation="relu",
                activity_regularizer=keras.regularizers.L2(1.0),
            ),
            keras.layers.Dense(4),
        ]
    )
    rule = feedback.get(rule_name)
    if isinstance(rule, feedback.KolenPollack):
        rule = feedback.KolenPollack(decay=0.0)  # No decay loss beside it.
    converted = feedback.apply(network, rule)
    x, _ = random_batch((6,), 4, batch_size=8)

    def losses(net):
        def call(x):
            net(x, training=True)
            return tf.add_n(net.losses)

        return float((tf.function(call) if graph else call)(x))

    expected = losses(network)
    assert expected > 0
    assert losses(converted) == pytest.approx(expected, rel=1e-6)
    # Kept in the wrapped layer's config only, and after a reload.
    layer = feedback.feedback_layers(converted)[0]
    assert "activity_regularizer" not in layer.get_config()
    restored = feedback.FeedbackLayer.from_config(layer.get_config())
    assert isinstance(restored.activity_regularizer, keras.regularizers.L2)


@pytest.mark.parametrize("run_eagerly", [False, True])
def test_freezing_a_layer_freezes_its_kolen_pollack_feedback(run_eagerly):
    network = dense_net()
    model = brainprop_model(
        network,
        feedback.KolenPollack(decay=0.1, seed=1),
        run_eagerly=run_eagerly,
    )
    network.layers[0].trainable = False  # After wrapping.
    frozen, free = feedback.feedback_layers(model.network)[:2]
    before = [to_numpy(v) for v in (*frozen.weights, *free.weights)]
    x, y = random_batch((6,), 4, batch_size=32)
    model.fit(x, y, batch_size=8, verbose=0)
    after = [to_numpy(v) for v in (*frozen.weights, *free.weights)]
    count = len(frozen.weights)
    for old, new in zip(before[:count], after[:count]):
        np.testing.assert_array_equal(new, old)
    assert not np.allclose(before[count], after[count])

    def learns(variable):
        return any(v is variable for v in model.trainable_variables)

    assert not learns(frozen.feedback_weights)
    assert learns(free.feedback_weights)
    network.layers[0].trainable = True
    assert learns(frozen.feedback_weights)


# Weights files of wrapped models ---------------------------------------------


@pytest.mark.parametrize("rule_name", RULES[1:])
def test_plain_network_loads_a_wrapped_models_weights_file_and_back(
    rule_name, tmp_path
):
    x, y = random_batch((6,), 4, batch_size=16)
    model = brainprop_model(dense_net(), rule_name)
    model.fit(x, y, batch_size=8, verbose=0)
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    plain = dense_net()
    plain.load_weights(path)
    np.testing.assert_allclose(plain(x), model.network(x), atol=1e-6)
    # Back: the plain network's file into a wrapped model.
    plain_path = str(tmp_path / "plain.weights.h5")
    other = dense_net()
    other.save_weights(plain_path)
    other_model = brainprop_model(dense_net(), rule_name)
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
    third = brainprop_model(dense_net(), rule_name)
    third.load_weights(converted_path)
    np.testing.assert_allclose(third.network(x), model.network(x), atol=1e-6)


def test_weights_file_of_other_feedback_weights_is_refused(tmp_path):
    path = str(tmp_path / "model.weights.h5")
    brainprop_model(dense_net(), "kolen_pollack").save_weights(path)
    model = brainprop_model(dense_net(num_inputs=5), "feedback_alignment")
    model.network.layers[1].kernel.assign(np.ones((8, 7)))
    with pytest.raises(ValueError, match="Received: feedback weight shapes"):
        model.load_weights(path)
    # Checked before any weight moved.
    np.testing.assert_array_equal(model.network.layers[1].kernel, 1.0)


# Helpers given the wrapped model ---------------------------------------------


def test_helpers_given_a_brainprop_model_use_its_network():
    model = kbp.wrap(dense_net(), feedback=feedback.KolenPollack(seed=1))
    assert feedback.rule_of(model) is model.feedback
    assert feedback.feedback_layers(model) == feedback.feedback_layers(
        model.network
    )
    plain = feedback.to_plain(model)
    assert plain is not model and not feedback.feedback_layers(plain)
    assert plain.layers[0] is model.network.layers[0].layer
    with pytest.raises(ValueError, match="kbp.wrap|keras_brainprop.wrap"):
        feedback.apply(model, "feedback_alignment")
    backprop = kbp.BackpropModel(feedback.apply(dense_net(), "sign_symmetry"))
    assert isinstance(feedback.rule_of(backprop), feedback.SignSymmetry)


# Rule arguments --------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: feedback.FeedbackAlignment(seed=-1),
        lambda: feedback.KolenPollack(seed=-1),
        lambda: feedback.FeedbackAlignment(seed=np.int64(-3)),
    ],
    ids=["feedback_alignment", "kolen_pollack", "numpy"],
)
def test_negative_seeds_are_refused(make):
    with pytest.raises(ValueError, match=r"non-negative int.*Received: seed="):
        make()


@pytest.mark.parametrize("decay", [np.inf, -np.inf, np.nan, "0.1", True])
def test_kolen_pollack_refuses_a_decay_that_is_not_finite(decay):
    with pytest.raises(ValueError, match="finite non-negative.*Received: dec"):
        feedback.KolenPollack(decay=decay)


@pytest.mark.parametrize(
    "initializer",
    ["zeros", "ones", keras.initializers.Constant(0.5)],
    ids=["zeros", "ones", "constant"],
)
def test_feedback_alignment_refuses_constant_feedback(initializer):
    with pytest.raises(ValueError, match="never learn.*Received: initial"):
        feedback.FeedbackAlignment(initializer=initializer)


def test_rules_take_numpy_scalars():
    rule = feedback.KolenPollack(decay=np.float32(1e-3), seed=np.int64(3))
    assert rule.decay == 0.001 and type(rule.decay) is float
    assert rule.seed == 3 and type(rule.seed) is int
    assert feedback.FeedbackAlignment(seed=np.int32(2)).seed == 2
    json.dumps(rule.get_config())  # Plain Python numbers.


def test_a_seeded_initializer_sets_the_draw():
    def first_feedback_kernel(rule):
        converted = feedback.apply(dense_net(), rule)
        return to_numpy(feedback.feedback_layers(converted)[0].feedback_kernel)

    def seeded(seed):
        initializer = keras.initializers.RandomNormal(stddev=0.05, seed=seed)
        return feedback.FeedbackAlignment(initializer=initializer)

    np.testing.assert_array_equal(
        first_feedback_kernel(seeded(5)), first_feedback_kernel(seeded(5))
    )
    assert not np.allclose(
        first_feedback_kernel(seeded(5)), first_feedback_kernel(seeded(6))
    )
    # Layers of one shape still draw different weights.
    network = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(5), keras.layers.Dense(5)]
    )
    converted = feedback.apply(network, seeded(5))
    a, b = [to_numpy(layer.feedback_kernel) for layer in converted.layers]
    assert not np.allclose(a, b)


def test_a_seedless_callable_kernel_initializer_is_named_as_such():
    def random_init(shape, dtype=None):
        return tf.random.normal(shape) * 0.05

    network = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, kernel_initializer=random_init),
        ]
    )
    with pytest.raises(ValueError, match="takes no seed") as error:
        feedback.apply(network, "feedback_alignment")
    assert "not random" not in str(error.value)
    assert "Received: kernel_initializer='random_init'" in str(error.value)
    # Given as the rule's initializer, the callable is used as it is.
    converted = feedback.apply(
        network, feedback.FeedbackAlignment(initializer=random_init)
    )
    assert to_numpy(converted.layers[0].feedback_kernel).std() > 0


def test_converted_network_loads_where_keras_brainprop_is_imported(tmp_path):
    # Keras imports no package's classes by itself: the documented way is
    # to import keras_brainprop first, or to save feedback.to_plain().
    path = str(tmp_path / "network.keras")
    feedback.apply(dense_net(), "kolen_pollack").save(path)
    feedback.to_plain(feedback.apply(dense_net(), "kolen_pollack")).save(
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


# Every rule on every layer type, on every backend ----------------------------

# Each layer type with an input shape, kernel and bias of its own kind:
# strided, dilated, causal and 'same' padded windows, local weights.
LAYER_CASES = {
    "dense": (lambda: keras.layers.Dense(3, activation="relu"), (5,)),
    "conv1d_causal_dilated": (
        lambda: keras.layers.Conv1D(
            3, 3, padding="causal", dilation_rate=2, activation="relu"
        ),
        (9, 2),
    ),
    "conv2d_same_strided": (
        lambda: keras.layers.Conv2D(
            3, (3, 2), strides=2, padding="same", activation="relu"
        ),
        (7, 6, 2),
    ),
    "conv3d": (
        lambda: keras.layers.Conv3D(2, 2, strides=(1, 2, 1), activation="relu"),
        (3, 4, 3, 2),
    ),
    "locally_connected2d": (
        lambda: kbp.LocallyConnected2D(
            3, (2, 3), strides=(1, 2), activation="relu"
        ),
        (5, 6, 2),
    ),
}


def _windows(layer, input_shape):
    """Indices of each output position's window into the padded input.

    Returns `(windows, padded_shape, pads)`: `windows[p, k]` is the flat
    index (in the padded input of one sample) of element `k` of output
    position `p`'s window, `k` running over the kernel's spatial offsets
    then channels, as the kernel is laid out.
    """
    if isinstance(layer, keras.layers.Dense):
        return np.arange(input_shape[0])[None], input_shape, [(0, 0)]
    spatial, channels = input_shape[:-1], input_shape[-1]
    kernel_size = layer.kernel_size
    strides = layer.strides
    dilation = getattr(layer, "dilation_rate", (1,) * len(spatial))
    pads = []
    for size, k, s, d in zip(spatial, kernel_size, strides, dilation):
        extent = (k - 1) * d + 1
        if layer.padding == "causal":
            pads.append((extent - 1, 0))
        elif layer.padding == "same":
            total = max((-(-size // s) - 1) * s + extent - size, 0)
            pads.append((total // 2, total - total // 2))
        else:
            pads.append((0, 0))
    padded = tuple(n + a + b for n, (a, b) in zip(spatial, pads))
    flat = np.arange(np.prod(padded) * channels).reshape(*padded, channels)
    outputs = [
        (p - ((k - 1) * d + 1)) // s + 1
        for p, k, s, d in zip(padded, kernel_size, strides, dilation)
    ]
    windows = []
    for position in np.ndindex(*outputs):
        starts = [i * s for i, s in zip(position, strides)]
        window = flat[
            tuple(
                slice(start, start + (k - 1) * d + 1, d)
                for start, k, d in zip(starts, kernel_size, dilation)
            )
        ]
        windows.append(window.reshape(-1))
    return np.array(windows), (*padded, channels), pads


def numpy_feedback_layer_step(
    layer, rule_name, stored_feedback, decay, x, upstream, learning_rate
):
    """One SGD step of one layer on `sum(upstream * layer(x))`, in NumPy.

    The layer computes `relu(z)`, `z = patches(x) . W + b`. The gated error
    is `e = upstream * relu'(z)`; the kernel's gradient is presynaptic
    activity times it (`patches^T e`, over the batch and, for a shared
    kernel, the positions), and the error reaching the input is `e B^T`
    spread back over the windows. B is W (symmetric), the stored draw
    (feedback alignment, Kolen-Pollack) or `sign(W) rms(W)` (sign
    symmetry). Kolen-Pollack's B gets the kernel's gradient, and both get
    the decay `decay * W` and `decay * B`. The training loss is the batch
    mean (Keras' default reduction); the input error is of the sum.

    Args:
        layer: the plain layer (a FeedbackLayer's `layer`).
        rule_name: the rule's name.
        stored_feedback: the stored B, for the rules that store it.
        decay: Kolen-Pollack's decay (0 for the others).
        x: the inputs.
        upstream: the error at the layer's output.
        learning_rate: SGD's learning rate.

    Returns:
        dict of the input error and the new kernel, bias and B.
    """
    kernel = keras.ops.convert_to_numpy(layer.kernel).astype("float64")
    bias = keras.ops.convert_to_numpy(layer.bias).astype("float64")
    if rule_name == "symmetric":
        feedback_kernel = kernel
    elif rule_name == "sign_symmetry":
        feedback_kernel = np.sign(kernel) * np.sqrt(np.mean(kernel**2))
    else:
        feedback_kernel = stored_feedback.astype("float64")
    local = isinstance(layer, kbp.LocallyConnected2D)
    input_shape = x.shape[1:]
    windows, padded_shape, pads = _windows(layer, input_shape)
    batch, positions = len(x), len(windows)
    x_padded = np.pad(x.astype("float64"), [(0, 0), *pads, (0, 0)][: x.ndim])
    patches = x_padded.reshape(batch, -1)[:, windows]  # [batch, P, K]
    filters = kernel.shape[-1]
    flat = kernel.reshape(positions if local else 1, -1, filters)
    flat_feedback = feedback_kernel.reshape(flat.shape)
    z = np.einsum(
        "npk,pkf->npf",
        patches,
        np.broadcast_to(flat, (positions, *flat.shape[1:])),
    )
    z = z + bias.reshape((positions, filters) if local else (filters,))
    error = upstream.reshape(batch, positions, filters) * (z > 0)
    grad_flat = np.einsum("npk,npf->pkf", patches, error)
    if not local:
        grad_flat = grad_flat.sum(axis=0, keepdims=True)
    grad_kernel = grad_flat.reshape(kernel.shape) / batch
    grad_bias = error.sum(axis=0) if local else error.sum(axis=(0, 1))
    grad_bias = grad_bias.reshape(bias.shape) / batch
    to_input = np.einsum(
        "npf,pkf->npk",
        error,
        np.broadcast_to(flat_feedback, (positions, *flat.shape[1:])),
    )
    input_error = np.zeros((batch, int(np.prod(padded_shape))))
    for n in range(batch):
        np.add.at(input_error[n], windows, to_input[n])
    input_error = input_error.reshape(batch, *padded_shape)
    crop = tuple(slice(a, size - b) for (a, b), size in zip(pads, padded_shape))
    input_error = input_error[(slice(None), *crop)]
    new_feedback = feedback_kernel
    if rule_name == "kolen_pollack":
        new_feedback = feedback_kernel - learning_rate * (
            grad_kernel + decay * feedback_kernel
        )
    return {
        "input_error": input_error,
        "kernel": kernel - learning_rate * (grad_kernel + decay * kernel),
        "bias": bias - learning_rate * grad_bias,
        "feedback": new_feedback,
    }


def _weighted_output(upstream, outputs):
    """Per sample, `sum(upstream * outputs)`: its gradient is `upstream`."""
    axes = tuple(range(1, len(outputs.shape)))
    return keras.ops.sum(keras.ops.multiply(upstream, outputs), axis=axes)


@pytest.mark.backends
@pytest.mark.parametrize("case", list(LAYER_CASES))
@pytest.mark.parametrize("rule_name", RULES)
def test_one_layer_step_equals_numpy_on_every_backend(rule_name, case):
    make_layer, input_shape = LAYER_CASES[case]
    rule = feedback.get(rule_name)
    if rule_name == "kolen_pollack":
        rule = feedback.KolenPollack(decay=0.3, seed=4)
    elif rule_name == "feedback_alignment":
        rule = feedback.FeedbackAlignment(seed=4)
    plain = make_layer()
    network = feedback.apply(
        keras.Sequential([keras.Input(input_shape), plain]), rule
    )
    (layer,) = network.layers
    rng = np.random.default_rng(3)
    bias = rng.normal(size=plain.bias.shape, scale=0.1).astype("float32")
    plain.bias.assign(bias)  # Some units active, some not.
    x = rng.normal(size=(3, *input_shape)).astype("float32")
    outputs = keras.ops.convert_to_numpy(network(x))
    upstream = rng.normal(size=outputs.shape).astype("float32")
    stored = getattr(layer, "feedback_weights", None)
    expected = numpy_feedback_layer_step(
        plain,
        rule_name,
        None if stored is None else keras.ops.convert_to_numpy(stored),
        getattr(rule, "decay", 0.0),
        x,
        upstream,
        0.1,
    )
    assert 0 < np.mean(outputs > 0) < 1

    gradients, input_error = kbp.backend.gradients(
        network,
        x,
        lambda outputs: keras.ops.sum(_weighted_output(upstream, outputs)),
        wrt_inputs=True,
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(input_error),
        expected["input_error"],
        rtol=1e-5,
        atol=1e-5,
    )
    if rule_name == "kolen_pollack":  # B learns as W does.
        by_variable = {
            id(variable): keras.ops.convert_to_numpy(gradient)
            for variable, gradient in zip(
                network.trainable_variables, gradients, strict=True
            )
        }
        np.testing.assert_allclose(
            by_variable[id(layer.feedback_weights)],
            by_variable[id(layer.kernel)],
            rtol=1e-6,
            atol=1e-6,
        )

    network.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=lambda y_true, y_pred: _weighted_output(y_true, y_pred),
    )
    network.train_on_batch(x, upstream)
    trained = {
        "kernel": layer.kernel,
        "bias": plain.bias,
        "feedback": layer.feedback_kernel
        if rule_name != "symmetric"
        else layer.kernel,
    }
    if rule_name == "symmetric":
        expected["feedback"] = expected["kernel"]
    for name, value in trained.items():
        if rule_name == "sign_symmetry" and name == "feedback":
            continue  # Computed from the new kernel: nothing to update.
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(value),
            expected[name],
            rtol=1e-5,
            atol=1e-6,
            err_msg=name,
        )


@pytest.mark.backends
def test_seeded_feedback_weights_are_reproducible_on_every_backend():
    # Keras draws a seed's numbers with the backend's own generator, so the
    # same seed gives other feedback weights on another backend (as it does
    # for the forward kernels); within a backend it gives the same ones.
    def feedback_kernels(rule):
        network = keras.Sequential(
            [
                keras.Input((300,)),
                keras.layers.Dense(300),
                keras.layers.Dense(300),
            ]
        )
        converted = feedback.apply(network, rule)
        return [
            keras.ops.convert_to_numpy(layer.feedback_kernel)
            for layer in converted.layers
        ]

    first = feedback_kernels(feedback.FeedbackAlignment(seed=1))
    again = feedback_kernels(feedback.KolenPollack(seed=1))
    other = feedback_kernels(feedback.FeedbackAlignment(seed=2))
    for a, b, c in zip(first, again, other, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)
        # glorot_uniform: standard deviation sqrt(2 / (fan_in + fan_out)).
        assert abs(a.std() - np.sqrt(2 / sum(a.shape))) < 0.002
    assert not np.allclose(first[0], first[1])
