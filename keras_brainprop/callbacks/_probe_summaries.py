"""The monitor's summaries of the probe: reward, reward prediction errors,
exploration and actions, as TensorBoard scalars and histograms."""

import numpy as np
import tensorflow as tf
from tensorboard.plugins.histogram import metadata as histogram_metadata

from keras_brainprop.callbacks._probe import class_labels
from keras_brainprop.callbacks._probe import to_numpy

# tf.summary writes on every Keras backend, as keras.callbacks.TensorBoard
# does under JAX: it is handed NumPy values, never backend tensors.


def _write_histogram(tag, values, buckets, step):
    # Non-finite values are left out, so a diverged network shows as a
    # count smaller than the number of values.
    values = np.ravel(values)
    values = values[np.isfinite(values)]
    tf.summary.histogram(tag, values, step=step, buckets=buckets)


def _write_action_histogram(tag, actions, num_actions, step):
    # One bucket per action, centred on its index: tf.summary.histogram
    # would spread its buckets between the smallest and largest action.
    counts = np.bincount(actions, minlength=num_actions)[:num_actions]
    counts = counts.astype("float64")
    centres = np.arange(num_actions, dtype="float64")
    tf.summary.write(
        tag,
        np.stack([centres - 0.5, centres + 0.5, counts], axis=1),
        step=step,
        metadata=histogram_metadata.create_summary_metadata(tag, ""),
    )
    return counts


def write_probe_summaries(prefix, step, q_values, probe, y, buckets):
    """Writes the summaries `prefix/...` of the probe's step.

    `q_values` are the Q-values of all the probe's samples, `probe` the
    step on them (`brainprop_step`), `y` the probe's targets (or None) and
    `buckets` the number of buckets of the Q-value and `delta` histograms.
    """
    # On the host from here: tf.summary takes NumPy on every backend.
    q_values = to_numpy(q_values)
    count = q_values.shape[0]
    probe = type(probe)(*(to_numpy(value) for value in probe))
    num_actions = q_values.shape[-1]
    delta = probe.reward_prediction_error
    tf.summary.scalar(f"{prefix}/reward", np.mean(probe.rewards), step)
    tf.summary.scalar(f"{prefix}/rpe_mean", np.mean(delta), step)
    tf.summary.scalar(f"{prefix}/rpe_std", np.std(delta), step)
    tf.summary.scalar(f"{prefix}/explore_rate", np.mean(probe.explored), step)
    _write_histogram(f"{prefix}/q_values", q_values, buckets, step)
    _write_histogram(f"{prefix}/rpe", delta, buckets, step)
    counts = _write_action_histogram(
        f"{prefix}/actions", probe.actions, num_actions, step
    )
    greedy = probe.greedy_actions
    labels = class_labels(y, num_actions)
    for action in range(num_actions):
        tf.summary.scalar(
            f"{prefix}/action_frequency/{action}",
            counts[action] / count,
            step,
        )
        is_greedy = greedy == action
        tf.summary.scalar(
            f"{prefix}/greedy_frequency/{action}", is_greedy.mean(), step
        )
        if labels is not None and (labels == action).any():
            recall = is_greedy[labels == action].mean()
            tf.summary.scalar(f"{prefix}/recall/{action}", recall, step)
