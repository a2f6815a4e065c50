"""keras_brainprop/metrics.py: greedy_coverage (the metric, fit()'s logs,
the coverage warning) and "accuracy" as the greedy accuracy.

A network with a constant kernel makes the greedy actions known in
advance: Q = x @ KERNEL, so action 0 is greedy for x = A, action 2 for
x = B and action 1 for x = C. With a learning rate of 0 they never change.
"""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from _helpers import EAGER_AND_GRAPH
from _helpers import InterruptAfterBatches
from _helpers import Interrupted
from _helpers import frozen
from _helpers import quiet_fit
from _helpers import small_data
from _helpers import small_net
from keras import ops

import keras_brainprop as kbp
from keras_brainprop import policies
from keras_brainprop.callbacks import BackupAndRestore
from keras_brainprop.metrics import GreedyAccuracy
from keras_brainprop.metrics import GreedyCoverage

KERNEL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], "float32")
A, B, C = [1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]
MODES = ["eager", "graph", "jit", "mixed_float16"]


def _inputs(*rows):
    return np.array(rows, "float32")


def _network():
    return keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(
                3,
                use_bias=False,
                kernel_initializer=keras.initializers.Constant(KERNEL),
            ),
        ]
    )


@keras.saving.register_keras_serializable(package="test_coverage")
class _SubclassedNetwork(keras.Model):
    # Its number of actions is unknown until it is called.
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = keras.layers.Dense(
            3,
            use_bias=False,
            kernel_initializer=keras.initializers.Constant(KERNEL),
        )

    def call(self, inputs):
        return self.dense(inputs)


def _model(mode="graph", network=None, metrics=None):
    keras.utils.set_random_seed(3)
    # Much exploration: only the greedy actions count, not those taken.
    model = kbp.wrap(
        network or _network(), policy=policies.EpsilonGreedy(0.5), seed=1
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.0),
        metrics=metrics,
        run_eagerly=mode == "eager",
        jit_compile=mode == "jit",
    )
    return model


@pytest.fixture
def mode(request):
    if request.param == "mixed_float16":  # tests/conftest.py resets it.
        keras.mixed_precision.set_global_policy("mixed_float16")
    return request.param


def _epochs(*epochs, batch_size=2):
    """One dataset whose consecutive `steps_per_epoch` batches are `epochs`."""
    x = np.concatenate([_inputs(*rows) for rows in epochs])
    y = np.zeros(len(x), "int32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


# The metric.


@pytest.mark.backends
def test_metric_counts_each_samples_greedy_action():
    coverage = GreedyCoverage()
    assert float(coverage.result()) == 0.0
    coverage.update_state([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    assert coverage.num_actions == 3
    assert float(coverage.result()) == pytest.approx(2 / 3)
    assert coverage.never_greedy() == [2]
    # Ties go to the lowest index, as argmax; weight 0 covers nothing.
    coverage.update_state([[0.5, 0.5, 0.5], [0.0, 0.0, 1.0]], [1.0, 0.0])
    np.testing.assert_array_equal(coverage.counts.numpy(), [2, 1, 0])
    coverage.update_state([[0.0, 0.0, 1.0]])
    assert float(coverage.result()) == 1.0
    assert coverage.never_greedy() == []
    coverage.reset_state()
    assert float(coverage.result()) == 0.0
    assert coverage.never_greedy() == [0, 1, 2]


@pytest.mark.backends
def test_metric_config_and_checks():
    coverage = GreedyCoverage(4, name="coverage")
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(coverage)
    )
    assert isinstance(restored, GreedyCoverage)
    assert (restored.name, restored.num_actions) == ("coverage", 4)
    assert restored.counts.shape == (4,)
    with pytest.raises(ValueError, match="counts 4 actions"):
        coverage.update_state(np.zeros((2, 3)))
    for bad in [0, 2.0, True]:
        with pytest.raises(ValueError, match="num_actions"):
            GreedyCoverage(bad)


def _random_q_values(rng, batch, actions):
    # Few distinct values: ties, signed zeros included, are common.
    values = [-1.0, -0.0, 0.0, 0.5, 1.0]
    return rng.choice(values, size=(batch, actions)).astype("float32")


@pytest.mark.backends
@pytest.mark.parametrize("num_actions", [None, 5])
def test_metric_equals_numpy_on_every_backend(num_actions):
    rng = np.random.default_rng(0)
    coverage = GreedyCoverage(num_actions)
    counts = np.zeros(5)
    for batch in range(4):
        q_values = _random_q_values(rng, 6, 5)
        weights = rng.choice([0.0, 0.5, 1.0], size=6).astype("float32")
        # The first of tied maxima, as NumPy's argmax.
        counts += np.bincount(np.argmax(q_values, 1)[weights > 0], minlength=5)
        if batch % 2:
            q_values, weights = map(ops.convert_to_tensor, (q_values, weights))
        coverage.update_state(q_values, weights)
        np.testing.assert_array_equal(coverage.counts.numpy(), counts)
        result = coverage.result()
        assert keras.backend.standardize_dtype(result.dtype) == "float32"
        assert float(result) == pytest.approx(np.mean(counts > 0))
        assert coverage.never_greedy() == np.flatnonzero(counts == 0).tolist()
    coverage.reset_state()
    assert float(coverage.result()) == 0.0
    assert coverage.never_greedy() == [0, 1, 2, 3, 4]


@pytest.mark.backends
def test_metric_updates_statelessly_as_the_jax_trainer_does():
    q_values = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]], "float32")
    coverage = GreedyCoverage(3)
    variables = coverage.stateless_update_state(
        coverage.variables, ops.convert_to_tensor(q_values)
    )
    variables = coverage.stateless_update_state(variables, q_values[:1])
    np.testing.assert_array_equal(ops.convert_to_numpy(variables[0]), [1, 2, 0])
    assert float(coverage.stateless_result(variables)) == pytest.approx(2 / 3)
    # The metric's own state is untouched.
    assert float(coverage.result()) == 0.0


@pytest.mark.backends
@pytest.mark.parametrize("form", ["labels", "column", "one_hot", "table"])
def test_greedy_accuracy_equals_numpy_on_every_backend(form):
    rng = np.random.default_rng(1)
    q_values = _random_q_values(rng, 32, 4)
    labels = rng.integers(0, 4, size=32)
    table = rng.choice([0.0, 0.2, 1.0], size=(32, 4)).astype("float32")
    y_true = {
        "labels": labels,
        "column": labels[:, None],
        "one_hot": np.eye(4, dtype="float32")[labels],
        "table": table,
    }[form]
    best = table if form == "table" else np.eye(4)[labels]
    greedy = np.argmax(q_values, 1)
    right = best[np.arange(32), greedy] == best.max(1)
    weights = rng.uniform(size=32).astype("float32")
    accuracy = GreedyAccuracy()
    accuracy.update_state(
        ops.convert_to_tensor(y_true), ops.convert_to_tensor(q_values), weights
    )
    assert float(accuracy.result()) == pytest.approx(
        np.sum(right * weights) / np.sum(weights), rel=1e-6
    )


# fit()'s logs.


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES, indirect=True)
def test_fit_logs_exact_coverage_reset_each_epoch(mode):
    model = _model(mode)
    # Epoch 1 makes actions 0 and 2 greedy, epoch 2 action 0 alone.
    data = _epochs([A, B, B, A], [A, A, A, A])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(data, epochs=2, steps_per_epoch=2, verbose=0)
    np.testing.assert_allclose(
        history.history["greedy_coverage"], [2 / 3, 1 / 3], rtol=1e-6
    )
    assert 0.0 < history.history["explore_rate"][0]  # Explored, yet 2 / 3.
    np.testing.assert_array_equal(model.network.get_weights()[0], KERNEL)


@pytest.mark.slow
def test_subclassed_network_and_evaluate_logs():
    model = _model(network=_SubclassedNetwork(), metrics=["accuracy"])
    x, y = _inputs(A, B, C, A), np.array([0, 2, 1, 1])
    history = model.fit(x, y, batch_size=2, validation_data=(x, y), verbose=0)
    assert history.history["greedy_coverage"] == [1.0]
    assert "val_greedy_coverage" not in history.history
    # A training metric: evaluate() leaves it out.
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "reward", "rpe", "accuracy"}


@pytest.mark.slow
def test_mirrored_replicas_counts_are_summed(distributed_runs):
    result = distributed_runs["mirrored"]
    if isinstance(result, str):
        pytest.fail(result, pytrace=False)
    # Epoch 1: one replica saw action 0 greedy, the other action 2.
    np.testing.assert_allclose(
        result["greedy_coverage"], [2 / 3, 1 / 3], rtol=1e-6
    )


def test_resumed_epoch_keeps_the_coverage_before_the_interruption(tmp_path):
    # Batches 1-2 make actions 0 and 2 greedy, batches 3-4 action 0: a
    # resumed epoch that forgot its first half would log 1 / 3.
    x = _inputs(A, B, A, A, A, A, A, A)
    y = np.zeros(len(x), "int32")
    fit_args = {"batch_size": 2, "shuffle": False, "verbose": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = _model("eager")
        backup = BackupAndRestore(tmp_path, save_freq=2)
        with pytest.raises(Interrupted):
            model.fit(
                x, y, callbacks=[backup, InterruptAfterBatches(3)], **fit_args
            )
        model = _model("eager")
        backup = BackupAndRestore(tmp_path, save_freq=2)
        history = model.fit(x, y, callbacks=[backup], **fit_args)
    assert (backup.restored["epoch"], backup.restored["batch"]) == (0, 2)
    assert history.history["greedy_coverage"] == [pytest.approx(2 / 3)]


# The warning.


def _coverage_warnings(record):
    return [w for w in record if w.category is kbp.metrics.LowCoverageWarning]


@pytest.mark.slow
def test_warns_once_per_fit_naming_the_never_greedy_actions():
    model = _model("eager")
    x = _inputs(A, B, A, B)
    y = np.zeros(4, "int32")
    for _ in range(2):
        with pytest.warns(UserWarning) as record:
            model.fit(
                x,
                y,
                batch_size=2,
                epochs=3,
                validation_data=(x, y),
                verbose=0,
            )
        [warning] = _coverage_warnings(record)
        message = str(warning.message)
        # Below 1 at the end of fit(); read before validation resets the
        # metrics.
        assert (
            "Epoch 3, the last of this fit(), ended with "
            "greedy_coverage=0.6667" in message
        )
        assert "action(s) [1] of 3" in message
        # The advice names the recommended setting.
        assert 'setting="recommended"' in message
        assert "--setting=recommended" in message


def test_no_warning_when_every_action_is_greedy():
    model = _model("eager")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        history = model.fit(
            _inputs(A, B, C), np.zeros(3, "int32"), epochs=2, verbose=0
        )
    assert history.history["greedy_coverage"] == [1.0, 1.0]
    assert not _coverage_warnings(record)


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


@pytest.mark.slow
@EAGER_AND_GRAPH
@pytest.mark.parametrize("num_actions", [2, 3])
@pytest.mark.parametrize("form", ["labels", "column", "one_hot", "table"])
def test_accuracy_is_the_greedy_accuracy(form, num_actions, run_eagerly):
    x, y = small_data(num_actions=num_actions)
    targets = _targets(form, y, num_actions, np.random.default_rng(1))
    model = frozen(small_net(num_actions), run_eagerly, metrics=["acc"])
    history = quiet_fit(model, x, targets, batch_size=16).history
    expected = _greedy_accuracy(targets, model.predict(x, verbose=0))
    np.testing.assert_allclose(history["acc"], [expected], atol=1e-6)


@pytest.mark.slow
def test_accuracy_follows_targets_that_change_form():
    # Keras' own "accuracy" would keep the metric of the first fit.
    x, y = small_data()
    model = frozen(small_net())
    q_values = model.predict(x, verbose=0)
    rng = np.random.default_rng(2)
    for form in ["labels", "one_hot", "table", "column"]:
        targets = _targets(form, y, 3, rng)
        history = quiet_fit(model, x, targets, batch_size=16).history
        np.testing.assert_allclose(
            history["accuracy"], [_greedy_accuracy(targets, q_values)]
        )


@pytest.mark.slow
def test_accuracy_works_with_early_stopping():
    x, y = small_data()
    model = frozen(small_net())
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=0)
    history = quiet_fit(
        model, x, y, epochs=3, validation_data=(x, y), callbacks=[stop]
    )
    assert len(history.history["val_accuracy"]) == 2  # No improvement.
