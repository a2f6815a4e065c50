r"""BrainProp data-parallel, on one machine or many, on TensorFlow or JAX.

Trains one of the paper's networks on one dataset, from reward (BrainProp)
or by backprop, data-parallel as the Keras backend allows
(`kbp.cli.make_strategy`). Under TensorFlow (the default), a
`tf.distribute` strategy:

- `--strategy=mirrored` (the default there): every local GPU; with
  `--cpu_replicas=N`, N logical CPU devices instead, to try it anywhere.
- `--strategy=multi_worker`: one process per machine, each told the
  cluster by `TF_CONFIG` or by `--workers` and `--task_index`.
- `--strategy=tpu`: a Cloud TPU (`--tpu`); not tested here.

Under JAX (`KERAS_BACKEND=jax`), `--strategy=data_parallel` (the default
there): `keras.distribution.DataParallel` over every JAX device (GPUs if
there are any); with `--cpu_replicas=N`, N CPU devices instead. PyTorch
trains on one device (Keras 3.15 has no PyTorch distribution), and so does
`--strategy=default` on any backend: the ordinary run.

The model is built and compiled inside the strategy's scope, so its
variables are copied to every replica; `fit` is called as usual. The batch
size is the global batch, shared by the replicas (the paper's by default):
every step averages the loss over the global batch, so N replicas train
like one device with the same batch. Under tf.distribute each replica draws
its own exploration; under JAX the global batch draws as on one device.

    # One process, two replicas on the CPU:
    python examples/distributed.py --strategy=mirrored --cpu_replicas=2 \
        --dataset=digits --architecture=mlp --epochs=20
    KERAS_BACKEND=jax python examples/distributed.py \
        --strategy=data_parallel --cpu_replicas=2 \
        --dataset=digits --architecture=mlp --epochs=20

    # Two worker processes on this machine; start each in its own shell:
    python examples/distributed.py --strategy=multi_worker \
        --workers=localhost:23456,localhost:23457 --task_index=0 \
        --dataset=digits --architecture=mlp --epochs=20
    python examples/distributed.py --strategy=multi_worker \
        --workers=localhost:23456,localhost:23457 --task_index=1 \
        --dataset=digits --architecture=mlp --epochs=20

    # A real cluster: the same command on every machine, with TF_CONFIG
    # set by the cluster manager (or by hand) instead of the two flags:
    python examples/distributed.py --strategy=multi_worker \
        --dataset=cifar10 --architecture=deep --data_dir=/data

Every worker trains and evaluates (they take part in every all-reduce);
only the chief, worker 0, prints.
"""

import functools
import json
import os

import keras
import tensorflow as tf
from absl import flags

import keras_brainprop as kbp
from keras_brainprop import cli

# Each backend's own data-parallel setup; PyTorch has none.
_DEFAULT_STRATEGY = {"tensorflow": "mirrored", "jax": "data_parallel"}
cli.define_strategy_flags(
    _DEFAULT_STRATEGY.get(keras.backend.backend(), "default"),
    cli.STRATEGIES,
    "mirrored and data_parallel: N CPU replicas.",
)
flags.DEFINE_list("workers", None, "multi_worker: every host:port, in order.")
flags.DEFINE_integer(
    "task_index", 0, "multi_worker: this worker's index.", lower_bound=0
)
flags.DEFINE_string("tpu", "local", "tpu: the TPU's name or grpc:// address.")
flags.DEFINE_enum(
    "dataset", "digits", kbp.datasets.NAMES, "The data.", case_sensitive=False
)
cli.define_network_flags(kbp.architectures.ARCHITECTURES, "mlp")
flags.DEFINE_integer("epochs", 20, "Training epochs.", lower_bound=1)
flags.DEFINE_integer(
    "batch_size", None, "Global batch; default the paper's.", lower_bound=1
)
flags.DEFINE_string("data_dir", None, "A folder holding the dataset.")
flags.DEFINE_integer("seed", 0, "Seeds weights, data split and exploration.")
FLAGS = flags.FLAGS


def main(argv):
    del argv  # Unused.
    if FLAGS.workers:
        os.environ["TF_CONFIG"] = json.dumps(
            {
                "cluster": {"worker": FLAGS.workers},
                "task": {"type": "worker", "index": FLAGS.task_index},
            }
        )
    # Before any other op: it may split the CPU or join a cluster.
    strategy = cli.make_strategy(FLAGS.strategy, FLAGS.cpu_replicas, FLAGS.tpu)
    tf.get_logger().setLevel("WARNING")  # tf.distribute logs every reduce.
    keras.utils.set_random_seed(FLAGS.seed)
    hparams = kbp.architectures.hyperparameters(FLAGS.architecture)

    # Each tf.distribute worker reads the whole dataset and keeps its
    # replicas' share of every global batch (in-memory data has no files to
    # split); other backends ignore the option.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    load = functools.partial(
        kbp.datasets.load, FLAGS.dataset, data_dir=FLAGS.data_dir
    )
    batch_size = FLAGS.batch_size or hparams.batch_size
    train = load("train", batch_size=batch_size, seed=FLAGS.seed)
    validation = load("validation", seed=FLAGS.seed)
    test = load("test")
    info = kbp.datasets.info(FLAGS.dataset)

    with cli.strategy_scope(strategy):
        algorithm = kbp.algorithms.get(FLAGS.algorithm)
        network = kbp.architectures.build(
            FLAGS.architecture,
            info.input_shape,
            info.num_classes,
            output_activation=algorithm.output_activation,
        )
        model = algorithm.wrap(network)
        algorithm.compile(model, learning_rate=hparams.learning_rate)

    chief = cli.is_chief(strategy)
    history = model.fit(
        train.with_options(options),
        validation_data=validation.with_options(options),
        epochs=FLAGS.epochs,
        callbacks=[
            kbp.callbacks.EpochLearningRate(hparams.learning_rate_at),
            keras.callbacks.TerminateOnNaN(),
        ],
        verbose=2 if chief else 0,
        shuffle=False,  # The loader reshuffles the training set every epoch.
    )
    # A diverged network (NaN weights) has no test accuracy to report.
    cli.raise_if_diverged(history, hparams.learning_rate)
    test_logs = model.evaluate(
        test.with_options(options), return_dict=True, verbose=0
    )
    if chief:
        print(
            f"{cli.num_replicas(strategy)} replicas in sync, Keras backend "
            f"{keras.backend.backend()}"
        )
        print(f"Test accuracy: {test_logs['accuracy']:.4f}")


if __name__ == "__main__":
    cli.run_script(main)  # A bad flag or missing data: one message.
