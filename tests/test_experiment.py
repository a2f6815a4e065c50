"""Tests of the experiment driver: run loop, protocol, results, reports."""

import dataclasses
import json
import pathlib
import sys

import keras
import numpy as np
import pytest

from keras_brainprop import algorithms
from keras_brainprop import architectures
from keras_brainprop import datasets
from keras_brainprop import experiment
from keras_brainprop import policies
from keras_brainprop.callbacks import EpochLearningRate
from keras_brainprop.model import BrainPropModel

# Tiny runs: 64 training digits, a couple of epochs.
TINY = {"max_train_examples": 64, "verbose": 0}
BACKEND = keras.backend.backend()


def folder(name):
    """A run's folder name: runs of JAX and PyTorch end in their backend."""
    return name if BACKEND == "tensorflow" else f"{name}_{BACKEND}"


@pytest.fixture(scope="module")
def brainprop_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("brainprop")
    result = experiment.run(
        "digits",
        "mlp",
        "brainprop",
        epochs=2,
        seeds=[1, 2],
        output_dir=str(output_dir),
        logdir=str(output_dir / "logs"),
        **TINY,
    )
    return result, output_dir


@pytest.mark.backends
def test_run_writes_every_output(brainprop_run):
    result, output_dir = brainprop_run
    run_dir = output_dir / folder("digits_mlp_brainprop")
    assert result.output_dir == str(run_dir)
    assert (run_dir / "summary.json").is_file()
    assert (run_dir / "accuracy.png").stat().st_size > 0
    for seed in (1, 2):
        seed_dir = run_dir / f"seed_{seed}"
        assert (seed_dir / "model.weights.h5").is_file()
        assert (seed_dir / "accuracy.png").stat().st_size > 0
        history = json.loads((seed_dir / "history.json").read_text())
        for key in ("loss", "reward", "rpe", "explore_rate", "accuracy"):
            assert len(history[key]) == 2
        for key in ("val_accuracy", "learning_rate", "seconds"):
            assert len(history[key]) == 2


@pytest.mark.backends
def test_summary_json_and_seed_statistics(brainprop_run):
    result, output_dir = brainprop_run
    summary = json.loads(
        (
            output_dir / folder("digits_mlp_brainprop") / "summary.json"
        ).read_text()
    )
    for key in (
        "dataset",
        "architecture",
        "algorithm",
        "hyperparameters",
        "seeds",
        "test_accuracies",
        "mean_test_accuracy",
        "std_test_accuracy",
        "best_epochs",
        "epochs_run",
        "seconds_per_epoch",
        "runs",
    ):
        assert key in summary
    assert summary["seeds"] == [1, 2]
    assert summary["hyperparameters"]["batch_size"] == 16
    accuracies = summary["test_accuracies"]
    assert summary["mean_test_accuracy"] == pytest.approx(np.mean(accuracies))
    assert summary["std_test_accuracy"] == pytest.approx(
        np.std(accuracies, ddof=1)
    )
    assert result.mean_test_accuracy == pytest.approx(np.mean(accuracies))
    assert (result.num_train_examples, result.num_test_examples) == (64, 359)
    for run in result.runs:
        assert run.epochs_run == 2
        assert 1 <= run.best_epoch <= 2
        assert run.seconds_per_epoch > 0
        assert 0.0 <= run.test_accuracy <= 1.0
        assert (
            run.best_val_accuracy
            == run.history["val_accuracy"][run.best_epoch - 1]
        )
        assert run.history["learning_rate"] == pytest.approx([0.1, 0.1])


@pytest.mark.backends
def test_result_round_trips_through_summary_json(brainprop_run):
    result, output_dir = brainprop_run
    summary = json.loads(
        (
            output_dir / folder("digits_mlp_brainprop") / "summary.json"
        ).read_text()
    )
    restored = experiment.Result.from_dict(summary)
    assert restored.output_dir is None
    assert restored.to_dict() == result.to_dict()
    with pytest.raises(ValueError, match="Result.to_dict"):
        experiment.Result.from_dict({"dataset": "digits"})


@pytest.mark.backends
def test_saved_weights_are_the_evaluated_ones(brainprop_run):
    result, output_dir = brainprop_run
    net = architectures.build("mlp", (8, 8, 1), 10)
    net.load_weights(
        output_dir
        / folder("digits_mlp_brainprop")
        / "seed_1"
        / "model.weights.h5"
    )
    splits = experiment.load_splits("digits", seed=1, batch_size=16)
    model = BrainPropModel(net)
    model.compile(metrics=["accuracy"])
    logs = model.evaluate(splits.test, verbose=0, return_dict=True)
    assert logs["accuracy"] == pytest.approx(result.runs[0].test_accuracy)


@pytest.mark.backends
def test_backprop_run_and_single_seed_std(tmp_path):
    result = experiment.run(
        "digits",
        "mlp",
        "ebp",  # The former name of backprop still works.
        epochs=1,
        seeds=[0],
        output_dir=str(tmp_path),
        **TINY,
    )
    assert result.algorithm == "backprop"
    assert result.std_test_accuracy == 0.0
    history = result.runs[0].history
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history)
    assert "reward" not in history
    assert (tmp_path / folder("digits_mlp_backprop") / "summary.json").is_file()


def test_train_fn_gets_the_seed_run():
    seen = []

    def train_fn(seed_run):
        seen.append(seed_run)
        assert seed_run.output_activation == "softmax"
        return experiment.train(seed_run)

    result = experiment.run(
        "digits",
        "mlp",
        algorithms.Backprop(),
        epochs=1,
        seeds=[3],
        batch_size=8,
        patience=2,
        train_fn=train_fn,
        **TINY,
    )
    (seed_run,) = seen
    assert (seed_run.seed, seed_run.epochs) == (3, 1)
    assert seed_run.hparams.batch_size == 8
    assert seed_run.hparams.patience == 2
    assert seed_run.input_shape == (8, 8, 1)
    assert seed_run.num_classes == 10
    assert isinstance(seed_run.algorithm, algorithms.Backprop)
    assert result.runs[0].epochs_run == 1


@pytest.mark.slow
@pytest.mark.backends
def test_same_seed_same_run(brainprop_run):
    first = brainprop_run[0].runs[0]
    again = experiment.run("digits", "mlp", epochs=2, seeds=[1], **TINY)
    assert again.runs[0].history["loss"] == first.history["loss"]
    assert again.test_accuracies == [first.test_accuracy]


@pytest.mark.backends
def test_logdir_writes_tensorboard_and_monitor_logs(brainprop_run):
    _, output_dir = brainprop_run
    seed_dir = output_dir / "logs" / folder("digits_mlp_brainprop") / "seed_1"
    for subdir in ("train", "validation", "brainprop"):
        assert list((seed_dir / subdir).glob("events.out.tfevents.*"))


@pytest.mark.backends
def test_result_records_the_backend(brainprop_run):
    result = brainprop_run[0]
    assert result.backend == BACKEND
    assert f"digits mlp brainprop on {BACKEND}: test" in result.summary()
    data = result.to_dict()
    assert data["backend"] == BACKEND
    assert {"keras", "tensorflow"} <= set(data["versions"])
    if BACKEND != "tensorflow":
        assert BACKEND in data["versions"]
    assert experiment.Result.from_dict(data).backend == BACKEND
    # Files of versions that ran on TensorFlow only record no backend.
    del data["backend"]
    assert experiment.Result.from_dict(data).backend == "tensorflow"


class _FakeDistribution:
    """Stands for a keras.distribution distribution: it has a mesh."""

    device_mesh = None


@pytest.mark.backends
def test_run_refuses_a_strategy_the_backend_cannot_train_under(monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(
        experiment.runner.protocol, "load_splits", _refuse_to_load
    )
    refused = []
    if BACKEND != "jax":
        refused.append(_FakeDistribution())
    if BACKEND != "tensorflow":
        refused.append(tf.distribute.OneDeviceStrategy("/cpu:0"))
    for strategy in refused:
        with pytest.raises(ValueError, match=f"KERAS_BACKEND='{BACKEND}'"):
            experiment.run("digits", "mlp", strategy=strategy, **TINY)


def test_callbacks_follow_the_paper():
    hparams = architectures.hyperparameters("conv")
    training = experiment.make_callbacks(hparams, verbose=0)
    stopper = training.early_stopping
    assert stopper.monitor == "val_accuracy"
    assert (stopper.patience, stopper.min_delta) == (45, 0.001)
    assert stopper.restore_best_weights
    names = [type(callback).__name__ for callback in training.callbacks]
    assert "TerminateOnNaN" in names
    (scheduler,) = [
        callback
        for callback in training.callbacks
        if isinstance(callback, EpochLearningRate)
    ]
    assert scheduler.schedule(150) == pytest.approx(0.05)


def test_learning_rate_is_set_every_epoch():
    net = architectures.build("mlp", (8, 8, 1), 10)
    algorithms.Backprop().compile(net, learning_rate=1.0)
    images = np.zeros((4, 8, 8, 1), "float32")
    labels = np.zeros(4, "int32")
    callback = EpochLearningRate(lambda epoch: 0.5**epoch)
    history = net.fit(images, labels, epochs=3, callbacks=[callback], verbose=0)
    assert history.history["learning_rate"] == [1.0, 0.5, 0.25]
    assert float(net.optimizer.learning_rate) == 0.25


def test_bad_arguments():
    with pytest.raises(ValueError, match="algorithm='sgd'"):
        experiment.run("digits", "mlp", "sgd")
    with pytest.raises(ValueError, match="seed"):
        experiment.run("digits", "mlp", seeds=[])
    with pytest.raises(ValueError, match="learning_rate=0"):
        experiment.run("digits", "mlp", learning_rate=0, epochs=1, **TINY)


def _refuse_to_load(*args, **kwargs):
    raise AssertionError("The data were loaded before the arguments checks.")


@pytest.mark.parametrize("epochs", [0, -3, 2.5])
def test_run_refuses_epochs_below_one_before_loading(epochs, monkeypatch):
    # epochs=0 reported an untrained network's accuracy as a result.
    monkeypatch.setattr(
        experiment.runner.protocol, "load_splits", _refuse_to_load
    )
    with pytest.raises(ValueError, match=f"epochs={epochs}"):
        experiment.run("digits", "mlp", epochs=epochs, **TINY)


@pytest.mark.parametrize("learning_rate", [float("inf"), float("nan"), -1.0])
def test_run_refuses_a_bad_learning_rate_before_loading(
    learning_rate, monkeypatch
):
    monkeypatch.setattr(
        experiment.runner.protocol, "load_splits", _refuse_to_load
    )
    with pytest.raises(ValueError, match=f"learning_rate={learning_rate}"):
        experiment.run("digits", "mlp", learning_rate=learning_rate, **TINY)


def test_run_refuses_a_repeated_seed(monkeypatch):
    monkeypatch.setattr(
        experiment.runner.protocol, "load_splits", _refuse_to_load
    )
    with pytest.raises(ValueError, match=r"seeds=\[1, 1\]"):
        experiment.run("digits", "mlp", seeds=[1, 1], **TINY)


@pytest.mark.slow
def test_run_marks_a_diverged_seed_without_an_accuracy(tmp_path):
    result = experiment.run(
        "digits",
        "mlp",
        "brainprop",
        epochs=2,
        seeds=[0],
        learning_rate=1e30,
        output_dir=str(tmp_path),
        **TINY,
    )
    assert result.diverged_seeds == [0]
    assert result.runs[0].diverged
    assert np.isnan(result.runs[0].test_accuracy)
    assert np.isnan(result.mean_test_accuracy)
    assert np.isnan(result.std_test_accuracy)
    assert "diverged" in result.summary()
    assert "no test accuracy" in result.summary()
    data = json.loads(
        (tmp_path / "digits_mlp_brainprop" / "summary.json").read_text()
    )
    assert data["diverged_seeds"] == [0]
    assert experiment.Result.from_dict(data).diverged_seeds == [0]


@pytest.mark.backends
def test_result_names_the_policy(brainprop_run):
    result = brainprop_run[0]
    assert result.policy == "paper"
    data = result.to_dict()
    assert data["policy"] == "paper"
    assert experiment.Result.from_dict(data).policy == "paper"
    assert not experiment.Result.from_dict(data).diverged_seeds
    # Earlier files record neither the policy nor divergence.
    del data["policy"], data["diverged_seeds"]
    for run in data["runs"]:
        del run["diverged"]
    assert experiment.Result.from_dict(data).policy is None


def test_plot_is_skipped_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.warns(UserWarning, match="matplotlib"):
        path = experiment.plot_curves(
            {"a": [0.1, 0.2]}, str(tmp_path / "a.png"), title="t"
        )
    assert path is None
    assert not (tmp_path / "a.png").exists()


@pytest.mark.slow
def test_run_with_another_policy_seeds_it_per_run():
    seen = []

    def train_fn(seed_run):
        seen.append(seed_run.algorithm)
        return experiment.train(seed_run)

    greedy = policies.Greedy()
    result = experiment.run(
        "digits",
        "mlp",
        algorithms.BrainProp(policy=greedy),
        epochs=1,
        seeds=[1],
        train_fn=train_fn,
        **TINY,
    )
    assert result.runs[0].history["explore_rate"] == [0.0]
    # An unseeded BrainProp explores with the run's seed; a seed is kept.
    assert (seen[0].policy, seen[0].seed) == (greedy, 1)
    seeded = algorithms.BrainProp(seed=5)
    experiment.run("digits", "mlp", seeded, epochs=1, train_fn=train_fn, **TINY)
    assert seen[1] is seeded


@pytest.mark.slow
def test_run_under_a_feedback_rule(tmp_path):
    result = experiment.run(
        "digits",
        "mlp",
        "backprop",
        epochs=1,
        seeds=[0],
        output_dir=str(tmp_path),
        feedback="sign_symmetry",
        **TINY,
    )
    assert (result.algorithm, result.feedback) == ("backprop", "sign_symmetry")
    summary = tmp_path / "digits_mlp_backprop_sign_symmetry" / "summary.json"
    data = json.loads(summary.read_text())
    assert data["feedback"] == "sign_symmetry"
    assert experiment.Result.from_dict(data).feedback == "sign_symmetry"
    # Files written before feedback rules existed are symmetric.
    del data["feedback"]
    assert experiment.Result.from_dict(data).feedback == "symmetric"


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["brainprop", "backprop"])
def test_weights_of_a_feedback_run_load_into_the_plain_network(
    tmp_path, algorithm
):
    result = experiment.run(
        "digits",
        "mlp",
        algorithm,
        epochs=1,
        seeds=[0],
        output_dir=str(tmp_path),
        feedback="feedback_alignment",
        **TINY,
    )
    weights = pathlib.Path(result.output_dir) / "seed_0" / "model.weights.h5"
    activation = "softmax" if algorithm == "backprop" else None
    network = architectures.build(
        "mlp", (8, 8, 1), 10, output_activation=activation
    )
    network.load_weights(weights)
    # The plain network with those weights is the one that was tested.
    x, y = datasets.load_arrays("digits", "test")
    accuracy = np.mean(np.argmax(network.predict(x, verbose=0), axis=1) == y)
    assert accuracy == pytest.approx(result.runs[0].test_accuracy, abs=1e-6)


@pytest.mark.slow
def test_run_with_a_policy_names_it_and_backprop_ignores_it(tmp_path):
    seen = []

    def train_fn(seed_run):
        seen.append(seed_run.algorithm)
        return experiment.train(seed_run)

    for algorithm in ("brainprop", "backprop"):
        experiment.run(
            "digits",
            "mlp",
            algorithm,
            epochs=1,
            output_dir=str(tmp_path),
            policy="discovery",
            train_fn=train_fn,
            **TINY,
        )
    assert isinstance(seen[0].policy, str) and seen[0].policy == "discovery"
    assert not hasattr(seen[1], "policy")
    # The paper's policy, given or not, keeps the plain name.
    experiment.run(
        "digits",
        "mlp",
        algorithms.BrainProp(policy=policies.EpsilonBoltzmann()),
        epochs=1,
        output_dir=str(tmp_path),
        **TINY,
    )
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == [
        "digits_mlp_backprop",
        "digits_mlp_brainprop",
        "digits_mlp_brainprop_discovery",
    ]
    with pytest.raises(ValueError, match="policy"):
        experiment.run("digits", "mlp", policy="curious", epochs=1, **TINY)


@pytest.mark.backends
def test_result_reads_files_that_name_backprop_ebp(brainprop_run):
    data = dataclasses.replace(brainprop_run[0], algorithm="ebp").to_dict()
    assert data["algorithm"] == "ebp"
    restored = experiment.Result.from_dict(data)
    assert restored.algorithm == "backprop"
    assert restored.runs == brainprop_run[0].runs


@pytest.mark.backends
def test_result_statistics_over_seeds(brainprop_run):
    result = brainprop_run[0]
    accuracies = [run.test_accuracy for run in result.runs]
    assert result.seeds == [1, 2]
    assert result.test_accuracies == accuracies
    assert result.std_test_accuracy == pytest.approx(np.std(accuracies, ddof=1))
    assert result.mean_best_epoch == pytest.approx(
        np.mean([run.best_epoch for run in result.runs])
    )
    assert result.std_best_epoch == pytest.approx(
        np.std([run.best_epoch for run in result.runs], ddof=1)
    )
    assert result.mean_seconds_per_epoch == pytest.approx(
        np.mean([run.seconds_per_epoch for run in result.runs])
    )
    assert result.histories == [run.history for run in result.runs]
    assert f"{result.mean_test_accuracy:.4f} ±" in result.summary()
