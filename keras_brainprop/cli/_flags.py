"""The absl flags of the main command line, shared by the CLI, examples
and benchmarks, and reading them back as `experiment.run` arguments."""

from absl import flags

from keras_brainprop import algorithms
from keras_brainprop import architectures
from keras_brainprop import datasets
from keras_brainprop.cli._flag_parts import define_feedback_flag
from keras_brainprop.cli._flag_parts import define_learning_rate_flag
from keras_brainprop.cli._flag_parts import define_strategy_flags
from keras_brainprop.cli._strategy import STRATEGIES

# The flags `define_flags` defines belong to the script that calls it, so
# that its `--help` lists them (not only `--helpfull`).
flags.disclaim_key_flags()


def _parse_seeds(values):
    try:
        return [int(value) for value in values]
    except ValueError:
        return None


def _repeats_no_seed(values):
    seeds = _parse_seeds(values)
    return seeds is None or len(set(seeds)) == len(seeds)


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
    strategies=STRATEGIES[:4],
    flag_values=flags.FLAGS,
):
    """Defines the absl flags shared by the CLI, examples and benchmarks.

    Always defines `--epochs`, `--seeds` (comma-separated ints, none
    repeated), `--data_dir`, `--logdir`, `--output_dir`, `--batch_size`,
    `--learning_rate` (finite, > 0), `--feedback` (a name
    `kbp.feedback.names()` holds when the flags are parsed), `--patience`,
    `--max_train_examples`, `--precise_batch_norm` and `--verbose`;
    `--algorithm`, `--dataset` and `--architecture` when a default is
    given for them; `--strategy` and `--cpu_replicas` (only with
    `--strategy=mirrored` or `data_parallel`) when `strategy` is given
    (`define_strategy_flags`; `STRATEGY_HELP` says which Keras backend
    takes which). Names are case-insensitive, as in the Python API. The
    flags count as the calling script's flags, so its `--help` lists them.
    Read them back with `run_kwargs`, `algorithms.get(FLAGS.algorithm)`
    and `make_strategy(FLAGS.strategy, FLAGS.cpu_replicas)`.

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
        strategies: The values `--strategy` accepts (`STRATEGIES`; all
            but "tpu" by default).
        flag_values: The `absl.flags.FlagValues` to define them in.

    Example:

    ```python
    define_flags(algorithm="brainprop", epochs=100)
    ```
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
        define_strategy_flags(strategy, strategies, flag_values=flag_values)
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
    define_learning_rate_flag(
        "Initial learning rate, finite and > 0; unset: the paper's 0.1 (or "
        "the rate of BrainProp's --setting).",
        flag_values,
    )
    define_feedback_flag(flag_values=flag_values)
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

    ```python
    result = experiment.run("digits", "mlp", **run_kwargs())
    ```
    """
    names = (
        "epochs data_dir output_dir logdir batch_size learning_rate patience "
        "max_train_examples verbose feedback precise_batch_norm"
    ).split()
    kwargs = {name: flag_values[name].value for name in names}
    return {"seeds": _parse_seeds(flag_values.seeds), **kwargs}
