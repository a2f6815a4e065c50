"""Work-arounds for Keras 3.15.1 (TensorFlow 2.21): its only private parts.

Each fix names what it works around and the upstream issue where there is
one, so that it can go when Keras changes; tests/test_keras_fixes.py
exercises the case each one exists for.
"""

import keras
import tensorflow as tf


def in_multi_worker_mode():
    """True when the current strategy spans several worker processes."""
    if keras.backend.backend() != "tensorflow":
        return False
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
                bool(keras.ops.any(keras.ops.not_equal(variable, 0)))
                for variable in metric.variables
            )
        }
        return {k: v for k, v in results.items() if k not in unused}


def compile_loss_tracker(model):
    """Returns the "loss" `Mean` Keras' compile() adds, or None.

    Keras 3.15.1 keeps it private (`_loss_tracker`, no upstream issue
    found); its trainers update it with the value `compute_loss` returns,
    on every backend. A model listing its metrics in its own order needs
    it to put "loss" first, as Keras does.
    """
    return getattr(model, "_loss_tracker", None)


def set_initial_epoch(model, epoch):
    """Makes the `fit()` now starting begin at `epoch` (None: as asked).

    Call it from `on_train_begin`, and with None when fit() ends. Keras
    3.15.1's fit() reads `_initial_epoch` right after on_train_begin on
    every backend (its own BackupAndRestore sets it); a callback has no
    public way to choose the epoch (no upstream issue found).
    """
    model._initial_epoch = epoch


def sync_variables(model):
    """Makes `model`'s variables hold the values of the `fit()` under way.

    Keras 3.15.1's JAX trainer carries the value of every variable
    (weights, optimizer, metrics, random states) from step to step outside
    the variables, which it empties, and writes the values back at the end
    of each epoch or when `jax_state_sync()` is called; reading a weight
    between two steps gives nothing without it. Keras documents no public
    way (its `Callback.model` property calls this method, no upstream issue
    found). Call it between steps (`on_train_batch_end`), never inside one:
    the trainer then holds the previous step's values. On TensorFlow and
    PyTorch the variables are always current: this does nothing.
    """
    if keras.backend.backend() == "jax" and hasattr(model, "jax_state_sync"):
        model.jax_state_sync()


def global_random_state():
    """Returns PyTorch's global random states, a dict of arrays, or {}.

    Keras 3.15.1's PyTorch backend draws the mask of a `Dropout` built
    without a `seed` from torch's global generator, not from the layer's
    `SeedGenerator` (a faster path, see `dropout` in
    keras/src/backend/torch/random.py; no upstream issue found), and
    PyTorch's `DataLoader`, which Keras reads the data with, draws from it
    at every new pass. A PyTorch run resumes exactly only with that state.
    TensorFlow and JAX draw from the seed states kept in the variables:
    {} there.
    """
    if keras.backend.backend() != "torch":
        return {}
    import torch

    states = {"cpu": torch.get_rng_state().numpy()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for device, state in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda_{device}"] = state.numpy()
    return states


def set_global_random_state(states):
    """Sets the states `global_random_state` returned."""
    if not states:
        return
    import torch

    for name, state in states.items():
        state = torch.as_tensor(state, dtype=torch.uint8)
        if name == "cpu":
            torch.set_rng_state(state)
        else:
            torch.cuda.set_rng_state(state, int(name.split("_")[1]))


def wrap_train_function(model, wrapper):
    """Routes fit()'s steps through `wrapper(train_function, iterator)`.

    `iterator` gives the batches of the current pass over the data: the
    same object at every step of a pass, a new one when fit() starts a new
    pass. `train_function(iterator)` trains one step on the next batch and
    returns the step's logs; the wrapper returns the logs of the step. To
    skip a step it reads the batch with `next(iterator)`, returns logs of
    its own and does not call `train_function`, which it calls at most
    once per step. It runs inside the step: on JAX it must not read or
    sync the model's variables (see `sync_variables`).

    Call it from `on_train_begin`, and `unwrap_train_function` from
    `on_train_end`. Keras 3.15.1's fit() makes `model.train_function` before
    on_train_begin, then calls it once per step; a callback has no public
    way to skip a step (no upstream issue found). The train function
    differs per backend, which the wrapper does not see:

    - TensorFlow: `train_function(iterator)` reads its batch itself.
    - JAX: `train_function(state, iterator)` returns `(logs, state)`; the
      state, every variable's value, goes from step to step outside the
      variables. A skipped step passes it on unchanged.
    - PyTorch: `train_function(data)` gets the batch fit() has already
      read, not the iterator. Reading further batches (skipping the ones an
      endless stream gave in earlier epochs) and telling passes apart need
      the data iterator that fit() reads from. Keras keeps it private in
      the `EpochIterator` held by fit()'s local `epoch_iterator`
      (`_current_iterator`; None for data of unknown length without
      `steps_per_epoch`, where each epoch is a new pass of its own, read
      one batch per step); no upstream issue found.
    """
    original = _unwrapped(model.train_function)
    backend = keras.backend.backend()
    if backend == "jax":

        def train_function(state, iterator):
            new_state = [state]

            def train(batches):
                logs, new_state[0] = original(state, batches)
                return logs

            logs = wrapper(train, iterator)
            return logs, new_state[0]

    elif backend == "torch":
        current_pass = [None]

        def train_function(data):
            epoch_iterator = _fit_epoch_iterator()
            batches = current_pass[0]
            if batches is None or not batches.reads(epoch_iterator):
                batches = current_pass[0] = _TorchPass(epoch_iterator)
            batches.pending = list(data)
            return wrapper(lambda it: original([next(it)]), batches)

    else:

        def train_function(iterator):
            return wrapper(original, iterator)

    train_function.kbp_unwrapped = original
    model.train_function = train_function


def unwrap_train_function(model):
    """Puts back the train function `wrap_train_function` replaced."""
    model.train_function = _unwrapped(model.train_function)


def _unwrapped(train_function):
    return getattr(train_function, "kbp_unwrapped", train_function)


def _fit_epoch_iterator():
    """The `EpochIterator` of the PyTorch `fit()` calling the train step."""
    import sys

    from keras.src.trainers.epoch_iterator import EpochIterator

    frame = sys._getframe(2)
    while frame is not None:
        epoch_iterator = frame.f_locals.get("epoch_iterator")
        if isinstance(epoch_iterator, EpochIterator):
            return epoch_iterator
        frame = frame.f_back
    raise RuntimeError(
        "keras_brainprop found no `epoch_iterator` in Keras' fit(): this "
        f"Keras ({keras.__version__}) trains differently from 3.15.1, which "
        "`_keras_fixes.wrap_train_function` was written for."
    )


class _TorchPass:
    """The batches of one pass over the data, as PyTorch's fit() reads it.

    Its first batch at each step is the one fit() read for the step; any
    further one comes from the pass's data iterator.
    """

    def __init__(self, epoch_iterator):
        self.source = epoch_iterator._current_iterator
        self.key = _pass_key(epoch_iterator)
        self.pending = []

    def reads(self, epoch_iterator):
        return _pass_key(epoch_iterator) is self.key

    def __iter__(self):
        return self

    def __next__(self):
        if self.pending:
            return self.pending.pop(0)
        if self.source is None:
            raise RuntimeError(
                "This pass over the data has no iterator to read ahead "
                "from: with PyTorch, a step reads only its own batch when "
                "the data has no known length and fit() gets no "
                "`steps_per_epoch`."
            )
        return next(self.source)


def _pass_key(epoch_iterator):
    # Without a lasting data iterator each epoch is a pass of its own.
    if epoch_iterator._current_iterator is not None:
        return epoch_iterator._current_iterator
    return epoch_iterator._epoch_iterator


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
