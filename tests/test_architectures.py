"""Tests of the paper's networks and hyper-parameters."""

import dataclasses

import keras
import numpy as np
import pytest

from keras_brainprop import architectures
from keras_brainprop.layers import LocallyConnected2D

# Plain Keras layers and NumPy: every test runs on every backend.
pytestmark = pytest.mark.backends

MNIST_SHAPE = (28, 28, 1)

_KERNEL_LAYERS = (keras.layers.Dense, keras.layers.Conv2D, LocallyConnected2D)


def _kernel_layers(net):
    return [layer for layer in net.layers if isinstance(layer, _KERNEL_LAYERS)]


def _types(net):
    return [type(layer).__name__ for layer in net.layers]


_CONV_TYPES = [
    "Conv2D",
    "ReLU",
    "BatchNormalization",
    "Conv2D",
    "ReLU",
    "BatchNormalization",
    "Dropout",
    "Flatten",
    "Dense",
    "Dropout",
    "Dense",
]


def test_dense_layers():
    net = architectures.build("dense", MNIST_SHAPE, 10)
    assert _types(net) == ["Flatten", "Dense", "Dense", "Dense", "Dense"]
    assert [layer.units for layer in net.layers[1:]] == [1500, 1000, 500, 10]
    assert [layer.activation.__name__ for layer in net.layers[1:]] == [
        "relu",
        "relu",
        "relu",
        "linear",
    ]


def test_conv_layers():
    net = architectures.build("conv", MNIST_SHAPE, 10)
    assert _types(net) == _CONV_TYPES
    first, second = net.layers[0], net.layers[3]
    assert (first.filters, first.strides, first.padding) == (32, (1, 1), "same")
    assert (second.filters, second.strides, second.padding) == (
        32,
        (2, 2),
        "same",
    )
    assert first.kernel_size == (3, 3)
    assert [layer.rate for layer in net.layers if "Dropout" in str(layer)] == [
        0.3,
        0.3,
    ]
    assert net.layers[-3].units == 500


def test_loccon_is_conv_with_locally_connected_valid_layers():
    net = architectures.build("loccon", MNIST_SHAPE, 10)
    expected = [
        "LocallyConnected2D" if name == "Conv2D" else name
        for name in _CONV_TYPES
    ]
    assert _types(net) == expected
    assert net.layers[0].padding == "valid"
    assert net.layers[3].strides == (2, 2)
    # 'valid': 28 -> 26 -> (26 - 3) // 2 + 1 = 12.
    assert net.layers[3].compute_output_shape((None, 26, 26, 32)) == (
        None,
        12,
        12,
        32,
    )


def test_deep_layers():
    net = architectures.build("deep", (32, 32, 3), 10)
    types = _types(net)
    assert types.count("Conv2D") == 7
    assert types.count("BatchNormalization") == 7
    assert types.count("MaxPooling2D") == 3
    convs = [layer for layer in net.layers if isinstance(layer, keras.Layer)]
    filters = [
        layer.filters
        for layer in convs
        if isinstance(layer, keras.layers.Conv2D)
    ]
    assert filters == [64, 64, 128, 128, 128, 128, 128]
    rates = [
        layer.rate
        for layer in net.layers
        if isinstance(layer, keras.layers.Dropout)
    ]
    assert rates == [0.3, 0.3, 0.8, 0.3]
    # Every conv is followed by ReLU then BatchNormalization.
    for index, name in enumerate(types):
        if name == "Conv2D":
            assert types[index + 1 : index + 3] == [
                "ReLU",
                "BatchNormalization",
            ]


@pytest.mark.parametrize("name", architectures.ARCHITECTURES)
def test_no_biases_and_linear_bias_free_output(name):
    net = architectures.build(name, MNIST_SHAPE, 7)
    assert net.output_shape == (None, 7)
    output = net.layers[-1]
    assert isinstance(output, keras.layers.Dense)
    assert output.name == "output"
    assert output.activation.__name__ == "linear"
    for layer in _kernel_layers(net):
        assert layer.use_bias is False
    assert not [w.path for w in net.weights if w.path.endswith("/bias")]


@pytest.mark.parametrize(
    "name, stddev",
    [("dense", 0.01), ("conv", 0.005), ("loccon", 0.005), ("deep", 0.005)],
)
def test_initializer_is_normal_with_paper_stddev(name, stddev):
    net = architectures.build(name, MNIST_SHAPE, 10)
    for layer in _kernel_layers(net):
        initializer = layer.kernel_initializer
        assert isinstance(initializer, keras.initializers.RandomNormal)
        assert initializer.mean == 0.0
        assert initializer.stddev == stddev
    kernel = max(
        (layer.get_weights()[0] for layer in _kernel_layers(net)),
        key=np.size,
    )
    np.testing.assert_allclose(kernel.std(), stddev, rtol=0.05)
    np.testing.assert_allclose(kernel.mean(), 0.0, atol=stddev * 0.05)


def test_kernels_are_drawn_independently_and_reproducibly():
    keras.utils.set_random_seed(3)
    first = architectures.build("conv", MNIST_SHAPE, 10)
    keras.utils.set_random_seed(3)
    second = architectures.build("conv", MNIST_SHAPE, 10)
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    hidden = first.layers[-3].get_weights()[0]
    output = first.layers[-1].get_weights()[0]
    assert not np.allclose(hidden[:10, :10], output[:10, :10])


def test_l2_on_every_kernel_for_deep_only():
    deep = architectures.build("deep", (32, 32, 3), 100)
    kernels = _kernel_layers(deep)
    assert len(kernels) == 9  # 7 convolutions, Dense 500, output.
    for layer in kernels:
        assert isinstance(layer.kernel_regularizer, keras.regularizers.L2)
        np.testing.assert_allclose(layer.kernel_regularizer.l2, 5e-4)
    assert len(deep.losses) == 9
    for name in ("dense", "conv", "loccon", "mlp"):
        net = architectures.build(name, MNIST_SHAPE, 10)
        assert not net.losses


def _bn(channels):
    return 4 * channels  # gamma, beta, moving mean, moving variance


@pytest.mark.parametrize(
    "name, expected",
    [
        ("dense", 784 * 1500 + 1500 * 1000 + 1000 * 500 + 500 * 10),
        (
            "conv",
            9 * 1 * 32
            + _bn(32)
            + 9 * 32 * 32
            + _bn(32)
            + 14 * 14 * 32 * 500
            + 500 * 10,
        ),
        (
            "loccon",
            26 * 26 * 9 * 1 * 32
            + _bn(32)
            + 12 * 12 * 9 * 32 * 32
            + _bn(32)
            + 12 * 12 * 32 * 500
            + 500 * 10,
        ),
        (
            "deep",
            9 * (1 * 64 + 64 * 64 + 64 * 128 + 128 * 128 + 3 * 128 * 128)
            + _bn(64) * 2
            + _bn(128) * 5
            + 3 * 3 * 128 * 500  # 28 -> 14 -> 7 -> 3 after three pools.
            + 500 * 10,
        ),
        ("mlp", 64 * 256 + 256 * 10),
    ],
)
def test_parameter_counts(name, expected):
    shape = (8, 8, 1) if name == "mlp" else MNIST_SHAPE
    assert architectures.build(name, shape, 10).count_params() == expected


def test_softmax_output_for_ebp_has_the_same_layers():
    keras.utils.set_random_seed(5)
    linear = architectures.build("conv", MNIST_SHAPE, 10)
    keras.utils.set_random_seed(5)
    softmax = architectures.build(
        "conv", MNIST_SHAPE, 10, output_activation="softmax"
    )
    assert _types(linear) == _types(softmax)
    assert softmax.layers[-1].activation.__name__ == "softmax"
    for a, b in zip(linear.get_weights(), softmax.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    images = np.random.default_rng(0).random((2, *MNIST_SHAPE), "float32")
    probabilities = keras.ops.convert_to_numpy(softmax(images))
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "name, shape, classes",
    [
        ("conv", (32, 32, 3), 100),
        ("loccon", (8, 8, 1), 10),
        ("deep", (64, 64, 3), 200),
        ("dense", (8, 8, 1), 3),
    ],
)
def test_any_input_shape_and_class_count(name, shape, classes):
    net = architectures.build(name, shape, classes)
    images = np.zeros((2, *shape), "float32")
    assert net(images).shape == (2, classes)


def test_hyperparameters_follow_the_paper():
    batch_sizes = {"dense": 128, "conv": 128, "loccon": 32, "deep": 128}
    for name, batch_size in batch_sizes.items():
        hparams = architectures.hyperparameters(name)
        assert hparams.batch_size == batch_size
        assert hparams.learning_rate == 0.1
        assert hparams.max_epochs == 500
        assert hparams.patience == 45
        assert hparams.min_delta == 0.001
        assert hparams.decay_every_epochs == 100
        assert hparams.decay_factor == 0.5
    assert architectures.hyperparameters("deep").l2 == 5e-4
    assert architectures.hyperparameters("conv").l2 == 0.0


def test_learning_rate_halves_every_100_epochs():
    hparams = architectures.hyperparameters("conv")
    rates = [hparams.learning_rate_at(epoch) for epoch in (0, 99, 100, 250)]
    assert rates == [0.1, 0.1, 0.05, 0.025]


def test_hyperparameters_are_frozen():
    hparams = architectures.hyperparameters("dense")
    with pytest.raises(dataclasses.FrozenInstanceError):
        hparams.batch_size = 1
    assert dataclasses.replace(hparams, batch_size=1).batch_size == 1
    assert architectures.hyperparameters("dense").batch_size == 128


def test_bad_arguments():
    with pytest.raises(ValueError, match="Received: name='resnet'"):
        architectures.build("resnet", MNIST_SHAPE, 10)
    with pytest.raises(ValueError, match="Received: name='resnet'"):
        architectures.hyperparameters("resnet")
    with pytest.raises(ValueError, match="num_classes=0"):
        architectures.build("dense", MNIST_SHAPE, 0)
    with pytest.raises(ValueError, match="input_shape"):
        architectures.build("conv", (784,), 10)
