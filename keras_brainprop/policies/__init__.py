"""Action-selection policies: how the agent picks one output unit per sample.

A policy maps Q-values `[batch, actions]` to one integer action per sample.
`EpsilonBoltzmann` is the paper's policy and the default; `Discovery` is the
recommended setting when some classes are never the greedy choice (see its
docstring). Exploration parameters (`epsilon`, `temperature`, `bonus`) accept
a real number, a `keras.optimizers.schedules.LearningRateSchedule`, or any
callable of the training step, so exploration can be annealed. A schedule's
values are checked at run time and also clipped into their valid range,
for TensorFlow's XLA (`jit_compile=True`), which drops the checks.

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

from keras_brainprop.policies._base import Boltzmann
from keras_brainprop.policies._base import EpsilonBoltzmann
from keras_brainprop.policies._base import EpsilonGreedy
from keras_brainprop.policies._base import Greedy
from keras_brainprop.policies._base import Policy
from keras_brainprop.policies._discovery import Discovery
from keras_brainprop.policies._square_cb import SquareCB

_BY_NAME = {
    "greedy": Greedy,
    "epsilon_greedy": EpsilonGreedy,
    "boltzmann": Boltzmann,
    "epsilon_boltzmann": EpsilonBoltzmann,
    "discovery": Discovery,
    "square_cb": SquareCB,
}

# The names `get` takes, e.g. for a command-line flag.
NAMES = tuple(_BY_NAME)


def name(policy):
    """Returns a short name of a policy: "paper" for the default.

    "paper" when `get(policy)` is the paper's `EpsilonBoltzmann()` with its
    default parameters, else the snake-case name of its class, e.g.
    "discovery" (the parameters are not part of the name).

    Example:

    >>> name(None), name("discovery"), name(EpsilonBoltzmann(epsilon=0.2))
    ('paper', 'discovery', 'epsilon_boltzmann')
    """
    policy = get(policy)
    default = EpsilonBoltzmann()
    if type(policy) is EpsilonBoltzmann and (
        policy.get_config() == default.get_config()
    ):
        return "paper"
    for key, cls in _BY_NAME.items():
        if type(policy) is cls:
            return key
    return type(policy).__name__


def get(identifier):
    """Returns a policy from an instance, a name, a config dict or None.

    `None` gives the paper's default, `EpsilonBoltzmann()`. Names are the
    class names or their snake-case forms ("greedy", "epsilon_boltzmann",
    "discovery"), and give the class with its default parameters.
    """
    if identifier is None:
        return EpsilonBoltzmann()
    if isinstance(identifier, Policy):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        for name, cls in _BY_NAME.items():
            if key in (name, cls.__name__.lower()):
                return cls()
    if isinstance(identifier, dict):
        policy = keras.saving.deserialize_keras_object(identifier)
        if isinstance(policy, Policy):
            return policy
    names = ", ".join(repr(name) for name in _BY_NAME)
    raise ValueError(
        "`policy` must be a keras_brainprop.policies.Policy, one of "
        f"{names}, a policy config or None. Received: policy={identifier!r}"
    )
