"""Named training settings of BrainProp: the paper's and the recommended one.

A setting is what BrainProp trains with besides the network and the data:
the action-selection policy, the optimizer and its learning rate. The
paper's (`"paper"`, the default everywhere) is the max-Boltzmann policy
with SGD at 0.1. `"recommended"` is the fastest setting measured as the
number of actions grows (docs/many_actions.md has the measurements, and
where it is still slower than backprop); it is given the
network it will train, so that it may differ between networks, though
today it is the same for every network measured.

Why a setting beyond the paper's is needed: each sample trains the output
unit of its chosen action only, so at the same learning rate every output
unit learns about `actions` times slower than under backprop (averaged over
a uniformly chosen action, BrainProp's update is backprop of the squared
error at `1 / actions` of the rate), and an action that is never the greedy
choice learns only when exploration picks it. `Discovery` finds every
action early. Adam divides each weight's step by the running root mean
square of its own gradient, so an output unit's step no longer shrinks with
the share of samples that chose it, while the hidden layers, which see an
error on every sample, keep an ordinary step. Multiplying SGD's rate by the
number of actions instead multiplies the hidden layers' steps too, and
diverges at 100 actions (10.0) and on batch-normalized nets (1.0).

Example:

>>> from keras_brainprop import algorithms, settings
>>> settings.get("recommended").describe()
'recommended: discovery, Adam at 0.001'
>>> algorithm = algorithms.get("brainprop", setting="recommended")
"""

import dataclasses
import math
import numbers

import keras

from keras_brainprop import policies
from keras_brainprop.callbacks.precise_batch_norm import batch_norm_layers

__all__ = [
    "NAMES",
    "PAPER",
    "Setting",
    "check_learning_rate",
    "get",
    "has_batch_norm",
    "num_actions",
    "recommended",
]

NAMES = ("paper", "recommended")
"""The names `get` takes."""
_OPTIMIZERS = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}


@dataclasses.dataclass(frozen=True)
class Setting:
    """A policy, an optimizer and its learning rate, under one name.

    Args:
        name: What the setting is called in results and output folders.
        policy: The policy (`keras_brainprop.policies.get` takes it), or
            None for the paper's.
        optimizer: "sgd" (without momentum, the paper's) or "adam".
        learning_rate: The optimizer's initial learning rate, > 0.

    Example:

    >>> Setting("adam_paper", optimizer="adam", learning_rate=1e-3).describe()
    'adam_paper: paper, Adam at 0.001'
    """

    name: str
    policy: object = None
    optimizer: str = "sgd"
    learning_rate: float = 0.1

    def __post_init__(self):
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(
                f"`optimizer` must be one of {tuple(_OPTIMIZERS)}. "
                f"Received: optimizer={self.optimizer!r}"
            )
        check_learning_rate(self.learning_rate)
        policies.get(self.policy)  # Refuses a bad policy now, not in fit.

    def make_optimizer(self, learning_rate=None):
        """A fresh optimizer at `learning_rate`, or at the setting's rate."""
        rate = self.learning_rate if learning_rate is None else learning_rate
        return _OPTIMIZERS[self.optimizer](learning_rate=rate)

    def describe(self):
        """One line: "recommended: discovery, Adam at 0.001"."""
        optimizer = "SGD" if self.optimizer == "sgd" else "Adam"
        return (
            f"{self.name}: {policies._label(self.policy)}, {optimizer} at "
            f"{self.learning_rate:g}"
        )


def check_learning_rate(learning_rate):
    """Refuses a learning rate that is not a finite number > 0.

    A schedule (`keras.optimizers.schedules.LearningRateSchedule`) passes.
    """
    if isinstance(learning_rate, numbers.Real) and not (
        not isinstance(learning_rate, bool)
        and math.isfinite(learning_rate)
        and learning_rate > 0
    ):
        raise ValueError(
            "`learning_rate` must be a finite number > 0. "
            f"Received: learning_rate={learning_rate!r}"
        )


PAPER = Setting("paper")
"""The paper's setting: its policy, SGD at 0.1 (the default everywhere)."""


def num_actions(network):
    """The number of output units (actions) of a built network."""
    return int(network.outputs[0].shape[-1]) if _has_outputs(network) else 0


def has_batch_norm(network):
    """Whether `network` has a `BatchNormalization` layer, at any depth."""
    return bool(batch_norm_layers(network))


def _has_outputs(network):
    try:
        return bool(network.outputs)
    except (AttributeError, ValueError):  # A subclassed network.
        return False


def recommended(network):
    """The recommended setting for `network` (see the module docstring)."""
    del network  # The same for every network measured so far.
    return Setting(
        "recommended",
        policy=policies.Discovery(),
        optimizer="adam",
        learning_rate=1e-3,
    )


def get(identifier, network=None):
    """Returns the `Setting` of a name, or a `Setting` itself.

    Args:
        identifier: "paper", "recommended" (case-insensitive), None (the
            paper's) or a `Setting`.
        network: The network to train, which "recommended" reads.

    Raises:
        ValueError: For another name or kind of object.

    Example:

    >>> get("paper")
    Setting(name='paper', policy=None, optimizer='sgd', learning_rate=0.1)
    """
    if identifier is None:
        return PAPER
    if isinstance(identifier, Setting):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in NAMES:
        if identifier.lower() == "paper":
            return PAPER
        return recommended(network)
    raise ValueError(
        f"`setting` must be one of {NAMES} or a "
        "keras_brainprop.settings.Setting. "
        f"Received: setting={identifier!r}"
    )
