r"""`python -m keras_brainprop`: BrainProp and backprop side by side.

By default trains the same small network (`architectures.build("mlp")`:
Flatten, Dense 256 + ReLU, linear output) on scikit-learn's bundled 8x8
handwritten digits, offline, once from reward with BrainProp and once with
error backpropagation (backprop, the paper's EBP: softmax output,
cross-entropy), and prints their test accuracies and epochs in a table. It
takes under a minute on two CPU cores.

    python -m keras_brainprop

Any dataset, network and number of seeds of the paper's protocol
(`keras_brainprop.experiment`) works the same way, e.g.

    python -m keras_brainprop --dataset=fashion_mnist --architecture=conv \
        --seeds=1,2,3 --epochs=30 --output_dir=/tmp/fashion_conv

It runs on the Keras backend that `KERAS_BACKEND` names ("tensorflow" by
default, "jax" or "torch"), and the table records it:

    KERAS_BACKEND=jax python -m keras_brainprop

Both train data-parallel with `--strategy`. Under TensorFlow, a
`tf.distribute` strategy: `--strategy=mirrored` (every local GPU, or
`--cpu_replicas=N` logical CPU devices) or `--strategy=multi_worker` (one
process per machine, the cluster given by `TF_CONFIG`; only the chief,
worker 0, writes `--output_dir` and `--logdir`). Under JAX,
`--strategy=data_parallel` (`keras.distribution.DataParallel` over every JAX
device, or `--cpu_replicas=N` CPU devices). PyTorch trains on one device:
Keras 3.15 has no distribution for it. E.g.

    python -m keras_brainprop --strategy=mirrored --cpu_replicas=2
    KERAS_BACKEND=jax python -m keras_brainprop --strategy=data_parallel \
        --cpu_replicas=2

BrainProp trains with the paper's setting (its policy, SGD at 0.1) unless
`--setting=recommended` (`keras_brainprop.settings`) chooses the one that
learns fastest as the number of classes grows; backprop keeps the
paper's protocol. `--policy` and `--learning_rate` replace those parts of
the setting, and the output says so:

    python -m keras_brainprop --dataset=fashion_mnist_100 \
        --architecture=dense --setting=recommended --epochs=10

`--help` lists every flag with its default.
"""

import time

import keras
import tensorflow as tf
from absl import flags

from keras_brainprop import algorithms
from keras_brainprop import architectures
from keras_brainprop import cli
from keras_brainprop import datasets
from keras_brainprop import experiment

FLAGS = flags.FLAGS

cli.define_flags(
    dataset="digits",
    architecture="mlp",
    algorithm="both",
    algorithm_choices=("both", *algorithms.NAMES),
    epochs=40,
    verbose=0,
    strategy="default",
)

# Backprop has neither: with --algorithm=backprop they are refused.
cli.define_setting_flags(brainprop_values=("both", "brainprop"))

_LABELS = {"brainprop": "BrainProp", "backprop": "backprop (EBP)"}


def format_table(results):
    """Returns a markdown table of `experiment.Result`s, one row each.

    Each row names the algorithm, its feedback rule, its policy ("–" for
    backprop, which has none), its setting and, last, the Keras backend it
    ran on. A run that diverged has no accuracy ("–").

    Args:
        results: A list of `experiment.Result`.

    Returns:
        The table as one string.

    Example:

    ```python
    print(format_table([experiment.run("digits", "mlp", epochs=5)]))
    ```
    """
    fmt = cli.format_number
    rows = [
        [
            _LABELS[result.algorithm],
            result.feedback,
            result.policy or "–",
            result.setting or "–",
            f"{fmt(result.mean_test_accuracy)} ± "
            f"{fmt(result.std_test_accuracy)}",
            fmt(result.mean_best_epoch, 1),
            f"{sum(result.epochs_run) / len(result.runs):.1f}",
            fmt(result.mean_seconds_per_epoch, 2),
            result.backend,
        ]
        for result in results
    ]
    header = [
        "algorithm",
        "feedback",
        "policy",
        "setting",
        "test accuracy",
        "best epoch",
        "epochs run",
        "s/epoch",
        "backend",
    ]
    return cli.markdown_table(header, rows)


def main(argv):
    del argv  # Unused.
    # Before any other op: it may split the CPU or join a cluster.
    strategy = cli.make_strategy(FLAGS.strategy, FLAGS.cpu_replicas)
    tf.get_logger().setLevel("WARNING")  # tf.distribute logs every reduce.
    backend = keras.backend.backend()
    start = time.perf_counter()
    # Only the chief reports; the other workers train alongside it.
    chief = cli.is_chief(strategy)
    brainprop = algorithms.BrainProp(**cli.brainprop_options())
    if FLAGS.algorithm == "both":
        to_train = [brainprop, algorithms.Backprop()]
    elif FLAGS.algorithm == "brainprop":
        to_train = [brainprop]
    else:
        to_train = [algorithms.get(FLAGS.algorithm)]
    results = []
    with cli.chief_outputs(cli.run_kwargs(), strategy) as kwargs:
        if chief:
            print(
                f"Training the {FLAGS.architecture!r} network on "
                f"{FLAGS.dataset!r} with "
                f"{', '.join(_LABELS[a.name] for a in to_train)}; seeds "
                f"{kwargs['seeds']}, at most {FLAGS.epochs or 500} epochs, "
                f"{cli.num_replicas(strategy)} replica(s), Keras backend "
                f"{backend!r}.",
                flush=True,
            )
            if brainprop in to_train:
                info = datasets.info(FLAGS.dataset)
                network = architectures.build(
                    FLAGS.architecture, info.input_shape, info.num_classes
                )
                for line in cli.setting_overrides(
                    brainprop, network, FLAGS.learning_rate
                ):
                    print(line, flush=True)
        for algorithm in to_train:
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
    # A diverged run has no result to report: the command fails.
    diverged = [result for result in results if result.diverged_seeds]
    if diverged:
        raise SystemExit(
            "Error: "
            + "; ".join(result.summary() for result in diverged)
            + ". Try a smaller --learning_rate. Received: learning_rate="
            + f"{diverged[0].hyperparameters.learning_rate:g}"
        )


if __name__ == "__main__":
    cli.run_script(main)
