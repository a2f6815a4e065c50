r"""How BrainProp's learning time grows with the number of actions (classes).

BrainProp trains the output unit of the chosen action only, and finds the
right action only by exploring, so with `K` actions it may need more epochs
than backprop, which trains every output on every sample. This script
trains one network on one task with backprop (softmax cross-entropy, the
paper's protocol) and with BrainProp under each `--settings` entry, and
reports per network and number of actions, on the test set with the kept
(best-validation) weights:

- test accuracy, mean ± std over seeds;
- epochs to 99% of backprop's best validation accuracy (mean over
  backprop's seeds, within the same epoch budget), each seed's epochs, and
  the ratio of the mean over the seeds that reach it to backprop's mean;
- the first epoch whose `greedy_coverage` is 1.0, per seed.

Tasks with more actions are the many-class composites of
`keras_brainprop.datasets` (`fashion_mnist_100`, `fashion_mnist_1000`,
`digits_100`, ...): run one process per task and seed, then `--merge`
their folders into one table and `actions_<network>.png`, the epoch ratio
against the number of actions, one line per setting, with the paper's
range (1-3.5x) shaded.

A setting is "paper" (the paper's policy, SGD at 0.1), "recommended"
(`kbp.settings`; "recommended@RATE" at another rate) or
`POLICY[:PARAMETER=VALUE...][@[OPTIMIZER=]RATE]`, e.g. `discovery@1.0`
(SGD at 1.0) or `square_cb:gamma=1000@adam=0.001` (see `_specs.py`).
Backprop, the target, always trains at `--learning_rate` (unset: the
paper's 0.1); a setting `backprop@[OPTIMIZER=]RATE`, e.g.
`backprop@adam=0.001`, adds backprop with that optimizer as a reference
row (measured against the same target), to tell what the optimizer does
from what learning from reward costs.
`--precise_batch_norm` re-estimates batch-norm statistics before every
evaluation for every run, backprop included
(`kbp.callbacks.PreciseBatchNorm`).

It runs on the Keras backend `KERAS_BACKEND` names; the line above the
table names it, and `--merge` pools runs of one backend only.

Command (the docs' dense table: one process per task and seed, merged):

    for task in fashion_mnist fashion_mnist_100 fashion_mnist_1000; do
      for seed in 1 2 3; do
        python benchmarks/actions.py --dataset=$task --architecture=dense \
          --seeds=$seed --epochs=10 --max_train_examples=12000 \
          --output_dir=/tmp/actions/dense_${task}_s$seed
      done
    done
    python benchmarks/actions.py --merge='/tmp/actions/dense_*' \
        --output_dir=/tmp/actions_dense

Quick smoke run:

    python benchmarks/actions.py --dataset=digits_100 --architecture=mlp \
        --epochs=2 --max_train_examples=256 --output_dir=/tmp/actions_smoke
"""

import glob
import os

import _pooling
import _specs
import numpy as np
from absl import flags

from keras_brainprop import algorithms
from keras_brainprop import cli
from keras_brainprop import datasets
from keras_brainprop import experiment
from keras_brainprop import settings

FLAGS = flags.FLAGS

cli.define_flags(
    dataset="digits_100", architecture="mlp", algorithm=None, verbose=2
)
flags.DEFINE_list(
    "settings",
    [
        "paper",
        "recommended",
        "discovery@1.0",
        "paper@adam=0.001",
        "square_cb:gamma=1000@adam=0.001",
    ],
    "Comma-separated BrainProp settings: 'paper', 'recommended' or "
    "POLICY[:PARAMETER=VALUE...][@[OPTIMIZER=]RATE].",
)
flags.DEFINE_bool(
    "train_backprop",
    True,
    "Train backprop beside the settings; --notrain_backprop trains the "
    "settings only, to --merge with a run that has backprop.",
)
flags.DEFINE_list(
    "merge",
    [],
    "`results.json` files or folders (shell patterns allowed) of earlier "
    "runs of this script: nothing is trained, their runs are pooled.",
)

BACKPROP = "backprop"
# The paper's range of BrainProp's epochs over backprop's.
PAPER_RATIOS = (1.0, 3.5)


def _algorithm(spec):
    """The algorithm object of a `--settings` entry."""
    if spec.partition("@")[0] == BACKPROP:
        optimizer, rate = _specs.parse_training(spec)
        if rate is None:
            raise ValueError(
                "Backprop rows need '@[OPTIMIZER=]RATE' (backprop itself is "
                f"always trained). Received: {spec!r}"
            )
        setting = settings.Setting(
            spec, optimizer=optimizer, learning_rate=rate
        )
        return algorithms.Backprop(setting=setting)
    return algorithms.BrainProp(setting=_specs.parse_setting(spec))


def _valid_settings(specs):
    if not specs or BACKPROP in specs:
        return False
    try:
        for spec in specs:
            _algorithm(spec)
    except ValueError as error:
        raise flags.ValidationError(f"--settings: {error}") from None
    return True


flags.register_validator(
    "settings",
    _valid_settings,
    message="--settings must list settings, not 'backprop' (always trained).",
)


def _key(entry):
    result = entry["result"]
    return (result.architecture, str(entry["actions"]), entry["setting"])


def _per_seed(values):
    return ", ".join("–" if value is None else str(value) for value in values)


def rows(entries):
    """Per network, number of actions and setting: the measured figures.

    Returns:
        A list of dicts with "network", "actions", "setting", "result",
        "epochs" (per seed, None where the target was not reached),
        "mean_epochs", "ratio" (None where not defined) and "coverage".
    """
    by_key = {_key(entry): entry for entry in entries}
    measured = []
    groups = dict.fromkeys(key[:2] for key in by_key)
    for network, actions in groups:
        baseline = by_key.get((network, actions, BACKPROP))
        if baseline is None:
            raise ValueError(
                f"{network} with {actions} actions needs a backprop run: its "
                "best validation accuracy is the target."
            )
        target = _pooling.target_accuracy(baseline["result"])
        baseline_epochs = None
        for (name, count, setting), entry in by_key.items():
            if (name, count) != (network, actions):
                continue
            result = entry["result"]
            epochs = [
                _pooling.epochs_to_reach(h.get("val_accuracy", []), target)
                for h in result.histories
            ]
            hits = [value for value in epochs if value is not None]
            mean_epochs = float(np.mean(hits)) if hits else None
            if setting == BACKPROP:
                baseline_epochs = mean_epochs
            ratio = None
            if mean_epochs is not None and baseline_epochs:
                ratio = mean_epochs / baseline_epochs
            coverage = None
            if not setting.startswith(BACKPROP):
                coverage = [
                    _pooling.epochs_to_reach(h.get("greedy_coverage", []), 1.0)
                    for h in result.histories
                ]
            measured.append(
                {
                    "network": network,
                    "actions": int(actions),
                    "setting": setting,
                    "result": result,
                    "epochs": epochs,
                    "mean_epochs": mean_epochs,
                    "ratio": ratio,
                    "coverage": coverage,
                }
            )
    return measured


def table(entries):
    """The markdown table of pooled entries (see the module docstring)."""
    fmt = cli.format_number
    lines = []
    for row in rows(entries):
        result = row["result"]
        hits = sum(value is not None for value in row["epochs"])
        lines.append(
            [
                row["network"],
                str(row["actions"]),
                row["setting"],
                str(len(result.runs)),
                f"{fmt(result.mean_test_accuracy)} ± "
                f"{fmt(result.std_test_accuracy)}",
                f"{fmt(row['mean_epochs'], 1)} ({hits}/{len(row['epochs'])}"
                f"; {_per_seed(row['epochs'])})",
                fmt(row["ratio"], 2),
                "n/a"
                if row["coverage"] is None
                else _per_seed(row["coverage"]),
            ]
        )
    header = [
        "network",
        "actions",
        "setting",
        "seeds",
        "test accuracy (mean ± std)",
        f"epochs to {_pooling.TARGET_FRACTION:.0%} of backprop's best "
        "(reached; per seed)",
        "vs backprop",
        "first epoch with greedy_coverage 1.0",
    ]
    return cli.markdown_table(header, lines)


def plot(entries, path, network):
    """The epoch ratio against the number of actions, one line per setting.

    A setting that misses the target at some number of actions has no
    point there. Needs matplotlib; skipped without it.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return
    measured = [row for row in rows(entries) if row["network"] == network]
    figure, axes = pyplot.subplots(figsize=(6, 4))
    axes.axhspan(*PAPER_RATIOS, color="0.9", label="paper's range (1-3.5x)")
    for setting in dict.fromkeys(row["setting"] for row in measured):
        points = sorted(
            (row["actions"], row["ratio"])
            for row in measured
            if row["setting"] == setting and row["ratio"] is not None
        )
        if points:
            axes.plot(*zip(*points), marker="o", label=setting)
    axes.set_xscale("log")
    axes.set_xlabel("actions (classes)")
    axes.set_ylabel("epochs to target / backprop's")
    axes.set_title(f"{network}: epochs to 99% of backprop's best")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def report(entries, output_dir=None):
    """Prints the table and, with `output_dir`, writes results and plots."""
    groups = {_key(entry)[:2] for entry in entries}
    missing = [
        f"{network} with {actions} actions"
        for network, actions in sorted(groups)
        if (network, actions, BACKPROP) not in {_key(e) for e in entries}
    ]
    if missing:
        markdown = (
            f"No backprop run of {', '.join(missing)} to compare with: "
            "--merge these results with a run that has one."
        )
    else:
        markdown = table(entries)
    _pooling.write_results(entries, markdown, output_dir)
    if output_dir is not None and not missing:
        for network in dict.fromkeys(key[0] for key in groups):
            plot(
                entries,
                os.path.join(output_dir, f"actions_{network}.png"),
                network,
            )
    return markdown


def _merge_paths(patterns):
    """The folders and `.json` files that `--merge` patterns match."""
    paths = []
    for pattern in patterns:
        matches = [
            path
            for path in sorted(glob.glob(pattern))
            if os.path.isdir(path) or path.endswith(".json")
        ]
        paths += matches or [pattern]
    return paths


def main(argv):
    del argv  # Unused.
    run_kwargs = cli.run_kwargs()
    output_dir = run_kwargs.pop("output_dir")
    if output_dir is not None:
        os.makedirs(output_dir, exist_ok=True)
    if FLAGS.merge:
        paths = _merge_paths(FLAGS.merge)
        if output_dir is not None:
            # A pattern may match the folder the merge writes to.
            paths = [
                path
                for path in paths
                if os.path.abspath(path) != os.path.abspath(output_dir)
            ]
        entries = _pooling.load_entries(paths, "actions.py", _key)
        report(entries, output_dir)
        return
    actions = datasets.info(FLAGS.dataset).num_classes
    # Backprop first: its best validation accuracy is every run's target.
    runs = [(BACKPROP, algorithms.Backprop())] if FLAGS.train_backprop else []
    runs += [(spec, _algorithm(spec)) for spec in FLAGS.settings]
    entries = []
    for label, algorithm in runs:
        kwargs = dict(run_kwargs)
        if label != BACKPROP:
            _, rate = _specs.parse_training(label)
            # The setting's own rate, unless "@" names one.
            kwargs["learning_rate"] = rate
        folder = label.replace(":", "_").replace("=", "").replace("@", "_lr")
        result = experiment.run(
            FLAGS.dataset,
            FLAGS.architecture,
            algorithm,
            output_dir=(
                None if output_dir is None else os.path.join(output_dir, folder)
            ),
            **kwargs,
        )
        print(f"{label}: {result.summary()}", flush=True)
        entries.append({"setting": label, "actions": actions, "result": result})
        report(entries, output_dir)


if __name__ == "__main__":
    cli.run_script(main)
