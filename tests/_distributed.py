"""The tf.distribute worker processes the tests read, run once per session.

TensorFlow fixes its devices and cluster when it starts, so each setup runs
in fresh processes of tests/distribute_worker.py: one with two logical CPUs
under MirroredStrategy, and two workers of a MultiWorkerMirroredStrategy
cluster on 127.0.0.1. The three start together (to save wall time) and each
is killed if it outlives TIMEOUT_SECONDS; their logs are shown when a test
fails. tests/conftest.py provides the `distributed_runs` fixture.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

_HERE = os.path.dirname(os.path.abspath(__file__))
_WORKER_SCRIPT = os.path.join(_HERE, "distribute_worker.py")
# Generous: on a loaded 2-core machine TensorFlow's import alone can take
# 50 s, and the mirrored setup 200 s.
TIMEOUT_SECONDS = 400


class _Process:
    """A worker process with a log file, killed with its group on failure."""

    def __init__(self, name, args, log_path):
        self.name = name
        self.log_path = log_path
        environment = dict(os.environ)
        environment.pop("TF_CONFIG", None)
        environment.update(
            TF_CPP_MIN_LOG_LEVEL="2",
            CUDA_VISIBLE_DEVICES="-1",
            KERAS_BACKEND="tensorflow",
            PYTHONPATH=os.pathsep.join(
                [os.path.dirname(_HERE), environment.get("PYTHONPATH", "")]
            ),
        )
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, _WORKER_SCRIPT, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                cwd=os.path.dirname(_HERE),
                start_new_session=True,
            )

    def wait(self, deadline):
        try:
            self.process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            self.kill()
            return f"{self.name} timed out after {TIMEOUT_SECONDS} s"
        if self.process.returncode != 0:
            return f"{self.name} exited with {self.process.returncode}"
        return None

    def kill(self):
        if self.process.poll() is None:
            # The worker leads its own process group (start_new_session).
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, num_lines=40):
        with open(self.log_path) as log:
            return "".join(log.readlines()[-num_lines:])


@pytest.fixture(scope="session")
def distributed_runs(tmp_path_factory):
    """Runs every distributed setup once; returns outputs or failures."""
    from keras_brainprop._ports import free_local_ports

    directory = tmp_path_factory.mktemp("distribute")
    ports = free_local_ports(2)
    mirrored_output = directory / "mirrored.json"
    worker_outputs = [directory / f"worker_{i}.npz" for i in range(2)]
    processes = {
        "mirrored": [
            _Process(
                "mirrored",
                ["mirrored", str(mirrored_output)],
                directory / "mirrored.log",
            )
        ],
        "multi_worker": [
            _Process(
                f"worker {index}",
                [
                    "multi_worker",
                    str(output),
                    f"--worker_index={index}",
                    f"--ports={ports[0]},{ports[1]}",
                ],
                directory / f"worker_{index}.log",
            )
            for index, output in enumerate(worker_outputs)
        ],
    }
    deadline = time.monotonic() + TIMEOUT_SECONDS
    results = {}
    try:
        for setup, group in processes.items():
            failures = [p.wait(deadline) for p in group]
            failures = [failure for failure in failures if failure]
            if failures:
                for process in group:
                    process.kill()
                logs = "\n".join(
                    f"--- {p.name} ---\n{p.log_tail()}" for p in group
                )
                results[setup] = "; ".join(failures) + "\n" + logs
            elif setup == "mirrored":
                with open(mirrored_output) as file:
                    results[setup] = json.load(file)
            else:
                results[setup] = [dict(np.load(out)) for out in worker_outputs]
    finally:
        for group in processes.values():
            for process in group:
                process.kill()
    return results


def distributed_result(runs, setup):
    """The output of `setup` ("mirrored" or "multi_worker") in
    `distributed_runs`; fails the test with the workers' logs if it failed."""
    result = runs[setup]
    if isinstance(result, str):
        pytest.fail(result, pytrace=False)
    return result
