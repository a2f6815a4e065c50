"""FeedbackLayer (keras_brainprop/feedback/feedback_layer.py): the error
goes down through the feedback kernel, as the NumPy reference computes,
in every layer kind and mode.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from _helpers import RULE_NAMES
from _helpers import brainprop_model
from _helpers import loccon_net
from _helpers import random_batch

import keras_brainprop as kbp
from keras_brainprop import feedback

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


@pytest.mark.slow
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


# Compilation, precision, saving, nesting, distribution -----------------------


@pytest.mark.slow
def test_compiled_step_has_backprops_convolutions_and_products():
    # The backward pass computes each input error and kernel gradient once;
    # the forward calls inside it are dropped by the compiler.
    x, _ = random_batch((6, 6, 2), 3, batch_size=4)

    def operation_counts(rule):
        network = feedback.apply(loccon_net(dropout=0.0), rule)

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


@pytest.mark.slow
def test_jit_compiled_steps_equal_graph_steps():
    x, y = random_batch((6, 6, 2), 3, batch_size=16)
    weights = []
    for jit_compile in (False, True):
        keras.utils.set_random_seed(3)
        # No dropout: XLA draws other random numbers than TensorFlow.
        network = loccon_net(dropout=0.0)
        rule = feedback.KolenPollack(decay=0.1, seed=1)
        model = brainprop_model(network, rule, jit_compile=jit_compile)
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    for graph, jit in zip(*weights):
        np.testing.assert_allclose(graph, jit, atol=1e-5)


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
@pytest.mark.parametrize("rule_name", RULE_NAMES[1:])
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
@pytest.mark.parametrize("rule_name", RULE_NAMES[1:])
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


@pytest.mark.slow
@pytest.mark.backends
@pytest.mark.parametrize("case", list(LAYER_CASES))
@pytest.mark.parametrize("rule_name", RULE_NAMES)
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
