"""benchmarks/feedback.py: a row per feedback rule, tiny."""

import json

import pytest
from _helpers import assert_merging_a_run_twice_fails
from _helpers import run_benchmark

# Every test here starts fresh Python processes.
pytestmark = pytest.mark.slow


def test_feedback_benchmark_reports_each_rule(tmp_path):
    completed = run_benchmark(
        "feedback.py",
        "--dataset=digits",
        "--architectures=mlp",
        "--rules=symmetric,feedback_alignment",
        "--seeds=1",
        "--epochs=1",
        "--max_train_examples=64",
        "--verbose=0",
        f"--output_dir={tmp_path / 'run'}",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    for row in (
        "| mlp | backprop | symmetric | 1 |",
        "| mlp | BrainProp | symmetric | 1 |",
        "| mlp | BrainProp | feedback_alignment | 1 |",
        "| mlp | backprop | feedback_alignment | 1 |",
    ):
        assert row in completed.stdout
    runs = json.loads((tmp_path / "run" / "results.json").read_text())["runs"]
    angles = {
        (run["result"]["algorithm"], run["result"]["feedback"]): run["angles"]
        for run in runs
    }
    assert angles[("backprop", "symmetric")] == {"1": []}
    # Two converted Dense layers; random feedback is far from the kernel.
    fa_angles = angles[("brainprop", "feedback_alignment")]["1"]
    assert len(fa_angles) == 2 and all(60 < a < 120 for a in fa_angles)
    assert_merging_a_run_twice_fails("feedback.py", tmp_path / "run")
