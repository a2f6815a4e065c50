r"""`python -m keras_brainprop`: BrainProp and backprop side by side.

By default trains the same small network (`architectures.build("mlp")`:
Flatten, Dense 256 + ReLU, linear output) on scikit-learn's bundled 8x8
handwritten digits, offline, once from reward with BrainProp and once with
error backpropagation (EBP: softmax output, cross-entropy), and prints
their test accuracies and epochs in a table. It takes under a minute on two
CPU cores.

    python -m keras_brainprop

Any dataset, network and number of seeds of the paper's protocol
(`keras_brainprop.experiment`) works the same way, e.g.

    python -m keras_brainprop --dataset=fashion_mnist --architecture=conv \
        --seeds=1,2,3 --epochs=30 --output_dir=/tmp/fashion_conv

Both train data-parallel under a `tf.distribute` strategy with
`--strategy=mirrored` (every local GPU, or `--cpu_replicas=N` logical CPU
devices) or `--strategy=multi_worker` (one process per machine, the cluster
given by `TF_CONFIG`; only the chief, worker 0, writes `--output_dir` and
`--logdir`), e.g.

    python -m keras_brainprop --strategy=mirrored --cpu_replicas=2

Flags: --dataset, --architecture, --algorithm (both, brainprop or ebp),
--epochs, --seeds (comma-separated), --data_dir, --logdir (TensorBoard),
--output_dir (history, weights, plots, summary), --verbose (1: Keras
progress bars), --strategy (default, mirrored or multi_worker),
--cpu_replicas, and overrides --batch_size, --learning_rate, --patience,
--max_train_examples.
"""

import time

import tensorflow as tf
from absl import app
from absl import flags

from keras_brainprop import cli
from keras_brainprop import experiment

FLAGS = flags.FLAGS

cli.define_flags(
    dataset="digits",
    architecture="mlp",
    algorithm="both",
    algorithms=("both", *experiment.ALGORITHMS),
    epochs=40,
    verbose=0,
    strategy="default",
)

_LABELS = {"brainprop": "BrainProp", "ebp": "backprop (EBP)"}


def format_table(results):
    """Returns a markdown table of `experiment.Result`s, one row each.

    Args:
        results: A list of `experiment.Result`.

    Returns:
        The table as one string.

    Example:

    >>> print(format_table([experiment.run("digits", "mlp", epochs=5)]))
    """
    fmt = experiment.format_number
    lines = [
        "| algorithm | test accuracy | best epoch | epochs run | s/epoch |",
        "| --- | --- | --- | --- | --- |",
    ]
    for result in results:
        epochs_run = sum(result.epochs_run) / len(result.runs)
        lines.append(
            f"| {_LABELS[result.algorithm]} | "
            f"{fmt(result.mean_test_accuracy)} ± "
            f"{fmt(result.std_test_accuracy)} | "
            f"{fmt(result.mean_best_epoch, 1)} | {epochs_run:.1f} | "
            f"{fmt(result.mean_seconds_per_epoch, 2)} |"
        )
    return "\n".join(lines)


def main(argv):
    del argv  # Unused.
    # Before any other TensorFlow op: it may split the CPU or join a cluster.
    strategy = cli.make_strategy(FLAGS.strategy, FLAGS.cpu_replicas)
    tf.get_logger().setLevel("WARNING")  # tf.distribute logs every reduce.
    start = time.perf_counter()
    # Only the chief reports; the other workers train alongside it.
    chief = cli.is_chief(strategy)
    algorithms = (
        experiment.ALGORITHMS
        if FLAGS.algorithm == "both"
        else [FLAGS.algorithm]
    )
    results = []
    with cli.chief_outputs(cli.run_kwargs(), strategy) as kwargs:
        if chief:
            print(
                f"Training the {FLAGS.architecture!r} network on "
                f"{FLAGS.dataset!r} with "
                f"{', '.join(_LABELS[name] for name in algorithms)}; seeds "
                f"{kwargs['seeds']}, at most {FLAGS.epochs or 500} epochs, "
                f"{strategy.num_replicas_in_sync} replica(s).",
                flush=True,
            )
        for algorithm in algorithms:
            result = experiment.run(
                FLAGS.dataset,
                FLAGS.architecture,
                algorithm,
                strategy=strategy,
                **kwargs,
            )
            if chief:
                print(f"  {result.summary()}", flush=True)
            results.append(result)
    if not chief:
        return
    print()
    print(format_table(results))
    print(f"\nWall time: {time.perf_counter() - start:.1f} s")
    if FLAGS.output_dir:
        print(f"Results written to {FLAGS.output_dir}")


if __name__ == "__main__":
    app.run(main)
