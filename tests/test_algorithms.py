"""Tests of the algorithm objects and of `algorithms.get`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_brainprop import algorithms
from keras_brainprop import feedback
from keras_brainprop import policies
from keras_brainprop import rewards
from keras_brainprop.backprop_model import BackpropModel
from keras_brainprop.callbacks import BrainPropMonitor
from keras_brainprop.model import BrainPropModel

IMAGES = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
LABELS = np.array([0, 1, 2, 0, 1, 2], "int32")


def _network(output_activation=None):
    return keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(
                3,
                activation=output_activation,
                kernel_initializer=keras.initializers.RandomNormal(seed=1),
            ),
        ]
    )


@pytest.mark.backends
def test_get_by_name_alias_and_object():
    assert isinstance(algorithms.get("brainprop"), algorithms.BrainProp)
    assert isinstance(algorithms.get("backprop"), algorithms.Backprop)
    assert isinstance(algorithms.get("BrainProp"), algorithms.BrainProp)
    # Result files and flags of earlier versions name backprop "ebp".
    assert algorithms.get("ebp").name == "backprop"
    algorithm = algorithms.BrainProp(policy=policies.Greedy(), seed=3)
    assert algorithms.get(algorithm) is algorithm
    assert [algorithms.get(name).name for name in algorithms.NAMES] == list(
        algorithms.NAMES
    )


@pytest.mark.backends
def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="algorithm='sgd'") as error:
        algorithms.get("sgd")
    for name in ("'brainprop'", "'backprop'", "'ebp'"):
        assert name in str(error.value)
    with pytest.raises(ValueError, match="Received: algorithm=3"):
        algorithms.get(3)
    with pytest.raises(TypeError):
        algorithms.Backprop(policy=policies.Greedy())


@pytest.mark.backends
def test_output_activation_and_name():
    brainprop, backprop = algorithms.BrainProp(), algorithms.Backprop()
    assert (brainprop.name, brainprop.output_activation) == ("brainprop", None)
    assert (backprop.name, backprop.output_activation) == (
        "backprop",
        "softmax",
    )


@pytest.mark.backends
def test_brainprop_wrap_passes_its_settings():
    policy, reward = policies.Greedy(), rewards.CorrectChoice()
    algorithm = algorithms.BrainProp(policy=policy, reward=reward, seed=7)
    network = _network()
    model = algorithm.wrap(network)
    assert isinstance(model, BrainPropModel)
    assert model.network is network
    assert (model.policy, model.reward, model.seed) == (policy, reward, 7)


@pytest.mark.slow
@pytest.mark.backends
def test_brainprop_compile_takes_one_sgd_step_on_the_chosen_unit():
    network = _network()
    kernel, bias = [np.array(w) for w in network.get_weights()]
    algorithm = algorithms.BrainProp(policy=policies.Greedy())
    model = algorithm.wrap(network)
    algorithm.compile(model, learning_rate=0.5)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    model.train_on_batch(IMAGES, LABELS)
    # NumPy: greedy action, reward 1 if right, loss mean(0.5 * delta**2).
    q_values = IMAGES @ kernel + bias
    actions = q_values.argmax(axis=1)
    delta = (actions == LABELS) - q_values[np.arange(6), actions]
    grad_q = np.zeros_like(q_values)
    grad_q[np.arange(6), actions] = -delta / 6
    np.testing.assert_allclose(
        network.get_weights()[0], kernel - 0.5 * IMAGES.T @ grad_q, atol=1e-6
    )
    np.testing.assert_allclose(
        network.get_weights()[1], bias - 0.5 * grad_q.sum(axis=0), atol=1e-6
    )
    logs = model.evaluate(IMAGES, LABELS, verbose=0, return_dict=True)
    assert "accuracy" in logs


def _softmax(logits):
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


@pytest.mark.backends
def test_backprop_wrap_and_compile_train_on_the_cross_entropy():
    network = _network("softmax")
    kernel, bias = [np.array(w, "float64") for w in network.get_weights()]
    algorithm = algorithms.Backprop()
    model = algorithm.wrap(network)
    assert model is network  # No strategy: the network itself.
    algorithm.compile(model, learning_rate=0.5)
    model.train_on_batch(IMAGES, LABELS)
    # Closed form: the mean cross-entropy of softmax(x W + b) has gradient
    # (p - onehot(y)) / n at the logits.
    grad_logits = _softmax(IMAGES @ kernel + bias) - np.eye(3)[LABELS]
    grad_logits /= len(LABELS)
    np.testing.assert_allclose(
        network.get_weights()[0],
        kernel - 0.5 * IMAGES.T @ grad_logits,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        network.get_weights()[1],
        bias - 0.5 * grad_logits.sum(axis=0),
        atol=1e-6,
    )
    logs = model.evaluate(IMAGES, LABELS, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy"}


@pytest.mark.backends
def test_backprop_model_takes_the_same_step_and_saves(tmp_path):
    # The model tf.distribute needs trains as the network itself does.
    network = _network("softmax")
    kernel, bias = [np.array(w, "float64") for w in network.get_weights()]
    model = BackpropModel(network)
    algorithms.Backprop().compile(model, learning_rate=0.5)
    model.train_on_batch(IMAGES, LABELS)
    grad_logits = _softmax(IMAGES @ kernel + bias) - np.eye(3)[LABELS]
    grad_logits /= len(LABELS)
    np.testing.assert_allclose(
        network.get_weights()[0],
        kernel - 0.5 * IMAGES.T @ grad_logits,
        atol=1e-6,
    )
    logs = model.evaluate(IMAGES, LABELS, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "accuracy"}
    path = str(tmp_path / "backprop.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, BackpropModel)
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 1
    np.testing.assert_allclose(
        loaded.predict(IMAGES, verbose=0),
        model.predict(IMAGES, verbose=0),
        atol=1e-6,
    )
    loaded.train_on_batch(IMAGES, LABELS)


@pytest.mark.backends
def test_backprop_compile_takes_another_loss():
    model = _network()
    algorithms.Backprop().compile(
        model,
        metrics=None,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    logs = model.evaluate(IMAGES, LABELS, verbose=0, return_dict=True)
    expected = keras.losses.sparse_categorical_crossentropy(
        LABELS, model(IMAGES), from_logits=True
    )
    expected = np.mean(keras.ops.convert_to_numpy(expected))
    assert logs["loss"] == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.backends
@pytest.mark.parametrize("algorithm", algorithms.NAMES)
@pytest.mark.parametrize("learning_rate", [0.0, -0.1])
def test_compile_refuses_a_rate_that_is_not_positive(algorithm, learning_rate):
    algorithm = algorithms.get(algorithm)
    model = algorithm.wrap(_network(algorithm.output_activation))
    with pytest.raises(ValueError, match=f"learning_rate={learning_rate}"):
        algorithm.compile(model, learning_rate=learning_rate)


@pytest.mark.backends
@pytest.mark.parametrize("algorithm", algorithms.NAMES)
@pytest.mark.parametrize("learning_rate", ["inf", "nan"])
def test_compile_refuses_a_rate_that_is_not_finite(algorithm, learning_rate):
    # An infinite rate made every weight NaN in the first step, silently.
    algorithm = algorithms.get(algorithm)
    model = algorithm.wrap(_network(algorithm.output_activation))
    with pytest.raises(ValueError, match=f"learning_rate={learning_rate}"):
        algorithm.compile(model, learning_rate=float(learning_rate))
    with pytest.raises(ValueError, match="finite"):
        algorithm.compile(model, learning_rate=np.float32(learning_rate))


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.distribute strategies are TensorFlow's",
)
def test_wrap_under_a_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        network = _network("softmax")
        model = algorithms.Backprop().wrap(network)
        assert isinstance(model, BackpropModel)
        assert model.network is network
        algorithms.Backprop().compile(model, learning_rate=0.1)
        brainprop = algorithms.BrainProp().wrap(_network())
        assert isinstance(brainprop, BrainPropModel)
    history = model.fit(IMAGES, LABELS, batch_size=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.backends
def test_callbacks(tmp_path):
    assert algorithms.BrainProp().callbacks() == []
    assert algorithms.Backprop().callbacks() == []
    probe = (IMAGES, LABELS)
    tensorboard, monitor = algorithms.BrainProp().callbacks(
        log_dir=str(tmp_path), probe_data=probe
    )
    assert isinstance(tensorboard, keras.callbacks.TensorBoard)
    assert tensorboard.log_dir == str(tmp_path)
    assert isinstance(monitor, BrainPropMonitor)
    (tensorboard,) = algorithms.Backprop().callbacks(
        log_dir=str(tmp_path), probe_data=probe
    )
    assert isinstance(tensorboard, keras.callbacks.TensorBoard)


@pytest.mark.slow
@pytest.mark.backends
@pytest.mark.parametrize("name", ["brainprop", "backprop"])
def test_feedback_reaches_both_algorithms(name):
    algorithm = algorithms.get(name, feedback="feedback_alignment")
    assert algorithms.feedback_name(algorithm) == "feedback_alignment"
    network = _network(algorithm.output_activation)
    model = algorithm.wrap(network)
    trained = model.network if isinstance(model, BrainPropModel) else model
    converted = feedback.feedback_layers(trained)
    assert len(converted) == 1
    before = keras.ops.convert_to_numpy(converted[0].feedback_kernel)
    algorithm.compile(model, learning_rate=0.1)
    model.fit(IMAGES, LABELS, epochs=2, verbose=0)
    # Fixed random feedback: trained forward weights, untouched feedback.
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(converted[0].feedback_kernel), before
    )
    assert algorithms.feedback_name(algorithms.get(name)) == "symmetric"
    assert not feedback.feedback_layers(algorithms.get(name).wrap(_network()))
