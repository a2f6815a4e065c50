"""The flags scripts define one by one or in small groups (`--feedback`,
`--learning_rate`, a registry's name, BrainProp's `--setting` and
`--policy`, `--strategy` and `--cpu_replicas`), and the checks between
flags."""

import math

from absl import flags

from keras_brainprop import feedback
from keras_brainprop import policies
from keras_brainprop import settings
from keras_brainprop.cli._strategy import STRATEGIES
from keras_brainprop.cli._strategy import STRATEGY_HELP

# The flags these functions define belong to the script that calls them,
# so that its `--help` lists them (not only `--helpfull`).
flags.disclaim_key_flags()


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
