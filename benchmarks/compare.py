r"""BrainProp versus error backpropagation, measured in the same run.

For each network, trains the paper's EBP baseline (backprop: softmax,
cross-entropy) and BrainProp (reward only) with the same seeds, data splits
and protocol (`keras_brainprop.experiment`), then reports for each:

- test accuracy of the best validation epoch, mean ± std over seeds;
- epochs to reach 99% of EBP's best validation accuracy (mean over the
  seeds that reach it; how many did is shown in brackets);
- wall time per epoch;
- the ratios BrainProp / EBP of those three numbers.

It runs on the Keras backend `KERAS_BACKEND` names and prints a markdown
table under a line naming that backend, and writes into `--output_dir`:
`results.md` (the line and the table), `results.json` (all raw results,
rewritten after every network, so an interrupted run keeps what it
finished), `curves_<network>.png` (validation accuracy per epoch, mean over
seeds, of both algorithms) and the per-run folders of `experiment.run`.

The paper finds that BrainProp matches EBP's accuracy and needs 1-3.5
times more epochs.

Command (Fashion-MNIST, dense and conv, 3 seeds, up to 30 epochs):

    python benchmarks/compare.py --dataset=fashion_mnist \
        --architectures=dense,conv --seeds=1,2,3 --epochs=30 \
        --output_dir=/tmp/compare_fashion

Runs can be split across processes, e.g. one per seed run side by side,
and combined afterwards without training again (`--merge` takes the
`results.json` files or their folders; all must use the same dataset and
protocol, on one Keras backend):

    python benchmarks/compare.py --merge=/tmp/conv_s1,/tmp/conv_s2 \
        --output_dir=/tmp/conv

The same comparison under JAX, e.g. on a GPU machine (the epochs the
paper's nets need and their seconds per epoch):

    KERAS_BACKEND=jax python benchmarks/compare.py --dataset=fashion_mnist \
        --architectures=dense,conv --seeds=1,2,3 --epochs=30 \
        --output_dir=/tmp/compare_fashion_jax

Quick smoke run:

    python benchmarks/compare.py --dataset=digits --architectures=mlp \
        --epochs=2 --max_train_examples=256 --output_dir=/tmp/compare_smoke
"""

import json
import os

import _pooling
import numpy as np
from absl import flags

from keras_brainprop import algorithms
from keras_brainprop import architectures
from keras_brainprop import cli
from keras_brainprop import experiment

FLAGS = flags.FLAGS

cli.define_flags(dataset="fashion_mnist", algorithm=None, verbose=2)
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

flags.DEFINE_list(
    "merge",
    [],
    "Comma-separated `results.json` files (or the folders holding them) of "
    "earlier runs of this script. If given, nothing is trained: their runs "
    "are combined per network and algorithm, compared and reported.",
)

# BrainProp's speed is judged by the epochs it needs to get this close to
# the best validation accuracy of backprop.
_LABELS = {"brainprop": "BrainProp", "backprop": "EBP"}


def compare(results):
    """Computes the comparison of one network's EBP and BrainProp results.

    Args:
        results: Dict from "backprop" and "brainprop" to
            `experiment.Result`.

    Returns:
        A JSON-serializable dict: the target validation accuracy, and per
        algorithm the test accuracy (mean, std), the epochs to the target
        per seed and their mean, and the seconds per epoch; plus the ratios
        BrainProp / EBP.
    """
    target = _pooling.target_accuracy(results["backprop"])
    comparison = {"target_val_accuracy": target}
    for algorithm, result in results.items():
        reached = [
            _pooling.epochs_to_reach(history.get("val_accuracy", []), target)
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
            "mean_val_accuracy_curve": _pooling.mean_curve(result.histories),
        }
    brainprop, backprop = comparison["brainprop"], comparison["backprop"]

    def ratio(key):
        if not brainprop[key] or not backprop[key]:
            return None
        return brainprop[key] / backprop[key]

    comparison["ratios"] = {
        "test_accuracy": ratio("mean_test_accuracy"),
        "epochs_to_target": ratio("mean_epochs_to_target"),
        "seconds_per_epoch": ratio("mean_seconds_per_epoch"),
    }
    return comparison


def markdown_table(comparisons):
    """Returns the comparisons of several networks as a markdown table.

    Args:
        comparisons: Dict from a network name to the output of `compare`.

    Returns:
        The table, one string.
    """
    fmt = cli.format_number
    rows = []
    for network, comparison in comparisons.items():
        for algorithm, label in _LABELS.items():
            row = comparison[algorithm]
            num_seeds = len(row["epochs_to_target"])
            rows.append(
                [
                    network,
                    label,
                    str(num_seeds),
                    f"{fmt(row['mean_test_accuracy'])} ± "
                    f"{fmt(row['std_test_accuracy'])}",
                    f"{fmt(row['mean_epochs_to_target'], 1)} "
                    f"({row['seeds_reaching_target']}/{num_seeds})",
                    fmt(row["mean_seconds_per_epoch"], 2),
                ]
            )
        ratios = comparison["ratios"]
        rows.append(
            [
                network,
                "ratio BrainProp/EBP",
                "",
                fmt(ratios["test_accuracy"], 3),
                fmt(ratios["epochs_to_target"], 2),
                fmt(ratios["seconds_per_epoch"], 2),
            ]
        )
    header = [
        "network",
        "algorithm",
        "seeds",
        "test accuracy (mean ± std)",
        f"epochs to {_pooling.TARGET_FRACTION:.0%} of EBP best val. acc.",
        "s/epoch",
    ]
    return cli.markdown_table(header, rows)


def _save(output_dir, settings, raw, comparisons, table):
    with open(os.path.join(output_dir, "results.json"), "w") as file:
        json.dump(
            {"settings": settings, "runs": raw, "comparisons": comparisons},
            file,
            indent=2,
        )
    with open(os.path.join(output_dir, "results.md"), "w") as file:
        file.write(table + "\n")


def load_results(paths):
    """Reads earlier `results.json` files and pools their seeds.

    Args:
        paths: `results.json` files written by this script, or the folders
            holding them.

    Returns:
        Dict from a network name to a dict from "backprop" and "brainprop"
        to an `experiment.Result` holding the runs of every file, sorted by
        seed. Files of earlier versions, which name backprop "ebp", merge
        with newer ones.

    Raises:
        FileNotFoundError: If a path holds no `results.json`.
        ValueError: If the files differ in dataset, protocol or Keras
            backend, repeat a seed, or a network lacks one of the two
            algorithms.
    """
    pooled = {}
    for path in paths:
        path = _pooling.results_path(path, "compare.py")
        with open(path) as file:
            runs = json.load(file)["runs"]
        for network, by_algorithm in runs.items():
            for data in by_algorithm.values():
                result = experiment.Result.from_dict(data)
                earlier = pooled.setdefault(network, {}).get(result.algorithm)
                if earlier is not None:
                    result = _pooling.pool(
                        earlier, result, f"{network} {result.algorithm}", path
                    )
                pooled[network][result.algorithm] = result
    datasets = {
        result.dataset
        for by_algorithm in pooled.values()
        for result in by_algorithm.values()
    }
    if len(datasets) > 1:
        raise ValueError(
            "Can only merge runs of one dataset. Received runs of "
            f"{sorted(datasets)}."
        )
    _pooling.check_one_backend(
        result
        for by_algorithm in pooled.values()
        for result in by_algorithm.values()
    )
    for network, by_algorithm in pooled.items():
        if set(by_algorithm) != set(algorithms.NAMES):
            raise ValueError(
                f"Network {network!r} needs runs of both algorithms "
                f"{sorted(algorithms.NAMES)}. Received: {sorted(by_algorithm)}"
            )
    return pooled


def report(results, output_dir=None, settings=None):
    """Compares, prints and (with `output_dir`) saves the results.

    Args:
        results: Dict from a network name to a dict from "backprop" and
            "brainprop" to `experiment.Result`.
        output_dir: Folder for `results.json`, `results.md` (the table
            under the line naming the Keras backend) and the
            `curves_<network>.png` plots; None to only print.
        settings: JSON-serializable settings stored in `results.json`.

    Returns:
        The comparisons, a dict from a network name to `compare`'s output.
    """
    comparisons = {
        network: compare(by_algorithm)
        for network, by_algorithm in results.items()
    }
    backend = _pooling.backend_line(
        result
        for by_algorithm in results.values()
        for result in by_algorithm.values()
    )
    table = f"{backend}\n\n{markdown_table(comparisons)}"
    print(f"\n{table}\n", flush=True)
    if output_dir is None:
        return comparisons
    raw = {
        network: {
            algorithm: result.to_dict()
            for algorithm, result in by_algorithm.items()
        }
        for network, by_algorithm in results.items()
    }
    _save(output_dir, settings or {}, raw, comparisons, table)
    for network, comparison in comparisons.items():
        dataset = results[network]["backprop"].dataset
        experiment.plot_curves(
            {
                label: comparison[algorithm]["mean_val_accuracy_curve"]
                for algorithm, label in _LABELS.items()
            },
            os.path.join(output_dir, f"curves_{network}.png"),
            title=f"{dataset} {network}: validation accuracy "
            f"(target {comparison['target_val_accuracy']:.4f})",
            ylabel="validation accuracy (mean over seeds)",
        )
    return comparisons


def main(argv):
    del argv  # Unused.
    run_kwargs = cli.run_kwargs()
    output_dir = run_kwargs["output_dir"]
    if output_dir is not None:
        os.makedirs(output_dir, exist_ok=True)
    if FLAGS.merge:
        report(
            load_results(FLAGS.merge),
            output_dir,
            settings={"merged_from": FLAGS.merge},
        )
        return
    settings = {
        "dataset": FLAGS.dataset,
        "architectures": FLAGS.architectures,
        **run_kwargs,
    }
    results = {}
    for network in FLAGS.architectures:
        results[network] = {}
        # EBP first: its best validation accuracy sets BrainProp's target.
        for algorithm in (algorithms.Backprop(), algorithms.BrainProp()):
            result = experiment.run(
                FLAGS.dataset, network, algorithm, **run_kwargs
            )
            results[network][algorithm.name] = result
            print(result.summary(), flush=True)
        # Reported after every network, so an interrupted run keeps what
        # it finished.
        report(results, output_dir, settings)


if __name__ == "__main__":
    cli.run_script(main)
