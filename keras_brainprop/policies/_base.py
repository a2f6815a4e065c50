"""The `Policy` base class and the paper's family of policies."""

import keras
from keras import ops

from keras_brainprop import backend
from keras_brainprop.policies._parameters import _TINY
from keras_brainprop.policies._parameters import _check_parameter
from keras_brainprop.policies._parameters import _deserialize_parameter
from keras_brainprop.policies._parameters import _serialize_parameter
from keras_brainprop.policies._parameters import _value_at


@keras.saving.register_keras_serializable(package="keras_brainprop")
class Policy:
    """Base class of action-selection policies.

    Subclasses implement `select(q_values, step, seed)` and `get_config()`.
    """

    def __call__(self, q_values, step, seed):
        """Returns int32 actions `[batch]`.

        Args:
            q_values: float tensor `[batch, actions]`.
            step: scalar int tensor, the training step (for schedules).
            seed: a fresh seed `[2]` for this call's draws (see
                `keras_brainprop.backend`).
        """
        return self.select(ops.cast(q_values, "float32"), step, seed)

    def select(self, q_values, step, seed):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**{k: _deserialize_parameter(v) for k, v in config.items()})

    def __repr__(self):
        arguments = ", ".join(
            f"{k}={v!r}" for k, v in self.get_config().items()
        )
        return f"{type(self).__name__}({arguments})"


def _greedy(q_values):
    # The first of tied maxima, as `tf.argmax`: `keras.ops.argmax` ranks
    # -0.0 below 0.0 on some backends, so signed zeros are made equal.
    q_values = ops.where(
        ops.equal(q_values, 0), ops.zeros_like(q_values), q_values
    )
    return ops.cast(ops.argmax(q_values, axis=-1), "int32")


def _boltzmann(q_values, temperature, seed):
    # Shifting by the maximum keeps the logits finite for tiny temperatures
    # (the greedy logit is 0, the others at worst -inf).
    logits = (q_values - ops.max(q_values, -1, keepdims=True)) / temperature
    return backend.categorical(logits, seed)


def _explore_mask(q_values, epsilon, seed):
    coins = backend.uniform(ops.shape(q_values)[:1], seed)
    return coins < epsilon


@keras.saving.register_keras_serializable(package="keras_brainprop")
class Greedy(Policy):
    """Always takes the action with the highest Q-value (no exploration).

    Example:

    >>> policy = Greedy()
    """

    def select(self, q_values, step, seed):
        return _greedy(q_values)


@keras.saving.register_keras_serializable(package="keras_brainprop")
class EpsilonGreedy(Policy):
    """Greedy, but with probability `epsilon` a uniformly random action.

    This is the exploration used by contextual-bandit libraries such as
    TF-Agents' `NeuralEpsilonGreedyAgent`.

    Args:
        epsilon: probability of a uniform random action, in [0, 1]; a float,
            a `LearningRateSchedule` or a callable of the training step.

    Example:

    >>> policy = EpsilonGreedy(0.1)
    """

    def __init__(self, epsilon=0.1):
        self.epsilon = _check_parameter("epsilon", epsilon, 0.0, 1.0)

    def select(self, q_values, step, seed):
        epsilon = _value_at("epsilon", self.epsilon, step, 0.0, 1.0)
        action_seed, coin_seed = backend.split(seed, 2)
        batch, num_actions = ops.shape(q_values)
        random_actions = backend.uniform_int([batch], num_actions, action_seed)
        explore = _explore_mask(q_values, epsilon, coin_seed)
        return ops.where(explore, random_actions, _greedy(q_values))

    def get_config(self):
        return {"epsilon": _serialize_parameter(self.epsilon)}


@keras.saving.register_keras_serializable(package="keras_brainprop")
class Boltzmann(Policy):
    """Draws the action from softmax(Q / temperature).

    Args:
        temperature: softmax temperature, > 0; a float, a
            `LearningRateSchedule` or a callable of the training step. Low
            temperatures approach greedy, high ones approach uniform.

    Example:

    >>> policy = Boltzmann(temperature=0.5)
    """

    def __init__(self, temperature=1.0):
        self.temperature = _check_parameter(
            "temperature", temperature, _TINY, float("inf")
        )

    def select(self, q_values, step, seed):
        temperature = _value_at(
            "temperature", self.temperature, step, _TINY, float("inf")
        )
        return _boltzmann(q_values, temperature, seed)

    def get_config(self):
        return {"temperature": _serialize_parameter(self.temperature)}


@keras.saving.register_keras_serializable(package="keras_brainprop")
class EpsilonBoltzmann(Policy):
    """The paper's "max-Boltzmann" policy, and the default.

    With probability `1 - epsilon` the greedy action; otherwise an action
    drawn from softmax(Q / temperature). The BrainProp paper uses
    `epsilon=0.02, temperature=1`.

    Args:
        epsilon: probability of a Boltzmann draw instead of the greedy action,
            in [0, 1]; a float, a `LearningRateSchedule` or a callable of the
            training step.
        temperature: softmax temperature of the draw, > 0; same forms.

    Example:

    >>> policy = EpsilonBoltzmann(epsilon=0.05, temperature=1.0)

    Reference:
        Pozzi, Bohté, Roelfsema, "Attention-Gated Brain Propagation: How the
        brain can implement reward-based error backpropagation", NeurIPS 2020.
    """

    def __init__(self, epsilon=0.02, temperature=1.0):
        self.epsilon = _check_parameter("epsilon", epsilon, 0.0, 1.0)
        self.temperature = _check_parameter(
            "temperature", temperature, _TINY, float("inf")
        )

    def select(self, q_values, step, seed):
        return _max_boltzmann(
            q_values, self.epsilon, self.temperature, step, seed
        )

    def get_config(self):
        return {
            "epsilon": _serialize_parameter(self.epsilon),
            "temperature": _serialize_parameter(self.temperature),
        }


def _max_boltzmann(q_values, epsilon, temperature, step, seed):
    """The greedy action, or with probability epsilon a Boltzmann draw."""
    epsilon = _value_at("epsilon", epsilon, step, 0.0, 1.0)
    temperature = _value_at(
        "temperature", temperature, step, _TINY, float("inf")
    )
    draw_seed, coin_seed = backend.split(seed, 2)
    drawn = _boltzmann(q_values, temperature, draw_seed)
    explore = _explore_mask(q_values, epsilon, coin_seed)
    return ops.where(explore, drawn, _greedy(q_values))
