"""BrainPropModel's input checks (keras_brainprop/_checks.py): bad labels,
rewards, targets, networks and batches are refused, naming what was
received, before any weight moves.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from _helpers import EAGER_AND_GRAPH
from _helpers import TOY_ACTIONS
from _helpers import Subclassed
from _helpers import assert_unchanged
from _helpers import compiled_model
from _helpers import fit_fails
from _helpers import in_graph
from _helpers import small_data
from _helpers import small_net
from _helpers import toy_data
from _helpers import toy_net

import keras_brainprop as kbp
from keras_brainprop import rewards

# Bad input: one clear error naming the received value, no weight change.


@pytest.mark.parametrize(
    "run", [lambda f, *a: f(*a), in_graph], ids=["eager", "graph"]
)
@pytest.mark.parametrize(
    "labels, match",
    [
        ([0, 12, 1, 2], r"Labels must be < 4.*Received: label\W*12\b"),
        ([0, 1, -3, 2], r"Labels must be >= 0.*Received: label\W*-3\b"),
        ([0.0, 1.5, 2.0, 3.0], r"whole numbers.*Received: label\W*1\.5"),
        ([0.0, np.nan, 2.0, 3.0], r"whole numbers.*Received: label\W*nan"),
        ([0.0, np.inf, 1.0, 2.0], r"must be < 4.*Received: label\W*inf"),
    ],
    ids=["too_large", "negative", "fractional", "nan", "inf"],
)
def test_label_errors_name_the_received_label(labels, match, run):
    def reward(labels):
        actions = tf.zeros([4], "int32")
        return rewards.CorrectChoice()(labels, actions, TOY_ACTIONS)

    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        run(reward, tf.constant(labels))


def test_reward_table_width_known_only_at_run_time():
    def check(table):
        checks = rewards.CorrectChoice().check_targets(table, TOY_ACTIONS)
        with tf.control_dependencies(checks):
            return tf.identity(table)

    unknown_width = tf.function(
        check, input_signature=[tf.TensorSpec((None, None), tf.float32)]
    )
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"width must equal the number of actions \(4\)\.?.*Received: "
        r"width\W*3\b",
    ):
        unknown_width(tf.zeros((8, 3)))


@pytest.mark.parametrize(
    "run", [lambda f, *a: f(*a), in_graph], ids=["eager", "graph"]
)
@pytest.mark.parametrize(
    "make_rewards, error, match",
    [
        (
            lambda: tf.ones(16),
            tf.errors.InvalidArgumentError,
            r"one reward per sample.*Received: number of rewards\W*16\b",
        ),
        (
            lambda: tf.constant([1.0, np.nan, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
            tf.errors.InvalidArgumentError,
            r"NaN or Inf.*Received: reward\W*nan",
        ),
        (
            lambda: tf.fill([8], True),
            ValueError,
            r"must return numbers. Received: rewards with dtype bool",
        ),
    ],
    ids=["too_many", "nan", "bool"],
)
def test_reward_errors_name_the_received_value(make_rewards, error, match, run):
    def check():
        batch_size = tf.shape(tf.zeros([8]))[0]  # Dynamic, as in fit().
        return rewards.check_rewards(make_rewards(), batch_size)

    with pytest.raises(error, match=match):
        run(check)


def test_reward_of_static_wrong_length_fails_when_traced():
    x, y = toy_data(8)
    network = toy_net()
    before = network.get_weights()
    model = compiled_model(network, reward=lambda y, actions: tf.ones((2,)))
    with pytest.raises(
        ValueError, match=r"\(8\). Received: number of rewards 2"
    ):
        model.fit(x, y, batch_size=8, verbose=0)
    assert_unchanged(network, before)


@pytest.mark.slow
@EAGER_AND_GRAPH
def test_bad_targets_change_no_weight(run_eagerly):
    # Batch norm: its moving statistics are weights too, updated by the
    # forward pass, so targets are checked before it.
    network = toy_net(batch_norm=True)
    model = compiled_model(network, run_eagerly)
    before = [w.numpy() for w in network.weights]
    x, y = toy_data(8)
    bad_targets = {
        "Received: label\\W*12": np.where(y == 0, 12, y),
        "Received: label\\W*-1": y - 1,
        "Received: label\\W*0.5": y + 0.5,
        # Traced after other target forms, `y` has an unknown rank: the
        # width is then checked when the batch runs.
        r"Received: (y with shape \(8, 5\)|width\W*5)": np.eye(5)[y],
        "Received: y=None": None,
    }
    for match, targets in bad_targets.items():
        with pytest.raises(
            (ValueError, tf.errors.InvalidArgumentError), match=match
        ):
            model.fit(x, targets, batch_size=8, verbose=0)
        for b, w in zip(before, network.weights):
            np.testing.assert_array_equal(b, w.numpy(), err_msg=w.path)
        assert int(model.optimizer.iterations) == 0


@EAGER_AND_GRAPH
def test_bad_rewards_change_no_trainable_weight(run_eagerly):
    network = toy_net(batch_norm=True)
    model = compiled_model(
        network, run_eagerly, reward=lambda y, a: tf.fill(tf.shape(a), np.nan)
    )
    before = [w.numpy() for w in network.trainable_weights]
    x, y = toy_data(8)
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or Inf"):
        model.fit(x, y, batch_size=8, verbose=0)
    for b, w in zip(before, network.trainable_weights):
        np.testing.assert_array_equal(b, w.numpy())
    assert int(model.optimizer.iterations) == 0


@pytest.mark.parametrize(
    "output_layer, activation",
    [
        (lambda: keras.layers.Dense(3, activation="sigmoid"), "sigmoid"),
        (keras.layers.Softmax, "softmax"),
        (lambda: keras.layers.Activation("softmax"), "softmax"),
    ],
    ids=["dense_sigmoid", "softmax_layer", "activation_layer"],
)
def test_squashing_outputs_warn_and_say_why(output_layer, activation):
    network = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(3), output_layer()]
    )
    with pytest.warns(UserWarning) as caught:
        kbp.wrap(network)
    message = str(caught[0].message)
    assert f"applies {activation}" in message
    assert "Q-values" in message and "linear output layer" in message


class TwoHeads(keras.Model):
    def __init__(self):
        super().__init__()
        self.head_a = keras.layers.Dense(4, use_bias=False)
        self.head_b = keras.layers.Dense(2, use_bias=False)

    def call(self, inputs):
        return self.head_a(inputs), self.head_b(inputs)


class ThreeDimensional(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(8, use_bias=False)

    def call(self, inputs):
        return tf.reshape(self.dense(inputs), [-1, 2, 4])


@EAGER_AND_GRAPH
@pytest.mark.parametrize(
    "network_class, match",
    [
        (TwoHeads, r"single output.*Received: a network with 2 outputs"),
        (ThreeDimensional, r"\[batch, actions\].*Received: output shape"),
    ],
    ids=["two_outputs", "three_dimensional"],
)
def test_subclassed_networks_are_checked_at_the_first_call(
    network_class, match, run_eagerly
):
    network = network_class()
    network(np.zeros((1, 6), "float32"))  # Creates the weights.
    before = network.get_weights()
    model = compiled_model(network, run_eagerly)
    x, y = toy_data(8)
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, batch_size=8, verbose=0)
    assert_unchanged(network, before)


@pytest.mark.slow
@EAGER_AND_GRAPH
def test_non_finite_inputs_raise_before_the_update(run_eagerly):
    network = toy_net(batch_norm=True)
    before = network.get_weights()
    model = compiled_model(network, run_eagerly)
    for bad_value in [np.nan, np.inf]:
        x, y = toy_data(8)
        x[3, 2] = bad_value
        with pytest.raises(
            tf.errors.InvalidArgumentError,
            match="inputs must be finite.*Received: inputs with NaN or Inf$",
        ):
            model.fit(x, y, batch_size=8, verbose=0)
        assert_unchanged(network, before)
    assert int(model.optimizer.iterations) == 0


@pytest.mark.slow
def test_nan_input_stops_the_run_and_the_checkpoint_is_intact(tmp_path):
    # Batches of 8; batch 3 (index 2) holds a NaN. The checkpoint written
    # after batch 2 must survive, finite, equal to the weights before it.
    network = toy_net()
    model = compiled_model(network)
    x, y = toy_data(48)
    x[20, 1] = np.nan
    path = tmp_path / "latest.weights.h5"
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.ModelCheckpoint(
            path, save_weights_only=True, save_freq=2
        ),
    ]
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="Received: inputs with NaN"
    ):
        model.fit(
            x, y, batch_size=8, shuffle=False, callbacks=callbacks, verbose=0
        )
    assert int(model.optimizer.iterations) == 2
    weights_before_bad_batch = network.get_weights()
    restored = toy_net()
    kbp.wrap(restored).load_weights(path)
    for saved, expected in zip(
        restored.get_weights(), weights_before_bad_batch
    ):
        assert np.isfinite(saved).all()
        np.testing.assert_array_equal(saved, expected)


@pytest.mark.slow
@EAGER_AND_GRAPH
@pytest.mark.parametrize("form", ["one_hot", "table"])
@pytest.mark.parametrize("bad_value", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_target_tables_raise_before_the_update(
    bad_value, form, run_eagerly
):
    # The bad entry is one the greedy policy never picks (zero Q-values
    # choose action 0), so only a check of the whole table finds it.
    network = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(4, kernel_initializer="zeros")]
    )
    model = kbp.wrap(network, policy="greedy")
    model.compile(run_eagerly=run_eagerly)
    x, y = toy_data(8)
    table = np.eye(TOY_ACTIONS, dtype="float32")[y]
    if form == "table":
        table = table * 0.5 + 0.25
    table[5, 3] = bad_value
    before = network.get_weights()
    fit_fails(
        model,
        r"^One-hot labels and reward tables must be finite. Received: entry"
        rf"\W*{bad_value}",
        x,
        table,
        batch_size=8,
    )
    assert_unchanged(network, before)
    assert int(model.optimizer.iterations) == 0


@pytest.mark.slow
@EAGER_AND_GRAPH
def test_evaluate_checks_inputs_as_fit_does(run_eagerly):
    model = compiled_model(toy_net(), run_eagerly)
    x, y = toy_data(8)
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"^The inputs must be finite") as e:
        model.evaluate(x, y, batch_size=8, verbose=0)
    assert "Received: inputs with NaN or Inf" in str(e.value)
    with pytest.raises(ValueError, match=r"^Labels must be < 4"):
        model.evaluate(np.zeros((4, 6), "float32"), np.array([0, 1, 2, 7]))
    # predict() does not check its inputs (documented): a NaN row gives
    # NaN, or, where TensorFlow fuses the matmul with the ReLU (graph mode
    # on oneDNN CPUs), zeros; the other rows are untouched.
    q_values = model.predict(x, verbose=0)
    assert np.isfinite(np.delete(q_values, 2, axis=0)).all()
    np.testing.assert_allclose(
        np.delete(q_values, 2, axis=0),
        model.network(np.delete(x, 2, axis=0)),
        atol=1e-6,
    )


@pytest.mark.slow
@EAGER_AND_GRAPH
@pytest.mark.parametrize("container", ["dict", "list"])
def test_single_entry_output_containers_are_the_q_values(
    container, run_eagerly
):
    inputs = keras.Input((6,))
    q_values = keras.layers.Dense(TOY_ACTIONS)(inputs)
    outputs = {"q": q_values} if container == "dict" else [q_values]
    network = keras.Model(inputs, outputs)
    model = compiled_model(network, run_eagerly)
    x, y = toy_data(8)
    model.fit(x, y, batch_size=8, verbose=0)
    (expected,) = tf.nest.flatten(network(x))  # Keras unwraps a list.
    np.testing.assert_allclose(
        model.predict(x, verbose=0), expected.numpy(), atol=1e-6
    )


def test_two_entry_output_containers_are_refused():
    inputs = keras.Input((6,))
    outputs = {
        "a": keras.layers.Dense(2)(inputs),
        "b": keras.layers.Dense(2)(inputs),
    }
    with pytest.raises(ValueError, match="Received: a network with 2 outputs"):
        kbp.wrap(keras.Model(inputs, outputs))


@pytest.mark.slow
@EAGER_AND_GRAPH
def test_batches_of_different_lengths_name_both(run_eagerly):
    x, y = toy_data(16)
    dataset = tf.data.Dataset.zip(
        (
            tf.data.Dataset.from_tensor_slices(x).batch(8),
            tf.data.Dataset.from_tensor_slices(y).batch(6),
        )
    )
    network = toy_net()
    before = network.get_weights()
    model = compiled_model(network, run_eagerly)
    fit_fails(
        model,
        r"^x and y must hold as many samples.*Received: a batch of x with "
        r"8 samples and y with 6$",
        dataset,
    )
    assert_unchanged(network, before)


@EAGER_AND_GRAPH
@pytest.mark.parametrize("source", ["arrays", "dataset"])
def test_string_labels_say_what_labels_must_be(source, run_eagerly):
    x, _ = toy_data(8)
    labels = np.array(["cat", "dog"] * 4)
    data = (x, labels)
    if source == "dataset":
        data = (tf.data.Dataset.from_tensor_slices(data).batch(4),)
    model = compiled_model(toy_net(), run_eagerly)
    with pytest.raises(
        ValueError,
        match=r"^Targets `y` must be numbers: integer class indices, one-hot "
        r"rows or a float reward table.*Received: y with dtype (str|<U)",
    ):
        model.fit(*data, verbose=0)
    with pytest.raises(ValueError, match=r"^Targets `y` must be numbers"):
        model.evaluate(*data, verbose=0)


# One action is refused; "accuracy" is the greedy accuracy.


def test_one_action_is_refused_at_wrap():
    with pytest.raises(ValueError, match=r"at least two.*\(None, 1\)"):
        kbp.wrap(small_net(num_actions=1))


@EAGER_AND_GRAPH
def test_one_action_of_a_subclassed_network_is_refused(run_eagerly):
    model = kbp.wrap(Subclassed(num_actions=1))
    model.compile(run_eagerly=run_eagerly)
    x, _ = small_data()
    with pytest.raises(ValueError, match=r"at least two.*\((None|16), 1\)"):
        model.fit(x, np.zeros(16), verbose=0)
