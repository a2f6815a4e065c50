"""benchmarks/compare.py: a tiny comparison run, and --merge of runs made in
separate processes.
"""

import json

import numpy as np
import pytest
from _helpers import run_benchmark

from keras_brainprop import algorithms
from keras_brainprop import architectures
from keras_brainprop import experiment

# Every test here starts fresh Python processes.
pytestmark = pytest.mark.slow


def test_compare_benchmark_smoke(tmp_path):
    completed = run_benchmark(
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
    for algorithm in algorithms.NAMES:
        row = comparison[algorithm]
        assert len(row["epochs_to_target"]) == 1
        assert len(results["runs"]["mlp"][algorithm]["test_accuracies"]) == 1
    assert (tmp_path / "curves_mlp.png").stat().st_size > 0
    assert (
        (tmp_path / "results.md")
        .read_text()
        .startswith("Keras backend: tensorflow\n\n| network |")
    )
    assert results["runs"]["mlp"]["brainprop"]["backend"] == "tensorflow"


def _result_file(path, seed, curves, max_epochs=3, backend=None):
    """Writes a compare.py `results.json` with hand-made runs of one seed.

    `curves` maps an algorithm to (validation curve, test accuracy,
    seconds per epoch). Without `backend`, the file does not record one,
    as files of versions that ran on TensorFlow only.
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
            backend=backend or "tensorflow",
        )
        runs[algorithm] = result.to_dict()
        if backend is None:
            del runs[algorithm]["backend"]
    path.mkdir()
    (path / "results.json").write_text(json.dumps({"runs": {"mlp": runs}}))
    return path


def test_compare_merges_runs_of_separate_processes(tmp_path):
    # The first file is of an earlier version, which named backprop "ebp".
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
            "backprop": ([0.6, 0.7, 0.7], 0.70, 4.0),
            "brainprop": ([0.2, 0.7, 0.8], 0.80, 3.0),
        },
        backend="tensorflow",
    )
    merged = tmp_path / "merged"
    completed = run_benchmark(
        "compare.py",
        f"--merge={first},{second / 'results.json'}",
        f"--output_dir={merged}",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| mlp | BrainProp | 2 |" in completed.stdout
    # The file that records no backend was written under TensorFlow.
    assert "Keras backend: tensorflow" in completed.stdout
    results = json.loads((merged / "results.json").read_text())
    assert results["runs"]["mlp"]["backprop"]["seeds"] == [1, 2]
    assert results["runs"]["mlp"]["backprop"]["backend"] == "tensorflow"
    assert results["runs"]["mlp"]["backprop"]["algorithm"] == "backprop"
    comparison = results["comparisons"]["mlp"]
    # The target is 99% of EBP's mean best validation accuracy, 0.8.
    assert comparison["target_val_accuracy"] == pytest.approx(0.792)
    ebp, brainprop = comparison["backprop"], comparison["brainprop"]
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
    completed = run_benchmark("compare.py", f"--merge={first},{first}")
    assert completed.returncode != 0
    assert "Seeds [1] of mlp" in completed.stderr
    other = _result_file(tmp_path / "b", seed=2, curves=curves, max_epochs=9)
    completed = run_benchmark("compare.py", f"--merge={first},{other}")
    assert completed.returncode != 0
    assert "another dataset or protocol" in completed.stderr
    on_jax = _result_file(tmp_path / "c", seed=3, curves=curves, backend="jax")
    completed = run_benchmark("compare.py", f"--merge={first},{on_jax}")
    assert completed.returncode != 0
    assert "trained on the jax backend" in completed.stderr
    completed = run_benchmark("compare.py", f"--merge={tmp_path / 'missing'}")
    assert completed.returncode != 0
    assert "Received: " in completed.stderr
    assert "Traceback" not in completed.stderr
