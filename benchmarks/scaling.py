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
throughput); and the machine's load average.

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

import _step_times  # noqa: E402
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

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
ALGORITHMS = ("brainprop", "backprop")
# Cores of each process of a setup.
CORES = {"default": [{0}], "mirrored": [{0, 1}], "multi_worker": [{0}, {1}]}
NUM_REPLICAS = {"default": 1, "mirrored": 2, "multi_worker": 2}


# The worker side: one process of one setup.


def _make_strategy(setup, ports, worker_index):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    if setup == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        # One op of each replica at a time, each on its own core.
        tf.config.threading.set_inter_op_parallelism_threads(2)
        return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    # Collectives block a thread while they wait for the other worker.
    tf.config.threading.set_inter_op_parallelism_threads(
        2 if setup == "multi_worker" else 1
    )
    if setup == "multi_worker":
        os.environ["TF_CONFIG"] = json.dumps(
            {
                "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                "task": {"type": "worker", "index": worker_index},
            }
        )
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _models(strategy, network_name):
    from keras_brainprop import algorithms
    from keras_brainprop import architectures

    models = {}
    with strategy.scope():
        for name in ALGORITHMS:
            algorithm = algorithms.get(name)
            network = architectures.build(
                network_name,
                INPUT_SHAPE,
                NUM_CLASSES,
                output_activation=algorithm.output_activation,
            )
            models[name] = algorithm.wrap(network)
            algorithm.compile(models[name], learning_rate=0.1, metrics=None)
    return models


def _dataset(global_batch):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.random((global_batch, *INPUT_SHAPE), dtype="float32")
    y = rng.integers(0, NUM_CLASSES, global_batch).astype("int32")
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    dataset = tf.data.Dataset.from_tensors((x, y)).repeat()
    return dataset.with_options(options)


def _timed_steps(model, dataset, steps):
    """Times a fit of `steps` + 1 steps from the end of the first.

    Returns:
        (steps timed, wall seconds, CPU seconds of this process).
    """
    times = _step_times.step_times(model, dataset, steps)
    # From the end of the first step: no iterator or callback start-up.
    (wall_start, cpu_start), (wall_end, cpu_end) = times[0], times[-1]
    return len(times) - 1, wall_end - wall_start, cpu_end - cpu_start


def run_worker(setup):
    os.sched_setaffinity(0, CORES[setup][FLAGS.worker_index])
    strategy = _make_strategy(setup, FLAGS.ports, FLAGS.worker_index)
    global_batch = FLAGS.batch_size
    if FLAGS.weak_scaling:
        global_batch *= strategy.num_replicas_in_sync
    dataset = _dataset(global_batch)
    models = {name: _models(strategy, name) for name in FLAGS.networks}
    for by_algorithm in models.values():
        for model in by_algorithm.values():
            _timed_steps(model, dataset, 2)  # Trace and warm up.
    print("ready", flush=True)
    for round_index, command in enumerate(sys.stdin):
        if command.strip() != "measure":
            break
        # A B B A, starting with the other algorithm every round: a load
        # that drifts during the round hits both alike.
        first, second = (
            ALGORITHMS[round_index % 2],
            ALGORITHMS[1 - round_index % 2],
        )
        result = {}
        for name, by_algorithm in models.items():
            totals = {algorithm: [0, 0.0, 0.0] for algorithm in ALGORITHMS}
            for algorithm in (first, second, second, first):
                timed = _timed_steps(
                    by_algorithm[algorithm], dataset, FLAGS.steps // 2
                )
                totals[algorithm] = [
                    a + b for a, b in zip(totals[algorithm], timed)
                ]
            for algorithm, (steps, wall, cpu) in totals.items():
                result[f"{name}/{algorithm}"] = [
                    steps * global_batch,
                    wall,
                    cpu,
                ]
        print(json.dumps(result), flush=True)


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
    load_before = os.getloadavg()[0]
    samples = _measure(list(FLAGS.setups), log_dir)
    load_after = os.getloadavg()[0]
    print()
    print(_table(samples))
    print(
        f"\nLoad average (1 min) of the machine: {load_before:.1f} before, "
        f"{load_after:.1f} after, on {os.cpu_count()} cores."
    )


if __name__ == "__main__":
    app.run(main)
