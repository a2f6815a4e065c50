"""Work-arounds for Keras 3.15.1 (TensorFlow 2.21): its only private parts.

Each fix names what it works around and the upstream issue where there is
one, so that it can go when Keras changes; tests/test_keras_fixes.py
exercises the case each one exists for.
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
            costs one collective per step; `ReplicaSafeModel` reads the
            epoch's logs from the metrics anyway.

    Returns:
        `logs` on one worker; else the kept logs with shape `[1]`.
    """
    if not in_multi_worker_mode():
        return logs
    names = logs if keep is None else [n for n in keep if n in logs]
    return {name: tf.reshape(logs[name], [1]) for name in names}


class ReplicaSafeModel(keras.Model):
    """A `keras.Model` that trains and evaluates under `tf.distribute`.

    Subclass it instead of `keras.Model` and return `step_logs(...)` from
    `train_step` / `test_step`.
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
        # step logs name some of them, leaving out a metric that no step
        # updated (all its variables still zero) and the logs do not name
        # (e.g. an explore rate or greedy coverage during evaluate()).
        results = self.get_metrics_result()
        if not isinstance(logs, dict) or not set(logs) <= set(results):
            return logs
        unused = {
            metric.name
            for metric in self.metrics
            if metric.name not in logs
            and not any(
                tf.reduce_any(tf.not_equal(variable, 0))
                for variable in metric.variables
            )
        }
        return {k: v for k, v in results.items() if k not in unused}


def without_compile_loss_tracker(model, metrics):
    """Returns `metrics` without the "loss" tracker Keras' compile() adds.

    Keras 3.15.1's compile() adds a "loss" `Mean` to `model.metrics` even
    without a loss (no upstream issue found). A model that tracks its own
    "loss" would list two and log whichever comes last; listed after the
    model's own, Keras' tracker, never updated, would log a loss of 0.
    """
    tracker = getattr(model, "_loss_tracker", None)
    return [metric for metric in metrics if metric is not tracker]


def set_initial_epoch(model, epoch):
    """Makes the `fit()` now starting begin at `epoch` (None: as asked).

    Call it from `on_train_begin`, and with None when fit() ends. Keras
    3.15.1's fit() reads `_initial_epoch` right after on_train_begin (its
    own BackupAndRestore sets it); a callback has no public way to choose
    the epoch (no upstream issue found).
    """
    model._initial_epoch = epoch


def wrap_train_function(model, wrapper):
    """Routes fit()'s steps through `wrapper(train_function, iterator)`.

    Call it from `on_train_begin`, and `unwrap_train_function` from
    `on_train_end`. Keras 3.15.1's fit() makes `model.train_function` before
    on_train_begin, then calls it once per step; a callback has no public
    way to skip a step (no upstream issue found).
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


def compiled_metrics(model):
    """Returns the container of the metrics given to compile(), or None.

    Keras 3.15.1 keeps compile()'s metrics in one private `CompileMetrics`
    listed in `model.metrics` as "compile_metrics", so `metrics_names`
    names the container, not the values evaluate() returns
    (keras-team/keras#20244, #21487); its `metrics` lists them once built.
    It is built by the first batch with targets: until then (always, for a
    reward that needs none) its result() raises "Cannot get result() since
    the metric has not yet been built" (no upstream issue found).
    """
    return getattr(model, "_compile_metrics", None)


def input_signature(network):
    """Returns the input signature `keras.Model.export` infers for `network`.

    Keras 3.15.1's export() reads it from a subclassed model's recorded
    build shapes and refuses a model without them ("The model provided has
    never called"), as a model that wraps an already built network is (no
    upstream issue found). The network's own inputs give the signature.
    """
    from keras.src.export import export_utils

    return export_utils.get_input_signature(network)


def saving_legacy_h5():
    """True while Keras saves or loads a model in the legacy `.h5` format.

    Keras 3.15.1 calls `get_config()` in that format too, which keeps no
    variables but the layers' weights; it marks the call with a private
    global flag (no upstream issue found).
    """
    from keras.src.backend.common import global_state

    return bool(global_state.get_global_attribute("use_legacy_config", False))


def set_direction(metric, direction):
    """Tells Keras whether `metric` improves "up" or "down".

    In mode "auto", Keras 3.15.1's EarlyStopping, ModelCheckpoint and
    ReduceLROnPlateau read it from a metric's private `_direction`, which
    its own metrics set in __init__ and a metric subclass has no public way
    to declare (no upstream issue found); without it they refuse to run.
    """
    metric._direction = direction
