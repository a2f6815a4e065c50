"""Reliability: clear errors on bad input, exact resumption, reproducibility.

Run as a script (`python tests/test_reliability.py --reproducibility-runs`),
the module turns TensorFlow's op determinism on, trains the same seeded run
twice and prints both fingerprints, for the reproducibility test.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_brainprop as kbp
from keras_brainprop import datasets
from keras_brainprop import policies
from keras_brainprop import rewards
from keras_brainprop.callbacks import BackupAndRestore
from keras_brainprop.callbacks.backup_and_restore import read_backup
from keras_brainprop.callbacks.backup_and_restore import write_atomically

NUM_ACTIONS = 4
MODES = pytest.mark.parametrize(
    "run_eagerly", [True, False], ids=["eager", "graph"]
)


def dense_net(num_actions=NUM_ACTIONS, dropout=0.0, batch_norm=False):
    layers = [keras.Input((6,)), keras.layers.Dense(8, activation="relu")]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization())
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(num_actions, use_bias=False))
    return keras.Sequential(layers)


def toy_data(num_samples=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_samples, 6)).astype("float32")
    return x, rng.integers(0, NUM_ACTIONS, size=num_samples)


def compiled(network, run_eagerly=False, **wrap_kwargs):
    model = kbp.wrap(network, **wrap_kwargs)
    model.compile(run_eagerly=run_eagerly)
    return model


def state_of(model):
    """Every variable of the training state: weights, random-number
    states, and the optimizer's variables (its step counter included)."""
    return [
        np.array(v.numpy())
        for v in [*model.variables, *model.optimizer.variables]
    ]


def assert_states_equal(expected, actual, atol=1e-6):
    assert len(expected) == len(actual)
    for i, (a, b) in enumerate(zip(expected, actual)):
        np.testing.assert_allclose(a, b, atol=atol, rtol=0, err_msg=str(i))


def assert_unchanged(network, before):
    for b, a in zip(before, network.get_weights()):
        np.testing.assert_array_equal(b, a)


def assert_histories_equal(expected, actual, atol=1e-6):
    assert expected.keys() == actual.keys()
    for key in expected:
        np.testing.assert_allclose(
            expected[key], actual[key], atol=atol, rtol=0, err_msg=key
        )


class Interrupted(Exception):
    pass


class Interrupt(keras.callbacks.Callback):
    """Raises after `after_batches` batch ends, as a killed process stops."""

    def __init__(self, after_batches):
        super().__init__()
        self.after_batches = after_batches
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.batches == self.after_batches:
            raise Interrupted(f"after {self.batches} batches")


# Bad input: one clear error naming the received value, no weight change.


def in_graph(function, *args):
    """Runs `function` traced by tf.function, as in fit()'s graph mode."""
    return tf.function(function, autograph=False)(*args)


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
        return rewards.CorrectChoice()(labels, actions, NUM_ACTIONS)

    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        run(reward, tf.constant(labels))


def test_reward_table_width_known_only_at_run_time():
    def check(table):
        checks = rewards.CorrectChoice().check_targets(table, NUM_ACTIONS)
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
    network = dense_net()
    before = network.get_weights()
    model = compiled(network, reward=lambda y, actions: tf.ones((2,)))
    with pytest.raises(
        ValueError, match=r"\(8\). Received: number of rewards 2"
    ):
        model.fit(x, y, batch_size=8, verbose=0)
    assert_unchanged(network, before)


@MODES
def test_bad_targets_change_no_weight(run_eagerly):
    # Batch norm: its moving statistics are weights too, updated by the
    # forward pass, so targets are checked before it.
    network = dense_net(batch_norm=True)
    model = compiled(network, run_eagerly)
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


def test_target_forms_can_change_between_fits():
    # After fits with labels and one-hot targets Keras traces `y` with an
    # unknown rank; the reward then tells the forms apart at run time.
    network = dense_net()
    model = kbp.wrap(network, policy="greedy")
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    x, y = toy_data(8)
    actions = np.argmax(model.predict(x, verbose=0), axis=-1)
    table = np.linspace(0.0, 1.0, 8 * NUM_ACTIONS).reshape(8, NUM_ACTIONS)
    for targets, expected in [
        (y, np.mean(actions == y)),
        (np.eye(NUM_ACTIONS)[y], np.mean(actions == y)),
        (table, np.mean(table[np.arange(8), actions])),
        (y[:, None], np.mean(actions == y)),
    ]:
        history = model.fit(x, targets, batch_size=8, verbose=0).history
        np.testing.assert_allclose(history["reward"][0], expected, atol=1e-6)


@MODES
def test_bad_rewards_change_no_trainable_weight(run_eagerly):
    network = dense_net(batch_norm=True)
    model = compiled(
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


@MODES
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
    model = compiled(network, run_eagerly)
    x, y = toy_data(8)
    with pytest.raises(ValueError, match=match):
        model.fit(x, y, batch_size=8, verbose=0)
    assert_unchanged(network, before)


def _filtered_to_nothing():
    x, y = toy_data(8)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    return dataset.filter(lambda x, y: y > 100).batch(4)


@pytest.mark.parametrize(
    "make_data, received",
    [
        (
            lambda: (np.zeros((0, 6), "float32"), np.zeros(0, "int64")),
            r"x with shape \(0, 6\)",
        ),
        (
            lambda: (
                tf.data.Dataset.from_tensor_slices(
                    (np.zeros((0, 6), "float32"), np.zeros(0, "int64"))
                ).batch(4),
            ),
            r"x=<tf.data.Dataset of 0 batches>",
        ),
        (lambda: (_filtered_to_nothing(),), "x=<tf.data.Dataset of unknown"),
    ],
    ids=["arrays", "dataset", "filtered_dataset"],
)
def test_empty_data_raises(make_data, received):
    network = dense_net()
    before = network.get_weights()
    model = compiled(network, run_eagerly=True)
    with pytest.warns(UserWarning, match="ran out of data"):
        with pytest.raises(
            ValueError, match=f"no training data.*Received: {received}"
        ):
            model.fit(*make_data(), epochs=3, verbose=0)
    assert_unchanged(network, before)


@MODES
def test_non_finite_inputs_raise_before_the_update(run_eagerly):
    network = dense_net(batch_norm=True)
    before = network.get_weights()
    model = compiled(network, run_eagerly)
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


def test_nan_input_stops_the_run_and_the_checkpoint_is_intact(tmp_path):
    # Batches of 8; batch 3 (index 2) holds a NaN. The checkpoint written
    # after batch 2 must survive, finite, equal to the weights before it.
    network = dense_net()
    model = compiled(network)
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
    restored = dense_net()
    kbp.wrap(restored).load_weights(path)
    for saved, expected in zip(
        restored.get_weights(), weights_before_bad_batch
    ):
        assert np.isfinite(saved).all()
        np.testing.assert_array_equal(saved, expected)


def test_backup_never_keeps_nan_weights(tmp_path):
    # Diverging training: the loss turns NaN. The backup keeps the last
    # finite state, which loads, and is not deleted at the end.
    model = kbp.wrap(dense_net(), policy="greedy")
    model.compile(optimizer=keras.optimizers.SGD(1e12))
    x, y = toy_data(64)
    backup = BackupAndRestore(tmp_path, save_freq=1)
    with pytest.warns(UserWarning, match="NaN or Inf"):
        history = model.fit(
            x * 1e3,
            y,
            batch_size=4,
            shuffle=False,
            callbacks=[backup, keras.callbacks.TerminateOnNaN()],
            verbose=0,
        ).history
    assert not np.isfinite(history["loss"][-1])
    manifest, arrays = read_backup(backup.path)
    assert 0 < manifest["steps"] < int(model.optimizer.iterations)
    saved = [v for k, v in arrays.items() if k.startswith("model_")]
    assert len(saved) == len(model.variables)
    assert all(np.isfinite(value).all() for value in saved)


def _fit_fails(model, match, *args, **kwargs):
    """Asserts that fit() raises our error, whose message starts the text."""
    with pytest.raises(ValueError, match=match) as error:
        model.fit(*args, verbose=0, **kwargs)
    assert isinstance(error.value, tf.errors.InvalidArgumentError)
    return error.value


@MODES
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
    table = np.eye(NUM_ACTIONS, dtype="float32")[y]
    if form == "table":
        table = table * 0.5 + 0.25
    table[5, 3] = bad_value
    before = network.get_weights()
    _fit_fails(
        model,
        r"^One-hot labels and reward tables must be finite. Received: entry"
        rf"\W*{bad_value}",
        x,
        table,
        batch_size=8,
    )
    assert_unchanged(network, before)
    assert int(model.optimizer.iterations) == 0


@MODES
def test_evaluate_checks_inputs_as_fit_does(run_eagerly):
    model = compiled(dense_net(), run_eagerly)
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


@MODES
@pytest.mark.parametrize("container", ["dict", "list"])
def test_single_entry_output_containers_are_the_q_values(
    container, run_eagerly
):
    inputs = keras.Input((6,))
    q_values = keras.layers.Dense(NUM_ACTIONS)(inputs)
    outputs = {"q": q_values} if container == "dict" else [q_values]
    network = keras.Model(inputs, outputs)
    model = compiled(network, run_eagerly)
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


@pytest.mark.parametrize("argument", ["loss", "loss_weights"])
def test_loss_arguments_are_named_in_the_error(argument):
    model = kbp.wrap(dense_net())
    value = "mse" if argument == "loss" else [1.0]
    with pytest.raises(
        ValueError, match=re.escape(f"Received: {argument}={value!r}")
    ):
        model.compile(**{argument: value})


@MODES
def test_batches_of_different_lengths_name_both(run_eagerly):
    x, y = toy_data(16)
    dataset = tf.data.Dataset.zip(
        (
            tf.data.Dataset.from_tensor_slices(x).batch(8),
            tf.data.Dataset.from_tensor_slices(y).batch(6),
        )
    )
    network = dense_net()
    before = network.get_weights()
    model = compiled(network, run_eagerly)
    _fit_fails(
        model,
        r"^x and y must hold as many samples.*Received: a batch of x with "
        r"8 samples and y with 6$",
        dataset,
    )
    assert_unchanged(network, before)


@MODES
@pytest.mark.parametrize("source", ["arrays", "dataset"])
def test_string_labels_say_what_labels_must_be(source, run_eagerly):
    x, _ = toy_data(8)
    labels = np.array(["cat", "dog"] * 4)
    data = (x, labels)
    if source == "dataset":
        data = (tf.data.Dataset.from_tensor_slices(data).batch(4),)
    model = compiled(dense_net(), run_eagerly)
    with pytest.raises(
        ValueError,
        match=r"^Targets `y` must be numbers: integer class indices, one-hot "
        r"rows or a float reward table.*Received: y with dtype (str|<U)",
    ):
        model.fit(*data, verbose=0)
    with pytest.raises(ValueError, match=r"^Targets `y` must be numbers"):
        model.evaluate(*data, verbose=0)


def _reward_of_action_zero(y, actions):
    return tf.cast(tf.equal(actions, 0), "float32")


@keras.saving.register_keras_serializable(package="tests")
def _registered_reward(y, actions):
    return tf.cast(tf.equal(actions, 0), "float32")


def test_unregistered_reward_functions_warn_when_saved(tmp_path):
    for reward in (_reward_of_action_zero, lambda y, actions: actions * 0.0):
        model = compiled(dense_net(), reward=reward)
        with pytest.warns(UserWarning, match=r"is not registered.*register"):
            model.save(tmp_path / "unregistered.keras")
    model = compiled(dense_net(), reward=_registered_reward)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.save(tmp_path / "registered.keras")
    assert keras.saving.load_model(tmp_path / "registered.keras").reward.fn is (
        _registered_reward
    )


@MODES
def test_check_errors_start_with_our_text(run_eagerly):
    # In graph mode TensorFlow's error opens with its trace; ours opens
    # with the check's message and keeps TensorFlow's as its cause (Keras'
    # traceback filtering re-raises it `from None`: then as its context).
    model = compiled(dense_net(), run_eagerly)
    x, y = toy_data(8)
    error = _fit_fails(
        model,
        r"^Labels must be < 4, the number of actions \(the width of the "
        r"model's output\). Received: label\W*12$",
        x,
        np.where(y == 0, 12, y),
        batch_size=8,
    )
    if not run_eagerly:
        original = error.__cause__ or error.__context__
        assert type(original) is tf.errors.InvalidArgumentError
        assert str(original).startswith("Graph execution error")


# Exact resumption.


def _resumable_model(seed=5, run_eagerly=True):
    # Eager: as exact, and cheaper for tiny runs than tracing each model.
    keras.utils.set_random_seed(seed)
    network = dense_net(dropout=0.3, batch_norm=True)
    # Much exploration, so that a wrong draw after resuming would show.
    model = kbp.wrap(network, policy=policies.EpsilonGreedy(0.5))
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        metrics=["accuracy"],
        run_eagerly=run_eagerly,
    )
    return model


# 3 epochs of 4 batches, with validation.
X, Y = toy_data(32)
FIT_ARGS = {
    "batch_size": 8,
    "epochs": 3,
    "shuffle": False,
    "validation_data": (X[:8], Y[:8]),
    "verbose": 0,
}


@pytest.fixture(scope="module")
def uninterrupted():
    model = _resumable_model()
    history = model.fit(X, Y, **FIT_ARGS)
    return state_of(model), history.history


@pytest.mark.parametrize(
    "save_freq, interruptions, resumed_at",
    # Batch ends counted from each (re)start, replayed ones included: 7 is
    # mid-epoch 1, 2 is while replaying, 5 is after the next backup.
    [(3, [7, 2, 5], (2, 1)), ("epoch", [7], (0, 4))],
    ids=["every_3_steps", "every_epoch"],
)
def test_interrupted_training_resumes_exactly(
    tmp_path, uninterrupted, save_freq, interruptions, resumed_at
):
    expected_state, expected_history = uninterrupted
    for after_batches in interruptions:
        # A new model each time, as in a restarted process.
        model = _resumable_model()
        backup = BackupAndRestore(tmp_path, save_freq=save_freq)
        with pytest.raises(Interrupted):
            model.fit(
                X, Y, callbacks=[backup, Interrupt(after_batches)], **FIT_ARGS
            )
    # A process killed while writing leaves a stray temporary file.
    (tmp_path / ".backup-killed.npz.tmp").write_bytes(b"half a backup")
    model = _resumable_model()
    backup = BackupAndRestore(tmp_path, save_freq=save_freq)
    history = model.fit(X, Y, callbacks=[backup], **FIT_ARGS).history
    restored = backup.restored
    assert (restored["epoch"], restored["batch"]) == resumed_at
    assert_states_equal(expected_state, state_of(model))
    assert_histories_equal(expected_history, history)
    assert model.history.epoch == [0, 1, 2]
    assert int(model.optimizer.iterations) == 12
    assert not list(tmp_path.iterdir())  # Backup and stray file removed.


def test_keras_backup_and_restore_per_epoch_is_exact(tmp_path, uninterrupted):
    # Keras' own callback resumes at the start of the interrupted epoch;
    # with the random states saved with the weights, and exploration keyed
    # to the optimizer's step, the replayed epoch is identical.
    expected_state, expected_history = uninterrupted
    model = _resumable_model()
    backup = keras.callbacks.BackupAndRestore(tmp_path, save_freq="epoch")
    with pytest.raises(Interrupted):
        model.fit(X, Y, callbacks=[backup, Interrupt(7)], **FIT_ARGS)
    model = _resumable_model()
    backup = keras.callbacks.BackupAndRestore(tmp_path, save_freq="epoch")
    history = model.fit(X, Y, callbacks=[backup], **FIT_ARGS).history
    assert_states_equal(expected_state, state_of(model))
    # Keras returns the history of the resumed epochs only.
    assert_histories_equal(
        {k: v[1:] for k, v in expected_history.items()}, history
    )


def test_save_load_continue_equals_one_run(tmp_path, uninterrupted):
    expected_state, expected_history = uninterrupted
    model = _resumable_model()
    first = model.fit(X, Y, **{**FIT_ARGS, "epochs": 1}).history
    model.save(tmp_path / "model.keras")
    keras.utils.set_random_seed(99)  # Whatever a new process would draw.
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    rest = reloaded.fit(X, Y, initial_epoch=1, **FIT_ARGS).history
    assert_states_equal(expected_state, state_of(reloaded))
    assert_histories_equal(
        expected_history, {k: first[k] + rest[k] for k in first}
    )


def test_seeded_stream_from_our_loader_resumes_exactly(tmp_path):
    # Our loader reshuffles at every pass; read as one endless stream, the
    # resumed run skips the batches the interrupted one had read.
    def run(callbacks):
        keras.utils.set_random_seed(2)
        network = keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Flatten(),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dropout(0.2),
                keras.layers.Dense(10, use_bias=False),
            ]
        )
        model = kbp.wrap(network, policy=policies.EpsilonBoltzmann(0.3))
        model.compile(metrics=["accuracy"])
        train = datasets.load("digits", "train", batch_size=256, seed=3)
        history = model.fit(
            train.repeat(),
            steps_per_epoch=len(train),
            epochs=2,
            callbacks=callbacks,
            verbose=0,
        )
        return model, history.history

    expected, expected_history = run([])
    with pytest.raises(Interrupted):
        run([BackupAndRestore(tmp_path, save_freq=4), Interrupt(9)])
    backup = BackupAndRestore(tmp_path, save_freq=4)
    model, history = run([backup])
    assert (backup.restored["epoch"], backup.restored["batch"]) == (1, 2)
    assert_states_equal(state_of(expected), state_of(model))
    assert_histories_equal(expected_history, history)


def test_backup_of_another_model_is_refused(tmp_path):
    model = _resumable_model()
    backup = BackupAndRestore(tmp_path, save_freq=1)
    with pytest.raises(Interrupted):
        model.fit(X, Y, callbacks=[backup, Interrupt(1)], **FIT_ARGS)
    other = compiled(dense_net(num_actions=3))
    with pytest.raises(ValueError, match="different model"):
        other.fit(X, Y % 3, callbacks=[backup], **FIT_ARGS)


def test_atomic_write_keeps_the_old_backup_when_interrupted(
    tmp_path, monkeypatch
):
    path = tmp_path / "backup.npz"
    write_atomically(path, {"a": np.arange(3)})

    class Killed(BaseException):
        pass

    def dies_half_way(file, **arrays):
        file.write(b"PK\x03\x04 partial")
        raise Killed

    monkeypatch.setattr(np, "savez", dies_half_way)
    with pytest.raises(Killed):
        write_atomically(path, {"a": np.arange(5)})
    monkeypatch.undo()
    with np.load(path) as data:
        np.testing.assert_array_equal(data["a"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["backup.npz"]


def test_damaged_backup_gives_a_clear_error(tmp_path):
    path = tmp_path / "backup.npz"
    write_atomically(
        path, {"manifest": np.array("{}"), "model_0": np.zeros(1000)}
    )
    with pytest.raises(ValueError, match="not a keras_brainprop"):
        read_backup(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # One flipped byte inside the arrays.
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="cannot be read.*damaged"):
        read_backup(path)


def test_backup_arguments_are_checked():
    for save_freq in (0, -2, 1.5, True, "batch"):
        with pytest.raises(ValueError, match="Received: save_freq"):
            BackupAndRestore("/tmp/unused", save_freq=save_freq)


# Reproducibility: op determinism is process-global and cannot be turned
# off again, so it is tested in a subprocess.


def reproducibility_run():
    """One seeded run: our loader's shuffling, dropout and exploration."""
    keras.utils.clear_session()
    keras.utils.set_random_seed(11)
    train = datasets.load("digits", "train", batch_size=128, seed=11)
    validation = datasets.load("digits", "validation", seed=11)
    network = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, use_bias=False),
            keras.layers.ReLU(),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(10, use_bias=False),
        ]
    )
    model = kbp.wrap(network, policy=policies.EpsilonBoltzmann(0.2))
    model.compile(metrics=["accuracy"])
    history = model.fit(
        train, validation_data=validation, epochs=2, verbose=0
    ).history
    digest = hashlib.sha256()
    for value in state_of(model):
        digest.update(value.tobytes())
    return {"state": digest.hexdigest(), "history": history}


def test_two_seeded_runs_are_bit_identical():
    # Two runs one after the other in a fresh process: nothing carries over
    # from the first to the second but what set_random_seed resets.
    # (benchmarks/soak.py compares runs across processes.)
    command = [sys.executable, __file__, "--reproducibility-runs"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["KERAS_BACKEND"] = "tensorflow"
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr[-3000:]
    first, second = json.loads(stdout.strip().splitlines()[-1])
    assert first["state"] == second["state"]
    assert first["history"] == second["history"]  # Every metric, exactly.
    assert len(first["history"]["val_accuracy"]) == 2


if __name__ == "__main__" and sys.argv[1:] == ["--reproducibility-runs"]:
    tf.config.experimental.enable_op_determinism()
    print(json.dumps([reproducibility_run(), reproducibility_run()]))
