"""The absl flags shared by the command line, examples and benchmarks,
their checks, and reading them back as `experiment.run` arguments."""

import math

from absl import flags

from keras_brainprop import algorithms
from keras_brainprop import architectures
from keras_brainprop import datasets
from keras_brainprop import feedback
from keras_brainprop import policies
from keras_brainprop import settings
from keras_brainprop.cli._strategy import STRATEGIES
from keras_brainprop.cli._strategy import STRATEGY_HELP

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


class _RegisteredNames(flags.EnumParser):
    """Parses a name of a registry (case-insensitive) as absl's enums do,
    checked against the names registered when the flags are parsed."""

    def __init__(self, names):
        super().__init__(names(), case_sensitive=False)
        self._names = names

    def parse(self, argument):
        self.enum_values = list(self._names())
        return super().parse(argument)


def define_registered(name, default, names, help, flag_values=flags.FLAGS):
    """Defines `--<name>`, one of the names a registry holds when parsing.

    Like `flags.DEFINE_enum(..., case_sensitive=False)`, but a name
    registered after the flag was defined (e.g. with
    `kbp.feedback.register` or `kbp.policies.register`) is accepted too;
    `--help` lists the names registered when the flag was defined, and a
    bad value is refused with absl's usual message that lists every name
    registered by then.

    Args:
        name: The flag's name.
        default: Its default, a registered name or None.
        names: A callable returning the registered names, such as
            `kbp.feedback.names`.
        help: The flag's help text.
        flag_values: The `absl.flags.FlagValues` to define it in.

    Example:

    ```python
    define_registered("policy", None, kbp.policies.names, "The policy.")
    ```
    """
    flag = flags.EnumFlag(name, default, help, names(), case_sensitive=False)
    flag.parser = _RegisteredNames(names)
    flags.DEFINE_flag(flag, flag_values)


def define_feedback_flag(help=None, flag_values=flags.FLAGS):
    """Defines `--feedback`: a rule `kbp.feedback.names()` holds.

    Args:
        help: Its help text; None for `define_flags`'s.
        flag_values: The `absl.flags.FlagValues` to define it in.
    """
    define_registered(
        "feedback",
        "symmetric",
        feedback.names,
        help
        or "Feedback rule of either algorithm (see keras_brainprop.feedback)"
        ": symmetric is backprop's; the others send the error down through "
        "feedback weights that differ from the forward ones.",
        flag_values,
    )


def define_learning_rate_flag(help, flag_values=flags.FLAGS):
    """Defines `--learning_rate`, unset by default, finite and > 0.

    Args:
        help: Its help text.
        flag_values: The `absl.flags.FlagValues` to define it in.
    """
    flags.DEFINE_float("learning_rate", None, help, flag_values=flag_values)
    flags.register_validator(
        "learning_rate",
        is_learning_rate,
        message=LEARNING_RATE_MESSAGE,
        flag_values=flag_values,
    )


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

    ```python
    only_with("cpu_replicas", "strategy", ("mirrored",))
    ```
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
    default, replaces the setting's policy: a name `kbp.policies.names()`
    holds when the flags are parsed, so a policy registered with
    `kbp.policies.register` is accepted. Both are refused unless
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
    define_registered(
        "policy",
        None,
        policies.names,
        "BrainProp's action selection (keras_brainprop.policies); unset: the "
        "setting's (the paper's is epsilon_boltzmann).",
        flag_values,
    )
    # Backprop has neither: setting them for it is refused.
    only_with("setting", "algorithm", brainprop_values, flag_values)
    only_with("policy", "algorithm", brainprop_values, flag_values)


def define_strategy_flags(
    strategy,
    strategies=STRATEGIES[:4],
    cpu_replicas_help=None,
    flag_values=flags.FLAGS,
):
    """Defines `--strategy` and `--cpu_replicas`.

    `--cpu_replicas` is refused unless `--strategy` is "mirrored" or
    "data_parallel". Read them back with
    `make_strategy(FLAGS.strategy, FLAGS.cpu_replicas)`.

    Args:
        strategy: Default of `--strategy`.
        strategies: The values `--strategy` accepts (`STRATEGIES`; all
            but "tpu" by default).
        cpu_replicas_help: The help of `--cpu_replicas`; None for
            `define_flags`'s.
        flag_values: The `absl.flags.FlagValues` to define them in.
    """
    flags.DEFINE_enum(
        "strategy",
        strategy,
        strategies,
        STRATEGY_HELP,
        case_sensitive=False,
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "cpu_replicas",
        0,
        cpu_replicas_help
        or "mirrored and data_parallel only: if > 0, split the CPU into "
        "this many logical devices (mirrored) or JAX CPU devices "
        "(data_parallel) and use them as the replicas instead of the GPUs.",
        lower_bound=0,
        flag_values=flag_values,
    )
    only_with(
        "cpu_replicas", "strategy", ("mirrored", "data_parallel"), flag_values
    )


def brainprop_options(flag_values=flags.FLAGS):
    """`policy` and `setting` of `algorithms.BrainProp` from the flags.

    Example:

    ```python
    algorithms.BrainProp(**brainprop_options())
    ```
    """
    return {"policy": flag_values.policy, "setting": flag_values.setting}


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
