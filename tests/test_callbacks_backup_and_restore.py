"""BackupAndRestore (keras_brainprop/callbacks/backup_and_restore.py): exact
resumption, mid-epoch included, also of Keras' own BackupAndRestore and of
save/load; atomic, checked backup files; backups of another backend, model
or configuration refused.

The tests marked `backends` run on every backend.

Run under each backend, e.g. `KERAS_BACKEND=jax python -m pytest -m backends
tests/test_callbacks_backup_and_restore.py`.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from _helpers import InterruptAfterBatches
from _helpers import Interrupted
from _helpers import assert_histories_equal
from _helpers import assert_states_equal
from _helpers import compiled_model
from _helpers import random_batch
from _helpers import toy_data
from _helpers import toy_net
from _helpers import training_state

import keras_brainprop as kbp
from keras_brainprop import datasets
from keras_brainprop import feedback
from keras_brainprop import policies
from keras_brainprop import rewards
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_backup_never_keeps_nan_weights(tmp_path):
    # Diverging training: the loss turns NaN. The backup keeps the last
    # finite state, which loads, and is not deleted at the end.
    model = kbp.wrap(toy_net(), policy="greedy")
    model.compile(optimizer=keras.optimizers.SGD(1e12))
    x, y = toy_data(64)
    backup = BackupAndRestore(tmp_path, save_freq=1)
    with pytest.warns(UserWarning, match="NaN or Inf"):
        history = model.fit(
            x * 1e3,
            y,
            batch_size=4,
            shuffle=False,
            callbacks=[backup, keras.callbacks.TerminateOnNaN()],
            verbose=0,
        ).history
    assert not np.isfinite(history["loss"][-1])
    manifest, arrays = read_backup(backup.path)
    assert 0 < manifest["steps"] < int(model.optimizer.iterations)
    saved = [v for k, v in arrays.items() if k.startswith("model_")]
    assert len(saved) == len(model.variables)
    assert all(np.isfinite(value).all() for value in saved)


# Exact resumption.


def _resumable_model(seed=5, run_eagerly=True):
    # Eager: as exact, and cheaper for tiny runs than tracing each model.
    keras.utils.set_random_seed(seed)
    network = toy_net(dropout=0.3, batch_norm=True)
    # Much exploration, so that a wrong draw after resuming would show.
    model = kbp.wrap(network, policy=policies.EpsilonGreedy(0.5))
    model.compile(
        optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        metrics=["accuracy"],
        run_eagerly=run_eagerly,
    )
    return model


# 3 epochs of 4 batches, with validation.
RESUME_X, RESUME_Y = toy_data(32)


RESUME_FIT_ARGS = {
    "batch_size": 8,
    "epochs": 3,
    "shuffle": False,
    "validation_data": (RESUME_X[:8], RESUME_Y[:8]),
    "verbose": 0,
}


@pytest.fixture(scope="module")
def uninterrupted():
    model = _resumable_model()
    history = model.fit(RESUME_X, RESUME_Y, **RESUME_FIT_ARGS)
    return training_state(model), history.history


@pytest.mark.slow
@pytest.mark.parametrize(
    "save_freq, interruptions, resumed_at",
    # Batch ends counted from each (re)start, replayed ones included: 7 is
    # mid-epoch 1, 2 is while replaying, 5 is after the next backup.
    [(3, [7, 2, 5], (2, 1)), ("epoch", [7], (0, 4))],
    ids=["every_3_steps", "every_epoch"],
)
def test_interrupted_training_resumes_exactly(
    tmp_path, uninterrupted, save_freq, interruptions, resumed_at
):
    expected_state, expected_history = uninterrupted
    for after_batches in interruptions:
        # A new model each time, as in a restarted process.
        model = _resumable_model()
        backup = BackupAndRestore(tmp_path, save_freq=save_freq)
        with pytest.raises(Interrupted):
            model.fit(
                RESUME_X,
                RESUME_Y,
                callbacks=[backup, InterruptAfterBatches(after_batches)],
                **RESUME_FIT_ARGS,
            )
    # A process killed while writing leaves a stray temporary file.
    (tmp_path / ".backup-killed.npz.tmp").write_bytes(b"half a backup")
    model = _resumable_model()
    backup = BackupAndRestore(tmp_path, save_freq=save_freq)
    history = model.fit(
        RESUME_X, RESUME_Y, callbacks=[backup], **RESUME_FIT_ARGS
    ).history
    restored = backup.restored
    assert (restored["epoch"], restored["batch"]) == resumed_at
    assert_states_equal(expected_state, training_state(model))
    assert_histories_equal(expected_history, history)
    assert model.history.epoch == [0, 1, 2]
    assert int(model.optimizer.iterations) == 12
    assert not list(tmp_path.iterdir())  # Backup and stray file removed.


@pytest.mark.slow
def test_keras_backup_and_restore_per_epoch_is_exact(tmp_path, uninterrupted):
    # Keras' own callback resumes at the start of the interrupted epoch;
    # with the random states saved with the weights, and exploration keyed
    # to the optimizer's step, the replayed epoch is identical.
    expected_state, expected_history = uninterrupted
    model = _resumable_model()
    backup = keras.callbacks.BackupAndRestore(tmp_path, save_freq="epoch")
    with pytest.raises(Interrupted):
        model.fit(
            RESUME_X,
            RESUME_Y,
            callbacks=[backup, InterruptAfterBatches(7)],
            **RESUME_FIT_ARGS,
        )
    model = _resumable_model()
    backup = keras.callbacks.BackupAndRestore(tmp_path, save_freq="epoch")
    history = model.fit(
        RESUME_X, RESUME_Y, callbacks=[backup], **RESUME_FIT_ARGS
    ).history
    assert_states_equal(expected_state, training_state(model))
    # Keras returns the history of the resumed epochs only.
    assert_histories_equal(
        {k: v[1:] for k, v in expected_history.items()}, history
    )


@pytest.mark.slow
def test_save_load_continue_equals_one_run(tmp_path, uninterrupted):
    expected_state, expected_history = uninterrupted
    model = _resumable_model()
    first = model.fit(
        RESUME_X, RESUME_Y, **{**RESUME_FIT_ARGS, "epochs": 1}
    ).history
    model.save(tmp_path / "model.keras")
    keras.utils.set_random_seed(99)  # Whatever a new process would draw.
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    rest = reloaded.fit(
        RESUME_X, RESUME_Y, initial_epoch=1, **RESUME_FIT_ARGS
    ).history
    assert_states_equal(expected_state, training_state(reloaded))
    assert_histories_equal(
        expected_history, {k: first[k] + rest[k] for k in first}
    )


@pytest.mark.slow
def test_seeded_stream_from_our_loader_resumes_exactly(tmp_path):
    # Our loader reshuffles at every pass; read as one endless stream, the
    # resumed run skips the batches the interrupted one had read.
    def run(callbacks):
        keras.utils.set_random_seed(2)
        network = keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Flatten(),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dropout(0.2),
                keras.layers.Dense(10, use_bias=False),
            ]
        )
        model = kbp.wrap(network, policy=policies.EpsilonBoltzmann(0.3))
        model.compile(metrics=["accuracy"])
        train = datasets.load("digits", "train", batch_size=256, seed=3)
        history = model.fit(
            train.repeat(),
            steps_per_epoch=len(train),
            epochs=2,
            callbacks=callbacks,
            verbose=0,
        )
        return model, history.history

    expected, expected_history = run([])
    with pytest.raises(Interrupted):
        run([BackupAndRestore(tmp_path, save_freq=4), InterruptAfterBatches(9)])
    backup = BackupAndRestore(tmp_path, save_freq=4)
    model, history = run([backup])
    assert (backup.restored["epoch"], backup.restored["batch"]) == (1, 2)
    assert_states_equal(training_state(expected), training_state(model))
    assert_histories_equal(expected_history, history)


def test_backup_of_another_model_is_refused(tmp_path):
    model = _resumable_model()
    backup = BackupAndRestore(tmp_path, save_freq=1)
    with pytest.raises(Interrupted):
        model.fit(
            RESUME_X,
            RESUME_Y,
            callbacks=[backup, InterruptAfterBatches(1)],
            **RESUME_FIT_ARGS,
        )
    other = compiled_model(toy_net(num_actions=3))
    with pytest.raises(ValueError, match="different model"):
        other.fit(RESUME_X, RESUME_Y % 3, callbacks=[backup], **RESUME_FIT_ARGS)


def test_atomic_write_keeps_the_old_backup_when_interrupted(
    tmp_path, monkeypatch
):
    path = tmp_path / "backup.npz"
    write_atomically(path, {"a": np.arange(3)})

    class Killed(BaseException):
        pass

    def dies_half_way(file, **arrays):
        file.write(b"PK\x03\x04 partial")
        raise Killed

    monkeypatch.setattr(np, "savez", dies_half_way)
    with pytest.raises(Killed):
        write_atomically(path, {"a": np.arange(5)})
    monkeypatch.undo()
    with np.load(path) as data:
        np.testing.assert_array_equal(data["a"], np.arange(3))
    assert [p.name for p in tmp_path.iterdir()] == ["backup.npz"]


def test_damaged_backup_gives_a_clear_error(tmp_path):
    path = tmp_path / "backup.npz"
    write_atomically(
        path, {"manifest": np.array("{}"), "model_0": np.zeros(1000)}
    )
    with pytest.raises(ValueError, match="not a keras_brainprop"):
        read_backup(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # One flipped byte inside the arrays.
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="cannot be read.*damaged"):
        read_backup(path)


def test_backup_arguments_are_checked():
    for save_freq in (0, -2, 1.5, True, "batch"):
        with pytest.raises(ValueError, match="Received: save_freq"):
            BackupAndRestore("/tmp/unused", save_freq=save_freq)


def _configured_model(
    rule="feedback_alignment",
    policy=None,
    reward=None,
    activation="relu",
):
    # The same names in every build would hide that Keras numbers them.
    keras.utils.set_random_seed(1)
    net = keras.Sequential(
        [
            keras.Input((NUM_FEATURES,)),
            keras.layers.Dense(5, activation=activation),
            keras.layers.Dense(NUM_ACTIONS),
        ]
    )
    model = kbp.wrap(net, policy=policy, reward=reward, feedback=rule, seed=2)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model


def _kept_reward(y, actions):
    return tf.ones(tf.shape(actions), "float32")


_OTHER_CONFIGURATIONS = {
    "feedback rule": (
        {"rule": feedback.KolenPollack()},
        r"feedback=FeedbackAlignment\(.*\) while this model uses "
        r"KolenPollack\(decay=",
    ),
    "policy parameter": (
        {"policy": policies.EpsilonBoltzmann(epsilon=0.1)},
        r"policy=EpsilonBoltzmann\(epsilon=0.02, temperature=1.0\) while "
        r"this model uses EpsilonBoltzmann\(epsilon=0.1, temperature=1.0\)",
    ),
    "reward": (
        {"reward": rewards.RewardFunction(_kept_reward)},
        r"reward=CorrectChoice\(\) while this model uses "
        r"RewardFunction\('_kept_reward'\)",
    ),
    "architecture": (
        {"activation": "tanh"},
        r"network\..*activation='relu' while this model has 'tanh'",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("difference", list(_OTHER_CONFIGURATIONS))
def test_backup_of_another_configuration_is_refused(tmp_path, difference):
    # Every variable has the shape of the backup's: only the recorded
    # configuration tells the runs apart.
    x, y = random_batch((NUM_FEATURES,), NUM_ACTIONS, batch_size=64)
    fit_args = {"batch_size": 16, "shuffle": False, "verbose": 0}
    with pytest.raises(Interrupted):
        _configured_model().fit(
            x,
            y,
            callbacks=[BackupAndRestore(tmp_path, 1), Interrupt(2)],
            **fit_args,
        )
    changes, match = _OTHER_CONFIGURATIONS[difference]
    other = _configured_model(**changes)
    before = [w.numpy().copy() for w in other.weights]
    backup = BackupAndRestore(tmp_path, save_freq=1)
    with pytest.raises(ValueError, match=match) as error:
        other.fit(x, y, callbacks=[backup], **fit_args)
    assert "was made by a different model configuration" in str(error.value)
    assert "Received: a backup written with " in str(error.value)
    assert backup.restored is None
    for weight, old in zip(other.weights, before, strict=True):
        np.testing.assert_array_equal(weight.numpy(), old)
    # The same configuration, built again in this process, still resumes.
    backup = BackupAndRestore(tmp_path, save_freq=1)
    _configured_model().fit(x, y, callbacks=[backup], **fit_args)
    assert backup.restored["iterations"] == 2
