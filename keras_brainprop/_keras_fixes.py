"""Work-arounds for Keras 3.15.1 (TensorFlow backend, TensorFlow 2.21).

The only module of keras_brainprop that touches private Keras or TensorFlow
attributes. Each fix names the behaviour it works around and the upstream
issue where there is one, so that it can go when Keras changes;
tests/test_keras_fixes.py exercises the case each one exists for.
"""

import keras
import tensorflow as tf


def in_multi_worker_mode():
    """True when the current strategy spans several worker processes."""
    # TensorFlow 2.21 has no public check (no upstream issue found); Keras
    # 3.15.1 itself calls this private one.
    return tf.distribute.get_strategy().extended._in_multi_worker_mode()


def step_logs(logs, keep=None):
    """Returns per-step logs Keras can reduce across workers.

    Keras 3.15.1 reduces every per-step log across workers with
    `strategy.reduce("MEAN", value, axis=0)`, which fails for the scalar
    logs every model returns (keras-team/keras#20585).

    Args:
        logs: dict of scalar tensors returned by a train or test step.
        keep: names to keep across workers (None keeps all). Each kept log
            costs one collective per step; the epoch's logs are read from
            the metrics anyway (see `ReplicaSafeModel`).

    Returns:
        `logs` unchanged on one worker; otherwise the kept logs with shape
        `[1]`.
    """
    if not in_multi_worker_mode():
        return logs
    names = logs if keep is None else [n for n in keep if n in logs]
    return {name: tf.reshape(logs[name], [1]) for name in names}


class ReplicaSafeModel(keras.Model):
    """A `keras.Model` that trains and evaluates under `tf.distribute`.

    Subclass it instead of `keras.Model` and return `step_logs(...)` from
    `train_step` / `test_step`. It fixes how Keras 3.15.1 builds the model
    and how it reads the logs of an epoch; see the comments below.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15.1 builds the model from the first distributed batch
        # averaged over the replicas, which fails across workers and
        # whenever the first batch does not split evenly over the replicas
        # (e.g. 31 samples over 2) (keras-team/keras#20585). Build from the
        # first replica's share instead.
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

    def _get_metrics_result_or_logs(self, logs):
        # Keras 3.15.1 reads an epoch's logs from the metrics only when the
        # last step's logs name exactly the model's metrics (the rule of
        # keras-team/keras#19529); otherwise it keeps the last step's logs.
        # Under tf.distribute those are the replicas' own results averaged,
        # wrong when the replicas' shares differ, and across workers they
        # hold only what `step_logs` kept. Read the metrics whenever the
        # step logs name some of them, leaving out a `Mean` that no step
        # updated and the logs do not name (e.g. an explore rate during
        # evaluate()).
        results = self.get_metrics_result()
        if not isinstance(logs, dict) or not set(logs) <= set(results):
            return logs
        unused = {
            metric.name
            for metric in self.metrics
            if isinstance(metric, keras.metrics.Mean)
            and metric.name not in logs
            and not tf.convert_to_tensor(metric.count)
        }
        return {k: v for k, v in results.items() if k not in unused}


def without_compile_loss_tracker(model, metrics):
    """Returns `metrics` without the "loss" tracker Keras' compile() adds.

    For a model that tracks its own "loss": Keras 3.15.1's compile() adds a
    "loss" `Mean` to `model.metrics` even when no loss is compiled; never
    updated, it would overwrite the model's own "loss" in the logs with 0
    (no upstream issue found).
    """
    tracker = getattr(model, "_loss_tracker", None)
    return [metric for metric in metrics if metric is not tracker]


def set_initial_epoch(model, epoch):
    """Makes the `fit()` now starting begin at `epoch` (None: as asked).

    Call it from a callback's `on_train_begin`. Keras 3.15.1's fit() reads
    the private `_initial_epoch` right after on_train_begin, as its own
    `keras.callbacks.BackupAndRestore` relies on; a callback has no public
    way to set it (no upstream issue found). It persists: reset it to None
    when fit() ends.
    """
    model._initial_epoch = epoch


def wrap_train_function(model, wrapper):
    """Routes fit()'s steps through `wrapper(train_function, iterator)`.

    Call it from a callback's `on_train_begin`, and `unwrap_train_function`
    from its `on_train_end`. Keras 3.15.1's fit() makes
    `model.train_function` before on_train_begin and then calls it once per
    step, so a replaced function serves the whole fit(); a callback has no
    public way to skip a step (no upstream issue found).
    """
    original = _unwrapped(model.train_function)

    def train_function(iterator):
        return wrapper(original, iterator)

    train_function.kbp_unwrapped = original
    model.train_function = train_function


def unwrap_train_function(model):
    """Puts back the train function `wrap_train_function` replaced."""
    model.train_function = _unwrapped(model.train_function)


def _unwrapped(train_function):
    return getattr(train_function, "kbp_unwrapped", train_function)
