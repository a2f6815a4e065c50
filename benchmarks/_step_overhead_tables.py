"""The tables of benchmarks/step_overhead.py: reading pieces, reporting them.

A piece is one backend's measurements, written by its own process
(`step_overhead_<backend>.json`); `load_pieces` reads them back, `report`
prints their tables and writes `results.md` and `results.json`.
"""

import json
import os

import numpy as np

from keras_brainprop import cli

TARGETS = {"brainprop": 1.03, "rule": 1.3}


def _label(piece):
    """The column name of a piece: its backend, and its device unless CPU."""
    if piece["device"] == "cpu":
        return piece["backend"]
    return f"{piece['backend']} ({piece['device']})"


def load_pieces(paths):
    """Reads pieces from `results.json` files, piece files or folders.

    Raises:
        FileNotFoundError: If a path holds neither.
        ValueError: If a backend on one device comes twice, or the pieces
            used different batch sizes.
    """
    pieces = []
    for path in paths:
        files = [path]
        if os.path.isdir(path):
            files = [os.path.join(path, "results.json")]
            if not os.path.isfile(files[0]):
                files = sorted(
                    os.path.join(path, name)
                    for name in os.listdir(path)
                    if name.startswith("step_overhead_")
                    and name.endswith(".json")
                )
        if not files or not all(os.path.isfile(file) for file in files):
            raise FileNotFoundError(
                "Expected a results.json or step_overhead_<backend>.json "
                "written by benchmarks/step_overhead.py, or their folder. "
                f"Received: {path}"
            )
        for file in files:
            with open(file) as handle:
                data = json.load(handle)
            pieces += data.get("pieces", [data])
    labels = [_label(piece) for piece in pieces]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(
            f"{repeated} appear more than once: merge one measurement per "
            "backend and device."
        )
    batch_sizes = sorted({piece["batch_size"] for piece in pieces})
    if len(batch_sizes) > 1:
        raise ValueError(
            "Can only compare steps of one batch size. Received batch sizes "
            f"{batch_sizes}."
        )
    return pieces


def _compiled_name(piece):
    if not piece["jit_compile"]:
        return "eager"
    return "torch.compile" if piece["backend"] == "torch" else "XLA"


def _ratios(times, variant, baseline, measure):
    return np.array(times[variant][measure]) / np.array(
        times[baseline][measure]
    )


def _median_iqr(values, digits=3):
    low, median, high = np.percentile(values, [25, 50, 75])
    return f"{median:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"


def report(pieces, output_dir=None):
    """Prints the tables of `pieces`; with `output_dir`, writes them.

    Returns:
        The tables, one markdown string.
    """
    fmt = cli.format_number
    sections = []
    rows = []
    for piece in pieces:
        for network, times in piece["networks"].items():
            rows.append(
                [
                    network,
                    _label(piece),
                    _compiled_name(piece),
                    fmt(np.median(times["backprop"]["wall_ms"]), 1),
                    fmt(np.median(times["brainprop"]["wall_ms"]), 1),
                    _median_iqr(
                        _ratios(times, "brainprop", "backprop", "wall_ms")
                    ),
                    fmt(np.median(times["backprop"]["cpu_ms"]), 1),
                    fmt(np.median(times["brainprop"]["cpu_ms"]), 1),
                    _median_iqr(
                        _ratios(times, "brainprop", "backprop", "cpu_ms")
                    ),
                ]
            )
    sections.append(
        f"BrainProp / backprop, per round (target <= "
        f"{TARGETS['brainprop']}):\n\n"
        + cli.markdown_table(
            [
                "network",
                "backend",
                "compiled",
                "backprop wall ms/step",
                "BrainProp wall ms/step",
                "ratio, wall",
                "backprop CPU ms/step",
                "BrainProp CPU ms/step",
                "ratio, CPU",
            ],
            rows,
        )
    )
    rows = [
        [
            network,
            _label(piece),
            rule,
            _median_iqr(_ratios(times, rule, "brainprop", "wall_ms")),
            _median_iqr(_ratios(times, rule, "brainprop", "cpu_ms")),
        ]
        for piece in pieces
        for network, times in piece["networks"].items()
        for rule in times
        if rule not in ("backprop", "brainprop")
    ]
    if rows:
        sections.append(
            "BrainProp under each feedback rule / symmetric BrainProp, per "
            f"round (target <= {TARGETS['rule']}):\n\n"
            + cli.markdown_table(
                ["network", "backend", "rule", "ratio, wall", "ratio, CPU"],
                rows,
            )
        )
    if len(pieces) > 1:
        labels = [_label(piece) for piece in pieces]
        rows = []
        networks = dict.fromkeys(
            network for piece in pieces for network in piece["networks"]
        )
        for network in networks:
            variants = dict.fromkeys(
                variant
                for piece in pieces
                for variant in piece["networks"].get(network, {})
            )
            for variant in variants:
                cells = []
                for piece in pieces:
                    times = piece["networks"].get(network, {}).get(variant)
                    cells += [
                        fmt(np.median(times[key]), 1) if times else "–"
                        for key in ("wall_ms", "cpu_ms")
                    ]
                rows.append([network, variant, *cells])
        header = ["network", "variant"]
        for label in labels:
            header += [f"{label} wall ms", f"{label} CPU ms"]
        sections.append(
            "The backends side by side, ms per step (medians over rounds; "
            "each backend timed in its own process, one after another):\n\n"
            + cli.markdown_table(header, rows)
        )
    settings = "; ".join(
        f"{_label(piece)}: batch {piece['batch_size']}, {piece['steps']} "
        f"steps x {piece['rounds']} rounds, "
        + ", ".join(f"{k} {v}" for k, v in piece["versions"].items())
        for piece in pieces
    )
    markdown = "\n\n".join(sections) + f"\n\n{settings}."
    print(f"\n{markdown}\n", flush=True)
    if output_dir is not None:
        with open(os.path.join(output_dir, "results.json"), "w") as file:
            json.dump({"pieces": pieces}, file, indent=2)
        with open(os.path.join(output_dir, "results.md"), "w") as file:
            file.write(markdown + "\n")
    return markdown
