"""The worker side of benchmarks/scaling.py: one process of one setup.

benchmarks/scaling.py starts each setup's processes as `scaling.py
--role=<setup>`; `run_worker` pins the process to its cores, builds the
setup's strategy and both algorithms' models, warms them up, prints "ready",
then answers every "measure" on stdin with one line of JSON: per
"network/algorithm", [images, wall seconds, CPU seconds] of one round.
"""

import json
import os
import sys

import _step_times
from absl import flags

FLAGS = flags.FLAGS

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
ALGORITHMS = ("brainprop", "backprop")
# Cores of each process of a setup.
CORES = {"default": [{0}], "mirrored": [{0, 1}], "multi_worker": [{0}, {1}]}


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
