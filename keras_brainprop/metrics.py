"""Metrics of what a BrainProp agent chooses."""

import keras
from keras import ops

from keras_brainprop import _keras_fixes
from keras_brainprop import rewards
from keras_brainprop.policies._base import _greedy

__all__ = ["GreedyAccuracy", "GreedyCoverage", "LowCoverageWarning"]


class LowCoverageWarning(UserWarning):
    """`fit()`'s warning that some actions stay never the greedy choice.

    `BrainPropModel.fit` warns with it, at most once per `fit()`, when
    `greedy_coverage` (`GreedyCoverage`) stays below 1 for 10 epochs in a
    row, or when the last epoch of `fit()` ends below 1. The message names
    the actions and advises what to try for the model's policy and
    optimizer. A fit that expects it, such as a timing run, can silence
    it:

    ```python
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kbp.metrics.LowCoverageWarning)
        model.fit(x, y, epochs=1)
    ```

    >>> issubclass(LowCoverageWarning, UserWarning)
    True
    """


@keras.saving.register_keras_serializable(package="keras_brainprop")
class GreedyCoverage(keras.metrics.Metric):
    """The share of actions that were the greedy choice for some sample.

    An action is covered when it has the largest Q-value (ties go to the
    lowest index, as `argmax`) for at least one sample seen since the last
    reset. Under BrainProp an output unit that is never the greedy choice
    learns only when exploration happens to pick it, so a coverage below 1
    means that some classes are not being learned yet. `BrainPropModel.fit`
    logs it for every epoch as `greedy_coverage`.

    The state is one count per action; under `tf.distribute` the replicas'
    counts are summed, so the coverage is that of the global batch.

    Args:
        num_actions: the number of actions (the width of the Q-values), or
            None to read it from the first batch.
        name: the metric's name.
        dtype: the dtype of the counts.

    Input shape:
        `q_values`: `[batch, num_actions]`; `sample_weight`: None or
        `[batch]` (a sample of weight 0 covers nothing).

    Output shape:
        A scalar in `[0, 1]`: covered actions / `num_actions`.

    Example:

    >>> coverage = GreedyCoverage()
    >>> coverage.update_state([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    >>> round(float(coverage.result()), 4)  # Actions 1 and 0 of 3.
    0.6667
    """

    def __init__(self, num_actions=None, name="greedy_coverage", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if num_actions is not None and (
            not isinstance(num_actions, int)
            or isinstance(num_actions, bool)
            or num_actions < 1
        ):
            raise ValueError(
                "`num_actions` must be a positive int or None. Received: "
                f"num_actions={num_actions!r}"
            )
        self.num_actions = None
        self.counts = None
        if num_actions is not None:
            self.build(num_actions)

    def build(self, num_actions):
        """Creates the counts of `num_actions` actions (once; then checks)."""
        if self.counts is not None:
            if num_actions != self.num_actions:
                raise ValueError(
                    f"This GreedyCoverage counts {self.num_actions} actions. "
                    f"Received: num_actions={num_actions!r}"
                )
            return
        self.num_actions = num_actions
        self.counts = self.add_variable(
            shape=(num_actions,), initializer="zeros", name="counts"
        )

    def update_state(self, q_values, sample_weight=None):
        q_values = ops.convert_to_tensor(q_values)
        num_actions = q_values.shape[-1]
        self.build(num_actions)
        chosen = ops.one_hot(_greedy(q_values), num_actions, dtype=self.dtype)
        if sample_weight is not None:
            weight = ops.reshape(ops.cast(sample_weight, self.dtype), [-1, 1])
            chosen = chosen * ops.cast(weight > 0, self.dtype)
        self.counts.assign_add(ops.sum(chosen, axis=0))

    def result(self):
        if self.counts is None:
            return ops.zeros((), self.dtype)
        return ops.mean(ops.cast(self.counts > 0, self.dtype))

    def reset_state(self):
        if self.counts is not None:
            self.counts.assign(ops.zeros(self.counts.shape, self.dtype))

    def never_greedy(self):
        """Returns the sorted list of actions that no sample chose greedily."""
        if self.counts is None:
            return []
        # Read as result() reads them (summed over tf.distribute replicas).
        covered = ops.convert_to_numpy(self.counts > 0)
        return [int(action) for action in (~covered).nonzero()[0]]

    def get_config(self):
        return {**super().get_config(), "num_actions": self.num_actions}


@keras.saving.register_keras_serializable(package="keras_brainprop")
class GreedyAccuracy(keras.metrics.MeanMetricWrapper):
    """The share of samples whose greedy action earns the best reward.

    What `"accuracy"` means in `BrainPropModel.compile(metrics=...)`: with
    class labels (indices `[batch]` or `[batch, 1]`, or one-hot rows) the
    share of samples whose largest Q-value is the correct class; with a
    reward table, the share whose greedy action earns the row's largest
    reward. Keras' own "accuracy" picks binary, sparse or categorical
    accuracy from the shapes of the first batch, and keeps that choice
    when the targets change form.

    Args:
        name: the metric's name.
        dtype: the dtype of the result.

    Input shape:
        `y_true`: labels `[batch]` or `[batch, 1]`, or one-hot labels or a
        reward table `[batch, actions]`; `y_pred`: Q-values
        `[batch, actions]`; `sample_weight`: None or `[batch]`.

    Output shape:
        A scalar in `[0, 1]`.

    Example:

    >>> accuracy = GreedyAccuracy()
    >>> accuracy.update_state([1, 2], [[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    >>> float(accuracy.result())  # Right for the first sample only.
    0.5
    """

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(fn=_greedy_accuracy, name=name, dtype=dtype)
        _keras_fixes.set_direction(self, "up")

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def _greedy_accuracy(y_true, q_values):
    q_values = ops.convert_to_tensor(q_values)
    table = rewards.CorrectChoice().table(y_true, q_values.shape[-1])
    earned = rewards._take(table, _greedy(q_values))
    return ops.cast(ops.equal(earned, ops.max(table, axis=-1)), "float32")


def _with_greedy_accuracy(metrics):
    # BrainPropModel.compile(): "accuracy" is GreedyAccuracy.
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, (list, tuple)):
        return metrics
    return [
        GreedyAccuracy(name=metric)
        if isinstance(metric, str) and metric.lower() in ("accuracy", "acc")
        else metric
        for metric in metrics
    ]
