"""BrainProp's step: Q-values -> action -> reward -> prediction error -> loss.

Defined once here and used by `BrainPropModel.train_step` (with the model's
policy), `BrainPropModel.test_step` (greedy) and `BrainPropMonitor`'s probe.
"""

import collections

from keras import ops

from keras_brainprop import rewards as rewards_lib
from keras_brainprop.policies._base import _greedy

# What one step computed for a batch: the int32 actions taken and the
# greedy ones (those of the largest Q-values), where the two differ
# (float32 1 / 0), the float32 rewards and reward-prediction errors
# `r - Q[action]` (all `[batch]`), and the scalar loss (without
# regularization).
BrainPropStep = collections.namedtuple(
    "BrainPropStep",
    [
        "actions",
        "greedy_actions",
        "explored",
        "rewards",
        "reward_prediction_error",
        "loss",
    ],
)


def brainprop_step(
    q_values, y, reward, policy=None, step=None, seed=None, sample_weight=None
):
    """Runs BrainProp's step on a batch of Q-values.

    The policy picks one action per sample from the Q-values (it only reads
    them: no gradient flows through the choice), the reward function scores
    it, and the reward-prediction error `delta = r - Q[action]` gives the
    loss: the batch mean of `0.5 * delta**2`, weighted Keras-style by
    `sample_weight` (summed, divided by the batch size). Its gradient
    reaches the network through the chosen output unit alone, which is what
    BrainProp's attention-gated feedback computes.

    Args:
        q_values: float tensor `[batch, actions]`, the network's output.
        y: the targets the reward reads (possibly None).
        reward: a `keras_brainprop.rewards.Reward`.
        policy: a `keras_brainprop.policies.Policy`; None acts greedily.
        step: scalar int tensor, the training step (for schedules).
        seed: the seed tensor `[2]` of the policy's draws (see
            `keras_brainprop.backend`).
        sample_weight: None or float `[batch]` weights of the loss.

    Returns:
        A `BrainPropStep`.

    Example:

    >>> step = brainprop_step(
    ...     keras.ops.convert_to_tensor([[0.2, 0.9], [0.7, 0.1]]), [1, 1],
    ...     keras_brainprop.rewards.CorrectChoice())
    >>> keras.ops.convert_to_numpy(step.actions)  # Greedy: no policy.
    array([1, 0], dtype=int32)
    >>> keras.ops.convert_to_numpy(step.rewards)
    array([1., 0.], dtype=float32)
    >>> keras.ops.convert_to_numpy(step.reward_prediction_error).round(4)
    array([ 0.1, -0.7], dtype=float32)
    """
    greedy = _greedy(q_values)  # As the Greedy policy breaks ties.
    if policy is None:
        actions = greedy
    else:
        actions = policy(ops.stop_gradient(q_values), step, seed)
    batch_size = ops.shape(actions)[0]  # Static when known: checked early.
    rewards = rewards_lib.check_rewards(
        reward(y, actions, q_values.shape[-1]), batch_size
    )
    chosen_q = ops.take_along_axis(
        ops.cast(q_values, "float32"), ops.expand_dims(actions, -1), axis=-1
    )[:, 0]
    reward_prediction_error = rewards - chosen_q
    per_sample = 0.5 * ops.square(reward_prediction_error)
    if sample_weight is not None:
        sample_weight = ops.reshape(ops.cast(sample_weight, "float32"), [-1])
        per_sample = per_sample * sample_weight
    num_samples = ops.cast(ops.shape(per_sample)[0], "float32")
    return BrainPropStep(
        actions=actions,
        greedy_actions=greedy,
        explored=ops.cast(ops.not_equal(actions, greedy), "float32"),
        rewards=rewards,
        reward_prediction_error=reward_prediction_error,
        loss=ops.divide_no_nan(ops.sum(per_sample), num_samples),
    )
