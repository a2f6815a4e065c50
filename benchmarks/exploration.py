r"""Exploration policies side by side, each beside backprop, in one run.

BrainProp only learns about the action it chose. An output unit that is
never the greedy choice learns only when the policy explores, so a class can
stay unlearned for many epochs while backprop, which trains every output
unit on every sample, learns it at once. This script trains one network
with backprop and with BrainProp under each `--policies` entry (same seeds,
data and protocol, `keras_brainprop.experiment`) and reports per network
and policy, on the test set with the kept (best-validation) weights:

- test accuracy, mean ± std over seeds;
- epochs to 99% of backprop's best validation accuracy (mean over the seeds
  that reach it; how many did is in brackets), and that mean over
  backprop's own;
- the first epoch whose `greedy_coverage` (the share of actions that were
  the greedy choice of at least one training sample) is 1.0, per seed;
- classes whose test recall is below `--learned_recall`, per seed;
- seconds per epoch.

A policy is given as `NAME[:PARAMETER=VALUE...][@LEARNING_RATE]`: "paper"
(the paper's `EpsilonBoltzmann(0.02, 1)`) or a name of
`keras_brainprop.policies.get` with its constructor's parameters, e.g.
`epsilon_boltzmann:epsilon=0.2` or `discovery:bonus=0.03:min_share=0.5`.
`@LEARNING_RATE` trains that BrainProp run at its own SGD learning rate,
e.g. `discovery@1.0`, while backprop keeps `--learning_rate` (unset: the
paper's 0.1): BrainProp's update trains one output unit per sample, so it
may want a larger rate than backprop's.

Writes `results.json` (rewritten after every run, so an interrupted run
keeps what it finished), `results.md` and `curves_<network>.png` (mean
validation accuracy per epoch) into `--output_dir`, next to the per-run
folders of `experiment.run`. `--merge` pools the `results.json` of runs made
one seed or network per process.

It runs on the Keras backend `KERAS_BACKEND` names; the line above the
table names it, and `--merge` pools runs of one backend only.

Command (the tables of docs/policies.md: one process per network and
seed, merged):

    python benchmarks/exploration.py --architecture=dense --seeds=1 \
        --epochs=15 --max_train_examples=12000 \
        --output_dir=/tmp/exploration_dense_s1
    python benchmarks/exploration.py \
        --merge=/tmp/exploration_dense_s1,/tmp/exploration_dense_s2 \
        --output_dir=/tmp/exploration

A policy added later needs no new backprop runs: train it with
`--notrain_backprop` and merge it with the earlier run of the same seeds.

Quick smoke run:

    python benchmarks/exploration.py --dataset=digits --architecture=mlp \
        --epochs=2 --max_train_examples=256 --output_dir=/tmp/exploration_smoke
"""

import os

import _pooling
import _specs
import numpy as np
from absl import flags

from keras_brainprop import algorithms
from keras_brainprop import cli
from keras_brainprop import experiment

FLAGS = flags.FLAGS

cli.define_flags(
    dataset="fashion_mnist", architecture="dense", algorithm=None, verbose=2
)
flags.DEFINE_list(
    "policies",
    [
        "paper",
        "discovery",
        "epsilon_boltzmann:epsilon=0.2",
        "discovery:bonus=0.03",
    ],
    "Comma-separated BrainProp policies, each NAME[:PARAMETER=VALUE...]: "
    "'paper' or a name of keras_brainprop.policies.get.",
)
flags.DEFINE_float(
    "learned_recall",
    0.5,
    "A class counts as learned when its test recall is at least this.",
)
flags.DEFINE_bool(
    "train_backprop",
    True,
    "Train backprop beside the policies: its best validation accuracy is "
    "the target of the epochs column. --notrain_backprop trains the "
    "policies only, to --merge with an earlier run of this script that has "
    "backprop on the same seeds and protocol.",
)
flags.DEFINE_list(
    "merge",
    [],
    "`results.json` files (or their folders) of earlier runs of this "
    "script: nothing is trained, their runs are pooled and reported.",
)

BACKPROP = "backprop"
parse_learning_rate = _specs.parse_learning_rate
parse_policy = _specs.parse_policy


def _valid_policies(specs):
    if not specs or BACKPROP in specs:
        return False
    try:
        for spec in specs:
            parse_policy(spec)
            if _specs.parse_training(spec)[0] not in (None, "sgd"):
                raise ValueError(
                    "This benchmark trains with SGD (benchmarks/actions.py "
                    f"compares optimizers). Received: {spec!r}"
                )
    except ValueError as error:
        raise flags.ValidationError(f"--policies: {error}") from None
    return True


flags.register_validator(
    "policies",
    _valid_policies,
    message="--policies must list policies, not 'backprop' (always trained).",
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
    the class report of the seed's test data is stored in `reports` under
    the seed.
    """

    def train_fn(seed_run):
        history = experiment.train(seed_run)
        network = getattr(history.model, "network", history.model)
        reports[str(seed_run.seed)] = class_report(
            network, seed_run.splits.test, seed_run.num_classes
        )
        return history

    return train_fn


def first_full_coverage(history):
    """The first (1-based) epoch with `greedy_coverage` 1.0, or None."""
    return _pooling.epochs_to_reach(history.get("greedy_coverage", []), 1.0)


def _key(entry):
    return (entry["result"].architecture, entry["policy"])


def _per_seed(values):
    return ", ".join("–" if value is None else str(value) for value in values)


def table(entries, learned_recall):
    """The markdown table of pooled entries (see the module docstring)."""
    fmt = cli.format_number
    by_key = {_key(entry): entry for entry in entries}
    rows = []
    for network in dict.fromkeys(key[0] for key in by_key):
        baseline = by_key.get((network, BACKPROP))
        if baseline is None:
            raise ValueError(
                f"Network {network!r} needs a backprop run: its best "
                "validation accuracy is the target."
            )
        target = _pooling.target_accuracy(baseline["result"])
        baseline_epochs = None
        for (name, policy), entry in by_key.items():
            if name != network:
                continue
            result = entry["result"]
            reached = [
                _pooling.epochs_to_reach(h.get("val_accuracy", []), target)
                for h in result.histories
            ]
            hits = [epochs for epochs in reached if epochs is not None]
            mean_epochs = float(np.mean(hits)) if hits else None
            if policy == BACKPROP:
                baseline_epochs = mean_epochs
            ratio = None
            if mean_epochs is not None and baseline_epochs:
                ratio = mean_epochs / baseline_epochs
            coverage = "n/a"
            unlearned = "n/a"
            if policy != BACKPROP:
                coverage = _per_seed(
                    first_full_coverage(h) for h in result.histories
                )
                unlearned = _per_seed(
                    int(
                        np.sum(
                            np.array(entry["reports"][str(s)]["recall"])
                            < learned_recall
                        )
                    )
                    for s in result.seeds
                )
            rows.append(
                [
                    network,
                    policy,
                    str(len(result.runs)),
                    f"{fmt(result.mean_test_accuracy)} ± "
                    f"{fmt(result.std_test_accuracy)}",
                    f"{fmt(mean_epochs, 1)} ({len(hits)}/{len(reached)})",
                    fmt(ratio, 2),
                    coverage,
                    unlearned,
                    fmt(result.mean_seconds_per_epoch, 1),
                ]
            )
    header = [
        "network",
        "policy",
        "seeds",
        "test accuracy (mean ± std)",
        f"epochs to {_pooling.TARGET_FRACTION:.0%} of backprop's best",
        "vs backprop",
        "first epoch with greedy_coverage 1.0",
        f"classes with recall < {learned_recall:g}",
        "s/epoch",
    ]
    return cli.markdown_table(header, rows)


def report(entries, learned_recall, output_dir=None):
    """Prints the table and, with `output_dir`, writes the results.

    Without backprop's runs of a network (`--notrain_backprop`) there is no
    target: the results are written and a note takes the table's place.
    """
    keys = {_key(entry) for entry in entries}
    missing = [
        network
        for network in dict.fromkeys(key[0] for key in keys)
        if (network, BACKPROP) not in keys
    ]
    if missing:
        markdown = (
            f"No backprop run of {', '.join(missing)} to compare with: "
            "--merge these results with a run that has one."
        )
    else:
        markdown = table(entries, learned_recall)
    _pooling.write_results(entries, markdown, output_dir)
    if output_dir is None:
        return markdown
    for network in dict.fromkeys(_key(entry)[0] for entry in entries):
        experiment.plot_curves(
            {
                entry["policy"]: _pooling.mean_curve(entry["result"].histories)
                for entry in entries
                if _key(entry)[0] == network
            },
            os.path.join(output_dir, f"curves_{network}.png"),
            title=f"{network}: validation accuracy per exploration policy",
            ylabel="validation accuracy (mean over seeds)",
        )
    return markdown


def main(argv):
    del argv  # Unused.
    run_kwargs = cli.run_kwargs()
    output_dir = run_kwargs.pop("output_dir")
    if output_dir is not None:
        os.makedirs(output_dir, exist_ok=True)
    if FLAGS.merge:
        entries = _pooling.load_entries(FLAGS.merge, "exploration.py", _key)
        report(entries, FLAGS.learned_recall, output_dir)
        return
    # Backprop first: its best validation accuracy is every run's target.
    runs = [(BACKPROP, algorithms.Backprop())] if FLAGS.train_backprop else []
    runs += [
        (spec, algorithms.BrainProp(policy=parse_policy(spec)))
        for spec in FLAGS.policies
    ]
    entries = []
    for label, algorithm in runs:
        reports = {}
        folder = label.replace(":", "_").replace("=", "").replace("@", "_lr")
        kwargs = dict(run_kwargs)
        rate = parse_learning_rate(label)
        if rate is not None:
            kwargs["learning_rate"] = rate
        result = experiment.run(
            FLAGS.dataset,
            FLAGS.architecture,
            algorithm,
            train_fn=train_and_report(reports),
            output_dir=(
                None if output_dir is None else os.path.join(output_dir, folder)
            ),
            **kwargs,
        )
        print(f"{label}: {result.summary()}", flush=True)
        entries.append({"policy": label, "result": result, "reports": reports})
        report(entries, FLAGS.learned_recall, output_dir)


if __name__ == "__main__":
    cli.run_script(main)
