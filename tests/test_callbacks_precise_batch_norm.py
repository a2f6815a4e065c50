"""PreciseBatchNorm against batch statistics recomputed in NumPy, on every
backend (the data is a tf.data.Dataset, which every backend's fit() takes).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_brainprop as kbp
from keras_brainprop.callbacks import PreciseBatchNorm


def tiny_net():
    inputs = keras.Input((5,))
    hidden = keras.layers.Dense(3, use_bias=False, name="hidden")(inputs)
    normalized = keras.layers.BatchNormalization(name="bn")(hidden)
    outputs = keras.layers.Dense(4, use_bias=False)(
        keras.layers.Activation("relu")(normalized)
    )
    return keras.Model(inputs, outputs)


def data(num_examples=96, batch_size=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, (num_examples, 5)).astype("float32")
    y = rng.integers(0, 4, num_examples).astype("int32")
    return x, y, tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def expected_statistics(net, x, batch_size, num_batches, layer="hidden"):
    """The mean over batches of each batch's mean and (biased) variance per
    channel (the last axis)."""
    hidden = keras.ops.convert_to_numpy(net.get_layer(layer)(x))
    axes = tuple(range(hidden.ndim - 1))
    batches = [
        hidden[start : start + batch_size]
        for start in range(0, batch_size * num_batches, batch_size)
    ]
    means = np.mean([batch.mean(axis=axes) for batch in batches], axis=0)
    variances = np.mean([batch.var(axis=axes) for batch in batches], axis=0)
    return means, variances


def numpy_of(variable):
    return keras.ops.convert_to_numpy(variable.value)


@pytest.mark.backends
@pytest.mark.parametrize("wrapped", [False, True])
def test_statistics_are_the_mean_of_the_batches(wrapped):
    net = tiny_net()
    x, _, dataset = data()
    model = kbp.wrap(net) if wrapped else net
    callback = PreciseBatchNorm(dataset, num_batches=4)
    callback.set_model(model)
    before = [w.copy() for w in net.get_weights()]
    callback.recompute()
    mean, variance = expected_statistics(net, x, 16, 4)
    bn = net.get_layer("bn")
    np.testing.assert_allclose(numpy_of(bn.moving_mean), mean, rtol=1e-5)
    np.testing.assert_allclose(
        numpy_of(bn.moving_variance), variance, rtol=1e-4
    )
    assert bn.momentum == 0.99
    # Only the moving statistics changed.
    after = net.get_weights()
    changed = [not np.array_equal(b, a) for b, a in zip(before, after)]
    assert changed == [False, False, False, True, True, False]


@pytest.mark.backends
def test_conv_net_statistics_per_channel():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((6, 6, 1))
    conv = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    normalized = keras.layers.BatchNormalization(name="bn")(conv)
    outputs = keras.layers.Dense(3)(
        keras.layers.Flatten()(keras.layers.Activation("relu")(normalized))
    )
    net = keras.Model(inputs, outputs)
    x = np.random.default_rng(3).normal(2.0, 3.0, (32, 6, 6, 1))
    x = x.astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(8)
    callback = PreciseBatchNorm(dataset, num_batches=3)
    callback.set_model(kbp.wrap(net))
    callback.recompute()
    mean, variance = expected_statistics(net, x, 8, 3, layer="conv")
    bn = net.get_layer("bn")
    np.testing.assert_allclose(numpy_of(bn.moving_mean), mean, rtol=1e-5)
    np.testing.assert_allclose(
        numpy_of(bn.moving_variance), variance, rtol=1e-4
    )


@pytest.mark.slow
@pytest.mark.backends
def test_fit_validates_with_re_estimated_statistics():
    x, y, dataset = data()
    keras.utils.set_random_seed(1)
    net = tiny_net()
    model = kbp.wrap(net, seed=1)
    model.compile(optimizer=keras.optimizers.SGD(0.01), metrics=["accuracy"])
    seen = []

    class Record(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            seen.append(numpy_of(net.get_layer("bn").moving_mean).copy())

    model.fit(
        dataset,
        validation_data=dataset,
        epochs=2,
        verbose=0,
        callbacks=[PreciseBatchNorm(dataset, num_batches=6), Record()],
    )
    # Before each validation the statistics are those of the six batches
    # under the weights of that moment: recompute them for the last one.
    mean, _ = expected_statistics(net, x, 16, 6)
    np.testing.assert_allclose(seen[-1], mean, rtol=1e-5)


@pytest.mark.backends
def test_networks_without_batch_norm_are_left_alone():
    net = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    callback = PreciseBatchNorm(data()[2])
    callback.set_model(net)
    before = net.get_weights()
    callback.recompute()
    for b, a in zip(before, net.get_weights(), strict=True):
        np.testing.assert_array_equal(b, a)


@pytest.mark.backends
def test_nested_batch_norm_layers_are_found():
    inner = keras.Sequential(
        [keras.Input((5,)), keras.layers.BatchNormalization()]
    )
    outer = keras.Sequential([keras.Input((5,)), inner, keras.layers.Dense(2)])
    found = kbp.callbacks.precise_batch_norm.batch_norm_layers(outer)
    assert found == [inner.layers[0]]


@pytest.mark.backends
@pytest.mark.parametrize(
    "kwargs, received",
    [
        ({"data": np.zeros((4, 5))}, "data=ndarray"),
        ({"num_batches": 0}, "num_batches=0"),
        ({"num_batches": 2.5}, "num_batches=2.5"),
    ],
)
def test_bad_arguments(kwargs, received):
    arguments = {"data": data()[2], **kwargs}
    with pytest.raises(ValueError, match=f"Received: {received}"):
        PreciseBatchNorm(**arguments)
