"""What the benchmark scripts share: reaching a target, pooling seeds.

Long benchmarks run one seed (or one network) per process, each writing its
own `results.json`; `--merge` then pools the files. These helpers find the
files, refuse to pool runs made under different protocols, on different
Keras backends or with the same seed twice, name the backend above each
table, and measure how soon a validation curve reaches a target.
"""

import dataclasses
import json
import os

import numpy as np

from keras_brainprop import experiment

# "Epochs to target": the first epoch at 99% of the baseline's best
# validation accuracy (mean over its seeds).
TARGET_FRACTION = 0.99


def epochs_to_reach(val_accuracy, target):
    """The first (1-based) epoch with `val_accuracy >= target`, or None."""
    for epoch, value in enumerate(val_accuracy, start=1):
        if value >= target:
            return epoch
    return None


def target_accuracy(baseline):
    """`TARGET_FRACTION` of a result's mean best validation accuracy."""
    best = [max(h.get("val_accuracy", [0.0])) for h in baseline.histories]
    return TARGET_FRACTION * float(np.mean(best))


def mean_curve(histories):
    """Mean validation accuracy per epoch over the seeds that ran it."""
    curves = [history.get("val_accuracy", []) for history in histories]
    length = max(len(curve) for curve in curves)
    return [
        float(np.mean([curve[epoch] for curve in curves if epoch < len(curve)]))
        for epoch in range(length)
    ]


def results_path(path, script):
    """`path` itself or its folder's `results.json`, which must exist."""
    if os.path.isdir(path):
        path = os.path.join(path, "results.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Expected a results.json written by benchmarks/{script}, or its "
            f"folder. Received: {path}"
        )
    return path


def protocol(result):
    """What must agree for two results' seeds to be pooled."""
    return (
        result.dataset,
        result.hyperparameters,
        result.max_epochs,
        result.num_train_examples,
        result.num_validation_examples,
        result.num_test_examples,
    )


def check_one_backend(results):
    """Raises `ValueError` unless all `experiment.Result`s share a backend.

    A table pools and compares runs of one Keras backend; backends are
    compared side by side by benchmarks/step_overhead.py.
    """
    backends = sorted({result.backend for result in results})
    if len(backends) > 1:
        raise ValueError(
            "Can only merge runs of one Keras backend: merge each backend's "
            f"files on their own. Received runs of {backends}."
        )


def backend_line(results):
    """The line naming the Keras backend, printed above a results table.

    Example:

    ```python
    backend_line([result])  # 'Keras backend: jax' for a result of JAX.
    ```
    """
    backends = sorted({result.backend for result in results})
    return f"Keras backend: {', '.join(backends)}"


def pool(earlier, result, name, path):
    """`earlier`'s and `result`'s seeds in one `experiment.Result`.

    Args:
        earlier: The `experiment.Result` pooled so far.
        result: A `Result` of the same runs read from `path`.
        name: What the runs are, for error messages.
        path: The file `result` came from.

    Raises:
        ValueError: If the two used another dataset, protocol or Keras
            backend, or share a seed.
    """
    if earlier.backend != result.backend:
        raise ValueError(
            f"The {name} runs of {path} trained on the {result.backend} "
            f"backend, those of earlier files on {earlier.backend}: pool "
            "the seeds of one Keras backend."
        )
    if protocol(earlier) != protocol(result):
        raise ValueError(
            f"The {name} runs of {path} used another dataset or protocol "
            f"than earlier files: {protocol(result)} versus "
            f"{protocol(earlier)}."
        )
    repeated = set(earlier.seeds) & set(result.seeds)
    if repeated:
        raise ValueError(
            f"Seeds {sorted(repeated)} of {name} appear in more than one "
            f"file (last: {path}); each seed must be merged once."
        )
    runs = sorted(earlier.runs + result.runs, key=lambda run: run.seed)
    return dataclasses.replace(earlier, runs=runs)


def write_results(entries, markdown, output_dir):
    """Prints the table; with `output_dir`, writes it and the entries.

    Args:
        entries: Dicts with an `experiment.Result` under "result" and JSON
            values under other keys, written as the "runs" of
            `results.json` (which `load_entries` reads back).
        markdown: The table, written as `results.md` after the line naming
            the Keras backend (`backend_line`).
        output_dir: A folder, or None to only print.
    """
    if entries:
        line = backend_line(entry["result"] for entry in entries)
        markdown = f"{line}\n\n{markdown}"
    print(f"\n{markdown}\n", flush=True)
    if output_dir is None:
        return
    runs = [{**entry, "result": entry["result"].to_dict()} for entry in entries]
    with open(os.path.join(output_dir, "results.json"), "w") as file:
        json.dump({"runs": runs}, file, indent=2)
    with open(os.path.join(output_dir, "results.md"), "w") as file:
        file.write(markdown + "\n")


def load_entries(paths, script, key):
    """Reads `write_results` files and pools the seeds of equal keys.

    Args:
        paths: `results.json` files written by `script`, or their folders.
        script: The benchmark's file name, for error messages.
        key: A function of an entry: the tuple of strings that names its
            runs (e.g. network and policy). Entries with equal keys pool.

    Returns:
        The pooled entries, in first-seen order. Of two pooled entries'
        other values, dicts (per-seed values keyed by seed) are merged and
        anything else is taken from the first.

    Raises:
        ValueError: If the files hold runs of more than one Keras backend
            (`check_one_backend`), or pooled runs differ in protocol or
            share a seed (`pool`).
    """
    pooled = {}
    for path in paths:
        path = results_path(path, script)
        with open(path) as file:
            runs = json.load(file)["runs"]
        for data in runs:
            result = experiment.Result.from_dict(data["result"])
            entry = {**data, "result": result}
            name = key(entry)
            earlier = pooled.get(name)
            if earlier is not None:
                merged = {
                    field: {**earlier[field], **value}
                    if isinstance(value, dict)
                    else earlier[field]
                    for field, value in entry.items()
                }
                merged["result"] = pool(
                    earlier["result"], entry["result"], " ".join(name), path
                )
                entry = merged
            pooled[name] = entry
    check_one_backend(entry["result"] for entry in pooled.values())
    return list(pooled.values())
