"""Work-arounds for Keras bugs: the only place that touches Keras internals.

Written against Keras 3.15.1 (TensorFlow backend). Each fix names the bug it
works around, so that it can go when Keras fixes it; tests/test_keras_fixes.py
shows each bug.
"""

import keras
import tensorflow as tf


def in_multi_worker_mode():
    """True when the current strategy spans several worker processes."""
    # tf.distribute has no public check; Keras itself uses this one.
    return tf.distribute.get_strategy().extended._in_multi_worker_mode()


def step_logs(logs, keep=None):
    """Returns per-step logs Keras can reduce across workers.

    Keras 3.15.1 reduces every per-step log over axis 0 across workers,
    which fails for the scalar logs every model returns
    (keras-team/keras#20585).

    Args:
        logs: dict of scalar tensors returned by a train or test step.
        keep: names to keep across workers (None keeps all). Each kept log
            costs one collective per step; the epoch's logs are read from
            the metrics anyway.

    Returns:
        `logs` unchanged on one worker; otherwise the kept logs with shape
        `[1]`.
    """
    if not in_multi_worker_mode():
        return logs
    names = logs if keep is None else [n for n in keep if n in logs]
    return {name: tf.reshape(logs[name], [1]) for name in names}


class ReplicaSafeModel(keras.Model):
    """A `keras.Model` that builds from one replica's share of a batch.

    Keras 3.15.1 builds a model from the first distributed batch averaged
    over the replicas, which fails across workers and whenever the first
    batch does not split evenly over the replicas (keras-team/keras#20585).
    Subclass it and return `step_logs(...)` from `train_step` / `test_step`
    to train under `tf.distribute`.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is not None and strategy is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda value: strategy.experimental_local_results(value)[0],
                    next(batches),
                )
                break
            iterator = None
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
