"""BackupAndRestore on every backend: exact resumption, mid-epoch included,
and backups of another backend refused.

Run under each backend, e.g. `KERAS_BACKEND=jax python -m pytest -m backends
tests/test_callbacks_backup_and_restore.py`.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_brainprop as kbp
from keras_brainprop import policies
from keras_brainprop.callbacks import BackupAndRestore
from keras_brainprop.callbacks._backup_file import read_backup
from keras_brainprop.callbacks._backup_file import write_atomically

BACKEND = keras.backend.backend()
NUM_FEATURES = 4
NUM_ACTIONS = 3
# 16 samples in batches of 4: 4 steps an epoch.
X = np.random.default_rng(0).normal(size=(16, NUM_FEATURES)).astype("float32")
Y = np.arange(16) % NUM_ACTIONS
FIT_ARGS = {"batch_size": 4, "epochs": 2, "shuffle": False, "verbose": 0}


class Interrupted(Exception):
    pass


class Interrupt(keras.callbacks.Callback):
    """Stops fit() after the step that makes the optimizer's `steps`-th
    update, as a killed process would (after the backup of that step)."""

    def __init__(self, steps):
        super().__init__()
        self.steps = steps

    def on_train_batch_end(self, batch, logs=None):
        iterations = keras.ops.convert_to_numpy(
            self.model.optimizer.iterations.value
        )
        if int(iterations) == self.steps:
            raise Interrupted()


def resumable_model(run_eagerly=False):
    # Batch norm, dropout and much exploration: a wrong statistic or
    # random draw after resuming would show.
    keras.utils.set_random_seed(5)
    network = keras.Sequential(
        [
            keras.Input((NUM_FEATURES,)),
            keras.layers.Dense(5),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(NUM_ACTIONS),
        ]
    )
    model = kbp.wrap(network, policy=policies.EpsilonGreedy(0.5), seed=2)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        metrics=["accuracy"],
        run_eagerly=run_eagerly,
    )
    return model


def state_of(model):
    return {
        "model": [keras.ops.convert_to_numpy(v.value) for v in model.variables],
        "optimizer": [
            keras.ops.convert_to_numpy(v.value)
            for v in model.optimizer.variables
        ],
    }


def assert_same_run(expected, model, expected_history, history):
    state = state_of(model)
    for group, values in expected.items():
        assert len(values) == len(state[group])
        for want, got in zip(values, state[group]):
            np.testing.assert_array_equal(got, want, err_msg=group)
    assert history == expected_history


def interrupt_then_resume(tmp_path, fit, save_freq, after_steps, eager):
    with pytest.raises(Interrupted):
        fit(
            resumable_model(eager),
            [BackupAndRestore(tmp_path, save_freq), Interrupt(after_steps)],
        )
    model = resumable_model(eager)
    backup = BackupAndRestore(tmp_path, save_freq)
    history = fit(model, [backup]).history
    return model, history, backup.restored


@pytest.mark.backends
def test_mid_epoch_resume_is_bit_identical(tmp_path):
    def fit(model, callbacks):
        return model.fit(X, Y, callbacks=callbacks, **FIT_ARGS)

    model = resumable_model()
    expected_history = fit(model, []).history
    expected = state_of(model)
    # Backups after steps 3 and 6; step 7 is lost and trained again.
    model, history, restored = interrupt_then_resume(
        tmp_path, fit, 3, 7, eager=False
    )
    assert restored["configuration"]["backend"] == BACKEND
    # Epoch 1 resumes after its second batch.
    assert (restored["epoch"], restored["batch"]) == (1, 2)
    assert_same_run(expected, model, expected_history, history)
    assert model.history.epoch == [0, 1]
    assert not list(tmp_path.iterdir())  # Deleted when fit() ends.


@pytest.mark.backends
def test_endless_stream_resume_skips_the_batches_already_read(tmp_path):
    # One shuffled stream over all epochs: the resumed run reads again, and
    # skips, the batches the interrupted one had read.
    def fit(model, callbacks):
        # Made anew, as in a new process: each pass over one dataset object
        # shuffles differently.
        stream = (
            tf.data.Dataset.from_tensor_slices((X, Y))
            .shuffle(16, seed=3)
            .batch(4)
            .repeat()
        )
        return model.fit(
            stream, steps_per_epoch=3, epochs=2, callbacks=callbacks, verbose=0
        )

    # Eagerly: what is tested here is how the data is read.
    model = resumable_model(run_eagerly=True)
    expected_history = fit(model, []).history
    expected = state_of(model)
    # The backup after step 4: epoch 1 after its first batch, 4 batches
    # into the stream.
    model, history, restored = interrupt_then_resume(
        tmp_path, fit, 4, 6, eager=True
    )
    assert (restored["epoch"], restored["batch"]) == (1, 1)
    assert restored["data_position"] == 4
    assert_same_run(expected, model, expected_history, history)


@pytest.mark.backends
@pytest.mark.parametrize(
    "save_freq, resumed_at", [(3, (1, 2)), ("epoch", (1, 0))]
)
def test_data_of_unknown_length_resumes_exactly(
    tmp_path, save_freq, resumed_at
):
    # Keras learns the epoch's length at its end: each epoch is a new pass,
    # and backups "epoch" are made between epochs.
    def fit(model, callbacks):
        dataset = (
            tf.data.Dataset.from_tensor_slices((X, Y))
            .filter(lambda x, y: y >= 0)
            .batch(4)
        )
        return model.fit(dataset, epochs=2, callbacks=callbacks, verbose=0)

    model = resumable_model(run_eagerly=True)
    expected_history = fit(model, []).history
    expected = state_of(model)
    model, history, restored = interrupt_then_resume(
        tmp_path, fit, save_freq, 7, eager=True
    )
    assert (restored["epoch"], restored["batch"]) == resumed_at
    assert_same_run(expected, model, expected_history, history)


def _rewrite_configuration(path, change):
    manifest, arrays = read_backup(path)
    change(manifest["configuration"])
    arrays["manifest"] = np.array(json.dumps(manifest))
    write_atomically(path, arrays)


_OTHER = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}


@pytest.mark.backends
@pytest.mark.parametrize("recorded", ["other backend", "none recorded"])
def test_backup_of_another_backend_is_refused(tmp_path, recorded):
    def fit(model, callbacks):
        return model.fit(X, Y, callbacks=callbacks, **FIT_ARGS)

    backup = BackupAndRestore(tmp_path, save_freq=1)
    with pytest.raises(Interrupted):
        fit(resumable_model(run_eagerly=True), [backup, Interrupt(2)])
    if recorded == "other backend":
        writer = _OTHER[BACKEND]
        _rewrite_configuration(
            backup.path, lambda config: config.update(backend=writer)
        )
    else:
        # Backups written before other backends were TensorFlow's.
        writer = "tensorflow"
        _rewrite_configuration(
            backup.path, lambda config: config.pop("backend")
        )
    model = resumable_model(run_eagerly=True)
    before = state_of(model)
    backup = BackupAndRestore(tmp_path, save_freq=1)
    if writer == BACKEND:
        fit(model, [backup])
        assert backup.restored["iterations"] == 2
        return
    with pytest.raises(ValueError) as error:
        fit(model, [backup])
    message = str(error.value)
    assert f"written under Keras' {writer} backend" in message
    assert f"this process runs {BACKEND}" in message
    assert f"Received: backend={writer!r} in the backup, {BACKEND!r}" in message
    assert backup.restored is None
    for old, new in zip(before["model"], state_of(model)["model"], strict=True):
        np.testing.assert_array_equal(new, old)
