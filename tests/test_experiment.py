"""Tests of the experiment driver, the CLI demo and the comparison script."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

from keras_brainprop import architectures
from keras_brainprop import experiment
from keras_brainprop.model import BrainPropModel

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Tiny runs: 64 training digits, a couple of epochs.
TINY = {"max_train_examples": 64, "verbose": 0}


def _subprocess_env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    return env


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


def test_run_writes_every_output(brainprop_run):
    result, output_dir = brainprop_run
    run_dir = output_dir / "digits_mlp_brainprop"
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


def test_summary_json_and_seed_statistics(brainprop_run):
    result, output_dir = brainprop_run
    summary = json.loads(
        (output_dir / "digits_mlp_brainprop" / "summary.json").read_text()
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


def test_saved_weights_are_the_evaluated_ones(brainprop_run):
    result, output_dir = brainprop_run
    net = architectures.build("mlp", (8, 8, 1), 10)
    net.load_weights(
        output_dir / "digits_mlp_brainprop" / "seed_1" / "model.weights.h5"
    )
    splits = experiment.load_splits("digits", seed=1, batch_size=16)
    model = BrainPropModel(net)
    model.compile(metrics=["accuracy"])
    logs = model.evaluate(splits.test, verbose=0, return_dict=True)
    assert logs["accuracy"] == pytest.approx(result.runs[0].test_accuracy)


def test_ebp_run_and_single_seed_std(tmp_path):
    result = experiment.run(
        "digits",
        "mlp",
        "ebp",
        epochs=1,
        seeds=[0],
        output_dir=str(tmp_path),
        **TINY,
    )
    assert result.algorithm == "ebp"
    assert result.std_test_accuracy == 0.0
    history = result.runs[0].history
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history)
    assert "reward" not in history
    assert (tmp_path / "digits_mlp_ebp" / "summary.json").is_file()


def test_train_fn_gets_the_seed_run():
    seen = []

    def train_fn(seed_run):
        seen.append(seed_run)
        assert seed_run.output_activation == "softmax"
        return experiment.train(seed_run)

    result = experiment.run(
        "digits",
        "mlp",
        "ebp",
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
    assert result.runs[0].epochs_run == 1


def test_same_seed_same_run(brainprop_run):
    first = brainprop_run[0].runs[0]
    again = experiment.run("digits", "mlp", epochs=2, seeds=[1], **TINY)
    assert again.runs[0].history["loss"] == first.history["loss"]
    assert again.test_accuracies == [first.test_accuracy]


def test_logdir_writes_tensorboard_and_monitor_logs(brainprop_run):
    _, output_dir = brainprop_run
    seed_dir = output_dir / "logs" / "digits_mlp_brainprop" / "seed_1"
    for subdir in ("train", "validation", "brainprop"):
        assert list((seed_dir / subdir).glob("events.out.tfevents.*"))


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
        if isinstance(callback, experiment.EpochLearningRate)
    ]
    assert scheduler.schedule(150) == pytest.approx(0.05)


def test_learning_rate_is_set_every_epoch():
    net = architectures.build("mlp", (8, 8, 1), 10)
    model = experiment.compile_model(net, "ebp", learning_rate=1.0)
    images = np.zeros((4, 8, 8, 1), "float32")
    labels = np.zeros(4, "int32")
    callback = experiment.EpochLearningRate(lambda epoch: 0.5**epoch)
    history = model.fit(
        images, labels, epochs=3, callbacks=[callback], verbose=0
    )
    assert history.history["learning_rate"] == [1.0, 0.5, 0.25]
    assert float(model.optimizer.learning_rate) == 0.25


def test_bad_arguments():
    with pytest.raises(ValueError, match="algorithm='sgd'"):
        experiment.run("digits", "mlp", "sgd")
    with pytest.raises(ValueError, match="seed"):
        experiment.run("digits", "mlp", seeds=[])


def test_make_strategy_and_strategy_flags():
    import tensorflow as tf

    strategy = experiment.make_strategy("default")
    assert strategy is tf.distribute.get_strategy()
    assert experiment.is_chief(strategy)
    with pytest.raises(ValueError, match="name='parameter_server'"):
        experiment.make_strategy("parameter_server")
    with pytest.raises(ValueError, match="cpu_replicas=-1"):
        experiment.make_strategy("mirrored", cpu_replicas=-1)
    flag_values = flags.FlagValues()
    experiment.define_flags(strategy="default", flag_values=flag_values)
    flag_values(["prog", "--strategy=mirrored", "--cpu_replicas=2"])
    assert (flag_values.strategy, flag_values.cpu_replicas) == ("mirrored", 2)
    with pytest.raises(flags.IllegalFlagValueError):
        flag_values(["prog", "--strategy=tpu"])


def test_demo_cli_runs_mirrored_on_cpu_replicas(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_brainprop",
            "--strategy=mirrored",
            "--cpu_replicas=2",
            "--epochs=1",
            "--max_train_examples=128",
            "--algorithm=both",
            f"--output_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        env=_subprocess_env(),
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "2 replica(s)" in completed.stdout
    assert "| backprop (EBP) |" in completed.stdout
    for algorithm in ("brainprop", "ebp"):
        assert (tmp_path / f"digits_mlp_{algorithm}" / "summary.json").is_file()


def test_plot_is_skipped_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.warns(UserWarning, match="matplotlib"):
        path = experiment.plot_curves(
            {"a": [0.1, 0.2]}, str(tmp_path / "a.png"), title="t"
        )
    assert path is None
    assert not (tmp_path / "a.png").exists()


def test_flags_and_run_kwargs():
    flag_values = flags.FlagValues()
    experiment.define_flags(
        dataset="digits", architecture="mlp", flag_values=flag_values
    )
    flag_values(
        ["prog", "--seeds=1,2", "--algorithm=ebp", "--epochs=3", "--logdir=x"]
    )
    kwargs = experiment.run_kwargs(flag_values)
    assert kwargs["seeds"] == [1, 2]
    assert (kwargs["epochs"], kwargs["logdir"]) == (3, "x")
    assert flag_values.algorithm == "ebp"
    assert flag_values.dataset == "digits"
    bad = flags.FlagValues()
    experiment.define_flags(flag_values=bad)
    with pytest.raises(flags.IllegalFlagValueError):
        bad(["prog", "--seeds=1,two"])


def test_demo_cli_runs_end_to_end(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_brainprop",
            "--epochs=1",
            "--max_train_examples=64",
            f"--output_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        env=_subprocess_env(),
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| BrainProp |" in completed.stdout
    assert "| backprop (EBP) |" in completed.stdout
    assert "Wall time" in completed.stdout
    for algorithm in ("brainprop", "ebp"):
        assert (tmp_path / f"digits_mlp_{algorithm}" / "summary.json").is_file()


def test_compare_benchmark_smoke(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "compare.py"),
            "--dataset=digits",
            "--architectures=mlp",
            "--seeds=1",
            "--epochs=1",
            "--max_train_examples=64",
            "--verbose=0",
            f"--output_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        env=_subprocess_env(),
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| mlp | ratio BrainProp/EBP |" in completed.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    comparison = results["comparisons"]["mlp"]
    assert set(comparison["ratios"]) == {
        "test_accuracy",
        "epochs_to_target",
        "seconds_per_epoch",
    }
    for algorithm in ("brainprop", "ebp"):
        row = comparison[algorithm]
        assert len(row["epochs_to_target"]) == 1
        assert len(results["runs"]["mlp"][algorithm]["test_accuracies"]) == 1
    assert (tmp_path / "curves_mlp.png").stat().st_size > 0
    assert (tmp_path / "results.md").read_text().startswith("| network |")
