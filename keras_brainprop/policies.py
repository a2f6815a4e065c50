"""Action-selection policies: how the agent picks one output unit per sample.

A policy maps Q-values `[batch, actions]` to one integer action per sample.
`EpsilonBoltzmann` is the paper's policy and the default; `Discovery` is the
recommended setting when some classes are never the greedy choice (see its
docstring). Exploration parameters (`epsilon`, `temperature`, `bonus`) accept
a real number, a `keras.optimizers.schedules.LearningRateSchedule`, or any
callable of the training step, so exploration can be annealed. A schedule's
values are checked at run time; under XLA, which drops assertions, they are
clipped into their valid range instead.

Policies draw with TensorFlow's stateless random ops from a `[2]` int seed
that the model derives for every step (and every replica) from its
`keras.random.SeedGenerator`, so `keras.utils.set_random_seed(seed)` makes
runs reproducible and resumed runs continue the same random stream.
"""

import keras
import numpy as np
import tensorflow as tf


def _serialize_parameter(value):
    if isinstance(value, float):
        return value
    return keras.saving.serialize_keras_object(value)


def _deserialize_parameter(value):
    if isinstance(value, (int, float)):
        return float(value)
    return keras.saving.deserialize_keras_object(value)


def _real_scalar(value):
    """Returns `value` as a Python float if it is a real scalar, else None.

    Python ints and floats, NumPy scalars, 0-d arrays and 0-d eager tensors
    qualify; bools, complex numbers and anything with a shape do not.
    """
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if tf.is_tensor(value) and not hasattr(value, "numpy"):
        return None  # A symbolic tensor has no value yet.
    try:
        array = np.asarray(value)
    except Exception:  # Not array-like at all.
        return None
    if array.ndim != 0 or array.dtype.kind not in "iuf":
        return None
    # str() gives the shortest decimal of the scalar's own precision, so
    # np.float32(0.1) is stored as 0.1.
    return float(str(array[()]))


def _check_parameter(name, value, low, high):
    """Validates a constant parameter (to a float) or passes a schedule."""
    if callable(value) and not tf.is_tensor(value):
        return value
    number = _real_scalar(value)
    if number is None:
        raise ValueError(
            f"`{name}` must be a real number, a LearningRateSchedule or a "
            f"callable of the training step. Received: {name}={value!r}"
        )
    if not low <= number <= high:
        raise ValueError(
            f"`{name}` must be in {_interval(low, high)}. "
            f"Received: {name}={number}"
        )
    return number


def _interval(low, high):
    return f"[{low:g}, {high:g}]"


_MAX = float(np.finfo("float32").max)
# The smallest positive normal float32. Smaller temperatures are denormals,
# which CPUs may flush to zero, and Q / 0 is not a distribution.
_TINY = float(np.finfo("float32").tiny)


def _value_at(name, parameter, step, low, high):
    """Evaluates a constant or a schedule at `step` as a float32 scalar.

    A schedule's value is checked at run time: a value outside `[low,
    high]` (or NaN) fails with an error naming the parameter, the step and
    the value. XLA drops assertions, so the value is also clipped into the
    range (NaN to `low`): under `jit_compile` a bad schedule cannot make
    the policy return an action outside `[0, actions)`.
    """
    if not callable(parameter):
        return tf.constant(parameter, "float32")
    value = tf.cast(parameter(step), "float32")
    in_range = tf.logical_and(value >= low, value <= high)
    message = (
        f"`{name}` must be in {_interval(low, high)}, but its schedule left "
        "it at step"
    )
    if tf.executing_eagerly():
        if not bool(in_range):
            raise tf.errors.InvalidArgumentError(
                None,
                None,
                f"{message} {int(step)}. Received: {name}={float(value)}",
            )
        return value
    check = tf.debugging.Assert(
        in_range, [message, step, f"Received: {name}=", value]
    )
    with tf.control_dependencies([check]):
        return tf.where(in_range, value, tf.where(value > high, high, low))


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
        return cls(**{k: _deserialize_parameter(v) for k, v in config.items()})

    def __repr__(self):
        arguments = ", ".join(
            f"{k}={v!r}" for k, v in self.get_config().items()
        )
        return f"{type(self).__name__}({arguments})"


def _greedy(q_values):
    return tf.argmax(q_values, axis=-1, output_type="int32")


def _boltzmann(q_values, temperature, seed):
    # Shifting by the maximum keeps the logits finite for tiny temperatures
    # (the greedy logit is 0, the others at worst -inf).
    logits = (q_values - tf.reduce_max(q_values, -1, keepdims=True)) / (
        temperature
    )
    draws = tf.random.stateless_categorical(logits, 1, seed, dtype="int32")
    # Non-finite logits make the op return `actions`: stay in range.
    return tf.minimum(draws[:, 0], tf.shape(q_values)[1] - 1)


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
        epsilon = _value_at("epsilon", self.epsilon, step, 0.0, 1.0)
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
    draw_seed, coin_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 2)
    )
    drawn = _boltzmann(q_values, temperature, draw_seed)
    explore = _explore_mask(q_values, epsilon, coin_seed)
    return tf.where(explore, drawn, _greedy(q_values))


@keras.saving.register_keras_serializable(package="keras_brainprop")
class Discovery(Policy):
    """The paper's policy with optimism for the actions a batch neglects.

    An output unit that is never the greedy choice learns only when the
    policy explores, so with small initial weights the paper's policy can
    leave classes unlearned for many epochs: the unit of a class not yet
    found has a low Q-value for every sample, and the 2 % exploration
    seldom tries it, let alone on the right samples. `Discovery` gives the
    actions that the batch neglects an optimism bonus and then acts like
    `EpsilonBoltzmann(epsilon, temperature)` on the bonused values:

        greedy_count[k] = samples of the batch whose greedy action is k
        quota = min_share * batch_size / actions
        neglect[k] = max(0, 1 - greedy_count[k] / quota)
        action = EpsilonBoltzmann(epsilon, temperature)(Q + bonus * neglect)

    An action that no sample picks greedily gains `bonus` (in reward units)
    and is taken for the samples on which it trails the greedy action by
    less than that: the samples that rate it highest. As the network learns,
    every action gains its share of greedy choices and the gaps between
    Q-values grow past the bonus, so the policy becomes the paper's by
    itself, without a schedule to fit to the dataset's size. It stays
    BrainProp: one action per sample, chosen from the Q-values alone; the
    reward is the only feedback and credit flows through the chosen unit.

    The policy is stateless, a function of the batch's Q-values and the
    seed (and of the step, for schedules), so it needs nothing saved for
    `keras.saving`, `BackupAndRestore` or `tf.distribute`, where each
    replica counts the greedy choices of its own part of the batch. With
    fewer than `actions / min_share` samples per batch (and replica), only
    the actions that no sample picks get a bonus.

    Args:
        bonus: optimism, in reward units, for an action that no sample of
            the batch picks greedily, >= 0 (0 gives `EpsilonBoltzmann`); a
            real number, a `LearningRateSchedule` or a callable of the
            training step. Scale it with the rewards if they are not 0 or 1.
        min_share: an action counts as neglected while it is the greedy
            choice of fewer than `min_share * batch_size / actions` samples
            (a share of an equal split), in (0, 1]; its bonus falls linearly
            to 0 at that count.
        epsilon: probability of a Boltzmann draw instead of the greedy
            action on the bonused values, in [0, 1]; a real number or a
            schedule. The paper's 0.02 by default.
        temperature: softmax temperature of that draw, > 0; same forms.

    On Fashion-MNIST with the paper's dense network the Q-value gaps stay
    below the bonus for about 10 epochs, so nearly every choice goes to a
    neglected action (`explore_rate` near 1) until they grow; lower the
    bonus or anneal it with a schedule if `explore_rate` stays high once
    every class is found.

    Exploration decides which output unit learns from a sample, not how
    much: each sample trains one of the `actions` units, so at the same
    learning rate BrainProp moves its outputs about `actions` times slower
    than backprop does. From such a flat start, pair this policy with a
    learning rate `actions` times the paper's (SGD 1.0 for 10 classes): on
    the dense net this matched backprop at 0.1. Networks with batch
    normalization do not start flat; keep the paper's rate there (the conv
    net diverges at 1.0). The README's "Exploration" section has the
    measurements behind these defaults.

    Example:

    >>> model = kbp.wrap(network, policy="discovery")
    >>> model.compile(optimizer=keras.optimizers.SGD(1.0))  # 10 actions
    >>> policy = Discovery(bonus=0.1, min_share=0.25)
    """

    def __init__(
        self, bonus=0.1, min_share=0.25, epsilon=0.02, temperature=1.0
    ):
        self.bonus = _check_parameter("bonus", bonus, 0.0, _MAX)
        self.min_share = _real_scalar(min_share)
        if self.min_share is None or not 0.0 < self.min_share <= 1.0:
            raise ValueError(
                "`min_share` must be a real number in (0, 1]. "
                f"Received: min_share={min_share!r}"
            )
        self.epsilon = _check_parameter("epsilon", epsilon, 0.0, 1.0)
        self.temperature = _check_parameter(
            "temperature", temperature, _TINY, float("inf")
        )

    def select(self, q_values, step, seed):
        bonus = _value_at("bonus", self.bonus, step, 0.0, _MAX)
        num_actions = tf.shape(q_values)[1]
        greedy_counts = tf.reduce_sum(
            tf.one_hot(_greedy(q_values), num_actions), axis=0
        )
        quota = (
            self.min_share
            * tf.cast(tf.shape(q_values)[0], "float32")
            / tf.cast(num_actions, "float32")
        )
        neglect = tf.nn.relu(1.0 - greedy_counts / quota)
        return _max_boltzmann(
            q_values + bonus * neglect,
            self.epsilon,
            self.temperature,
            step,
            seed,
        )

    def get_config(self):
        return {
            "bonus": _serialize_parameter(self.bonus),
            "min_share": self.min_share,
            "epsilon": _serialize_parameter(self.epsilon),
            "temperature": _serialize_parameter(self.temperature),
        }


_BY_NAME = {
    "greedy": Greedy,
    "epsilon_greedy": EpsilonGreedy,
    "boltzmann": Boltzmann,
    "epsilon_boltzmann": EpsilonBoltzmann,
    "discovery": Discovery,
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
