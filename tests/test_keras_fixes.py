"""Tests of keras_brainprop._keras_fixes: each fix in the case it exists for.

Where it can, a test also runs Keras 3.15.1's own code on the same case
(the control): once a control passes, Keras has changed and the fix may
go. The tf.distribute cases run in the worker processes of
tests/distribute_worker.py (`distributed_runs`, shared with
tests/test_model_distributed.py).
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from _distributed import distributed_result

import keras_brainprop as kbp
from keras_brainprop import _keras_fixes

# Zero Q-values make every greedy action 0: the reward is 1 where y == 0.
X = np.ones((8, 4), "float32")
Y = np.array([0, 1, 2, 0, 1, 2, 0, 1])


def _model():
    network = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, use_bias=False, kernel_initializer="zeros"),
        ]
    )
    model = kbp.wrap(network, policy="greedy")
    model.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"])
    return model


def test_compile_loss_tracker_is_the_one_loss_and_comes_first():
    model = _model()
    assert _keras_fixes.compile_loss_tracker(model) is model.metrics[0]
    assert [m.name for m in model.metrics].count("loss") == 1
    history = model.fit(X, Y, batch_size=8, verbose=0)
    # One step from Q = 0: loss = mean(0.5 * (r - 0)**2).
    expected = 0.5 * np.mean(Y == 0)
    assert history.history["loss"] == [pytest.approx(expected)]


class _StartAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_train_begin(self, logs=None):
        _keras_fixes.set_initial_epoch(self.model, self.epoch)


@pytest.mark.slow
def test_set_initial_epoch_moves_the_start_of_fit():
    model = _model()
    history = model.fit(
        X, Y, batch_size=4, epochs=3, callbacks=[_StartAt(2)], verbose=0
    )
    assert history.epoch == [2]
    assert int(model.optimizer.iterations) == 2  # One epoch of 2 steps.
    # The epoch persists until reset: that is what fit() reads.
    assert model.fit(X, Y, batch_size=4, epochs=3, verbose=0).epoch == [2]
    history = model.fit(
        X, Y, batch_size=4, callbacks=[_StartAt(None)], verbose=0
    )
    assert history.epoch == [0]


class _SkipEverySecondStep(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def on_train_begin(self, logs=None):
        _keras_fixes.wrap_train_function(self.model, self.step)

    def step(self, train_function, iterator):
        self.calls += 1
        if self.calls % 2 == 0:
            next(iterator)  # Read the batch, train nothing.
            return self.model.get_metrics_result()
        return train_function(iterator)

    def on_train_end(self, logs=None):
        _keras_fixes.unwrap_train_function(self.model)


@pytest.mark.slow
def test_wrap_train_function_routes_every_step_of_fit():
    model = _model()
    skip = _SkipEverySecondStep()
    model.fit(X, Y, batch_size=2, epochs=2, callbacks=[skip], verbose=0)
    assert skip.calls == 8
    assert int(model.optimizer.iterations) == 4
    model.fit(X, Y, batch_size=2, verbose=0)  # Unwrapped: all 4 steps.
    assert int(model.optimizer.iterations) == 8


def test_step_logs_change_only_multi_worker_logs(monkeypatch):
    logs = {"loss": tf.constant(0.5), "reward": tf.constant(1.0)}
    assert _keras_fixes.step_logs(logs) is logs
    monkeypatch.setattr(_keras_fixes, "in_multi_worker_mode", lambda: True)
    kept = _keras_fixes.step_logs(logs, keep=["loss", "absent"])
    assert list(kept) == ["loss"]
    assert kept["loss"].shape == (1,)
    assert list(_keras_fixes.step_logs(logs)) == ["loss", "reward"]


@pytest.mark.slow
def test_replica_safe_model_builds_from_an_uneven_batch(distributed_runs):
    result = distributed_result(distributed_runs, "mirrored")
    assert result["keras_fixes"]["keras_build_error"] is not None  # Control.
    trained = {"loss", "reward", "rpe", "explore_rate", "accuracy"}
    assert trained <= set(result["odd_batch_logs"])


@pytest.mark.slow
def test_replica_safe_model_reads_epoch_logs_from_metrics(distributed_runs):
    cases = distributed_result(distributed_runs, "mirrored")["keras_fixes"]
    expected = cases["single_device_evaluate"]
    assert set(expected) == {"loss", "reward", "rpe", "accuracy"}
    assert cases["fixed_evaluate"] == pytest.approx(expected, abs=1e-6)
    # Control, what Keras returns: the replicas' results over 2 and 1
    # samples, averaged.
    assert set(cases["keras_evaluate"]) == set(expected)
    assert cases["keras_evaluate"] != pytest.approx(expected, abs=1e-3)


@pytest.mark.slow
def test_multi_worker_fit_and_evaluate_log_every_metric(distributed_runs):
    assert not distributed_result(distributed_runs, "mirrored")["keras_fixes"][
        "in_multi_worker_mode"
    ]
    for worker in distributed_result(distributed_runs, "multi_worker"):
        logs = json.loads(str(worker["logs"]))
        assert logs["in_multi_worker_mode"]
        # Scalar step logs fail Keras' reduction across workers; with
        # step_logs the epoch's logs come from the metrics.
        assert set(logs["explore_fit"]) == {
            "loss",
            "reward",
            "rpe",
            "explore_rate",
            "greedy_coverage",
            "accuracy",
        }
        assert set(logs["explore_evaluate"]) == {
            "loss",
            "reward",
            "rpe",
            "accuracy",
        }


def test_compiled_metrics_is_the_container_of_compiles_metrics():
    model = _model()
    compiled = _keras_fixes.compiled_metrics(model)
    # Control: unbuilt until a batch with targets, it cannot give results.
    assert not compiled.built
    with pytest.raises(ValueError, match="not yet been built"):
        compiled.result()
    assert "compile_metrics" not in [m.name for m in model.metrics]
    model.fit(X, Y, batch_size=8, verbose=0)
    assert [m.name for m in compiled.metrics] == ["accuracy"]
    # Control: Keras' metrics_names names the container.
    assert "compile_metrics" in keras.Model.metrics_names.fget(model)
    assert model.metrics_names == ["loss", "reward", "rpe", "accuracy"]
    assert _keras_fixes.compiled_metrics(kbp.wrap(_model().network)) is None


def test_input_signature_lets_a_wrapped_model_export(tmp_path):
    model = _model()
    model(X)
    # Control: Keras' export() finds no signature for the wrapper.
    with pytest.raises(ValueError, match="never called"):
        keras.Model.export(model, str(tmp_path / "keras"), verbose=False)
    (spec,) = _keras_fixes.input_signature(model.network)
    assert tuple(spec.shape) == (None, 4)
    model.export(str(tmp_path / "ours"), verbose=False)
    artifact = tf.saved_model.load(str(tmp_path / "ours"))
    np.testing.assert_array_equal(artifact.serve(X).numpy(), np.zeros((8, 3)))


@keras.saving.register_keras_serializable(package="tests")
class _RecordsLegacySaving(keras.layers.Layer):
    seen = []

    def get_config(self):
        self.seen.append(_keras_fixes.saving_legacy_h5())
        return super().get_config()


def test_saving_legacy_h5_is_true_only_while_saving_to_h5(tmp_path):
    network = keras.Sequential([keras.Input((4,)), _RecordsLegacySaving()])
    _RecordsLegacySaving.seen.clear()
    network.save(tmp_path / "network.keras")
    assert _RecordsLegacySaving.seen and not any(_RecordsLegacySaving.seen)
    _RecordsLegacySaving.seen.clear()
    network.save(tmp_path / "network.h5")
    assert _RecordsLegacySaving.seen and all(_RecordsLegacySaving.seen)
    assert not _keras_fixes.saving_legacy_h5()


def _early_stopping_runs(metric):
    network = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    network.compile(loss="mse", metrics=[metric])
    stop = keras.callbacks.EarlyStopping(monitor=f"val_{metric.name}")
    y = np.eye(3)[Y]
    network.fit(X, y, validation_data=(X, y), callbacks=[stop], verbose=0)


@pytest.mark.slow
def test_set_direction_lets_callbacks_monitor_a_metric():
    def hits(y_true, y_pred):
        return keras.ops.cast(y_pred[:, 0] > 0, "float32")

    # Control: a metric Keras does not know the direction of.
    with pytest.raises(ValueError, match="maximized or minimized"):
        _early_stopping_runs(keras.metrics.MeanMetricWrapper(hits, "hits"))
    metric = keras.metrics.MeanMetricWrapper(hits, "hits")
    _keras_fixes.set_direction(metric, "up")
    _early_stopping_runs(metric)
