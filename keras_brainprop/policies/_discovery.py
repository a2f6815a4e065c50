"""`Discovery`: the paper's policy with optimism for neglected actions."""

import keras
from keras import ops

from keras_brainprop.policies._base import Policy
from keras_brainprop.policies._base import _greedy
from keras_brainprop.policies._base import _max_boltzmann
from keras_brainprop.policies._parameters import _MAX
from keras_brainprop.policies._parameters import _TINY
from keras_brainprop.policies._parameters import _check_parameter
from keras_brainprop.policies._parameters import _real_scalar
from keras_brainprop.policies._parameters import _serialize_parameter
from keras_brainprop.policies._parameters import _value_at


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
    than backprop does. The recommended setting pairs this policy with Adam
    at 0.001, the fastest setting measured from 10 to 1,000 actions
    (`kbp.algorithms.get("brainprop", setting="recommended")`;
    docs/many_actions.md). With SGD, a rate `actions` times the paper's
    (1.0 for 10 classes) matched backprop on the dense net at 10 classes,
    but diverges on batch-normalized nets and at 100 actions.

    Example:

    >>> network = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model = kbp.wrap(network, policy="discovery")
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-3))
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
        batch, num_actions = ops.shape(q_values)
        greedy_counts = ops.sum(
            ops.one_hot(_greedy(q_values), num_actions, dtype="float32"), 0
        )
        quota = (
            self.min_share
            * ops.cast(batch, "float32")
            / ops.cast(num_actions, "float32")
        )
        neglect = ops.relu(1.0 - greedy_counts / quota)
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
