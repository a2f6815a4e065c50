r"""Any of the paper's experiments, data-parallel under tf.distribute.

Trains one of the paper's networks (`keras_brainprop.architectures`) on one
dataset with BrainProp (or EBP), with the paper's protocol
(`keras_brainprop.experiment`), under a `tf.distribute` strategy:

- `--strategy=default`: one device, the ordinary run.
- `--strategy=mirrored`: every local GPU (MirroredStrategy); with
  `--cpu_replicas=N`, N logical CPU devices instead, to try it anywhere.
- `--strategy=multi_worker`: one process per machine
  (MultiWorkerMirroredStrategy), each told the cluster by `TF_CONFIG` or by
  `--workers` and `--task_index`. Each worker uses all its local GPUs, or
  its CPU as one replica.
- `--strategy=tpu`: a Cloud TPU (`--tpu`, TPUStrategy); not tested here.

`--batch_size` is the global batch, shared by all replicas (the paper's 128
by default): every step averages the BrainProp loss over the global batch,
and each replica draws its own exploration, so N replicas train like one
device with the same batch. To scale the batch with the replicas, raise
`--batch_size` (and the learning rate) yourself.

Commands (from the repository root):

    # One process, two replicas on the CPU:
    python examples/distributed.py --strategy=mirrored --cpu_replicas=2 \
        --dataset=digits --architecture=mlp --epochs=20

    # Two worker processes on this machine; start each in its own shell:
    python examples/distributed.py --strategy=multi_worker \
        --workers=localhost:23456,localhost:23457 --task_index=0 \
        --dataset=digits --architecture=mlp --epochs=20
    python examples/distributed.py --strategy=multi_worker \
        --workers=localhost:23456,localhost:23457 --task_index=1 \
        --dataset=digits --architecture=mlp --epochs=20

    # A real cluster: run the same command on every machine, with
    # TF_CONFIG set by the cluster manager (or by hand) instead of flags:
    python examples/distributed.py --strategy=multi_worker \
        --dataset=cifar10 --architecture=deep --data_dir=/data

Only the chief (worker 0) prints and writes `--output_dir` and `--logdir`;
the other workers write theirs to a temporary directory they delete.
"""

import dataclasses
import json
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from keras_brainprop import architectures  # noqa: E402
from keras_brainprop import experiment  # noqa: E402

FLAGS = flags.FLAGS

experiment.define_flags(
    dataset="digits", architecture="mlp", algorithm="brainprop", epochs=None
)
flags.DEFINE_enum(
    "strategy",
    "mirrored",
    ["default", "mirrored", "multi_worker", "tpu"],
    "The tf.distribute strategy to train under.",
)
flags.DEFINE_integer(
    "cpu_replicas",
    0,
    "mirrored only: if > 0, split the CPU into this many logical devices "
    "and use them as the replicas instead of the GPUs.",
    lower_bound=0,
)
flags.DEFINE_list(
    "workers",
    None,
    "multi_worker only: host:port of every worker, in order. Sets "
    "TF_CONFIG; leave it out when TF_CONFIG is already set.",
)
flags.DEFINE_integer(
    "task_index", 0, "multi_worker only: this worker's index in --workers."
)
flags.DEFINE_string(
    "tpu", "local", "tpu only: the TPU's name or grpc:// address."
)


def make_strategy(name, cpu_replicas=0, tpu="local"):
    """Creates a strategy; call it before TensorFlow runs anything.

    Args:
        name: "default", "mirrored", "multi_worker" or "tpu".
        cpu_replicas: If > 0, this many logical CPU devices are the
            replicas of "mirrored".
        tpu: The TPU of "tpu", as `TPUClusterResolver` takes it.

    Returns:
        A `tf.distribute.Strategy`.
    """
    devices = None
    if cpu_replicas and name == "mirrored":
        # Only possible before TensorFlow initializes its devices.
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas
        )
        devices = [f"/cpu:{index}" for index in range(cpu_replicas)]
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and (not has_chief)
    )


def _shard_by_example(dataset):
    # In-memory data has no files to split between workers: each worker
    # takes its replicas' shares of every global batch (what AUTO falls
    # back to, with a warning).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(options)


class Backprop(keras.Model):
    """The EBP baseline, `network` trained by Keras' own train_step.

    Keras 3.15's fit() fails under tf.distribute when the first batch does
    not split evenly over the replicas (e.g. the 359 test images of
    digits over 2), and always across workers (keras-team/keras#20585).
    BrainPropModel works around both; this wrapper does the same for the
    plain network, so the baseline runs under the same strategies.
    """

    def __init__(self, network, **kwargs):
        super().__init__(name=f"backprop_{network.name}", **kwargs)
        self.network = network

    def call(self, inputs, training=None):
        return self.network(inputs, training=training)

    def train_step(self, data):
        return _step_logs(super().train_step(data))

    def test_step(self, data):
        return _step_logs(super().test_step(data))

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Build from one replica's share of the first batch, as
        # BrainPropModel does, instead of the replicas' average.
        strategy = self._distribute_strategy
        if iterator is not None and strategy is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda value: strategy.experimental_local_results(value)[0],
                    next(batches),
                )
                break
            iterator = None
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


def _step_logs(logs):
    # Across workers Keras averages each step log over axis 0: give the
    # scalars one.
    if tf.distribute.get_strategy().extended._in_multi_worker_mode():
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs


def train(seed_run):
    """`experiment.train`, with the data sharded across workers by example.

    Runs inside the strategy's scope (see `experiment.run`), so the network
    and optimizer variables are mirrored on every replica.
    """
    splits = dataclasses.replace(
        seed_run.splits,
        train=_shard_by_example(seed_run.splits.train),
        validation=_shard_by_example(seed_run.splits.validation),
    )
    seed_run = dataclasses.replace(seed_run, splits=splits)
    if seed_run.algorithm == "brainprop" or FLAGS.strategy == "default":
        return experiment.train(seed_run)
    network = architectures.build(
        seed_run.architecture,
        seed_run.input_shape,
        seed_run.num_classes,
        output_activation=seed_run.output_activation,
    )
    model = Backprop(network)
    model.compile(
        optimizer=keras.optimizers.SGD(seed_run.hparams.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model.fit(
        seed_run.train,
        validation_data=seed_run.validation,
        epochs=seed_run.epochs,
        callbacks=seed_run.callbacks,
        verbose=seed_run.verbose,
        shuffle=False,
    )


def main(argv):
    del argv  # Unused.
    tf.get_logger().setLevel("WARNING")  # tf.distribute logs every reduce.
    if FLAGS.strategy == "multi_worker" and FLAGS.workers:
        os.environ["TF_CONFIG"] = json.dumps(
            {
                "cluster": {"worker": FLAGS.workers},
                "task": {"type": "worker", "index": FLAGS.task_index},
            }
        )
    strategy = make_strategy(FLAGS.strategy, FLAGS.cpu_replicas, FLAGS.tpu)
    chief = _is_chief(strategy)
    kwargs = experiment.run_kwargs()
    scratch = None
    if not chief:
        # Every worker runs every callback (they take part in collective
        # ops), but only the chief's files are kept.
        scratch = tempfile.mkdtemp(prefix="kbp_worker_")
        for key in ("output_dir", "logdir"):
            if kwargs[key]:
                kwargs[key] = os.path.join(scratch, key)
        kwargs["verbose"] = 0
    logging.info(
        "%s strategy: %d replicas in sync, global batch %s",
        FLAGS.strategy,
        strategy.num_replicas_in_sync,
        kwargs["batch_size"] or "of the paper",
    )
    try:
        result = experiment.run(
            FLAGS.dataset,
            FLAGS.architecture,
            FLAGS.algorithm,
            strategy=strategy,
            train_fn=train,
            **kwargs,
        )
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if chief:
        print(
            f"{FLAGS.strategy} strategy, {strategy.num_replicas_in_sync} "
            "replicas in sync"
        )
        print(result.summary())
        if result.output_dir:
            print(f"Results written to {result.output_dir}")


if __name__ == "__main__":
    app.run(main)
