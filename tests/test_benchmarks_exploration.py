"""benchmarks/exploration.py: each policy beside backprop, tiny."""

import json

import numpy as np
import pytest
from _helpers import assert_merging_a_run_twice_fails
from _helpers import run_benchmark

from keras_brainprop import datasets

# Every test here starts fresh Python processes.
pytestmark = pytest.mark.slow

# Two epochs on 128 digits, seed 1: what the exploration benchmark tests run.
_EXPLORATION_TINY = (
    "--dataset=digits",
    "--architecture=mlp",
    "--seeds=1",
    "--epochs=2",
    "--max_train_examples=128",
    "--verbose=0",
)


def test_exploration_benchmark_reports_each_policy_beside_backprop(tmp_path):
    completed = run_benchmark(
        "exploration.py",
        *_EXPLORATION_TINY,
        "--policies=paper,epsilon_boltzmann:epsilon=1@0.3",
        f"--output_dir={tmp_path / 'run'}",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    for row in (
        "| mlp | backprop | 1 |",
        "| mlp | paper | 1 |",
        "| mlp | epsilon_boltzmann:epsilon=1@0.3 | 1 |",
    ):
        assert row in completed.stdout
    runs = json.loads((tmp_path / "run" / "results.json").read_text())["runs"]
    assert [run["policy"] for run in runs] == [
        "backprop",
        "paper",
        "epsilon_boltzmann:epsilon=1@0.3",
    ]
    # "@0.3" is that run's learning rate; the others keep the paper's.
    rates = [run["result"]["hyperparameters"]["learning_rate"] for run in runs]
    assert rates == [0.1, 0.1, 0.3]
    _, labels = datasets.load_arrays("digits", split="test")
    counts = np.bincount(labels, minlength=10)
    for run in runs:
        report = run["reports"]["1"]
        recall = np.array(report["recall"])
        # The class report uses the kept weights, the evaluated ones.
        assert np.sum(recall * counts) / counts.sum() == pytest.approx(
            run["result"]["runs"][0]["test_accuracy"], abs=1e-6
        )
        assert len(report["mean_q"]) == 10
    history = runs[2]["result"]["runs"][0]["history"]
    # Exploring on every sample: the greedy choices are still counted.
    assert len(history["greedy_coverage"]) == 2
    assert (tmp_path / "run" / "curves_mlp.png").stat().st_size > 0
    assert_merging_a_run_twice_fails("exploration.py", tmp_path / "run")
    # A policy trained later, without backprop, merges with the first run.
    alone = run_benchmark(
        "exploration.py",
        *_EXPLORATION_TINY,
        "--policies=discovery",
        "--notrain_backprop",
        f"--output_dir={tmp_path / 'alone'}",
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert "No backprop run of mlp" in alone.stdout
    merged = run_benchmark(
        "exploration.py",
        f"--merge={tmp_path / 'run'},{tmp_path / 'alone'}",
        f"--output_dir={tmp_path / 'merged'}",
    )
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert "| mlp | discovery | 1 |" in merged.stdout
    assert "| mlp | backprop | 1 |" in merged.stdout
    for spec in ("greedy:speed=2", "greedy@fast", "paper@-1"):
        bad = run_benchmark("exploration.py", f"--policies=paper,{spec}")
        assert bad.returncode != 0
        assert spec in bad.stderr
        assert "Traceback" not in bad.stderr
