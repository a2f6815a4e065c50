"""Tests of the experiment driver, the CLI demo and the comparison script."""

import functools
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from keras_brainprop import architectures
from keras_brainprop import datasets
from keras_brainprop import experiment
from keras_brainprop import policies
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


def _run_python(*args):
    """Runs `python *args` in a fresh process; returns the completed run."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=_subprocess_env(),
        timeout=300,
        check=False,
    )


def _run_benchmark(script, *args):
    """Runs `benchmarks/<script>` with `args` in a fresh Python process."""
    return _run_python(str(ROOT / "benchmarks" / script), *args)


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


def test_result_round_trips_through_summary_json(brainprop_run):
    result, output_dir = brainprop_run
    summary = json.loads(
        (output_dir / "digits_mlp_brainprop" / "summary.json").read_text()
    )
    restored = experiment.Result.from_dict(summary)
    assert restored.output_dir is None
    assert restored.to_dict() == result.to_dict()
    with pytest.raises(ValueError, match="Result.to_dict"):
        experiment.Result.from_dict({"dataset": "digits"})


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


def test_demo_cli_runs_mirrored_on_cpu_replicas(tmp_path):
    completed = _run_python(
        "-m",
        "keras_brainprop",
        "--strategy=mirrored",
        "--cpu_replicas=2",
        "--epochs=1",
        "--max_train_examples=128",
        "--algorithm=both",
        f"--output_dir={tmp_path}",
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


def test_demo_cli_runs_end_to_end(tmp_path):
    completed = _run_python(
        "-m",
        "keras_brainprop",
        "--epochs=1",
        "--max_train_examples=64",
        f"--output_dir={tmp_path}",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| BrainProp |" in completed.stdout
    assert "| backprop (EBP) |" in completed.stdout
    assert "Wall time" in completed.stdout
    for algorithm in ("brainprop", "ebp"):
        assert (tmp_path / f"digits_mlp_{algorithm}" / "summary.json").is_file()


def test_compare_benchmark_smoke(tmp_path):
    completed = _run_benchmark(
        "compare.py",
        "--dataset=digits",
        "--architectures=mlp",
        "--seeds=1",
        "--epochs=1",
        "--max_train_examples=64",
        "--verbose=0",
        f"--output_dir={tmp_path}",
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


def _result_file(path, seed, curves, max_epochs=3):
    """Writes a compare.py `results.json` with hand-made runs of one seed.

    `curves` maps an algorithm to (validation curve, test accuracy,
    seconds per epoch).
    """
    runs = {}
    for algorithm, (curve, test_accuracy, seconds) in curves.items():
        best = int(np.argmax(curve))
        run = experiment.SeedResult(
            seed=seed,
            test_accuracy=test_accuracy,
            test_loss=0.5,
            last_epoch_test_accuracy=test_accuracy,
            best_epoch=best + 1,
            best_val_accuracy=curve[best],
            epochs_run=len(curve),
            seconds_per_epoch=seconds,
            stopped_early=False,
            history={"val_accuracy": curve},
        )
        result = experiment.Result(
            dataset="digits",
            architecture="mlp",
            algorithm=algorithm,
            hyperparameters=architectures.hyperparameters("mlp"),
            max_epochs=max_epochs,
            runs=[run],
            num_train_examples=10,
            num_validation_examples=5,
            num_test_examples=5,
        )
        runs[algorithm] = result.to_dict()
    path.mkdir()
    (path / "results.json").write_text(json.dumps({"runs": {"mlp": runs}}))
    return path


def test_compare_merges_runs_of_separate_processes(tmp_path):
    first = _result_file(
        tmp_path / "s1",
        seed=1,
        curves={
            "ebp": ([0.5, 0.8, 0.9], 0.88, 2.0),
            "brainprop": ([0.3, 0.6, 0.9], 0.87, 1.0),
        },
    )
    second = _result_file(
        tmp_path / "s2",
        seed=2,
        curves={
            "ebp": ([0.6, 0.7, 0.7], 0.70, 4.0),
            "brainprop": ([0.2, 0.7, 0.8], 0.80, 3.0),
        },
    )
    merged = tmp_path / "merged"
    completed = _run_benchmark(
        "compare.py",
        f"--merge={first},{second / 'results.json'}",
        f"--output_dir={merged}",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| mlp | BrainProp | 2 |" in completed.stdout
    results = json.loads((merged / "results.json").read_text())
    assert results["runs"]["mlp"]["ebp"]["seeds"] == [1, 2]
    comparison = results["comparisons"]["mlp"]
    # The target is 99% of EBP's mean best validation accuracy, 0.8.
    assert comparison["target_val_accuracy"] == pytest.approx(0.792)
    ebp, brainprop = comparison["ebp"], comparison["brainprop"]
    assert ebp["epochs_to_target"] == [2, None]
    assert brainprop["epochs_to_target"] == [3, 3]
    assert ebp["mean_test_accuracy"] == pytest.approx(0.79)
    assert ebp["std_test_accuracy"] == pytest.approx(0.18 / np.sqrt(2))
    assert brainprop["mean_val_accuracy_curve"] == pytest.approx(
        [0.25, 0.65, 0.85]
    )
    assert comparison["ratios"] == pytest.approx(
        {
            "test_accuracy": 0.835 / 0.79,
            "epochs_to_target": 1.5,
            "seconds_per_epoch": 2.0 / 3.0,
        }
    )
    assert (merged / "curves_mlp.png").stat().st_size > 0


def test_compare_merge_rejects_repeated_seeds_and_other_protocols(tmp_path):
    curves = {"ebp": ([0.5], 0.5, 1.0), "brainprop": ([0.5], 0.5, 1.0)}
    first = _result_file(tmp_path / "a", seed=1, curves=curves)
    completed = _run_benchmark("compare.py", f"--merge={first},{first}")
    assert completed.returncode != 0
    assert "Seeds [1] of mlp" in completed.stderr
    other = _result_file(tmp_path / "b", seed=2, curves=curves, max_epochs=9)
    completed = _run_benchmark("compare.py", f"--merge={first},{other}")
    assert completed.returncode != 0
    assert "another dataset or protocol" in completed.stderr
    completed = _run_benchmark("compare.py", f"--merge={tmp_path / 'missing'}")
    assert completed.returncode != 0
    assert "Received: " in completed.stderr


def test_train_fn_with_another_policy():
    greedy = functools.partial(experiment.train, policy=policies.Greedy())
    result = experiment.run(
        "digits",
        "mlp",
        "brainprop",
        epochs=1,
        seeds=[1],
        train_fn=greedy,
        **TINY,
    )
    assert result.runs[0].history["explore_rate"] == [0.0]
    net = architectures.build("mlp", (8, 8, 1), 10, output_activation="softmax")
    with pytest.raises(ValueError, match="only applies to BrainProp"):
        experiment.compile_model(net, "ebp", policy=policies.Greedy())


def test_exploration_benchmark_reports_the_classes_learned(tmp_path):
    completed = _run_benchmark(
        "exploration.py",
        "--dataset=digits",
        "--architecture=mlp",
        "--epsilons=0.02,1",
        "--seeds=1",
        "--epochs=2",
        "--max_train_examples=128",
        "--verbose=0",
        f"--output_dir={tmp_path}",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| 0.02 | 1 |" in completed.stdout
    assert "| 1 | 1 |" in completed.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"0.02", "1"}
    _, labels = datasets.load_arrays("digits", split="test")
    counts = np.bincount(labels, minlength=10)
    for epsilon, row in results.items():
        (report,) = row["class_reports"]
        recall = np.array(report["recall"])
        # The class report uses the kept weights, the evaluated ones.
        assert np.sum(recall * counts) / counts.sum() == pytest.approx(
            row["mean_test_accuracy"], abs=1e-6
        )
        assert row["classes_learned"] == [int(np.sum(recall >= 0.5))]
        assert row["lowest_recall"] == [pytest.approx(recall.min())]
        assert len(report["mean_q"]) == 10
        summary = tmp_path / f"epsilon_{epsilon}" / "digits_mlp_brainprop"
        assert (summary / "summary.json").is_file()
    assert (tmp_path / "curves.png").stat().st_size > 0
