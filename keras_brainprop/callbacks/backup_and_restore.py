"""BackupAndRestore: exact resumption of an interrupted fit().

Why not `keras.callbacks.BackupAndRestore` (Keras 3.15)? With `save_freq` in
batches it restarts the interrupted epoch at its first batch, so those
batches are trained twice; after a restart its mid-epoch backups record
epoch 0 until an epoch ends; it keeps neither the interrupted epoch's
metrics nor the history; and it overwrites its weights file in place, so an
interruption during the write leaves a damaged file.
"""

import contextlib
import glob
import json
import os
import warnings

import keras
import numpy as np

from keras_brainprop import _keras_fixes
from keras_brainprop.callbacks._backup_configuration import check_configuration
from keras_brainprop.callbacks._backup_configuration import configuration_of
from keras_brainprop.callbacks._backup_file import BACKUP_FILE
from keras_brainprop.callbacks._backup_file import FORMAT
from keras_brainprop.callbacks._backup_file import TEMP_PREFIX
from keras_brainprop.callbacks._backup_file import TEMP_SUFFIX
from keras_brainprop.callbacks._backup_file import read_backup
from keras_brainprop.callbacks._backup_file import write_atomically


def _jsonable(logs):
    # Keras hands callbacks Python floats; be safe with NumPy values too.
    return {
        key: value.tolist() if hasattr(value, "tolist") else value
        for key, value in (logs or {}).items()
    }


def _to_numpy(variable):
    if keras.backend.backend() == "tensorflow":
        return variable.numpy()  # Without NumPy 2's warning about copies.
    return np.array(keras.ops.convert_to_numpy(variable.value))


def _all_finite(arrays):
    return all(
        np.isfinite(array).all()
        for array in arrays
        if np.issubdtype(array.dtype, np.floating)
    )


class BackupAndRestore(keras.callbacks.Callback):
    """Backs up the training state and resumes an interrupted fit() exactly.

    Every `save_freq` training steps (or once an epoch) it writes one file,
    `<backup_dir>/backup.npz`, with every variable of the model (weights,
    batch-norm statistics, the seed-generator states of exploration and
    dropout), of the optimizer and of the metrics, plus the epoch, the step
    within it and the history so far; on PyTorch also torch's global random
    state, from which Keras draws the dropout of a layer without a `seed`.
    The write is atomic (temporary file, fsync, rename): a process killed
    at any moment leaves the previous backup or the new one intact. A
    backup is never made of NaN or Inf weights: the last finite state is
    kept.

    When `fit()` is called again with the same arguments and a backup
    exists, the callback restores it and resumes at the step it was made:
    the batches of that epoch already trained are read from the data and
    skipped (their callbacks see the restored metrics). BrainProp's
    exploration is a function of the seed and the optimizer's step, so the
    resumed run ends with the same weights, optimizer state, random states,
    metrics and history (`fit()` returns all of it) as an uninterrupted one.

    This needs the data to replay the same batches in the same order:
    arrays with `shuffle=False`; a `tf.data` pipeline with the same order
    at every pass (no shuffle, or `reshuffle_each_iteration=False`); or one
    endless seeded stream (a shuffled dataset `.repeat()`-ed, fit with
    `steps_per_epoch`), whose skipped batches are read again from its start.
    A dataset that reshuffles at each pass, such as
    `keras_brainprop.datasets.load(..., shuffle=True)` without `.repeat()`,
    resumes correctly but not identically. Exactness also needs the same
    op results bit for bit: the same backend, machine and versions, with
    deterministic ops (on TensorFlow
    `tf.config.experimental.enable_op_determinism()`; on GPU, PyTorch's
    `torch.use_deterministic_algorithms(True)`); `steps_per_execution=1`,
    one device, and no other callback whose state matters
    (`EarlyStopping`'s and `ReduceLROnPlateau`'s counters are not backed
    up). It works alike on the TensorFlow, JAX and PyTorch backends.

    A backup resumes only the configuration that wrote it: the Keras
    backend, the feedback rule, the policy and its parameters, the reward
    and the network's architecture (layer names, initializers and seeds
    aside) are stored with it, and a model that differs in any of them
    raises a `ValueError` naming the difference before any variable is
    restored. No backup resumes under another backend: the backends draw
    other random numbers from the same seeds (exploration, dropout) and
    round differently, so the run would not continue as it would have (a
    model saved with `model.save()` loads under any backend).

    Args:
        backup_dir: directory of the backup; one per training run.
        save_freq: `"epoch"` to back up after the last step of every epoch
            (at the end of the epoch when its length is unknown), or an
            integer `n` to back up after every `n` training steps, counted
            over the whole run.
        delete_checkpoint: whether to delete the backup when `fit()`
            finishes (it is kept if the weights are then NaN or Inf).

    Example:

    ```python
    backup = keras_brainprop.callbacks.BackupAndRestore(
        "/tmp/run1", save_freq=100)
    model.fit(x, y, shuffle=False, epochs=20, callbacks=[backup])
    # Killed? Run the same lines again: it continues where it stopped.
    ```
    """

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
        if not backup_dir:
            raise ValueError(
                f"`backup_dir` must be a directory. Received: {backup_dir!r}"
            )
        if save_freq != "epoch" and (
            isinstance(save_freq, bool)
            or not isinstance(save_freq, int)
            or save_freq < 1
        ):
            raise ValueError(
                "`save_freq` must be 'epoch' or a positive number of steps. "
                f"Received: save_freq={save_freq!r}"
            )
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.delete_checkpoint = delete_checkpoint
        self.path = os.path.join(self.backup_dir, BACKUP_FILE)
        # Where the last fit() resumed: the restored manifest, or None.
        self.restored = None
        self._reset_run_state()

    def _reset_run_state(self):
        self._epoch = 0
        self._steps = 0
        self._history = []
        self._iterator = None
        self._data_position = 0
        self._discard = 0
        self._to_replay = 0
        self._replaying = False
        self._saved_metrics = None
        self._replay_logs = {}
        self._random_state = {}
        self._history_epochs_pending = []
        self._warned_not_finite = False
        self._configuration = None

    def _variable_groups(self, with_metrics=True):
        model = self.model
        groups = {
            "model": list(model.variables),
            "optimizer": list(model.optimizer.variables),
        }
        if with_metrics:
            groups["metrics"] = self._metric_variables()
        return groups

    def _metric_variables(self):
        return [v for metric in self.model.metrics for v in metric.variables]

    # Callback hooks.

    def on_train_begin(self, logs=None):
        model = self.model
        if model.steps_per_execution != 1:
            raise ValueError(
                "keras_brainprop.callbacks.BackupAndRestore needs "
                "compile(steps_per_execution=1). Received: "
                f"steps_per_execution={model.steps_per_execution}"
            )
        self._reset_run_state()
        self.restored = None
        # Left over if an earlier fit() was interrupted after resuming.
        _keras_fixes.set_initial_epoch(model, None)
        for stray in glob.glob(
            os.path.join(self.backup_dir, f"{TEMP_PREFIX}*{TEMP_SUFFIX}")
        ):
            # Left by a process killed while writing; never read.
            with contextlib.suppress(OSError):
                os.remove(stray)
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        # Read once: it does not change during a fit.
        self._configuration = configuration_of(model)
        backup = read_backup(self.path) if os.path.exists(self.path) else None
        if backup is not None:
            check_configuration(backup[0], self._configuration, self.backup_dir)
        _keras_fixes.wrap_train_function(model, self._train_or_replay)
        if backup is not None:
            self._restore(*backup)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._fill_history_epochs()
        # After fit() reset the metrics, before the replayed steps.
        if self._saved_metrics is not None and self._restore_metrics():
            # What callbacks see at each replayed step, which trains
            # nothing and must not read the variables (JAX).
            self._replay_logs = self._metrics_result()

    def on_train_batch_end(self, batch, logs=None):
        if self._replaying:
            return  # Trained before the interruption; already backed up.
        self._steps += 1
        if self.save_freq == "epoch":
            if batch + 1 == self.params.get("steps"):
                self._save(self._epoch, batch + 1)
        elif self._steps % self.save_freq == 0:
            self._save(self._epoch, batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self._history.append([epoch, _jsonable(logs)])
        if self.save_freq == "epoch" and not self.params.get("steps"):
            # Epoch length unknown, so Keras starts the next epoch with a
            # fresh pass over the data: back up between epochs.
            self._save(epoch + 1, 0, data_position=0)

    def on_train_end(self, logs=None):
        self._fill_history_epochs()
        _keras_fixes.unwrap_train_function(self.model)
        # Keras reads it at every fit() start; do not resume twice.
        _keras_fixes.set_initial_epoch(self.model, None)
        if self.delete_checkpoint and os.path.exists(self.path):
            if self._weights_finite():
                os.remove(self.path)
            else:
                warnings.warn(
                    f"Training ended with NaN or Inf weights; the backup "
                    f"{self.path} of the last finite state is kept.",
                    stacklevel=2,
                )

    # Replaying the interrupted epoch. This runs inside fit()'s step: on
    # JAX the variables do not hold the current values there.

    def _train_or_replay(self, train_function, iterator):
        if iterator is not self._iterator:
            # A new pass over the data. The first one of a resumed run
            # discards what the interrupted run read in earlier epochs
            # from the same pass (one endless stream).
            self._iterator = iterator
            self._data_position = 0
            for _ in range(self._discard):
                next(iterator)
            self._data_position = self._discard
            self._discard = 0
        self._data_position += 1
        if self._to_replay == 0:
            self._replaying = False
            return train_function(iterator)
        batch = next(iterator)
        self._to_replay -= 1
        self._replaying = True
        if self._to_replay == 0:
            # Where the backup was made: what draws from the global
            # generator from here on (PyTorch) draws as it did then.
            _keras_fixes.set_global_random_state(self._random_state)
        if self._saved_metrics is not None:
            # Only where the variables are current inside a step.
            self._restore_metrics(batch)
            self._replay_logs = self._metrics_result()
        return dict(self._replay_logs)

    def _restore_metrics(self, batch=None):
        variables = self._metric_variables()
        # TensorFlow's fit() creates the compiled metrics' variables at the
        # first step (JAX's and PyTorch's before training): an evaluation
        # step on the first replayed batch (weights untouched) does too.
        if len(variables) != len(self._saved_metrics) and (
            keras.backend.backend() == "tensorflow"
        ):
            if batch is None:
                return False
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
            self.model.test_on_batch(x, y, sample_weight)
            variables = self._metric_variables()
        self._assign("metrics", variables, self._saved_metrics)
        self._saved_metrics = None
        return True

    def _metrics_result(self):
        return {
            name: keras.ops.convert_to_numpy(value)
            for name, value in self.model.get_metrics_result().items()
        }

    # Saving and restoring.

    def _save(self, epoch, batch, data_position=None):
        _keras_fixes.sync_variables(self.model)
        groups = self._variable_groups()
        arrays = {}
        for name, variables in groups.items():
            for i, variable in enumerate(variables):
                arrays[f"{name}_{i}"] = _to_numpy(variable)
        if not _all_finite(
            arrays[f"model_{i}"] for i in range(len(groups["model"]))
        ):
            if not self._warned_not_finite:
                warnings.warn(
                    "The weights are NaN or Inf: not backing them up. "
                    f"{self.path} keeps the last finite state.",
                    stacklevel=2,
                )
                self._warned_not_finite = True
            return
        manifest = {
            "format": FORMAT,
            "epoch": epoch,
            "batch": batch,
            "data_position": (
                self._data_position if data_position is None else data_position
            ),
            "steps": self._steps,
            "iterations": int(_to_numpy(self.model.optimizer.iterations)),
            "history": self._history,
            "counts": {name: len(v) for name, v in groups.items()},
            "keras_version": keras.__version__,
            "configuration": self._configuration,
        }
        for name, state in _keras_fixes.global_random_state().items():
            arrays[f"random_{name}"] = state
        arrays["manifest"] = np.array(json.dumps(manifest))
        write_atomically(self.path, arrays)

    def _restore(self, manifest, arrays):
        groups = self._variable_groups(with_metrics=False)
        for name, variables in groups.items():
            values = [
                arrays[f"{name}_{i}"]
                for i in range(manifest["counts"].get(name, 0))
            ]
            self._assign(name, variables, values)
        self._epoch = manifest["epoch"]
        self._steps = manifest["steps"]
        self._history = [list(entry) for entry in manifest["history"]]
        self._to_replay = manifest["batch"]
        self._discard = manifest["data_position"] - manifest["batch"]
        if manifest["batch"] > 0:
            self._saved_metrics = [
                arrays[f"metrics_{i}"]
                for i in range(manifest["counts"]["metrics"])
            ]
        self._random_state = {
            key[len("random_") :]: value
            for key, value in arrays.items()
            if key.startswith("random_")
        }
        if self._to_replay == 0:
            # Made between epochs: nothing is replayed.
            _keras_fixes.set_global_random_state(self._random_state)
        _keras_fixes.set_initial_epoch(self.model, manifest["epoch"])
        history = self.model.history
        for _, epoch_logs in self._history:
            for key, value in epoch_logs.items():
                history.history.setdefault(key, []).append(value)
        self._history_epochs_pending = [epoch for epoch, _ in self._history]
        self.restored = manifest

    def _fill_history_epochs(self):
        # History.on_train_begin() empties its epoch list after we restored.
        if self._history_epochs_pending:
            self.model.history.epoch[:0] = self._history_epochs_pending
            self._history_epochs_pending = []

    def _assign(self, name, variables, values):
        shapes = [tuple(np.shape(value)) for value in values]
        expected = [tuple(variable.shape) for variable in variables]
        if shapes != expected:
            raise ValueError(
                f"The backup in {self.backup_dir} was made by a different "
                f"model, optimizer or metrics: its {name} variables have "
                f"shapes {shapes}, this model's have {expected}. "
                "Use a new backup_dir for a new run."
            )
        for variable, value in zip(variables, values):
            if value.dtype.kind == "V":  # bfloat16 comes back as raw bytes.
                value = value.view(np.dtype(variable.dtype))
            variable.assign(value)

    def _weights_finite(self):
        return _all_finite(_to_numpy(w) for w in self.model.weights)
