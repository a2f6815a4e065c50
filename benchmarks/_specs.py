"""BrainProp runs named on the command line: `NAME[:P=V...][@[OPT=]RATE]`.

`NAME` is "paper" (the paper's `EpsilonBoltzmann(0.02, 1)`) or a name of
`keras_brainprop.policies.get`, with its constructor's parameters after
colons, e.g. `epsilon_boltzmann:epsilon=0.2` or `square_cb:gamma=1000`.
After "@" comes the run's own learning rate, e.g. `discovery@1.0` (SGD),
optionally led by the optimizer, e.g. `discovery@adam=0.001`.
"""

from keras_brainprop import policies
from keras_brainprop import settings


def parse_learning_rate(spec):
    """The learning rate after "@" in a run's name, or None.

    Example:

    >>> parse_learning_rate("discovery@1.0"), parse_learning_rate("paper")
    (1.0, None)
    """
    return parse_training(spec)[1]


def parse_training(spec):
    """The `(optimizer, learning_rate)` after "@", or `(None, None)`.

    Example:

    >>> parse_training("discovery@adam=0.001")
    ('adam', 0.001)
    """
    _, at, training = spec.partition("@")
    if not at:
        return None, None
    optimizer, equals, rate = training.rpartition("=")
    optimizer = optimizer if equals else "sgd"
    try:
        value = float(rate)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(
            f"The learning rate after '@' must be a number > 0. Received: "
            f"{rate!r} in {spec!r}"
        )
    if optimizer not in ("sgd", "adam"):
        raise ValueError(
            f"The optimizer after '@' must be 'sgd' or 'adam'. Received: "
            f"{optimizer!r} in {spec!r}"
        )
    return optimizer, value


def parse_policy(spec):
    """The policy of a run's name (see the module docstring).

    Example:

    >>> parse_policy("epsilon_boltzmann:epsilon=0.2@0.3")
    EpsilonBoltzmann(epsilon=0.2, temperature=1.0)
    """
    name, *options = spec.partition("@")[0].split(":")
    if name == "paper":
        if options:
            raise ValueError(f"'paper' takes no parameters. Received: {spec}")
        return policies.EpsilonBoltzmann()
    parameters = {}
    for option in options:
        key, equals, value = option.partition("=")
        if not equals:
            raise ValueError(
                f"Policy parameters are PARAMETER=VALUE. Received: {option!r} "
                f"in {spec!r}"
            )
        parameters[key] = float(value)
    try:
        return type(policies.get(name))(**parameters)
    except TypeError as error:
        raise ValueError(f"Bad parameters in {spec!r}: {error}") from None


def parse_setting(spec):
    """The `settings.Setting` of a run's name, or a setting's name.

    "recommended" (optionally "recommended@RATE", its optimizer at another
    rate) is returned as the name, resolved when the network is known;
    anything else as a `Setting` whose optimizer is SGD at the paper's 0.1
    unless "@" says otherwise.

    Example:

    >>> parse_setting("square_cb:gamma=1000@adam=0.001")
    Setting(name='square_cb:gamma=1000@adam=0.001', ...)
    """
    if spec.partition("@")[0] == "recommended":
        parse_training(spec)  # Checks the rate.
        return "recommended"
    optimizer, rate = parse_training(spec)
    return settings.Setting(
        spec,
        policy=parse_policy(spec),
        optimizer=optimizer or "sgd",
        learning_rate=rate or 0.1,
    )
