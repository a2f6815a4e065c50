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
the other workers write theirs to a temporary directory they delete
(`cli.chief_outputs`). The strategy comes from
`cli.make_strategy`, and under it `experiment.compile_model` trains
the EBP baseline through `keras_brainprop.backprop_model.BackpropModel`;
`python -m keras_brainprop --strategy=...` runs the same way.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from keras_brainprop import cli  # noqa: E402
from keras_brainprop import experiment  # noqa: E402

FLAGS = flags.FLAGS

cli.define_flags(
    dataset="digits",
    architecture="mlp",
    algorithm="brainprop",
    epochs=None,
    strategy="mirrored",
    strategies=cli.STRATEGIES,
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
    strategy = cli.make_strategy(FLAGS.strategy, FLAGS.cpu_replicas, FLAGS.tpu)
    chief = cli.is_chief(strategy)
    with cli.chief_outputs(cli.run_kwargs(), strategy) as kwargs:
        logging.info(
            "%s strategy: %d replicas in sync, global batch %s",
            FLAGS.strategy,
            strategy.num_replicas_in_sync,
            kwargs["batch_size"] or "of the paper",
        )
        # Inside the strategy's scope, so the network and optimizer
        # variables are mirrored on every replica.
        result = experiment.run(
            FLAGS.dataset,
            FLAGS.architecture,
            FLAGS.algorithm,
            strategy=strategy,
            **kwargs,
        )
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
