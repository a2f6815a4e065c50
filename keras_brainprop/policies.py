"""Action-selection policies: how the agent picks one output unit per sample.

A policy maps Q-values `[batch, actions]` to one integer action per sample.
Exploration parameters (`epsilon`, `temperature`) accept a float, a
`keras.optimizers.schedules.LearningRateSchedule`, or any callable of the
training step, so exploration can be annealed during training.

Policies draw with TensorFlow's stateless random ops from a `[2]` int seed
that the model derives for every step (and every replica) from its
`keras.random.SeedGenerator`, so `keras.utils.set_random_seed(seed)` makes
runs reproducible and resumed runs continue the same random stream.
"""

import keras
import tensorflow as tf


def _serialize_parameter(value):
    if isinstance(value, (int, float)):
        return float(value)
    return keras.saving.serialize_keras_object(value)


def _deserialize_parameter(value):
    if isinstance(value, (int, float)):
        return float(value)
    return keras.saving.deserialize_keras_object(value)


def _check_parameter(name, value, low, high):
    if callable(value):
        return value
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(
            f"`{name}` must be a float, a LearningRateSchedule or a callable "
            f"of the training step. Received: {name}={value!r}"
        )
    if not low <= value <= high:
        raise ValueError(
            f"`{name}` must be in [{low}, {high}]. Received: {name}={value}"
        )
    return float(value)


def _value_at(parameter, step):
    """Evaluates a constant or a schedule at `step` as a float32 scalar."""
    if callable(parameter):
        parameter = parameter(step)
    return tf.cast(parameter, "float32")


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
            seed: int tensor `[2]`, a fresh stateless seed for this call.
        """
        return self.select(tf.cast(q_values, "float32"), step, seed)

    def select(self, q_values, step, seed):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(
            f"{k}={v!r}" for k, v in self.get_config().items()
        )
        return f"{type(self).__name__}({arguments})"


def _greedy(q_values):
    return tf.argmax(q_values, axis=-1, output_type="int32")


def _boltzmann(q_values, temperature, seed):
    logits = q_values / temperature
    draws = tf.random.stateless_categorical(logits, 1, seed, dtype="int32")
    return draws[:, 0]


def _explore_mask(q_values, epsilon, seed):
    coins = tf.random.stateless_uniform(tf.shape(q_values)[:1], seed)
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
        epsilon = _value_at(self.epsilon, step)
        action_seed, coin_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 2)
        )
        random_actions = tf.random.stateless_uniform(
            tf.shape(q_values)[:1],
            action_seed,
            minval=0,
            maxval=tf.shape(q_values)[1],
            dtype="int32",
        )
        explore = _explore_mask(q_values, epsilon, coin_seed)
        return tf.where(explore, random_actions, _greedy(q_values))

    def get_config(self):
        return {"epsilon": _serialize_parameter(self.epsilon)}

    @classmethod
    def from_config(cls, config):
        return cls(epsilon=_deserialize_parameter(config["epsilon"]))


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
            "temperature", temperature, 1e-12, float("inf")
        )

    def select(self, q_values, step, seed):
        temperature = _value_at(self.temperature, step)
        return _boltzmann(q_values, temperature, seed)

    def get_config(self):
        return {"temperature": _serialize_parameter(self.temperature)}

    @classmethod
    def from_config(cls, config):
        return cls(temperature=_deserialize_parameter(config["temperature"]))


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
            "temperature", temperature, 1e-12, float("inf")
        )

    def select(self, q_values, step, seed):
        epsilon = _value_at(self.epsilon, step)
        temperature = _value_at(self.temperature, step)
        draw_seed, coin_seed = tf.unstack(
            tf.random.experimental.stateless_split(seed, 2)
        )
        drawn = _boltzmann(q_values, temperature, draw_seed)
        explore = _explore_mask(q_values, epsilon, coin_seed)
        return tf.where(explore, drawn, _greedy(q_values))

    def get_config(self):
        return {
            "epsilon": _serialize_parameter(self.epsilon),
            "temperature": _serialize_parameter(self.temperature),
        }

    @classmethod
    def from_config(cls, config):
        return cls(
            epsilon=_deserialize_parameter(config["epsilon"]),
            temperature=_deserialize_parameter(config["temperature"]),
        )


def get(identifier):
    """Returns a policy from an instance, a name, a config dict or None.

    `None` gives the paper's default, `EpsilonBoltzmann()`. Names are the
    class names or their snake-case forms ("greedy", "epsilon_boltzmann").
    """
    if identifier is None:
        return EpsilonBoltzmann()
    if isinstance(identifier, Policy):
        return identifier
    if isinstance(identifier, str):
        by_name = {
            "greedy": Greedy,
            "epsilon_greedy": EpsilonGreedy,
            "boltzmann": Boltzmann,
            "epsilon_boltzmann": EpsilonBoltzmann,
        }
        key = identifier.lower()
        for name, cls in by_name.items():
            if key in (name, cls.__name__.lower()):
                return cls()
    if isinstance(identifier, dict):
        policy = keras.saving.deserialize_keras_object(identifier)
        if isinstance(policy, Policy):
            return policy
    raise ValueError(
        "`policy` must be a keras_brainprop.policies.Policy, one of 'greedy', "
        "'epsilon_greedy', 'boltzmann', 'epsilon_boltzmann', or None. "
        f"Received: policy={identifier!r}"
    )
