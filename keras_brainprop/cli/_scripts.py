"""Running a script's `main`, and what scripts print: the parts of a
setting that flags replace, divergence errors and markdown tables."""

import math
import sys

from absl import app
from absl import flags

from keras_brainprop import policies
from keras_brainprop import settings


def setting_overrides(algorithm, network, learning_rate=None):
    """Says which parts of a BrainProp setting explicit flags replace.

    Args:
        algorithm: The algorithm object; only a `BrainProp` with a setting
            other than the paper's has parts to replace.
        network: The network it trains (the setting may read it).
        learning_rate: The `--learning_rate` given, or None.

    Returns:
        A list of lines, e.g. "--learning_rate=0.01 replaces the recommended
        setting's learning rate (Adam at 0.001; the optimizer stays Adam).";
        empty when nothing is replaced.
    """
    if getattr(algorithm, "setting", None) in (None, "paper"):
        return []
    setting = settings.get(algorithm.setting, network)
    optimizer = "SGD" if setting.optimizer == "sgd" else "Adam"
    lines = []
    if algorithm.policy is not None:
        lines.append(
            f"--policy={policies.name(algorithm.policy)} replaces the "
            f"{setting.name} setting's policy "
            f"({policies.name(setting.policy)})."
        )
    if learning_rate is not None:
        lines.append(
            f"--learning_rate={learning_rate:g} replaces the {setting.name} "
            f"setting's learning rate ({optimizer} at "
            f"{setting.learning_rate:g}; the optimizer stays {optimizer})."
        )
    return lines


def initial_learning_rate(algorithm, network, learning_rate=None):
    """`--learning_rate` if given, else the rate of the algorithm's setting.

    Prints the parts of a BrainProp setting that the flags replace
    (`setting_overrides`) first.

    Example:

    ```python
    rate = initial_learning_rate(algorithm, network, FLAGS.learning_rate)
    ```
    """
    for line in setting_overrides(algorithm, network, learning_rate):
        print(line, flush=True)
    return learning_rate or algorithm.learning_rate(network)


def run_script(main):
    """Runs `main(argv)` with `absl.app.run`, ending errors in one message.

    A bad flag (checked before `main` runs, so before any data loads), a
    dataset that is not on disk (`datasets.DatasetNotFoundError`), a
    missing file or a bad argument value (`ValueError`, e.g. from
    `raise_if_diverged`) stops the script with "Error: <message>" on
    stderr and exit status 1, without a traceback. Other errors keep
    theirs. `--help` lists the flags and exits with status 0.

    Args:
        main: The script's `main(argv)`.

    Example:

    ```python
    if __name__ == "__main__":
        cli.run_script(main)
    ```
    """

    def main_with_clean_errors(argv):
        try:
            return main(argv)
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(f"Error: {error}") from None

    app.run(main_with_clean_errors, flags_parser=_parse_flags)


def _parse_flags(argv):
    # absl (2.5) ends --help, --helpshort, --helpfull and --helpxml with
    # status 1, as it ends a bad flag: asking for help is no error.
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        sys.stderr.write(f"Error: {error}\nPass --help to list the flags.\n")
        sys.exit(1)
    except SystemExit as exit_request:
        # While flags are parsed, only the help flags exit.
        if exit_request.code == 1:
            sys.exit(0)
        raise


def raise_if_diverged(
    history, learning_rate=None, hint="try a smaller learning rate"
):
    """Raises `ValueError` if training diverged: its loss became NaN or Inf.

    A diverged network has NaN weights; its test accuracy measures nothing,
    so a script checks its `fit` before reporting one (and `run_script`
    ends it with exit status 1).

    Args:
        history: The `keras.callbacks.History` returned by `fit`.
        learning_rate: The run's learning rate, named in the message.
        hint: What to try instead, e.g. "try a smaller --penalty".

    Example:

    ```python
    history = model.fit(train, epochs=10,
                        callbacks=[keras.callbacks.TerminateOnNaN()])
    raise_if_diverged(history, learning_rate=0.1)
    ```
    """
    for epoch, loss in enumerate(history.history.get("loss", []), start=1):
        if not math.isfinite(loss):
            received = f"loss={loss}"
            if learning_rate is not None:
                received += f", learning_rate={learning_rate!r}"
            raise ValueError(
                f"Training diverged in epoch {epoch}: the loss became "
                f"{loss}, the weights are no longer finite and there is no "
                f"test accuracy to report; {hint}. Received: {received}"
            )


def format_number(value, digits=4):
    """Formats a number for a table; NaN and None print as "–".

    Example:

    >>> format_number(0.98765), format_number(None, 1)
    ('0.9877', '–')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def markdown_table(header, rows):
    """Returns a markdown table as one string.

    Args:
        header: The column titles.
        rows: One sequence of cells (strings) per row, as many as titles.

    Example:

    >>> print(markdown_table(["a", "b"], [["1", "2"]]))
    | a | b |
    | --- | --- |
    | 1 | 2 |
    """
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join(
        "|" + "|".join(f" {cell} " if cell else " " for cell in line) + "|"
        for line in lines
    )
