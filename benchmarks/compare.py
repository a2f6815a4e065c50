r"""BrainProp versus error backpropagation, measured in the same run.

For each network, trains the paper's EBP baseline (softmax, cross-entropy)
and BrainProp (reward only) with the same seeds, data splits and protocol
(`keras_brainprop.experiment`), then reports for each:

- test accuracy of the best validation epoch, mean ± std over seeds;
- epochs to reach 99% of EBP's best validation accuracy (mean over the
  seeds that reach it; how many did is shown in brackets);
- wall time per epoch;
- the ratios BrainProp / EBP of those three numbers.

It prints a markdown table, and writes into `--output_dir`: `results.md`
(the table), `results.json` (all raw results, rewritten after every network,
so an interrupted run keeps what it finished), `curves_<network>.png`
(validation accuracy per epoch, mean over seeds, of both algorithms) and
the per-run folders of `experiment.run`.

The paper (section 3 of DESIGN.md) finds that BrainProp matches EBP's
accuracy and needs 1-3.5 times more epochs.

Command (Fashion-MNIST, dense and conv, 3 seeds, up to 30 epochs):

    python benchmarks/compare.py --dataset=fashion_mnist \
        --architectures=dense,conv --seeds=1,2,3 --epochs=30 \
        --output_dir=/tmp/compare_fashion

Quick smoke run:

    python benchmarks/compare.py --dataset=digits --architectures=mlp \
        --epochs=2 --max_train_examples=256 --output_dir=/tmp/compare_smoke
"""

import json
import os

import numpy as np
from absl import app
from absl import flags

from keras_brainprop import architectures
from keras_brainprop import experiment

FLAGS = flags.FLAGS

experiment.define_flags(dataset="fashion_mnist", algorithm=None, verbose=2)
flags.DEFINE_list(
    "architectures",
    ["dense", "conv"],
    "Comma-separated networks to compare, from "
    f"{', '.join(architectures.ARCHITECTURES)}.",
)
flags.register_validator(
    "architectures",
    lambda names: (
        bool(names)
        and all(name in architectures.ARCHITECTURES for name in names)
    ),
    message="--architectures must name networks of "
    f"{architectures.ARCHITECTURES}.",
)

# BrainProp's speed is judged by the epochs it needs to get this close to
# the best validation accuracy of backprop.
_TARGET_FRACTION = 0.99

_LABELS = {"brainprop": "BrainProp", "ebp": "EBP"}


def _epochs_to_reach(val_accuracy, target):
    """The first (1-based) epoch with `val_accuracy >= target`, or None."""
    for epoch, value in enumerate(val_accuracy, start=1):
        if value >= target:
            return epoch
    return None


def _mean_curve(histories):
    """Mean validation accuracy per epoch over the seeds that ran it."""
    curves = [history.get("val_accuracy", []) for history in histories]
    length = max(len(curve) for curve in curves)
    return [
        float(np.mean([curve[epoch] for curve in curves if epoch < len(curve)]))
        for epoch in range(length)
    ]


def compare(results):
    """Computes the comparison of one network's EBP and BrainProp results.

    Args:
        results: Dict from "ebp" and "brainprop" to `experiment.Result`.

    Returns:
        A JSON-serializable dict: the target validation accuracy, and per
        algorithm the test accuracy (mean, std), the epochs to the target
        per seed and their mean, and the seconds per epoch; plus the ratios
        BrainProp / EBP.
    """
    ebp_best = [
        max(h.get("val_accuracy", [0.0])) for h in results["ebp"].histories
    ]
    target = _TARGET_FRACTION * float(np.mean(ebp_best))
    comparison = {"target_val_accuracy": target}
    for algorithm, result in results.items():
        reached = [
            _epochs_to_reach(history.get("val_accuracy", []), target)
            for history in result.histories
        ]
        hits = [epochs for epochs in reached if epochs is not None]
        comparison[algorithm] = {
            "mean_test_accuracy": result.mean_test_accuracy,
            "std_test_accuracy": result.std_test_accuracy,
            "epochs_to_target": reached,
            "mean_epochs_to_target": float(np.mean(hits)) if hits else None,
            "seeds_reaching_target": len(hits),
            "mean_seconds_per_epoch": result.mean_seconds_per_epoch,
            "mean_val_accuracy_curve": _mean_curve(result.histories),
        }
    brainprop, ebp = comparison["brainprop"], comparison["ebp"]

    def ratio(key):
        if not brainprop[key] or not ebp[key]:
            return None
        return brainprop[key] / ebp[key]

    comparison["ratios"] = {
        "test_accuracy": ratio("mean_test_accuracy"),
        "epochs_to_target": ratio("mean_epochs_to_target"),
        "seconds_per_epoch": ratio("mean_seconds_per_epoch"),
    }
    return comparison


def markdown_table(comparisons, num_seeds):
    """Returns the comparisons of several networks as a markdown table.

    Args:
        comparisons: Dict from a network name to the output of `compare`.
        num_seeds: Number of seeds of every run.

    Returns:
        The table, one string.
    """
    fmt = experiment.format_number
    lines = [
        f"| network | algorithm | test accuracy ({num_seeds} seeds) | "
        f"epochs to {_TARGET_FRACTION:.0%} of EBP best val. acc. | s/epoch |",
        "| --- | --- | --- | --- | --- |",
    ]
    for network, comparison in comparisons.items():
        for algorithm in ("brainprop", "ebp"):
            row = comparison[algorithm]
            lines.append(
                f"| {network} | {_LABELS[algorithm]} | "
                f"{fmt(row['mean_test_accuracy'])} ± "
                f"{fmt(row['std_test_accuracy'])} | "
                f"{fmt(row['mean_epochs_to_target'], 1)} "
                f"({row['seeds_reaching_target']}/{num_seeds}) | "
                f"{fmt(row['mean_seconds_per_epoch'], 2)} |"
            )
        ratios = comparison["ratios"]
        lines.append(
            f"| {network} | ratio BrainProp/EBP | "
            f"{fmt(ratios['test_accuracy'], 3)} | "
            f"{fmt(ratios['epochs_to_target'], 2)} | "
            f"{fmt(ratios['seconds_per_epoch'], 2)} |"
        )
    return "\n".join(lines)


def _save(output_dir, settings, raw, comparisons, table):
    with open(os.path.join(output_dir, "results.json"), "w") as file:
        json.dump(
            {"settings": settings, "runs": raw, "comparisons": comparisons},
            file,
            indent=2,
        )
    with open(os.path.join(output_dir, "results.md"), "w") as file:
        file.write(table + "\n")


def main(argv):
    del argv  # Unused.
    run_kwargs = experiment.run_kwargs()
    output_dir = run_kwargs["output_dir"]
    if output_dir is not None:
        os.makedirs(output_dir, exist_ok=True)
    settings = {
        "dataset": FLAGS.dataset,
        "architectures": FLAGS.architectures,
        **run_kwargs,
    }
    raw, comparisons = {}, {}
    for network in FLAGS.architectures:
        results = {}
        # EBP first: its best validation accuracy sets BrainProp's target.
        for algorithm in ("ebp", "brainprop"):
            results[algorithm] = experiment.run(
                FLAGS.dataset, network, algorithm, **run_kwargs
            )
            print(results[algorithm].summary(), flush=True)
        raw[network] = {
            algorithm: result.to_dict() for algorithm, result in results.items()
        }
        comparisons[network] = compare(results)
        table = markdown_table(comparisons, len(run_kwargs["seeds"]))
        print(f"\n{table}\n", flush=True)
        if output_dir is not None:
            _save(output_dir, settings, raw, comparisons, table)
            target = comparisons[network]["target_val_accuracy"]
            experiment.plot_curves(
                {
                    _LABELS[algorithm]: comparisons[network][algorithm][
                        "mean_val_accuracy_curve"
                    ]
                    for algorithm in ("brainprop", "ebp")
                },
                os.path.join(output_dir, f"curves_{network}.png"),
                title=f"{FLAGS.dataset} {network}: validation accuracy "
                f"(target {target:.4f})",
                ylabel="validation accuracy (mean over seeds)",
            )


if __name__ == "__main__":
    app.run(main)
