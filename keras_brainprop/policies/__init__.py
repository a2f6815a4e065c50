"""Action-selection policies: how the agent picks one output unit per sample.

A policy maps Q-values `[batch, actions]` to one integer action per sample.
`EpsilonBoltzmann` is the paper's policy and the default; `Discovery` is the
recommended setting when some classes are never the greedy choice (see its
docstring). Exploration parameters (`epsilon`, `temperature`, `bonus`) accept
a real number, a `keras.optimizers.schedules.LearningRateSchedule`, or any
callable of the training step, so exploration can be annealed. A schedule's
values are checked at run time and also clipped into their valid range,
for TensorFlow's XLA (`jit_compile=True`), which drops the checks.

Every policy class has a registered name ("greedy", "epsilon_greedy",
"boltzmann", "epsilon_boltzmann", "discovery", "square_cb"), and "paper"
names the paper's default, `EpsilonBoltzmann()`: `get()` maps names to
policies, `name()` policies to names, `names()` lists the registered ones, and
`parameters()` gives a policy's arguments that differ from its defaults. To
add a policy, subclass `Policy` and decorate it with `register("my_policy")`:
it then works by name in `wrap`, the command line and saved results.

Policies draw with the backend's stateless draws (`keras_brainprop.backend`)
from a seed `[2]` that the model derives for every step (and every replica)
from its `keras.random.SeedGenerator`, so `keras.utils.set_random_seed(seed)`
makes runs reproducible and resumed runs continue the same random stream.

A seed gives the same actions every time within one backend and mode, but
other ones on another backend. Under TensorFlow eager and graph mode agree,
but `jit_compile=True` draws other ones, since XLA turns the same random
bits into floats and categorical samples by other methods than TensorFlow's
kernels (`Greedy` draws nothing and agrees): a seeded run compiled with XLA
reproduces itself, not the run without XLA. Under JAX a seed draws the same
with or without `jit`.
"""

import keras

from keras_brainprop._registry import Registry
from keras_brainprop.policies._base import Boltzmann
from keras_brainprop.policies._base import EpsilonBoltzmann
from keras_brainprop.policies._base import EpsilonGreedy
from keras_brainprop.policies._base import Greedy
from keras_brainprop.policies._base import Policy
from keras_brainprop.policies._discovery import Discovery
from keras_brainprop.policies._square_cb import SquareCB

# The name of the paper's policy with its default parameters.
_PAPER = "paper"

_REGISTRY = Registry(
    Policy, "policy", "keras_brainprop.policies", reserved=(_PAPER,)
)


def register(name):
    """Registers a policy class under a name: a class decorator.

    A registered policy is known by its name everywhere a policy is named:
    `kbp.wrap(model, policy=name)`, `get`, the command line's `--policy`,
    and saved results (`name(policy)`). A class that Keras cannot serialize
    yet is registered with `keras.saving.register_keras_serializable`
    (package "keras_brainprop.policies", the same name), so models with it
    save to `.keras` files and load back wherever the code that registers
    it has been imported. Its `get_config()` must return the arguments of
    its `__init__`; `get(name)` calls the class without arguments.

    Args:
        name: a lower-case identifier (letters, digits, underscores), e.g.
            "my_policy"; "paper" is reserved. Taking a name registered for
            another class raises a `ValueError` (a class defined again by
            the same code, such as a notebook cell run twice, replaces its
            former self).

    Returns:
        A decorator that registers a `Policy` subclass (else it raises a
        `TypeError`) and returns the class unchanged.

    Example:

    >>> import keras
    >>> import keras_brainprop as kbp
    >>> @kbp.policies.register("last_action")
    ... class LastAction(kbp.policies.Policy):
    ...     def select(self, q_values, step, seed):
    ...         actions = keras.ops.shape(q_values)[-1]
    ...         return keras.ops.full(keras.ops.shape(q_values)[:1],
    ...                               actions - 1, "int32")
    >>> kbp.policies.get("last_action")
    LastAction()
    >>> kbp.policies.name(LastAction())
    'last_action'
    """

    return _REGISTRY.decorator(name)


for _name, _cls in (
    ("greedy", Greedy),
    ("epsilon_greedy", EpsilonGreedy),
    ("boltzmann", Boltzmann),
    ("epsilon_boltzmann", EpsilonBoltzmann),
    ("discovery", Discovery),
    ("square_cb", SquareCB),
):
    register(_name)(_cls)
del _name, _cls

__all__ = [
    "NAMES",
    "Boltzmann",
    "Discovery",
    "EpsilonBoltzmann",
    "EpsilonGreedy",
    "Greedy",
    "Policy",
    "SquareCB",
    "get",
    "name",
    "names",
    "parameters",
    "register",
]


def names():
    """Returns the names of all registered policies, the built-in ones first.

    `get` also takes "paper", the paper's `EpsilonBoltzmann()`.

    Example:

    >>> import keras_brainprop as kbp
    >>> kbp.policies.names()[:3]
    ('greedy', 'epsilon_greedy', 'boltzmann')
    """
    return _REGISTRY.names()


NAMES = names()
"""The built-in policies' names; `names()` also lists the policies
registered later."""


def _is_paper(policy):
    return type(policy) is EpsilonBoltzmann and (
        policy.get_config() == EpsilonBoltzmann().get_config()
    )


def name(policy):
    """Returns a short name of a policy: "paper" for the default.

    `get(name(policy))` is a policy of the same class, with its default
    parameters (`parameters(policy)` gives those that differ).

    Args:
        policy: a policy, or anything `get` accepts.

    Returns:
        "paper" when `get(policy)` is the paper's `EpsilonBoltzmann()` with
        its default parameters, else the name its class was registered
        under (`register`), e.g. "discovery" (the parameters are not part
        of the name). A class that is not registered raises a `ValueError`
        (subclasses of a registered class are not registered with it).

    Example:

    >>> import keras_brainprop as kbp
    >>> from keras_brainprop.policies import EpsilonBoltzmann, name
    >>> name(None), name("discovery"), name(EpsilonBoltzmann(epsilon=0.2))
    ('paper', 'discovery', 'epsilon_boltzmann')
    """
    policy = get(policy)
    if _is_paper(policy):
        return _PAPER
    return _REGISTRY.name_of(policy)


def _label(policy):
    """`name(policy)`, or the class name of a policy whose class is not
    registered: for folder names and summaries."""
    policy = get(policy)
    if _is_paper(policy):
        return _PAPER
    return _REGISTRY.label_of(policy)


def parameters(policy):
    """Returns a policy's parameters that differ from its class's defaults.

    Args:
        policy: a policy, or anything `get` accepts.

    Returns:
        A dict of the entries of `policy.get_config()` whose values differ
        from those of the class called without arguments (all of them if
        it needs arguments), `{}` for a policy with its default
        parameters; also `{}` for a policy whose config cannot be
        serialized. Schedules appear as their configs, a function as
        its name ("<lambda>" for a lambda); values JSON cannot write are
        given as their `repr`.

    Example:

    >>> import keras_brainprop as kbp
    >>> kbp.policies.parameters(kbp.policies.Discovery(bonus=0.5))
    {'bonus': 0.5}
    >>> kbp.policies.parameters("paper")
    {}
    """
    return _REGISTRY.parameters(get(policy))


def get(identifier):
    """Returns a policy from an instance, a name, a config dict or None.

    Args:
        identifier: a `Policy` (returned as it is); a registered name
            (`names()`: "greedy", "epsilon_greedy", "boltzmann",
            "epsilon_boltzmann", "discovery", "square_cb" and the policies
            registered with `register`) or the name of a registered class,
            in any case, which gives the class with its default parameters;
            "paper" or None for the paper's `EpsilonBoltzmann()`; or a
            config dict (`keras.saving.serialize_keras_object(policy)`).

    Returns:
        A `Policy`. Anything else raises a `ValueError`.

    Example:

    >>> import keras_brainprop as kbp
    >>> kbp.policies.get("paper")
    EpsilonBoltzmann(epsilon=0.02, temperature=1.0)
    >>> kbp.policies.get("SquareCB")
    SquareCB(gamma=1000.0)
    """
    if identifier is None or (
        isinstance(identifier, str) and identifier.lower() == _PAPER
    ):
        return EpsilonBoltzmann()
    policy = _REGISTRY.resolve(identifier)
    if policy is not None:
        return policy
    raise ValueError(
        "`policy` must be a keras_brainprop.policies.Policy, one of "
        f"{_REGISTRY.quoted_names()} (registered names), 'paper', a policy "
        f"config or None. Received: policy={identifier!r}"
    )
