"""`SquareCB`: inverse-gap-weighted exploration (Foster & Rakhlin, 2020)."""

import keras
from keras import ops

from keras_brainprop import backend
from keras_brainprop.policies._base import Policy
from keras_brainprop.policies._base import _greedy
from keras_brainprop.policies._parameters import _MAX
from keras_brainprop.policies._parameters import _check_parameter
from keras_brainprop.policies._parameters import _serialize_parameter
from keras_brainprop.policies._parameters import _value_at


@keras.saving.register_keras_serializable(package="keras_brainprop")
class SquareCB(Policy):
    """Explores each action in inverse proportion to its gap to the greedy.

    The contextual-bandit algorithm SquareCB reduces exploration to
    regression on the rewards, which is what BrainProp's squared
    reward-prediction error is. For `K` actions, an action that trails the
    greedy one by `gap = max(Q) - Q[a]` is drawn with probability

        p(a) = 1 / (K + gamma * gap)

    and the greedy action takes the rest. At equal Q-values (an untrained
    net) every action is equally likely; actions rated far below the best
    are seldom tried, while those just below it keep being tried, however
    many actions there are. `gamma` trades exploration for exploitation:
    the larger, the greedier.

    Args:
        gamma: the exploitation strength, >= 0 (0 gives uniform draws); a
            real number, a `LearningRateSchedule` or a callable of the
            training step. With rewards in [0, 1], `gamma = 10 * K` tries a
            rival trailing by 0.1 about half as often as a tied one.

    Example:

    >>> network = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model = kbp.wrap(network, policy=SquareCB(gamma=1000.0))

    Reference:
        Foster, Rakhlin, "Beyond UCB: Optimal and Efficient Contextual
        Bandits with Regression Oracles", ICML 2020.
    """

    def __init__(self, gamma=1000.0):
        self.gamma = _check_parameter("gamma", gamma, 0.0, _MAX)

    def select(self, q_values, step, seed):
        gamma = _value_at("gamma", self.gamma, step, 0.0, _MAX)
        num_actions = ops.shape(q_values)[1]
        greedy = ops.one_hot(_greedy(q_values), num_actions, dtype="float32")
        gaps = ops.max(q_values, -1, keepdims=True) - q_values
        others = (1.0 - greedy) / (
            ops.cast(num_actions, "float32") + gamma * gaps
        )
        probabilities = others + greedy * (
            1.0 - ops.sum(others, -1, keepdims=True)
        )
        return backend.categorical(ops.log(probabilities), seed)

    def get_config(self):
        return {"gamma": _serialize_parameter(self.gamma)}
