r"""Feedback rules under BrainProp and under backprop, measured in one run.

For each network, trains both algorithms (BrainProp from reward, backprop
from the labels) under each feedback rule of `keras_brainprop.feedback`
with the same seeds, data splits and protocol (`keras_brainprop.experiment`),
and reports per network, algorithm and rule:

- test accuracy of the best validation epoch, mean ± std over seeds;
- epochs to reach 99% of symmetric backprop's best validation accuracy
  (mean over the seeds that reach it; how many did is in brackets);
- the angle in degrees between each converted layer's forward and feedback
  weights at the end (mean over seeds, bottom layer first);
- seconds per epoch relative to the same algorithm under "symmetric".

Symmetric backprop is always trained (its best validation accuracy is the
target). Writes `results.json` (raw results, rewritten after every run, so
an interrupted run keeps what it finished), `results.md` (the table) and
`curves_<network>.png` into `--output_dir`.

It runs on the Keras backend `KERAS_BACKEND` names; the line above the
table names it, and `--merge` pools runs of one backend only.

Command (the table of docs/feedback.md; dense on the full data, conv on 12,000
training images, 15 epochs, one process per seed, merged afterwards):

    python benchmarks/feedback.py --architectures=dense --seeds=1 \
        --epochs=15 --output_dir=/tmp/feedback_dense_s1
    python benchmarks/feedback.py --architectures=conv --seeds=1 \
        --epochs=15 --max_train_examples=12000 \
        --output_dir=/tmp/feedback_conv_s1
    python benchmarks/feedback.py \
        --merge=/tmp/feedback_dense_s1,/tmp/feedback_conv_s1 \
        --output_dir=/tmp/feedback

Quick smoke run:

    python benchmarks/feedback.py --dataset=digits --architectures=mlp \
        --epochs=2 --max_train_examples=256 --output_dir=/tmp/feedback_smoke
"""

import math
import os

import _pooling
import numpy as np
from absl import flags

from keras_brainprop import architectures
from keras_brainprop import cli
from keras_brainprop import experiment
from keras_brainprop import feedback

FLAGS = flags.FLAGS

cli.define_flags(dataset="fashion_mnist", algorithm=None, verbose=2)
flags.DEFINE_list(
    "architectures",
    ["dense", "conv"],
    f"Networks to train, from {', '.join(architectures.ARCHITECTURES)}.",
)
flags.DEFINE_list(
    "rules",
    list(feedback.NAMES),
    f"Feedback rules to train under, from {', '.join(feedback.NAMES)}.",
)
flags.DEFINE_list(
    "merge",
    [],
    "`results.json` files (or their folders) of earlier runs of this "
    "script: nothing is trained, their runs are pooled and reported.",
)
flags.register_validator(
    "rules",
    lambda names: bool(names) and set(names) <= set(feedback.NAMES),
    message=f"--rules must name rules of {feedback.NAMES}.",
)
flags.register_validator(
    "architectures",
    lambda names: (
        bool(names) and set(names) <= set(architectures.ARCHITECTURES)
    ),
    message=f"--architectures must name networks of "
    f"{architectures.ARCHITECTURES}.",
)

_LABELS = {"brainprop": "BrainProp", "backprop": "backprop"}


def layer_angles(network):
    """Angles in degrees between forward and feedback weights, per layer."""
    angles = []
    for layer in feedback.feedback_layers(network):
        kernel = np.ravel(np.asarray(layer.kernel, "float64"))
        feedback_kernel = np.ravel(np.asarray(layer.feedback_kernel, "float64"))
        cosine = kernel @ feedback_kernel
        cosine /= np.linalg.norm(kernel) * np.linalg.norm(feedback_kernel)
        angles.append(math.degrees(math.acos(np.clip(cosine, -1.0, 1.0))))
    return angles


def _train_recording_angles(angles):
    # The weights at the end of training: the best epoch's, restored by
    # early stopping.
    def train_fn(seed_run):
        history = experiment.train(seed_run)
        network = getattr(history.model, "network", history.model)
        angles[str(seed_run.seed)] = layer_angles(network)
        return history

    return train_fn


def _key(entry):
    result = entry["result"]
    return (result.architecture, result.algorithm, result.feedback)


def table(entries):
    """Returns the markdown table of pooled entries (see module docstring)."""
    fmt = cli.format_number
    by_key = {_key(entry): entry for entry in entries}
    rows = []
    for network in dict.fromkeys(key[0] for key in by_key):
        baseline = by_key.get((network, "backprop", "symmetric"))
        if baseline is None:
            raise ValueError(
                f"Network {network!r} needs a symmetric backprop run: its "
                "best validation accuracy is the target."
            )
        target = _pooling.target_accuracy(baseline["result"])
        for (name, algorithm, rule), entry in by_key.items():
            if name != network:
                continue
            result = entry["result"]
            reached = [
                _pooling.epochs_to_reach(h["val_accuracy"], target)
                for h in result.histories
            ]
            hits = [epochs for epochs in reached if epochs is not None]
            angles = np.mean(list(entry["angles"].values()), axis=0)
            symmetric = by_key.get((network, algorithm, "symmetric"))
            speed = None
            if symmetric is not None:
                speed = (
                    result.mean_seconds_per_epoch
                    / symmetric["result"].mean_seconds_per_epoch
                )
            rows.append(
                [
                    network,
                    _LABELS[algorithm],
                    rule,
                    str(len(result.runs)),
                    f"{fmt(result.mean_test_accuracy)} ± "
                    f"{fmt(result.std_test_accuracy)}",
                    f"{fmt(float(np.mean(hits)) if hits else None, 1)} "
                    f"({len(hits)}/{len(reached)})",
                    ", ".join(f"{angle:.1f}" for angle in np.atleast_1d(angles))
                    or "0 (B = W)",
                    fmt(speed, 2),
                ]
            )
    header = [
        "network",
        "algorithm",
        "feedback",
        "seeds",
        "test accuracy (mean ± std)",
        f"epochs to {_pooling.TARGET_FRACTION:.0%} of symmetric "
        "backprop's best",
        "final angle W/B per layer (°)",
        "s/epoch vs symmetric",
    ]
    return cli.markdown_table(header, rows)


def report(entries, output_dir=None):
    """Prints the table and, with `output_dir`, writes the results."""
    markdown = table(entries)
    _pooling.write_results(entries, markdown, output_dir)
    if output_dir is None:
        return markdown
    for network in dict.fromkeys(_key(entry)[0] for entry in entries):
        # One colour per rule; backprop solid, BrainProp dashed.
        curves = {
            f"{_LABELS[algorithm]} {rule}": (
                _pooling.mean_curve(entry["result"].histories),
                f"C{feedback.NAMES.index(rule)}"
                + ("-" if algorithm == "backprop" else "--"),
            )
            for entry in entries
            for name, algorithm, rule in [_key(entry)]
            if name == network
        }
        experiment.plot_curves(
            curves,
            os.path.join(output_dir, f"curves_{network}.png"),
            title=f"{network}: validation accuracy per feedback rule",
            ylabel="validation accuracy (mean over seeds)",
        )
    return markdown


def main(argv):
    del argv  # Unused.
    run_kwargs = cli.run_kwargs()
    run_kwargs.pop("feedback")  # --rules chooses them.
    output_dir = run_kwargs["output_dir"]
    if output_dir is not None:
        os.makedirs(output_dir, exist_ok=True)
    if FLAGS.merge:
        entries = _pooling.load_entries(FLAGS.merge, "feedback.py", _key)
        report(entries, output_dir)
        return
    entries = []
    for network in FLAGS.architectures:
        # Symmetric backprop first: its best validation accuracy is the
        # target of every run.
        runs = [("backprop", "symmetric")] + [
            (algorithm, rule)
            for rule in FLAGS.rules
            for algorithm in ("brainprop", "backprop")
            if (algorithm, rule) != ("backprop", "symmetric")
        ]
        for algorithm, rule in runs:
            angles = {}
            result = experiment.run(
                FLAGS.dataset,
                network,
                algorithm,
                feedback=rule,
                train_fn=_train_recording_angles(angles),
                **run_kwargs,
            )
            print(result.summary(), f"feedback={rule}", flush=True)
            entries.append({"result": result, "angles": angles})
            report(entries, output_dir)


if __name__ == "__main__":
    cli.run_script(main)
