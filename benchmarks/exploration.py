r"""Which classes BrainProp learns, for several exploration rates.

BrainProp only learns about the action it chose. An output unit whose
Q-values stay below the others' is chosen only when the policy explores
(probability `epsilon`, 0.02 in the paper, of a Boltzmann draw), so the
class it stands for can stay unlearned for many epochs while every other
class is learned as well as by backprop. This script trains one network
with BrainProp for each `--epsilons` value (same seeds, data and protocol,
`keras_brainprop.experiment`) and reports, on the test set with the kept
(best-validation) weights:

- test accuracy, mean ± std over seeds;
- classes learned: classes whose recall is at least `--learned_recall`;
- the lowest recall of any class, and the mean Q-value of its output unit
  (about 0 for a unit that is never chosen);
- the best validation accuracy and its epoch, and seconds per epoch.

It prints a markdown table and, with `--output_dir`, writes `results.json`,
`results.md` and `curves.png` (validation accuracy per epoch of each rate)
next to the per-run folders of `experiment.run`.

Command (the paper's dense net on Fashion-MNIST, 30 epochs):

    python benchmarks/exploration.py --dataset=fashion_mnist \
        --architecture=dense --epsilons=0.02,0.2 --seeds=1 --epochs=30 \
        --output_dir=/tmp/exploration

Quick smoke run:

    python benchmarks/exploration.py --dataset=digits --architecture=mlp \
        --epochs=2 --max_train_examples=256
"""

import json
import os

import numpy as np
from absl import flags

from keras_brainprop import algorithms
from keras_brainprop import cli
from keras_brainprop import experiment
from keras_brainprop import policies

FLAGS = flags.FLAGS

cli.define_flags(
    dataset="fashion_mnist", architecture="dense", algorithm=None, verbose=2
)
flags.DEFINE_list(
    "epsilons",
    ["0.02", "0.2"],
    "Comma-separated exploration rates of `policies.EpsilonBoltzmann` "
    "(temperature 1); the paper uses 0.02.",
)


def _valid_epsilons(values):
    try:
        return bool(values) and all(0.0 <= float(v) <= 1.0 for v in values)
    except ValueError:
        return False


flags.register_validator(
    "epsilons",
    _valid_epsilons,
    message="--epsilons must be comma-separated numbers in [0, 1].",
)
flags.DEFINE_float(
    "learned_recall",
    0.5,
    "A class counts as learned when its test recall is at least this.",
)


def class_report(net, test_data, num_classes):
    """Per-class test recall and mean Q-value of each output unit.

    Args:
        net: The trained network (linear Q-value outputs).
        test_data: A `tf.data.Dataset` of (images, integer labels) batches.
        num_classes: Number of classes (output units).

    Returns:
        A dict with "recall" (per class; NaN for a class absent from the
        data) and "mean_q" (per output unit), as lists of floats.
    """
    q_values, labels = [], []
    for images, batch_labels in test_data:
        q_values.append(np.asarray(net(images, training=False)))
        labels.append(np.asarray(batch_labels).reshape(-1))
    q_values, labels = np.concatenate(q_values), np.concatenate(labels)
    predictions = q_values.argmax(axis=1)
    recall = [
        float(np.mean(predictions[labels == c] == c))
        if np.any(labels == c)
        else float("nan")
        for c in range(num_classes)
    ]
    return {"recall": recall, "mean_q": q_values.mean(axis=0).tolist()}


def train_and_report(reports):
    """A `train_fn` for `experiment.run` that also reports on the classes.

    Trains as `experiment.train` does. After `fit` (best weights restored),
    the class report of the seed's test data is appended to `reports`.
    """

    def train_fn(seed_run):
        history = experiment.train(seed_run)
        reports.append(
            class_report(
                history.model, seed_run.splits.test, seed_run.num_classes
            )
        )
        return history

    return train_fn


def summarize(result, reports, learned_recall):
    """One row of the table: the seeds' results and class reports."""
    recalls = np.array([report["recall"] for report in reports])
    # A class absent from the test data has a NaN recall: skip it.
    worst = np.nanargmin(recalls, axis=1)
    return {
        "seeds": result.seeds,
        "mean_test_accuracy": result.mean_test_accuracy,
        "std_test_accuracy": result.std_test_accuracy,
        "classes_learned": [
            int(np.sum(row >= learned_recall)) for row in recalls
        ],
        "lowest_recall": [float(np.nanmin(row)) for row in recalls],
        "lowest_recall_class": worst.tolist(),
        "mean_q_of_lowest_class": [
            report["mean_q"][c] for report, c in zip(reports, worst)
        ],
        "best_val_accuracy": [run.best_val_accuracy for run in result.runs],
        "best_epoch": result.best_epochs,
        "mean_seconds_per_epoch": result.mean_seconds_per_epoch,
        "class_reports": reports,
        "val_accuracy_curves": [
            run.history.get("val_accuracy", []) for run in result.runs
        ],
    }


def markdown_table(rows, num_classes):
    """The rows of `summarize`, keyed by epsilon, as a markdown table."""
    fmt = cli.format_number

    def joined(values, digits):
        return ", ".join(fmt(float(value), digits) for value in values)

    table = []
    for epsilon, row in rows.items():
        best = zip(row["best_val_accuracy"], row["best_epoch"])
        table.append(
            [
                f"{epsilon:g}",
                str(len(row["seeds"])),
                f"{fmt(row['mean_test_accuracy'])} ± "
                f"{fmt(row['std_test_accuracy'])}",
                ", ".join(str(n) for n in row["classes_learned"]),
                joined(row["lowest_recall"], 2),
                joined(row["mean_q_of_lowest_class"], 3),
                ", ".join(f"{value:.4f} ({epoch})" for value, epoch in best),
                fmt(row["mean_seconds_per_epoch"], 2),
            ]
        )
    header = [
        "epsilon",
        "seeds",
        "test accuracy",
        f"classes learned (of {num_classes})",
        "lowest class recall",
        "its unit's mean Q",
        "best val. acc. (epoch)",
        "s/epoch",
    ]
    return cli.markdown_table(header, table)


def main(argv):
    del argv  # Unused.
    epsilons = [float(value) for value in FLAGS.epsilons]
    run_kwargs = cli.run_kwargs()
    base_dir = run_kwargs.pop("output_dir")
    rows, num_classes = {}, None
    for epsilon in epsilons:
        reports = []
        policy = policies.EpsilonBoltzmann(epsilon=epsilon)
        result = experiment.run(
            FLAGS.dataset,
            FLAGS.architecture,
            algorithms.BrainProp(policy=policy),
            train_fn=train_and_report(reports),
            output_dir=(
                None
                if base_dir is None
                else os.path.join(base_dir, f"epsilon_{epsilon:g}")
            ),
            **run_kwargs,
        )
        print(f"epsilon {epsilon:g}: {result.summary()}", flush=True)
        num_classes = len(reports[0]["recall"])
        rows[epsilon] = summarize(result, reports, FLAGS.learned_recall)
    table = markdown_table(rows, num_classes)
    print(f"\n{table}\n", flush=True)
    if base_dir is None:
        return
    with open(os.path.join(base_dir, "results.json"), "w") as file:
        json.dump({f"{eps:g}": row for eps, row in rows.items()}, file)
    with open(os.path.join(base_dir, "results.md"), "w") as file:
        file.write(table + "\n")
    experiment.plot_curves(
        {
            f"epsilon {eps:g}": np.mean(
                _truncated(row["val_accuracy_curves"]), axis=0
            )
            for eps, row in rows.items()
        },
        os.path.join(base_dir, "curves.png"),
        title=f"{FLAGS.dataset} {FLAGS.architecture}: BrainProp by epsilon",
        ylabel="validation accuracy (mean over seeds)",
    )


def _truncated(curves):
    # Early stopping can end seeds at different epochs.
    length = min(len(curve) for curve in curves)
    return [curve[:length] for curve in curves]


if __name__ == "__main__":
    cli.run_script(main)
