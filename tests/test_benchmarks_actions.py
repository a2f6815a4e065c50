"""benchmarks/actions.py: a table per number of actions, tiny."""

import json

import pytest
from _helpers import assert_merging_a_run_twice_fails
from _helpers import run_benchmark

# Every test here starts fresh Python processes.
pytestmark = pytest.mark.slow


def test_actions_benchmark_tables_each_number_of_actions(tmp_path):
    tiny = ("--architecture=mlp", "--epochs=2", "--max_train_examples=128")
    settings = "--settings=paper,recommended,square_cb:gamma=100@adam=0.002"
    for task in ("digits", "digits_100"):
        completed = run_benchmark(
            "actions.py",
            *tiny,
            f"--dataset={task}",
            "--seeds=1",
            "--verbose=0",
            settings,
            f"--output_dir={tmp_path / task}",
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
    merged = run_benchmark(
        "actions.py",
        f"--merge={tmp_path / 'digits*'}",
        f"--output_dir={tmp_path / 'merged'}",
    )
    assert merged.returncode == 0, merged.stderr[-3000:]
    for row in (
        "| mlp | 10 | backprop | 1 |",
        "| mlp | 10 | recommended | 1 |",
        "| mlp | 100 | paper | 1 |",
        "| mlp | 100 | square_cb:gamma=100@adam=0.002 | 1 |",
    ):
        assert row in merged.stdout
    runs = json.loads((tmp_path / "merged" / "results.json").read_text())
    rates = {
        (run["actions"], run["setting"]): run["result"]["hyperparameters"][
            "learning_rate"
        ]
        for run in runs["runs"]
    }
    # Each setting trains at its own rate, backprop at the paper's.
    assert rates[(100, "backprop")] == rates[(100, "paper")] == 0.1
    assert rates[(100, "recommended")] == 0.001
    assert rates[(10, "square_cb:gamma=100@adam=0.002")] == 0.002
    assert (tmp_path / "merged" / "actions_mlp.png").stat().st_size > 0
    assert_merging_a_run_twice_fails("actions.py", tmp_path / "digits")
    for spec in ("square_cb@rmsprop=0.1", "recommended@-1", "backprop"):
        bad = run_benchmark("actions.py", f"--settings=paper,{spec}")
        assert bad.returncode != 0
        assert "--settings" in bad.stderr
        assert "Traceback" not in bad.stderr
