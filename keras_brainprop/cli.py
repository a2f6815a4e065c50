"""The command line shared by `python -m keras_brainprop`, examples/ and
benchmarks/: absl flags, the `tf.distribute` strategy they choose, and the
tables and error messages they print.

`define_flags` defines the flags, `run_kwargs` reads them back as keyword
arguments of `experiment.run`, and `make_strategy` creates the strategy
named by `--strategy`. In a multi-worker cluster `chief_outputs` keeps the
written files on the chief. `run_script` runs a script's `main` so that a
missing dataset, a bad value or a bad flag ends it with one message, not a
traceback, and a run that diverged with a non-zero exit status
(`check_finite`); `markdown_table` and `format_number` format the tables
scripts print. `is_learning_rate` and `only_with` are the flag checks
scripts share; `define_setting_flags` defines BrainProp's `--setting` and
`--policy`, and `setting_overrides` says which parts of a setting explicit
flags replace.

The package itself never imports this module: only scripts do.

Example:

```python
from absl import flags
from keras_brainprop import algorithms, cli, experiment

cli.define_flags(dataset="digits", architecture="mlp", strategy="default")
FLAGS = flags.FLAGS

def main(argv):
    strategy = cli.make_strategy(FLAGS.strategy, FLAGS.cpu_replicas)
    with cli.chief_outputs(cli.run_kwargs(), strategy) as kwargs:
        result = experiment.run(
            FLAGS.dataset, FLAGS.architecture,
            algorithms.get(FLAGS.algorithm), strategy=strategy, **kwargs,
        )
    print(result.summary())

cli.run_script(main)
```
"""

import contextlib
import math
import os
import shutil
import sys
import tempfile

import tensorflow as tf
from absl import app
from absl import flags

from keras_brainprop import algorithms
from keras_brainprop import architectures
from keras_brainprop import datasets
from keras_brainprop import feedback
from keras_brainprop import policies
from keras_brainprop import settings

# The flags `define_flags` defines belong to the script that calls it, so
# that its `--help` lists them (not only `--helpfull`).
flags.disclaim_key_flags()

# What `make_strategy` creates; the `--strategy` flag takes the first three.
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def make_strategy(name, cpu_replicas=0, tpu="local"):
    """Creates a `tf.distribute` strategy to pass to `run`.

    Call it before TensorFlow runs anything: splitting the CPU and
    joining a cluster are only possible then.

    Args:
        name: "default" (one device), "mirrored" (every local GPU),
            "multi_worker" (one process per machine, the cluster given by
            `TF_CONFIG`) or "tpu".
        cpu_replicas: If > 0, "mirrored" splits the CPU into this many
            logical devices and uses them as the replicas.
        tpu: The TPU of "tpu", as `TPUClusterResolver` takes it.

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ValueError: For an unknown `name` or a negative `cpu_replicas`.

    Example:

    >>> strategy = make_strategy("mirrored", cpu_replicas=2)
    >>> experiment.run("digits", "mlp", "backprop", epochs=5,
    ...                strategy=strategy)
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"`name` must be one of {STRATEGIES}. Received: name={name!r}"
        )
    if cpu_replicas < 0:
        raise ValueError(
            "`cpu_replicas` must be >= 0. "
            f"Received: cpu_replicas={cpu_replicas!r}"
        )
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = None
        if cpu_replicas:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas
            )
            devices = [f"/cpu:{index}" for index in range(cpu_replicas)]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy):
    """Whether this process keeps the outputs of a run under `strategy`.

    True without a cluster; in one, for the "chief" task or, when there is
    none, worker 0 (as `TF_CONFIG` names them).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and not has_chief
    )


@contextlib.contextmanager
def chief_outputs(kwargs, strategy):
    """Yields `run` kwargs that write files on the chief only.

    Every worker runs every callback (they take part in collective ops),
    so the others write their `output_dir` and `logdir` to a temporary
    directory, deleted on exit, and train silently.

    Args:
        kwargs: Keyword arguments of `run`, e.g. from `run_kwargs`.
        strategy: The `tf.distribute.Strategy` of the run.

    Yields:
        `kwargs` on the chief, else a copy redirected as above.

    Example:

    >>> with chief_outputs(run_kwargs(), strategy) as kwargs:
    ...     result = experiment.run("digits", "mlp", strategy=strategy,
    ...                             **kwargs)
    """
    if is_chief(strategy):
        yield kwargs
        return
    scratch = tempfile.mkdtemp(prefix="kbp_worker_")
    kwargs = dict(kwargs, verbose=0)
    for key in ("output_dir", "logdir"):
        if kwargs.get(key):
            kwargs[key] = os.path.join(scratch, key)
    try:
        yield kwargs
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _parse_seeds(values):
    try:
        return [int(value) for value in values]
    except ValueError:
        return None


def _repeats_no_seed(values):
    seeds = _parse_seeds(values)
    return seeds is None or len(set(seeds)) == len(seeds)


def is_learning_rate(rate):
    """Whether `rate` is a valid `--learning_rate`: unset, or finite and > 0.

    An infinite rate makes every weight NaN in the first step. Pass it to
    `flags.register_validator` with `LEARNING_RATE_MESSAGE`.

    Example:

    >>> is_learning_rate(None), is_learning_rate(0.1), is_learning_rate(0.0)
    (True, True, False)
    """
    return rate is None or (math.isfinite(rate) and rate > 0)


LEARNING_RATE_MESSAGE = "--learning_rate must be a finite number > 0."


def only_with(name, other, values, flag_values=flags.FLAGS):
    """Refuses `--<name>` set away from its default unless `--<other>` is
    one of `values`, so that a flag the run would ignore is an error.

    The check runs when the flags are parsed, before any data loads.

    Args:
        name: The flag used only with some values of `other`.
        other: The flag it depends on.
        values: The values of `--<other>` that use `--<name>`.
        flag_values: The `absl.flags.FlagValues` holding both.

    Example:

    >>> only_with("cpu_replicas", "strategy", ("mirrored",))
    """
    default = flag_values[name].default
    expected = " or ".join(f"--{other}={value}" for value in values)

    def check(flags_dict):
        return flags_dict[name] == default or flags_dict[other] in values

    flags.register_multi_flags_validator(
        [name, other],
        check,
        message=f"--{name} is used only with {expected}; without it, it "
        "would be ignored.",
        flag_values=flag_values,
    )


def define_setting_flags(
    brainprop_values=("brainprop",), flag_values=flags.FLAGS
):
    """Defines BrainProp's `--setting` and `--policy`.

    `--setting` is "paper" (the default: the paper's policy, SGD at 0.1) or
    "recommended" (`keras_brainprop.settings`); `--policy`, unset by
    default, replaces the setting's policy. Both are refused unless
    `--algorithm` is one of `brainprop_values` (backprop has neither). Read
    them back with `brainprop_options`.

    Args:
        brainprop_values: The values of `--algorithm` that train BrainProp.
        flag_values: The `absl.flags.FlagValues` to define them in.
    """
    flags.DEFINE_enum(
        "setting",
        "paper",
        settings.NAMES,
        "BrainProp's training setting (keras_brainprop.settings): paper is "
        "the paper's policy with SGD at 0.1; recommended (Discovery, Adam at "
        "0.001) learns fastest with many classes (docs/many_actions.md). "
        "--policy and --learning_rate replace its parts.",
        case_sensitive=False,
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "policy",
        None,
        policies.NAMES,
        "BrainProp's action selection (keras_brainprop.policies); unset: the "
        "setting's (the paper's is epsilon_boltzmann).",
        case_sensitive=False,
        flag_values=flag_values,
    )
    # Backprop has neither: setting them for it is refused.
    only_with("setting", "algorithm", brainprop_values, flag_values)
    only_with("policy", "algorithm", brainprop_values, flag_values)


def brainprop_options(flag_values=flags.FLAGS):
    """`policy` and `setting` of `algorithms.BrainProp` from the flags.

    Example:

    >>> algorithms.BrainProp(**brainprop_options())
    """
    return {"policy": flag_values.policy, "setting": flag_values.setting}


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


def define_flags(
    *,
    dataset=None,
    architecture=None,
    algorithm="brainprop",
    algorithm_choices=algorithms.NAMES,
    epochs=None,
    seeds="0",
    verbose=1,
    strategy=None,
    strategies=STRATEGIES[:3],
    flag_values=flags.FLAGS,
):
    """Defines the absl flags shared by the CLI, examples and benchmarks.

    Always defines `--epochs`, `--seeds` (comma-separated ints, none
    repeated), `--data_dir`, `--logdir`, `--output_dir`, `--batch_size`,
    `--learning_rate` (finite, > 0), `--patience`, `--max_train_examples`,
    `--precise_batch_norm` and `--verbose`; `--algorithm`, `--dataset` and
    `--architecture` when a default is given for them; `--strategy` and
    `--cpu_replicas` (only with `--strategy=mirrored`) when `strategy` is
    given. Names are
    case-insensitive, as in the Python API. The flags count as the calling
    script's flags, so its `--help` lists them. Read them back with
    `run_kwargs`, `algorithms.get(FLAGS.algorithm)` and
    `make_strategy(FLAGS.strategy, FLAGS.cpu_replicas)`.

    Args:
        dataset: Default of `--dataset`, or None for no such flag.
        architecture: Default of `--architecture`, or None for no flag.
        algorithm: Default of `--algorithm`, or None for no such flag.
        algorithm_choices: The values `--algorithm` accepts besides the
            former names of `algorithms.ALIASES` (e.g. "ebp"); a script may
            add its own, such as "both".
        epochs: Default of `--epochs` (None: the paper's 500).
        seeds: Default of `--seeds`, a comma-separated string.
        verbose: Default of `--verbose`.
        strategy: Default of `--strategy`, or None for no such flag.
        strategies: The values `--strategy` accepts (`STRATEGIES`).
        flag_values: The `absl.flags.FlagValues` to define them in.

    Example:

    >>> define_flags(algorithm="brainprop", epochs=100)
    """

    if dataset is not None:
        flags.DEFINE_enum(
            "dataset",
            dataset,
            datasets.NAMES,
            "Dataset to train on.",
            case_sensitive=False,
            flag_values=flag_values,
        )
    if architecture is not None:
        flags.DEFINE_enum(
            "architecture",
            architecture,
            architectures.ARCHITECTURES,
            "Network (see keras_brainprop.architectures).",
            case_sensitive=False,
            flag_values=flag_values,
        )
    if algorithm is not None:
        flags.DEFINE_enum(
            "algorithm",
            algorithm,
            [*algorithm_choices, *algorithms.ALIASES],
            "brainprop: learn from reward; backprop: error backpropagation "
            "of the cross-entropy (the paper's baseline; 'ebp' is its "
            "former name).",
            case_sensitive=False,
            flag_values=flag_values,
        )
    if strategy is not None:
        flags.DEFINE_enum(
            "strategy",
            strategy,
            strategies,
            "The tf.distribute strategy to train under (see "
            "cli.make_strategy); --batch_size stays the global batch.",
            case_sensitive=False,
            flag_values=flag_values,
        )
        flags.DEFINE_integer(
            "cpu_replicas",
            0,
            "mirrored only: if > 0, split the CPU into this many logical "
            "devices and use them as the replicas instead of the GPUs.",
            lower_bound=0,
            flag_values=flag_values,
        )
        only_with("cpu_replicas", "strategy", ("mirrored",), flag_values)
    flags.DEFINE_integer(
        "epochs",
        epochs,
        "Maximum number of epochs (early stopping may end sooner)"
        + ("; unset: the paper's 500." if epochs is None else "."),
        lower_bound=1,
        flag_values=flag_values,
    )
    flags.DEFINE_list(
        "seeds",
        seeds,
        "Comma-separated seeds, one run each; results are averaged.",
        flag_values=flag_values,
    )
    flags.register_validator(
        "seeds",
        lambda values: bool(values) and _parse_seeds(values) is not None,
        message="--seeds must be a comma-separated list of integers.",
        flag_values=flag_values,
    )
    # A repeated seed repeats a run: its mean would count it twice.
    flags.register_validator(
        "seeds",
        _repeats_no_seed,
        message="--seeds must not repeat a seed: each seed is one run.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "data_dir",
        None,
        "Directory with a local copy of the data (see "
        "keras_brainprop.datasets); nothing is downloaded. Unset: the "
        "usual places, such as ~/.keras/datasets.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "logdir",
        None,
        "If set, write TensorBoard logs (and BrainProp's monitor) here.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "output_dir",
        None,
        "If set, write history, weights, plots and a summary here.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "batch_size",
        None,
        "Training batch size; unset: the paper's for the network.",
        lower_bound=1,
        flag_values=flag_values,
    )
    flags.DEFINE_float(
        "learning_rate",
        None,
        "Initial learning rate, finite and > 0; unset: the paper's 0.1 (or "
        "the rate of BrainProp's --setting).",
        flag_values=flag_values,
    )
    flags.register_validator(
        "learning_rate",
        is_learning_rate,
        message=LEARNING_RATE_MESSAGE,
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "feedback",
        "symmetric",
        list(feedback.NAMES),
        "Feedback rule of either algorithm (see keras_brainprop.feedback): "
        "symmetric is backprop's; the others send the error down through "
        "feedback weights that differ from the forward ones.",
        case_sensitive=False,
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "patience",
        None,
        "Early-stopping patience in epochs; unset: the paper's 45.",
        lower_bound=1,
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "max_train_examples",
        None,
        "Train on this many examples only (quick runs); unset: all.",
        lower_bound=1,
        flag_values=flag_values,
    )
    flags.DEFINE_bool(
        "precise_batch_norm",
        False,
        "Re-estimate batch-norm statistics on training batches before every "
        "evaluation, for either algorithm "
        "(keras_brainprop.callbacks.PreciseBatchNorm); off in the paper's "
        "protocol.",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "verbose",
        verbose,
        "Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch.",
        lower_bound=0,
        upper_bound=2,
        flag_values=flag_values,
    )


def run_kwargs(flag_values=flags.FLAGS):
    """Returns the keyword arguments of `run` set by `define_flags` flags.

    Args:
        flag_values: The parsed `absl.flags.FlagValues`.

    Returns:
        A dict with `epochs`, `seeds`, `data_dir`, `output_dir`, `logdir`,
        `batch_size`, `learning_rate`, `patience`, `max_train_examples`,
        `verbose`, `feedback` and `precise_batch_norm`.

    Example:

    >>> result = experiment.run("digits", "mlp", **run_kwargs())
    """
    names = (
        "epochs data_dir output_dir logdir batch_size learning_rate patience "
        "max_train_examples verbose feedback precise_batch_norm"
    ).split()
    kwargs = {name: flag_values[name].value for name in names}
    return {"seeds": _parse_seeds(flag_values.seeds), **kwargs}


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

    >>> if __name__ == "__main__":
    ...     cli.run_script(main)
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

    >>> history = model.fit(train, epochs=10,
    ...                     callbacks=[keras.callbacks.TerminateOnNaN()])
    >>> raise_if_diverged(history, learning_rate=0.1)
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
