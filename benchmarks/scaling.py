r"""Training throughput under tf.distribute: 1 vs 2 workers, BrainProp vs EBP.

Measures images per second of training steps of the same network trained
with BrainProp (`kbp.wrap`) and with backprop (EBP: softmax output,
cross-entropy), under three setups on this machine's CPU cores:

- `default`: one process on one core (the plain single-device run);
- `mirrored`: one process on two cores, MirroredStrategy over two logical
  CPU devices;
- `multi_worker`: two processes on 127.0.0.1, one core each,
  MultiWorkerMirroredStrategy (gradients all-reduced over gRPC).

Every process is pinned to its cores (`os.sched_setaffinity`) with one
intra-op thread per replica. All processes start first and wait; then, for
`--rounds` rounds, each setup in turn (rotating the order) times `--steps`
steps of each algorithm, as A B B A halves with the first algorithm
alternating between rounds, so load from other programs hits all variants
alike. Printed: medians over rounds of images per second; the median and
range of each round's BrainProp / EBP ratio under each setup, from wall
time and from the CPU time of the setup's processes (which other programs'
load does not inflate, but which leaves out time spent waiting for the
other worker); the scaling efficiency, throughput / (cores x single-core
throughput).

The global batch is `--batch_size` (the paper's 128) in every setup, split
over the replicas (strong scaling: every setup computes the same SGD
steps); `--weak_scaling` gives every replica the full batch instead.

Command (about 4 minutes on our 2 shared cores; add `--networks=dense,conv`
for the conv net too):

    python benchmarks/scaling.py --rounds=7 --steps=20

Networks: the paper's `dense` (784-1500-1000-500-10) and `conv` nets from
`keras_brainprop.architectures`, on 28x28x1 inputs (synthetic data: speed
does not depend on the pixels). Needs Linux (CPU affinity) and 2 cores.

tf.distribute trains under the TensorFlow backend only: with
`KERAS_BACKEND=jax` or `torch` the script stops with a message saying so.
"""

import json
import os
import select
import signal
import statistics
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _scaling_worker  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("networks", ["dense"], "Networks to time: dense, conv.")
flags.DEFINE_integer(
    "steps", 20, "Timed training steps per algorithm, setup and round."
)
flags.DEFINE_integer("rounds", 7, "Rounds of measurements (medians kept).")
flags.DEFINE_integer("batch_size", 128, "Global batch size.")
flags.DEFINE_bool(
    "weak_scaling", False, "Give every replica --batch_size examples."
)
flags.DEFINE_list(
    "setups", ["default", "mirrored", "multi_worker"], "Setups to time."
)
flags.DEFINE_integer(
    "timeout", 600, "Seconds any worker may take to start or to answer."
)
# Set by the benchmark for the processes it starts.
flags.DEFINE_string("role", "main", "main, or a setup when run as a worker.")
flags.DEFINE_integer("worker_index", 0, "This worker's index (workers).")
flags.DEFINE_list("ports", [], "The multi_worker cluster's ports (workers).")

INPUT_SHAPE = _scaling_worker.INPUT_SHAPE
NUM_CLASSES = _scaling_worker.NUM_CLASSES
ALGORITHMS = _scaling_worker.ALGORITHMS
CORES = _scaling_worker.CORES
run_worker = _scaling_worker.run_worker
NUM_REPLICAS = {"default": 1, "mirrored": 2, "multi_worker": 2}


# The main side: start the setups' processes, alternate, print the table.


class _Worker:
    """One benchmark process, driven line by line over stdin / stdout."""

    def __init__(self, setup, index, ports, log_dir):
        self.name = f"{setup}[{index}]"
        self.log_path = os.path.join(log_dir, f"{setup}_{index}.log")
        args = [
            sys.executable,
            os.path.abspath(__file__),
            f"--role={setup}",
            f"--worker_index={index}",
            f"--ports={','.join(map(str, ports))}",
            f"--networks={','.join(FLAGS.networks)}",
            f"--steps={FLAGS.steps}",
            f"--batch_size={FLAGS.batch_size}",
            f"--weak_scaling={FLAGS.weak_scaling}",
        ]
        environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1"}
        environment.pop("TF_CONFIG", None)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=environment,
                start_new_session=True,
            )

    def send(self, line):
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def read(self):
        ready, _, _ = select.select(
            [self.process.stdout], [], [], FLAGS.timeout
        )
        line = self.process.stdout.readline() if ready else ""
        if not line:
            with open(self.log_path) as log:
                tail = "".join(log.readlines()[-20:])
            raise RuntimeError(f"{self.name} gave no answer:\n{tail}")
        return line.strip()

    def stop(self):
        if self.process.poll() is None:
            try:
                self.send("quit")
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                # The worker leads its own process group.
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _measure(setups, log_dir):
    """Returns {setup: {"network/algorithm": [images/s per round]}}."""
    groups = {}
    # Imported here: the main process needs TensorFlow only for this.
    from keras_brainprop._ports import free_local_ports

    ports = free_local_ports(2)
    try:
        for setup in setups:
            groups[setup] = [
                _Worker(setup, index, ports, log_dir)
                for index in range(len(CORES[setup]))
            ]
        for group in groups.values():
            for worker in group:
                if worker.read() != "ready":
                    raise RuntimeError(f"{worker.name} did not start")
        samples = {setup: {} for setup in setups}
        for round_index in range(FLAGS.rounds):
            shift = round_index % len(setups)
            for setup in setups[shift:] + setups[:shift]:
                for worker in groups[setup]:
                    worker.send("measure")
                # Workers of one setup run in lockstep; take worker 0's.
                answers = [json.loads(w.read()) for w in groups[setup]]
                for key, (images, wall, _) in answers[0].items():
                    # Images per second, and per CPU-second of all the
                    # setup's processes (blind to other programs' load).
                    cpu = sum(answer[key][2] for answer in answers)
                    by_key = samples[setup]
                    by_key.setdefault(key, []).append(images / wall)
                    by_key.setdefault(f"{key}/cpu", []).append(images / cpu)
            print(f"round {round_index + 1} of {FLAGS.rounds} done", flush=True)
        return samples
    finally:
        for group in groups.values():
            for worker in group:
                worker.stop()


def _ratios(by_key, network, suffix=""):
    # Each round's ratio pairs runs measured side by side.
    return [
        brainprop / backprop
        for brainprop, backprop in zip(
            by_key[f"{network}/brainprop{suffix}"],
            by_key[f"{network}/backprop{suffix}"],
        )
    ]


def _table(samples):
    setups = list(samples)
    medians = {
        setup: {k: statistics.median(v) for k, v in by_key.items()}
        for setup, by_key in samples.items()
    }
    lines = [
        "| network | setup | cores | BrainProp img/s | EBP img/s "
        "| BrainProp / EBP (range) | per CPU-second: BrainProp / EBP "
        "(range) |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for network in FLAGS.networks:
        for setup in setups:
            cells = []
            for suffix in ("", "/cpu"):
                ratios = _ratios(samples[setup], network, suffix)
                cells.append(
                    f"{statistics.median(ratios):.3f} "
                    f"({min(ratios):.2f} - {max(ratios):.2f})"
                )
            lines.append(
                f"| {network} | {setup} | {NUM_REPLICAS[setup]} "
                f"| {medians[setup][f'{network}/brainprop']:.0f} "
                f"| {medians[setup][f'{network}/backprop']:.0f} "
                f"| {cells[0]} | {cells[1]} |"
            )
    if "default" in medians and len(setups) > 1:
        lines += [
            "",
            "Scaling efficiency, img/s / (cores x 1-core img/s):",
            "",
            "| network | setup | BrainProp | EBP |",
            "| --- | --- | ---: | ---: |",
        ]
        for network in FLAGS.networks:
            for setup in setups:
                if setup == "default":
                    continue
                cells = [
                    medians[setup][f"{network}/{algorithm}"]
                    / (
                        NUM_REPLICAS[setup]
                        * medians["default"][f"{network}/{algorithm}"]
                    )
                    for algorithm in ALGORITHMS
                ]
                lines.append(
                    f"| {network} | {setup} | {cells[0]:.2f} | {cells[1]:.2f} |"
                )
    return "\n".join(lines)


def main(argv):
    del argv  # Unused.
    if FLAGS.role != "main":
        run_worker(FLAGS.role)
        return
    import keras

    if keras.backend.backend() != "tensorflow":
        raise app.UsageError(
            "benchmarks/scaling.py times tf.distribute setups, which train "
            "under the TensorFlow backend only; run it with "
            "KERAS_BACKEND=tensorflow. Received: KERAS_BACKEND="
            f"{keras.backend.backend()!r}"
        )
    if len(os.sched_getaffinity(0)) < 2:
        raise app.UsageError("The benchmark needs 2 CPU cores.")
    import tempfile

    log_dir = tempfile.mkdtemp(prefix="kbp_scaling_")
    scaling = "weak" if FLAGS.weak_scaling else "strong"
    print(
        f"global batch {FLAGS.batch_size} ({scaling} scaling), "
        f"{FLAGS.steps} timed steps per algorithm, setup and round (A B B "
        f"A), median of {FLAGS.rounds} rounds; worker logs in {log_dir}",
        flush=True,
    )
    samples = _measure(list(FLAGS.setups), log_dir)
    print()
    print(_table(samples))


if __name__ == "__main__":
    app.run(main)
