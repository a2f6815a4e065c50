"""benchmarks/step_overhead.py: each backend timed in its own process."""

import importlib.util
import json

import pytest
from _helpers import run_benchmark

# Every test here starts fresh Python processes.
pytestmark = pytest.mark.slow


@pytest.mark.backends
@pytest.mark.skipif(
    importlib.util.find_spec("jax") is None,
    reason="needs the [jax] extra (.ci/run's backend legs)",
)
def test_step_overhead_times_each_backend_in_its_own_process(tmp_path):
    tiny = (
        "--networks=dense",
        "--steps=2",
        "--rounds=2",
        "--warmup_steps=1",
        "--batch_size=8",
        "--rules=kolen_pollack",
    )
    completed = run_benchmark(
        "step_overhead.py",
        "--backends=tensorflow,jax",
        *tiny,
        f"--output_dir={tmp_path}",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    for text in (
        "| dense | tensorflow | XLA |",
        "| dense | jax | XLA |",
        "| dense | jax | kolen_pollack |",
        "| network | variant | tensorflow wall ms | tensorflow CPU ms | "
        "jax wall ms | jax CPU ms |",
    ):
        assert text in completed.stdout
    pieces = json.loads((tmp_path / "results.json").read_text())["pieces"]
    assert [piece["backend"] for piece in pieces] == ["tensorflow", "jax"]
    for piece in pieces:
        times = piece["networks"]["dense"]
        assert set(times) == {"backprop", "brainprop", "kolen_pollack"}
        for variant in times.values():
            assert len(variant["wall_ms"]) == len(variant["cpu_ms"]) == 2
            assert all(value > 0 for value in variant["cpu_ms"])
    # Pieces of separate runs combine, in the order given.
    merged = run_benchmark(
        "step_overhead.py",
        f"--merge={tmp_path / 'step_overhead_jax.json'},"
        f"{tmp_path / 'step_overhead_tensorflow.json'}",
    )
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert "| jax wall ms | jax CPU ms | tensorflow wall ms |" in merged.stdout
    repeated = run_benchmark(
        "step_overhead.py", f"--merge={tmp_path},{tmp_path}"
    )
    assert repeated.returncode == 1
    assert "appear more than once" in repeated.stderr
    assert "Traceback" not in repeated.stderr
