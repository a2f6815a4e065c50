"""Tests of keras_brainprop.layers.LocallyConnected2D.

Tests marked `backends` use only `keras.ops` and NumPy (and each backend's
autodiff in `_gradients`) and run under every Keras backend; the others
compare with Keras 2 (`tf_keras`) or train with BrainProp.
"""

import keras
import numpy as np
import pytest
import tf_keras
from keras import ops

from keras_brainprop.layers import LocallyConnected2D
from keras_brainprop.model import wrap

STRIDES = [1, 2, (2, 1)]
PADDINGS = ["valid", "same"]
DATA_FORMATS = ["channels_last", "channels_first"]
# (rows, cols, channels, kernel_size, use_bias): odd and even sizes and
# kernels, several channel counts, with and without bias.
CASES = [(5, 7, 1, (3, 3), True), (6, 4, 3, (2, 3), False)]


def _input_shape(rows, cols, channels, data_format):
    if data_format == "channels_last":
        return (rows, cols, channels)
    return (channels, rows, cols)


def _geometry(rows, cols, kernel_size, strides, padding):
    """Output size and top/left padding of Keras 2's locally connected rule.

    Written independently of the layer: in 'same' mode the window of output
    `i` starts at input `i * stride - kernel // 2`.
    """
    (kernel_rows, kernel_cols), (stride_rows, stride_cols) = (
        kernel_size,
        strides,
    )
    if padding == "valid":
        output_rows = (rows - kernel_rows) // stride_rows + 1
        output_cols = (cols - kernel_cols) // stride_cols + 1
        return output_rows, output_cols, 0, 0
    output_rows = -(-rows // stride_rows)
    output_cols = -(-cols // stride_cols)
    return output_rows, output_cols, kernel_rows // 2, kernel_cols // 2


def _padded(x_nhwc, top, left, kernel_size, strides, output_rows, output_cols):
    """Zero-pads an NHWC array so that every window lies inside it."""
    batch, rows, cols, channels = x_nhwc.shape
    needed_rows = (output_rows - 1) * strides[0] + kernel_size[0]
    needed_cols = (output_cols - 1) * strides[1] + kernel_size[1]
    padded = np.zeros(
        (batch, max(needed_rows, top + rows), max(needed_cols, left + cols))
        + (channels,)
    )
    padded[:, top : top + rows, left : left + cols] = x_nhwc
    return padded


def _reference(x, kernel, bias, kernel_size, strides, padding, data_format):
    """A per-position NumPy loop: outputs in the layer's data_format."""
    x_nhwc = x if data_format == "channels_last" else x.transpose(0, 2, 3, 1)
    rows, cols = x_nhwc.shape[1:3]
    output_rows, output_cols, top, left = _geometry(
        rows, cols, kernel_size, strides, padding
    )
    padded = _padded(
        x_nhwc, top, left, kernel_size, strides, output_rows, output_cols
    )
    filters = kernel.shape[-1]
    outputs = np.zeros((x.shape[0], output_rows, output_cols, filters))
    for row in range(output_rows):
        for col in range(output_cols):
            row_start, col_start = row * strides[0], col * strides[1]
            patch = padded[
                :,
                row_start : row_start + kernel_size[0],
                col_start : col_start + kernel_size[1],
            ]
            if data_format == "channels_first":
                patch = patch.transpose(0, 3, 1, 2)
            patch = patch.reshape(x.shape[0], -1)
            outputs[:, row, col] = patch @ kernel[row * output_cols + col]
    if data_format == "channels_first":
        outputs = outputs.transpose(0, 3, 1, 2)
        if bias is not None:
            # Keras 2 reshapes (does not transpose) the bias here.
            outputs = outputs + bias.reshape(filters, output_rows, output_cols)
    elif bias is not None:
        outputs = outputs + bias
    return outputs


def _reference_gradients(
    x, kernel, upstream, kernel_size, strides, padding, data_format
):
    """NumPy loop gradients of sum(outputs * upstream) wrt x and kernel."""
    x_nhwc = x if data_format == "channels_last" else x.transpose(0, 2, 3, 1)
    if data_format == "channels_first":
        upstream = upstream.transpose(0, 2, 3, 1)
    batch, rows, cols, channels = x_nhwc.shape
    output_rows, output_cols, top, left = _geometry(
        rows, cols, kernel_size, strides, padding
    )
    padded = _padded(
        x_nhwc, top, left, kernel_size, strides, output_rows, output_cols
    )
    padded_gradient = np.zeros_like(padded)
    kernel_gradient = np.zeros_like(kernel)
    window = (kernel_size[0], kernel_size[1], channels)
    for row in range(output_rows):
        for col in range(output_cols):
            position = row * output_cols + col
            row_slice = slice(
                row * strides[0], row * strides[0] + kernel_size[0]
            )
            col_slice = slice(
                col * strides[1], col * strides[1] + kernel_size[1]
            )
            patch = padded[:, row_slice, col_slice]
            if data_format == "channels_first":
                patch = patch.transpose(0, 3, 1, 2)
            patch = patch.reshape(batch, -1)
            kernel_gradient[position] = patch.T @ upstream[:, row, col]
            patch_gradient = upstream[:, row, col] @ kernel[position].T
            if data_format == "channels_first":
                patch_gradient = patch_gradient.reshape(
                    (batch, channels) + window[:2]
                ).transpose(0, 2, 3, 1)
            padded_gradient[:, row_slice, col_slice] += patch_gradient.reshape(
                (batch,) + window
            )
    x_gradient = padded_gradient[:, top : top + rows, left : left + cols]
    if data_format == "channels_first":
        x_gradient = x_gradient.transpose(0, 3, 1, 2)
    return x_gradient, kernel_gradient


def _gradients(fn, *args):
    """Gradients of the scalar `fn(*args)` in every argument, as NumPy.

    Differentiation is the one thing `keras.ops` does not express, so each
    backend's own autodiff runs here.
    """
    args = [ops.convert_to_tensor(arg) for arg in args]
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        grads = jax.grad(fn, argnums=tuple(range(len(args))))(*args)
    elif backend == "torch":
        import torch

        args = [arg.detach().requires_grad_(True) for arg in args]
        grads = torch.autograd.grad(fn(*args), args)
    else:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(args)
            value = fn(*args)
        grads = tape.gradient(value, args)
    return [ops.convert_to_numpy(grad) for grad in grads]


def _case_layer(strides, padding, data_format, case, rng):
    """A float32 layer of `case`, its weights and an input, from `rng`."""
    rows, cols, channels, kernel_size, use_bias = case
    shape = _input_shape(rows, cols, channels, data_format)
    layer = LocallyConnected2D(
        4,
        kernel_size,
        strides=strides,
        padding=padding,
        data_format=data_format,
        use_bias=use_bias,
    )
    layer.build((None,) + shape)
    # Set from NumPy: the same weights on every backend.
    weights = [
        rng.normal(size=weight.shape).astype("float32")
        for weight in layer.weights
    ]
    layer.set_weights(weights)
    x = rng.normal(size=(2,) + shape).astype("float32")
    return layer, weights, x


@pytest.mark.backends
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("strides", STRIDES)
def test_outputs_match_numpy_loop(strides, padding, data_format, case):
    rng = np.random.default_rng(0)
    layer, weights, x = _case_layer(strides, padding, data_format, case, rng)
    bias = weights[1] if layer.use_bias else None

    outputs = ops.convert_to_numpy(layer(x))

    expected = _reference(
        x.astype("float64"),
        weights[0],
        bias,
        layer.kernel_size,
        layer.strides,
        padding,
        data_format,
    )
    assert outputs.dtype == np.float32
    np.testing.assert_allclose(outputs, expected, rtol=0, atol=1e-5)


@pytest.mark.backends
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("strides", STRIDES)
def test_gradients_match_numpy_loop(strides, padding, data_format, case):
    rng = np.random.default_rng(1)
    layer, _, x = _case_layer(strides, padding, data_format, case, rng)
    # Any kernel of the layer's shape, as the feedback layer passes one.
    kernel = rng.normal(size=layer.kernel.shape).astype("float32")
    upstream = rng.normal(size=layer.compute_output_shape(x.shape)).astype(
        "float32"
    )

    def objective(x, kernel):
        outputs = layer.locally_connected_op(x, kernel)
        return ops.sum(ops.multiply(outputs, upstream))

    x_gradient, kernel_gradient = _gradients(objective, x, kernel)

    expected_x_gradient, expected_kernel_gradient = _reference_gradients(
        x.astype("float64"),
        kernel.astype("float64"),
        upstream.astype("float64"),
        layer.kernel_size,
        layer.strides,
        padding,
        data_format,
    )
    np.testing.assert_allclose(
        x_gradient, expected_x_gradient, rtol=0, atol=1e-5
    )
    np.testing.assert_allclose(
        kernel_gradient, expected_kernel_gradient, rtol=0, atol=1e-5
    )


@pytest.mark.backends
@pytest.mark.parametrize("data_format", DATA_FORMATS)
def test_kernel_layout_is_the_same_on_every_backend(data_format):
    # Position p's kernel is (p + 1) times the identity: its outputs are its
    # patch, flattened in the documented order and scaled by p + 1, so the
    # expected values are slices of the input, whatever the backend.
    rows, cols, channels, kernel_rows, kernel_cols, strides = 5, 6, 2, 2, 3, 2
    shape = _input_shape(rows, cols, channels, data_format)
    patch_size = kernel_rows * kernel_cols * channels
    layer = LocallyConnected2D(
        patch_size,
        (kernel_rows, kernel_cols),
        strides=strides,
        data_format=data_format,
        use_bias=False,
    )
    layer.build((None,) + shape)
    output_rows, output_cols = layer.output_rows, layer.output_cols
    positions = np.arange(1, output_rows * output_cols + 1, dtype="float32")
    layer.set_weights(
        [positions[:, None, None] * np.eye(patch_size, dtype="float32")]
    )
    x = np.arange(np.prod(shape), dtype="float32").reshape((1,) + shape)

    outputs = ops.convert_to_numpy(layer(x))[0]

    if data_format == "channels_first":
        outputs = outputs.transpose(1, 2, 0)
    for row in range(output_rows):
        for col in range(output_cols):
            window = (
                slice(row * strides, row * strides + kernel_rows),
                slice(col * strides, col * strides + kernel_cols),
            )
            if data_format == "channels_last":
                # (kernel_row, kernel_col, channel)
                patch = x[0][window]
            else:
                # (channel, kernel_row, kernel_col)
                patch = x[0][(slice(None),) + window]
            scale = positions[row * output_cols + col]
            np.testing.assert_array_equal(
                outputs[row, col], scale * patch.ravel()
            )


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("strides", STRIDES)
def test_keras2_implementation_1_weights_give_same_outputs(
    strides, data_format
):
    shape = _input_shape(7, 6, 3, data_format)
    x = np.random.default_rng(1).random((3,) + shape).astype("float32")
    keras2_layer = tf_keras.layers.LocallyConnected2D(
        5,
        (3, 2),
        strides=strides,
        data_format=data_format,
        implementation=1,
        bias_initializer="random_normal",
    )
    expected = keras2_layer(x).numpy()
    layer = LocallyConnected2D(
        5, (3, 2), strides=strides, data_format=data_format
    )
    layer.build((None,) + shape)
    layer.set_weights(keras2_layer.get_weights())  # Unchanged.
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(x)), expected, atol=1e-5
    )


def _implementation_2_kernel(kernel, input_shape, layer):
    """Our (implementation 1 layout) kernel as Keras 2's dense masked one."""
    rows, cols, channels = input_shape
    kernel_rows, kernel_cols = layer.kernel_size
    output_rows, output_cols, top, left = _geometry(
        rows, cols, layer.kernel_size, layer.strides, layer.padding
    )
    dense = np.zeros(
        (rows, cols, channels, output_rows, output_cols, layer.filters)
    )
    for row in range(output_rows):
        for col in range(output_cols):
            position = kernel[row * output_cols + col]
            if layer.data_format == "channels_first":
                position = position.reshape(
                    channels, kernel_rows, kernel_cols, -1
                ).transpose(1, 2, 0, 3)
            position = position.reshape(kernel_rows, kernel_cols, channels, -1)
            for kernel_row in range(kernel_rows):
                for kernel_col in range(kernel_cols):
                    input_row = row * layer.strides[0] - top + kernel_row
                    input_col = col * layer.strides[1] - left + kernel_col
                    if 0 <= input_row < rows and 0 <= input_col < cols:
                        dense[input_row, input_col, :, row, col] = position[
                            kernel_row, kernel_col
                        ]
    if layer.data_format == "channels_first":
        dense = dense.transpose(2, 0, 1, 5, 3, 4)
    return dense


@pytest.mark.parametrize("data_format", DATA_FORMATS)
@pytest.mark.parametrize("strides", STRIDES)
def test_keras2_implementation_2_same_padding_gives_same_outputs(
    strides, data_format
):
    # Keras 2's implementation 1 has no 'same'; implementation 2 does.
    padding = "same"
    rows, cols, channels = 6, 5, 2
    shape = _input_shape(rows, cols, channels, data_format)
    x = np.random.default_rng(2).random((3,) + shape).astype("float32")
    layer = LocallyConnected2D(
        4,
        (3, 2),
        strides=strides,
        padding=padding,
        data_format=data_format,
        bias_initializer="random_normal",
    )
    outputs = ops.convert_to_numpy(layer(x))
    keras2_layer = tf_keras.layers.LocallyConnected2D(
        4,
        (3, 2),
        strides=strides,
        padding=padding,
        data_format=data_format,
        implementation=2,
    )
    keras2_layer.build((None,) + shape)
    keras2_layer.set_weights(
        [
            _implementation_2_kernel(
                ops.convert_to_numpy(layer.kernel),
                (rows, cols, channels),
                layer,
            ),
            ops.convert_to_numpy(layer.bias),
        ]
    )
    np.testing.assert_allclose(keras2_layer(x).numpy(), outputs, atol=1e-5)


@pytest.mark.backends
def test_weight_shapes_follow_keras2_layout():
    layer = LocallyConnected2D(32, 3, strides=2, data_format="channels_first")
    layer.build((None, 5, 26, 26))
    assert tuple(layer.kernel.shape) == (12 * 12, 3 * 3 * 5, 32)
    assert tuple(layer.bias.shape) == (12, 12, 32)
    assert [weight.name for weight in layer.weights] == ["kernel", "bias"]


@pytest.mark.backends
def test_config_round_trip():
    layer = LocallyConnected2D(
        7,
        (3, 2),
        strides=(2, 1),
        padding="SAME",
        data_format="channels_first",
        activation="relu",
        use_bias=False,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.005),
        kernel_regularizer=keras.regularizers.L2(5e-4),
        activity_regularizer="l1",
        kernel_constraint="non_neg",
        name="loccon",
    )
    config = layer.get_config()
    assert config["padding"] == "same"
    assert config["kernel_size"] == (3, 2)
    assert config["strides"] == (2, 1)
    restored = LocallyConnected2D.from_config(config)
    assert restored.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == (
        "keras_brainprop>LocallyConnected2D"
    )
    revived = keras.saving.deserialize_keras_object(serialized)
    assert isinstance(revived, LocallyConnected2D)
    assert revived.get_config() == config


def _loccon_net(filters=4, input_shape=(8, 8, 1), classes=3):
    """A tiny version of the paper's loccon network."""
    initializer = keras.initializers.RandomNormal(stddev=0.05, seed=3)
    return keras.Sequential(
        [
            keras.Input(input_shape),
            LocallyConnected2D(
                filters, 3, use_bias=False, kernel_initializer=initializer
            ),
            keras.layers.ReLU(),
            keras.layers.BatchNormalization(),
            LocallyConnected2D(
                filters,
                3,
                strides=2,
                use_bias=False,
                kernel_initializer=initializer,
            ),
            keras.layers.ReLU(),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(
                classes, use_bias=False, kernel_initializer=initializer
            ),
        ]
    )


@pytest.mark.backends
def test_model_save_and_load_round_trip(tmp_path):
    model = _loccon_net()
    x = np.random.default_rng(4).random((5, 8, 8, 1)).astype("float32")
    path = tmp_path / "loccon.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored.layers[0], LocallyConnected2D)
    np.testing.assert_array_equal(
        restored.predict(x, verbose=0), model.predict(x, verbose=0)
    )


@pytest.mark.backends
@pytest.mark.parametrize("data_format", DATA_FORMATS)
def test_symbolic_and_eager_calls_agree_on_shape(data_format):
    shape = _input_shape(9, 8, 2, data_format)
    layer = LocallyConnected2D(
        6, 3, strides=2, padding="same", data_format=data_format
    )
    symbolic = layer(keras.Input(shape))
    eager = layer(np.zeros((4,) + shape, dtype="float32"))
    expected = (5, 4, 6) if data_format == "channels_last" else (6, 5, 4)
    assert tuple(symbolic.shape) == (None,) + expected
    assert tuple(eager.shape) == (4,) + expected


@pytest.mark.backends
@pytest.mark.parametrize(
    "kwargs, input_shape, expected",
    [
        ({}, (None, 28, 28, 1), (None, 26, 26, 32)),
        ({"strides": 2}, (None, 26, 26, 32), (None, 12, 12, 32)),
        ({"strides": (2, 1)}, (8, 7, 6, 3), (8, 3, 4, 32)),
        ({"padding": "same", "strides": 2}, (1, 7, 6, 3), (1, 4, 3, 32)),
        (
            {"data_format": "channels_first", "strides": (1, 2)},
            (None, 3, 7, 6),
            (None, 32, 5, 2),
        ),
    ],
)
def test_compute_output_shape(kwargs, input_shape, expected):
    layer = LocallyConnected2D(32, 3, **kwargs)
    assert layer.compute_output_shape(input_shape) == expected


@pytest.mark.backends
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"filters": 0, "kernel_size": 3}, "Received: filters=0"),
        ({"filters": 2.5, "kernel_size": 3}, "Received: filters=2.5"),
        ({"filters": 4, "kernel_size": (3, 3, 3)}, r"kernel_size=\(3, 3, 3\)"),
        ({"filters": 4, "kernel_size": 0}, "Received: kernel_size=0"),
        ({"filters": 4, "kernel_size": 3, "strides": (1, -1)}, "strides="),
        (
            {"filters": 4, "kernel_size": 3, "padding": "full"},
            "Received: padding='full'",
        ),
        (
            {"filters": 4, "kernel_size": 3, "data_format": "NHWC"},
            "Received: data_format='NHWC'",
        ),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LocallyConnected2D(**kwargs)


@pytest.mark.backends
def test_input_without_output_position_raises():
    layer = LocallyConnected2D(4, 5, name="too_big")
    with pytest.raises(ValueError, match="no output position"):
        layer(keras.Input((4, 9, 1)))


@pytest.mark.backends
def test_unknown_spatial_size_raises():
    layer = LocallyConnected2D(4, 3)
    with pytest.raises(ValueError, match="fully known spatial sizes"):
        layer.build((None, None, 9, 1))


@pytest.mark.slow
@pytest.mark.backends
def test_mixed_precision_computes_in_float16():
    keras.config.set_dtype_policy("mixed_float16")
    model = _loccon_net()
    layer = model.layers[0]
    assert layer.kernel.dtype == "float32"
    x = np.random.default_rng(5).random((4, 8, 8, 1)).astype("float32")
    assert keras.backend.standardize_dtype(layer(x).dtype) == "float16"
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(x, np.array([0, 1, 2, 0]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert layer.kernel.dtype == "float32"


@pytest.mark.slow
@pytest.mark.backends
@pytest.mark.parametrize("mode", ["eager", "graph", "jit"])
def test_fit_changes_kernels_in_every_mode(mode):
    model = _loccon_net()
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=mode == "eager",
        jit_compile=mode == "jit",
    )
    kernels = [
        layer.kernel for layer in model.layers if hasattr(layer, "kernel")
    ]
    before = [ops.convert_to_numpy(kernel) for kernel in kernels]
    x = np.random.default_rng(6).random((8, 8, 8, 1)).astype("float32")
    history = model.fit(x, np.arange(8) % 3, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    for kernel, initial in zip(kernels, before, strict=True):
        assert not np.allclose(ops.convert_to_numpy(kernel), initial)


@pytest.mark.slow
def test_brainprop_training_step_changes_every_kernel():
    net = _loccon_net()
    model = wrap(net)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    kernels = [layer.kernel for layer in net.layers if hasattr(layer, "kernel")]
    assert len(kernels) == 3
    before = [ops.convert_to_numpy(kernel) for kernel in kernels]
    x = np.random.default_rng(7).random((16, 8, 8, 1)).astype("float32")
    model.fit(x, np.arange(16) % 3, batch_size=8, epochs=1, verbose=0)
    for kernel, initial in zip(kernels, before, strict=True):
        changed = np.abs(ops.convert_to_numpy(kernel) - initial) > 0
        # Every position's filter bank learns, not only some.
        assert changed.reshape(len(initial), -1).any(axis=1).all()
