"""What an experiment writes: JSON files, weights and accuracy plots."""

import json
import os
import warnings

import numpy as np


def _write_json(path, data):
    with open(path, "w") as file:
        json.dump(data, file, indent=2, allow_nan=True)


def plot_curves(curves, path, *, title, ylabel="accuracy", best_epoch=None):
    """Saves a PNG of per-epoch curves, if matplotlib is installed.

    Args:
        curves: Dict from a legend label to a sequence of per-epoch values
            (epoch 1 first), or to a `(values, style)` pair where `style`
            is a matplotlib format string such as "--".
        path: Where to write the PNG.
        title: The plot's title.
        ylabel: Label of the y axis.
        best_epoch: Optional (1-based) epoch marked with a vertical line.

    Returns:
        `path`, or None if matplotlib is missing (a warning says so).

    Example:

    ```python
    plot_curves({"validation": [0.5, 0.8, 0.9]}, "acc.png", title="run")
    ```
    """
    try:
        import matplotlib

        # Agg renders to files without a display (servers, CI).
        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        warnings.warn(
            f"matplotlib is not installed: skipping the plot {path}. "
            "Install it with `pip install keras_brainprop[examples]`.",
            stacklevel=2,
        )
        return None
    figure, axes = pyplot.subplots(figsize=(6, 4))
    for label, curve in curves.items():
        values, style = curve if isinstance(curve, tuple) else (curve, "-")
        epochs = np.arange(1, len(values) + 1)
        axes.plot(epochs, values, style, label=label)
    if best_epoch is not None:
        axes.axvline(best_epoch, color="grey", linestyle=":", label="best")
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def save_seed(seed_result, network, output_dir):
    """Writes one seed's `history.json`, weights and accuracy plot.

    Args:
        seed_result: The seed's `SeedResult`.
        network: The trained network (without a BrainProp wrapper), whose
            weights go to `model.weights.h5`, loadable into
            `architectures.build(...)`.
        output_dir: The run's folder; the files go to `seed_<seed>/`.
    """
    seed = seed_result.seed
    seed_dir = os.path.join(output_dir, f"seed_{seed}")
    os.makedirs(seed_dir, exist_ok=True)
    logs = seed_result.history
    _write_json(os.path.join(seed_dir, "history.json"), logs)
    network.save_weights(os.path.join(seed_dir, "model.weights.h5"))
    plot_curves(
        {
            "training": (logs.get("accuracy", []), "--"),
            "validation": logs.get("val_accuracy", []),
        },
        os.path.join(seed_dir, "accuracy.png"),
        title=f"{network.name}, seed {seed}: test accuracy "
        f"{seed_result.test_accuracy:.4f}",
        best_epoch=seed_result.best_epoch or None,
    )


def summarize(result):
    """Writes a `Result`'s `summary.json` and plot into its `output_dir`.

    Args:
        result: A `Result` whose `output_dir` is set (else nothing is
            written).

    Returns:
        The path of `summary.json`, or None.
    """
    if result.output_dir is None:
        return None
    os.makedirs(result.output_dir, exist_ok=True)
    path = os.path.join(result.output_dir, "summary.json")
    _write_json(path, result.to_dict())
    plot_curves(
        {
            f"seed {run.seed}": run.history.get("val_accuracy", [])
            for run in result.runs
        },
        os.path.join(result.output_dir, "accuracy.png"),
        title=f"{result.algorithm}: {result.dataset} {result.architecture} "
        f"({result.backend})",
        ylabel="validation accuracy",
    )
    return path
