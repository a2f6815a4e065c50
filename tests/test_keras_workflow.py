"""The ordinary Keras workflow with a wrapped model (issue 12's bugs).

Each test names the bug it covers; where graph mode differs from eager
mode (`compile(run_eagerly=True)`), both run.
"""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_brainprop as kbp

MODES = pytest.mark.parametrize(
    "run_eagerly", [True, False], ids=["eager", "graph"]
)
TRAINING_ONLY = ["explore_rate", "greedy_coverage"]


def dense_net(num_actions=3, dropout=0.0):
    layers = [keras.Input((6,)), keras.layers.Dense(8, activation="relu")]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(num_actions))
    return keras.Sequential(layers)


class Subclassed(keras.Model):
    """A network without a build() method: Keras builds it by a call."""

    def __init__(self, num_actions=3):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.q_values = keras.layers.Dense(num_actions)

    def call(self, inputs):
        return self.q_values(self.hidden(inputs))


def toy_data(num_samples=16, num_actions=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_samples, 6)).astype("float32")
    return x, rng.integers(0, num_actions, size=num_samples)


def frozen(network, run_eagerly=False, metrics=("accuracy",), **wrap_kwargs):
    """A greedy model whose weights do not move (SGD with rate 0)."""
    model = kbp.wrap(network, policy="greedy", **wrap_kwargs)
    model.compile(
        optimizer=keras.optimizers.SGD(0.0),
        metrics=list(metrics),
        run_eagerly=run_eagerly,
    )
    return model


def quiet_fit(model, *args, **kwargs):
    # The coverage warning of untrained toy networks is not under test.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Epoch .* greedy_coverage")
        return model.fit(*args, verbose=0, **kwargs)


# Bug 1: a reward that needs no targets, with compiled metrics.


@MODES
def test_reward_without_targets_skips_compiled_metrics_once(run_eagerly):
    x, _ = toy_data()
    model = frozen(
        dense_net(),
        run_eagerly,
        reward=lambda y, actions: tf.cast(tf.equal(actions, 0), "float32"),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = quiet_fit(model, x, batch_size=8, epochs=2).history
        logs = model.evaluate(x, batch_size=8, verbose=0, return_dict=True)
    skipped = [w for w in caught if "compile() compare" in str(w.message)]
    assert len(skipped) == 1
    assert "Received: y=None" in str(skipped[0].message)
    greedy = np.argmax(model.predict(x, verbose=0), axis=-1)
    assert "accuracy" not in history and "accuracy" not in logs
    np.testing.assert_allclose(history["reward"], [np.mean(greedy == 0)] * 2)
    np.testing.assert_allclose(logs["reward"], np.mean(greedy == 0))


# Bug 2: export() serves the Q-values.


def _exported(model, path):
    # Keep the artifact while serving: serve() reads its variables.
    model.export(path, verbose=False)
    return tf.saved_model.load(path)


@pytest.mark.parametrize(
    "make_network, prepare",
    [
        (dense_net, "fit"),
        (Subclassed, "fit"),
        (dense_net, "call"),
        (Subclassed, "call"),
    ],
    ids=[
        "sequential_fit",
        "subclassed_fit",
        "sequential_call",
        "subclassed_call",
    ],
)
def test_export_serves_what_predict_returns(make_network, prepare, tmp_path):
    x, y = toy_data()
    model = kbp.wrap(make_network())
    model.compile()
    if prepare == "fit":
        quiet_fit(model, x, y, batch_size=8)
    else:
        model(x)
    artifact = _exported(model, str(tmp_path / "q_values"))
    np.testing.assert_allclose(
        artifact.serve(tf.constant(x)).numpy(),
        model.predict(x, verbose=0),
        atol=1e-6,
    )


def test_export_of_a_network_with_a_dict_output(tmp_path):
    inputs = keras.Input((6,))
    network = keras.Model(inputs, {"q": keras.layers.Dense(3)(inputs)})
    model = kbp.wrap(network)
    x, _ = toy_data()
    artifact = _exported(model, str(tmp_path / "q_values"))
    expected = network.predict(x, verbose=0)["q"]
    np.testing.assert_allclose(artifact.serve(tf.constant(x)).numpy(), expected)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected)


# Bug 3: weights files move between the wrapped model and the network.


def _weights_equal(a, b):
    assert len(a.weights) == len(b.weights)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy(), err_msg=wa.path)


def test_wrapped_weights_file_loads_into_the_plain_network(tmp_path):
    x, y = toy_data()
    network = dense_net()
    model = kbp.wrap(network)
    model.compile()
    quiet_fit(model, x, y, batch_size=8)
    path = tmp_path / "trained.weights.h5"
    model.save_weights(path)
    deployed = dense_net()
    deployed.load_weights(path)
    _weights_equal(network, deployed)
    np.testing.assert_allclose(
        deployed.predict(x, verbose=0), model.predict(x, verbose=0)
    )


def test_network_weights_file_loads_into_a_wrapped_model(tmp_path):
    network = dense_net()
    path = tmp_path / "network.weights.h5"
    network.save_weights(path)
    model = kbp.wrap(dense_net())
    model.compile()
    model.load_weights(path)
    _weights_equal(network, model.network)


def test_wrapped_weights_file_restores_optimizer_and_random_states(tmp_path):
    x, y = toy_data()
    model = kbp.wrap(dense_net(dropout=0.5), seed=3)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    quiet_fit(model, x, y, batch_size=8)
    path = tmp_path / "trained.weights.h5"
    model.save_weights(path)
    expected = [v.numpy() for v in model.variables + model.optimizer.variables]

    restored = kbp.wrap(dense_net(dropout=0.5), seed=3)
    restored.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    restored.load_weights(path)
    actual = [
        v.numpy() for v in restored.variables + restored.optimizer.variables
    ]
    assert len(actual) == len(expected)
    for a, b in zip(expected, actual):
        np.testing.assert_array_equal(a, b)
    # Both continue alike: same dropout masks, exploration and momentum.
    after = [
        quiet_fit(m, x, y, batch_size=8).history for m in (model, restored)
    ]
    assert after[0] == after[1]
    _weights_equal(model, restored)


def test_sharded_weights_files_point_to_the_network(tmp_path):
    model = kbp.wrap(dense_net())
    with pytest.raises(ValueError, match=r"model.network.save_weights"):
        model.save_weights(tmp_path / "w.weights.json", max_shard_size=0.1)


# Bug 4: metrics_names label what evaluate() returns.


@MODES
def test_metrics_names_label_what_evaluate_returns(run_eagerly):
    x, y = toy_data()
    top2 = keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")
    model = frozen(dense_net(), run_eagerly, metrics=["accuracy", top2])
    history = quiet_fit(model, x, y, batch_size=8).history
    names = model.metrics_names
    assert names == ["loss", "reward", "rpe", "accuracy", "top2"]
    assert set(history) == set(names) | set(TRAINING_ONLY)
    labelled = dict(zip(model.metrics_names, model.evaluate(x, y, verbose=0)))
    assert labelled == model.evaluate(x, y, verbose=0, return_dict=True)
    q_values = model.predict(x, verbose=0)
    greedy = np.argmax(q_values, axis=-1)
    top_two = np.argsort(-q_values, axis=-1)[:, :2]
    np.testing.assert_allclose(labelled["accuracy"], np.mean(greedy == y))
    np.testing.assert_allclose(labelled["reward"], np.mean(greedy == y))
    np.testing.assert_allclose(
        labelled["top2"], np.mean((top_two == y[:, None]).any(axis=-1))
    )
    # train_on_batch: the same values, then those of training alone.
    values = model.train_on_batch(x, y)
    assert len(values) == len(names) + len(TRAINING_ONLY)
    assert model.metrics_names == names


# Bug 6: one action is refused; "accuracy" is the greedy accuracy.


def test_one_action_is_refused_at_wrap():
    with pytest.raises(ValueError, match=r"at least two.*\(None, 1\)"):
        kbp.wrap(dense_net(num_actions=1))


@MODES
def test_one_action_of_a_subclassed_network_is_refused(run_eagerly):
    model = kbp.wrap(Subclassed(num_actions=1))
    model.compile(run_eagerly=run_eagerly)
    x, _ = toy_data()
    with pytest.raises(ValueError, match=r"at least two.*\((None|16), 1\)"):
        model.fit(x, np.zeros(16), verbose=0)


def _targets(form, y, num_actions, rng):
    if form == "labels":
        return y
    if form == "column":
        return y[:, None]
    if form == "one_hot":
        return np.eye(num_actions, dtype="float32")[y]
    return rng.uniform(size=(len(y), num_actions)).astype("float32")


def _greedy_accuracy(targets, q_values):
    # NumPy: does the greedy action earn the best reward there is?
    num_actions = q_values.shape[-1]
    if targets.ndim == 1 or targets.shape[-1] == 1:
        targets = np.eye(num_actions)[targets.reshape(-1)]
    greedy = np.argmax(q_values, axis=-1)
    earned = targets[np.arange(len(targets)), greedy]
    return np.mean(earned == targets.max(axis=-1))


@MODES
@pytest.mark.parametrize("num_actions", [2, 3])
@pytest.mark.parametrize("form", ["labels", "column", "one_hot", "table"])
def test_accuracy_is_the_greedy_accuracy(form, num_actions, run_eagerly):
    x, y = toy_data(num_actions=num_actions)
    targets = _targets(form, y, num_actions, np.random.default_rng(1))
    model = frozen(dense_net(num_actions), run_eagerly, metrics=["acc"])
    history = quiet_fit(model, x, targets, batch_size=16).history
    expected = _greedy_accuracy(targets, model.predict(x, verbose=0))
    np.testing.assert_allclose(history["acc"], [expected], atol=1e-6)


def test_accuracy_follows_targets_that_change_form():
    # Keras' own "accuracy" would keep the metric of the first fit.
    x, y = toy_data()
    model = frozen(dense_net())
    q_values = model.predict(x, verbose=0)
    rng = np.random.default_rng(2)
    for form in ["labels", "one_hot", "table", "column"]:
        targets = _targets(form, y, 3, rng)
        history = quiet_fit(model, x, targets, batch_size=16).history
        np.testing.assert_allclose(
            history["accuracy"], [_greedy_accuracy(targets, q_values)]
        )


def test_accuracy_works_with_early_stopping():
    x, y = toy_data()
    model = frozen(dense_net())
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=0)
    history = quiet_fit(
        model, x, y, epochs=3, validation_data=(x, y), callbacks=[stop]
    )
    assert len(history.history["val_accuracy"]) == 2  # No improvement.


# Bug 7: no Keras warning about build() for a subclassed network.


@MODES
def test_subclassed_network_builds_without_a_warning(run_eagerly):
    # Control: Keras warns when build() is called on such a network.
    with pytest.warns(UserWarning, match="does not have a `build"):
        Subclassed().build((None, 6))
    x, y = toy_data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = kbp.wrap(Subclassed())
        model.compile(run_eagerly=run_eagerly)
        quiet_fit(model, x, y, batch_size=8)
        explicit = kbp.wrap(Subclassed())
        explicit.build((None, 6))
    assert not [w for w in caught if "build()" in str(w.message)]
    assert len(explicit.network.weights) == 4


# Bug 8: the legacy .h5 format is refused with a pointer to .keras.


@pytest.mark.parametrize(
    "save",
    [
        lambda model, path: model.save(path),
        lambda model, path: keras.saving.save_model(model, path),
    ],
    ids=["model_save", "save_model"],
)
def test_legacy_h5_saving_points_to_keras_format(save, tmp_path):
    model = kbp.wrap(dense_net())
    model.compile()
    with pytest.raises(ValueError, match=r"model.save\('model.keras'\)"):
        save(model, str(tmp_path / "model.h5"))
    # The network alone saves to .h5 as in Keras.
    model.network.save(str(tmp_path / "network.h5"))
    loaded = keras.saving.load_model(str(tmp_path / "network.h5"))
    _weights_equal(model.network, loaded)
