"""BrainProp data-parallel on CPUs: tf.distribute (mirrored and
multi-worker) under TensorFlow, keras.distribution.DataParallel under JAX.

TensorFlow fixes its devices and cluster when it starts, and JAX its
devices, so each setup runs in fresh processes of
`tests/distribute_worker.py` (see its docstring for what "the same global
batches" means):

- one process with two logical CPUs under MirroredStrategy, which also
  trains on one device for comparison;
- two worker processes under MultiWorkerMirroredStrategy, talking over
  127.0.0.1 on free ports picked here; this process computes their
  single-process reference itself;
- under JAX (`KERAS_BACKEND=jax python -m pytest -m backends`), one process
  with two JAX CPU devices (`XLA_FLAGS`) under DataParallel, which also
  trains on one device for comparison.

The tf.distribute processes run once per session (`distributed_runs`, in
tests/_distributed.py), shared with tests/test_keras_fixes.py."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from _distributed import distributed_result

# Every test here starts fresh Python processes.
pytestmark = pytest.mark.slow

_WORKER_SCRIPT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "distribute_worker.py"
)


TOLERANCE = 1e-5


def _load_worker_module():
    spec = importlib.util.spec_from_file_location(
        "distribute_worker", _WORKER_SCRIPT
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_worker_module()


def _assert_logs_close(logs, expected, tolerance=1e-6):
    assert set(logs) == set(expected), (logs, expected)
    for name, value in expected.items():
        assert math.isfinite(value), (name, value)
        assert abs(logs[name] - value) <= tolerance, (name, logs, expected)


# MirroredStrategy, two logical CPUs.


def test_mirrored_greedy_steps_match_single_device(distributed_runs):
    result = distributed_result(distributed_runs, "mirrored")
    assert result["num_replicas"] == 2
    assert result["greedy_vs_single"] <= TOLERANCE
    assert result["greedy_vs_reference"] <= TOLERANCE


def test_mirrored_metrics_aggregate_over_replicas(distributed_runs):
    result = distributed_result(distributed_runs, "mirrored")
    # The same weights see the same global batches: every logged value is
    # the single-device one, not one replica's half.
    _assert_logs_close(
        result["greedy_logs_mirrored"], result["greedy_logs_single"]
    )


def test_mirrored_replicas_draw_their_own_actions(distributed_runs):
    result = distributed_result(distributed_runs, "mirrored")
    first, second = np.array(result["draws"])
    # Five equally likely actions: independent draws differ 80% of the time.
    assert np.mean(first != second) > 0.6
    assert result["draws_again"] == result["draws"]
    assert (
        np.mean(np.array(result["draws_other_seed"]) != [first, second]) > 0.6
    )


def test_mirrored_exploring_steps_replay_per_replica_seeds(distributed_runs):
    result = distributed_result(distributed_runs, "mirrored")
    assert result["explore_vs_per_replica_reference"] <= TOLERANCE
    # Control: had both replicas drawn with one seed, weights would differ.
    assert result["explore_vs_shared_seed_reference"] > 1e-3


def test_mirrored_uneven_batches(distributed_runs):
    result = distributed_result(distributed_runs, "mirrored")
    # A global batch of 31 splits 16 / 15 over the replicas.
    assert all(
        math.isfinite(value) for value in result["odd_batch_logs"].values()
    )
    # The last test batch splits unevenly too; evaluation is still exact.
    _assert_logs_close(
        result["digits_mirrored"],
        result["digits_mirrored_weights_single_device"],
    )


def test_mirrored_fit_reaches_single_device_accuracy(distributed_runs):
    result = distributed_result(distributed_runs, "mirrored")
    single = result["digits_single"]["accuracy"]
    mirrored = result["digits_mirrored"]["accuracy"]
    assert single >= 0.85 and mirrored >= 0.85, (single, mirrored)
    assert abs(single - mirrored) <= 0.04, (single, mirrored)


# keras.distribution.DataParallel under JAX, two CPU devices.

# Generous: on a loaded 2-core machine the worker takes about two minutes.
_DATA_PARALLEL_TIMEOUT = 900


@pytest.fixture(scope="module")
def data_parallel_run(tmp_path_factory):
    if keras.backend.backend() != "jax":
        pytest.skip(
            "keras.distribution.DataParallel trains under JAX only; run "
            "KERAS_BACKEND=jax python -m pytest -m backends"
        )
    output = tmp_path_factory.mktemp("data_parallel") / "data_parallel.json"
    root = os.path.dirname(os.path.dirname(_WORKER_SCRIPT))
    environment = dict(
        os.environ,
        KERAS_BACKEND="jax",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="-1",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
    )
    completed = subprocess.run(
        [sys.executable, _WORKER_SCRIPT, "data_parallel", str(output)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=root,
        timeout=_DATA_PARALLEL_TIMEOUT,
        check=False,
    )
    if completed.returncode != 0:
        pytest.fail(completed.stderr[-4000:], pytrace=False)
    return json.loads(output.read_text())


@pytest.mark.backends
def test_data_parallel_runs_on_two_jax_devices(data_parallel_run):
    assert data_parallel_run["devices"] == 2
    assert data_parallel_run["num_replicas"] == 2


@pytest.mark.backends
@pytest.mark.parametrize(
    "case", ["greedy", "explore", "kolen_pollack", "uneven"]
)
def test_data_parallel_steps_equal_one_device(data_parallel_run, case):
    # Same weights and logs (fit and evaluate, whose batches of 45 split
    # unevenly), with exploration and with a learned feedback rule.
    assert data_parallel_run[f"{case}_weights"] <= TOLERANCE
    assert data_parallel_run[f"{case}_logs"] <= TOLERANCE
    # Control: training moved the weights.
    assert data_parallel_run[f"{case}_change"] > 1e-3


@pytest.mark.backends
def test_data_parallel_experiment_equals_one_device(data_parallel_run):
    # experiment.run, as `--strategy=data_parallel` runs it.
    for name in ("test_loss", "test_accuracy", "history"):
        assert data_parallel_run[f"experiment_{name}"] <= TOLERANCE, name


# MultiWorkerMirroredStrategy, two worker processes.


def _weights(arrays, name):
    return [arrays[f"{name}_{index}"] for index in range(3)]


def _logs(arrays):
    return json.loads(str(arrays["logs"]))


def test_multi_worker_training_equals_single_process(distributed_runs):
    from keras_brainprop import policies

    workers = distributed_result(distributed_runs, "multi_worker")
    assert [_logs(w)["num_replicas"] for w in workers] == [2, 2]
    x, y = worker.training_data()
    references = {
        "greedy": worker.reference_weights(x, y, policies.Greedy()),
        "explore": worker.reference_weights(
            x, y, worker.exploring_policy(), replica_ids=(0, 1)
        ),
    }
    shared_seed = worker.reference_weights(
        x, y, worker.exploring_policy(), replica_ids=(0, 0)
    )
    for name, reference in references.items():
        first, second = (_weights(w, name) for w in workers)
        assert worker.max_difference(first, second) == 0.0, name
        assert worker.max_difference(first, reference) <= TOLERANCE, name
    # Control: the workers did not draw with one shared seed.
    assert (
        worker.max_difference(_weights(workers[0], "explore"), shared_seed)
        > 1e-3
    )


def test_multi_worker_metrics_aggregate_over_workers(distributed_runs):
    import keras

    import keras_brainprop as kbp
    from keras_brainprop import policies

    workers = distributed_result(distributed_runs, "multi_worker")
    first, second = (_logs(w) for w in workers)
    for name in ("greedy_fit", "explore_fit", "greedy_evaluate"):
        _assert_logs_close(first[name], second[name])
    # One process training on the same global batches logs the same numbers
    # (the workers log the loss alone per step, all metrics per epoch).
    x, y = worker.training_data()
    model = worker.brainprop_model(policies.Greedy())
    history = model.fit(
        worker.global_batches(x, y), epochs=1, shuffle=False, verbose=0
    )
    expected = {name: values[-1] for name, values in history.history.items()}
    assert set(expected) == {
        "loss",
        "reward",
        "rpe",
        "explore_rate",
        "greedy_coverage",
        "accuracy",
    }
    _assert_logs_close(first["greedy_fit"], expected, tolerance=1e-5)
    # Evaluating the trained weights in one process, on the same (unevenly
    # splitting) batches, gives the workers' numbers.
    network = worker.build_network()
    network.set_weights(_weights(workers[0], "greedy"))
    model = kbp.wrap(network, policy="greedy")
    model.compile(optimizer=keras.optimizers.SGD(), metrics=["accuracy"])
    expected = model.evaluate(
        worker.global_batches(x, y, batch_size=worker.EVALUATION_BATCH),
        verbose=0,
        return_dict=True,
    )
    assert "explore_rate" not in expected
    _assert_logs_close(first["greedy_evaluate"], expected, tolerance=1e-5)
