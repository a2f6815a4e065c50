"""BrainPropMonitor (keras_brainprop/callbacks/brainprop_monitor.py) and its
probe.

Each monitor test fits a tiny seeded model for one or two epochs, then reads
the event files back with TensorFlow's own summary iterator (the tensorboard
package is not needed) and checks tags, steps and values. The monitor tests
marked `backends` run on every Keras backend: TensorFlow only reads the
event files and makes the `tf.data` probes, which every backend takes."""

import collections
import glob
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_brainprop as kbp
from keras_brainprop import policies
from keras_brainprop.callbacks import BrainPropMonitor

NUM_SAMPLES = 64
NUM_FEATURES = 4
NUM_ACTIONS = 3
BATCH_SIZE = 16  # 4 batches per epoch


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(NUM_SAMPLES, NUM_FEATURES)).astype("float32")
    y = rng.integers(0, NUM_ACTIONS, size=NUM_SAMPLES).astype("int32")
    return x, y


def _model(policy=None, nested=False):
    keras.utils.set_random_seed(1)
    if nested:
        hidden = keras.Sequential(
            [keras.layers.Dense(5, activation="relu", name="inner")],
            name="block",
        )
    else:
        hidden = keras.layers.Dense(5, activation="relu", name="hidden")
    net = keras.Sequential(
        [
            keras.Input((NUM_FEATURES,)),
            hidden,
            keras.layers.Dense(NUM_ACTIONS, use_bias=False, name="output"),
        ],
        name="net",
    )
    model = kbp.wrap(net, policy=policy, seed=2)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    return model


def _fit(model, monitor, epochs):
    x, y = _data()
    return model.fit(
        x,
        y,
        batch_size=BATCH_SIZE,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[monitor],
    )


def _probe_dataset(x, y, batch_size):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def _numpy(value):
    return keras.ops.convert_to_numpy(keras.ops.copy(value))


def _iterations(model):
    return int(_numpy(model.optimizer.iterations))


def _read_events(directory):
    """Returns ({tag: {step: float}}, {tag: {step: [k, 3] array}})."""
    paths = glob.glob(os.path.join(directory, "events.out.tfevents.*"))
    assert paths, f"no event file in {directory}"
    scalars = collections.defaultdict(dict)
    histograms = collections.defaultdict(dict)
    for path in sorted(paths):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor)
                plugin = value.metadata.plugin_data.plugin_name
                if plugin == "scalars":
                    scalars[value.tag][event.step] = float(array)
                else:
                    assert plugin == "histograms", value.tag
                    histograms[value.tag][event.step] = array
    return scalars, histograms


def _epoch_probe_scalars(scalars):
    """The first epoch's `epoch/probe/...` scalars, by the rest of the tag."""
    prefix = "epoch/probe/"
    return {
        tag.removeprefix(prefix): steps[0]
        for tag, steps in scalars.items()
        if tag.startswith(prefix)
    }


@pytest.mark.slow
@pytest.mark.backends
def test_epoch_logs_match_history(tmp_path):
    model = _model(policy=policies.EpsilonGreedy(0.3))
    x, y = _data()
    monitor = BrainPropMonitor(tmp_path, probe_data=(x, y), probe_size=24)
    history = _fit(model, monitor, epochs=2)
    scalars, histograms = _read_events(tmp_path / "brainprop")

    for key, name in [
        ("reward", "reward"),
        ("rpe", "rpe_mean"),
        ("explore_rate", "explore_rate"),
        ("greedy_coverage", "greedy_coverage"),
    ]:
        assert sorted(scalars[f"epoch/{name}"]) == [0, 1]
        np.testing.assert_allclose(
            [scalars[f"epoch/{name}"][epoch] for epoch in (0, 1)],
            history.history[key],
            rtol=1e-6,
        )
    assert 0.0 < scalars["epoch/explore_rate"][1] < 1.0
    for name in ["reward", "rpe_mean", "rpe_std", "explore_rate"]:
        assert sorted(scalars[f"epoch/probe/{name}"]) == [0, 1]
    assert scalars["epoch/probe/rpe_std"][1] > 0.0
    for epoch in (0, 1):
        frequencies = [
            scalars[f"epoch/probe/action_frequency/{action}"][epoch]
            for action in range(NUM_ACTIONS)
        ]
        assert sum(frequencies) == pytest.approx(1.0)
        q_values = histograms["epoch/probe/q_values"][epoch]
        assert q_values.shape == (30, 3)
        assert q_values[:, 2].sum() == 24 * NUM_ACTIONS
        actions = histograms["epoch/probe/actions"][epoch]
        np.testing.assert_array_equal(actions[:, 0] + 0.5, range(NUM_ACTIONS))
        np.testing.assert_allclose(actions[:, 2] / 24, frequencies, rtol=1e-6)
        assert histograms["epoch/probe/rpe"][epoch][:, 2].sum() == 24
    for layer in ["hidden", "output"]:
        for epoch in (0, 1):
            assert scalars[f"epoch/update_norm/{layer}"][epoch] > 0.0
            assert scalars[f"epoch/relative_update_norm/{layer}"][epoch] > 0.0
    assert not any(tag.startswith("batch/") for tag in scalars)


@pytest.mark.backends
def test_one_epoch_matches_independent_computation(tmp_path):
    # A greedy policy makes the probe's actions known: argmax Q.
    model = _model(policy="greedy")
    x, y = _data()
    probe_x, probe_y = x[:20], y[:20]
    before = [_numpy(w) for w in model.network.trainable_weights]
    monitor = BrainPropMonitor(
        tmp_path, probe_data=(probe_x, probe_y), histogram_buckets=7
    )
    _fit(model, monitor, epochs=1)
    after = [_numpy(w) for w in model.network.trainable_weights]
    scalars, histograms = _read_events(tmp_path / "brainprop")

    # Update norms: hidden holds kernel and bias, output the kernel only.
    layers = {"hidden": [0, 1], "output": [2]}
    for layer, indices in layers.items():
        change = np.sqrt(
            sum(
                np.sum((after[i].astype("float64") - before[i]) ** 2)
                for i in indices
            )
        )
        old = np.sqrt(
            sum(np.sum(before[i].astype("float64") ** 2) for i in indices)
        )
        assert change > 0.0
        np.testing.assert_allclose(
            scalars[f"epoch/update_norm/{layer}"][0], change, rtol=1e-4
        )
        np.testing.assert_allclose(
            scalars[f"epoch/relative_update_norm/{layer}"][0],
            change / old,
            rtol=1e-4,
        )

    q_values = _numpy(model.network(probe_x, training=False))
    q_values = q_values.astype("float64")
    actions = q_values.argmax(axis=1)
    rewards = (actions == probe_y).astype("float64")
    delta = rewards - q_values[np.arange(len(actions)), actions]
    np.testing.assert_allclose(
        scalars["epoch/probe/reward"][0], rewards.mean(), rtol=1e-6
    )
    np.testing.assert_allclose(
        scalars["epoch/probe/rpe_mean"][0], delta.mean(), rtol=1e-5
    )
    np.testing.assert_allclose(
        scalars["epoch/probe/rpe_std"][0], delta.std(), rtol=1e-5
    )
    assert scalars["epoch/probe/explore_rate"][0] == 0.0
    for action in range(NUM_ACTIONS):
        frequency = scalars[f"epoch/probe/action_frequency/{action}"][0]
        assert frequency == pytest.approx(np.mean(actions == action))

    q_histogram = histograms["epoch/probe/q_values"][0]
    assert q_histogram.shape == (7, 3)
    assert q_histogram[:, 2].sum() == q_values.size
    np.testing.assert_allclose(
        [q_histogram[0, 0], q_histogram[-1, 1]],
        [q_values.min(), q_values.max()],
        rtol=1e-5,
        atol=1e-6,
    )
    expected_counts, _ = np.histogram(
        q_values, bins=q_histogram[:, 0].tolist() + [q_histogram[-1, 1]]
    )
    np.testing.assert_array_equal(q_histogram[:, 2], expected_counts)


@pytest.mark.slow
@pytest.mark.backends
@pytest.mark.parametrize("run_eagerly", [False, True], ids=["graph", "eager"])
@pytest.mark.parametrize("one_hot", [False, True], ids=["labels", "one_hot"])
def test_greedy_frequency_recall_and_coverage(tmp_path, run_eagerly, one_hot):
    # Exploration makes the actions taken differ from the greedy ones.
    model = _model(policy=policies.EpsilonGreedy(0.5))
    model.run_eagerly = run_eagerly
    x, y = _data()
    probe_x, probe_y = x[:30], y[:30]
    probe_y[probe_y == 1] = 2  # Class 1 is absent: no recall for it.
    if one_hot:
        probe_y = np.eye(NUM_ACTIONS, dtype="float32")[probe_y]
    monitor = BrainPropMonitor(tmp_path, probe_data=(probe_x, probe_y))
    history = _fit(model, monitor, epochs=1)
    scalars, _ = _read_events(tmp_path / "brainprop")
    probe = _epoch_probe_scalars(scalars)

    assert scalars["epoch/greedy_coverage"][0] == pytest.approx(
        history.history["greedy_coverage"][0]
    )
    greedy = _numpy(model.network(probe_x, training=False)).argmax(axis=1)
    labels = probe_y.argmax(axis=1) if one_hot else probe_y
    assert len(set(greedy)) > 1
    for action in (0, 2):
        recall = np.mean(greedy[labels == action] == action)
        assert probe[f"recall/{action}"] == pytest.approx(recall)
    assert "recall/1" not in probe
    greedy_frequencies = [np.mean(greedy == a) for a in range(NUM_ACTIONS)]
    np.testing.assert_allclose(
        [probe[f"greedy_frequency/{a}"] for a in range(NUM_ACTIONS)],
        greedy_frequencies,
        rtol=1e-6,
    )
    # Not the frequencies of the actions taken.
    assert not np.allclose(
        [probe[f"action_frequency/{a}"] for a in range(NUM_ACTIONS)],
        greedy_frequencies,
    )


@pytest.mark.backends
def test_no_recall_without_labels(tmp_path):
    keras.utils.set_random_seed(1)
    net = keras.Sequential(
        [keras.Input((NUM_FEATURES,)), keras.layers.Dense(NUM_ACTIONS)]
    )
    # A reward that needs no targets, and a probe without them.
    model = kbp.wrap(
        net, reward=lambda y, actions: keras.ops.cast(actions, "float32")
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    x, _ = _data()
    monitor = BrainPropMonitor(tmp_path, probe_data=x)
    model.fit(x, batch_size=BATCH_SIZE, verbose=0, callbacks=[monitor])
    probe = _epoch_probe_scalars(_read_events(tmp_path / "brainprop")[0])
    greedy = _numpy(model.network(x, training=False)).argmax(axis=1)
    np.testing.assert_allclose(
        [probe[f"greedy_frequency/{a}"] for a in range(NUM_ACTIONS)],
        [np.mean(greedy == a) for a in range(NUM_ACTIONS)],
        rtol=1e-6,
    )
    assert not any(tag.startswith("recall/") for tag in probe)


@pytest.mark.slow
@pytest.mark.backends
def test_int_update_freq_and_dataset_probe(tmp_path):
    model = _model(policy=policies.EpsilonGreedy(0.3))
    x, y = _data()
    probe = _probe_dataset(x, y, batch_size=10)
    monitor = BrainPropMonitor(
        str(tmp_path), probe_data=probe, probe_size=25, update_freq=2
    )
    history = _fit(model, monitor, epochs=2)
    scalars, histograms = _read_events(tmp_path / "brainprop")

    batch_steps = [2, 4, 6, 8]  # optimizer iterations, 4 batches per epoch
    for tag in [
        "batch/reward",
        "batch/rpe_mean",
        "batch/explore_rate",
        "batch/probe/rpe_std",
        "batch/update_norm/hidden",
        "batch/relative_update_norm/output",
    ]:
        assert sorted(scalars[tag]) == batch_steps, tag
    for tag in ["batch/probe/q_values", "batch/probe/actions"]:
        assert sorted(histograms[tag]) == batch_steps, tag
    assert sorted(scalars["epoch/reward"]) == [0, 1]
    # The last batch of an epoch logs the epoch's running means.
    np.testing.assert_allclose(
        [scalars["batch/reward"][4], scalars["batch/reward"][8]],
        history.history["reward"],
        rtol=1e-6,
    )
    for step in batch_steps:
        assert histograms["batch/probe/actions"][step][:, 2].sum() == 25
        q_count = histograms["batch/probe/q_values"][step][:, 2].sum()
        assert q_count == 25 * NUM_ACTIONS
        assert scalars["batch/update_norm/hidden"][step] > 0.0
    # The probe uses a fixed seed: the same network gives the same draws.
    assert sorted(histograms["epoch/probe/actions"]) == [0, 1]
    np.testing.assert_array_equal(
        histograms["epoch/probe/actions"][1],
        histograms["batch/probe/actions"][8],
    )


@pytest.mark.backends
def test_without_probe_and_nested_layers(tmp_path):
    model = _model(nested=True)
    monitor = BrainPropMonitor(tmp_path, subdir="monitor")
    _fit(model, monitor, epochs=1)
    scalars, histograms = _read_events(tmp_path / "monitor")
    assert set(scalars) == {
        "epoch/reward",
        "epoch/rpe_mean",
        "epoch/explore_rate",
        "epoch/greedy_coverage",
        "epoch/update_norm/block/inner",
        "epoch/update_norm/output",
        "epoch/relative_update_norm/block/inner",
        "epoch/relative_update_norm/output",
    }
    assert not histograms
    assert scalars["epoch/update_norm/block/inner"][0] > 0.0


@pytest.mark.backends
def test_rejects_a_plain_keras_model(tmp_path):
    keras.utils.set_random_seed(1)
    net = keras.Sequential(
        [keras.Input((NUM_FEATURES,)), keras.layers.Dense(3)]
    )
    net.compile(optimizer="sgd", loss="mse")
    x, _ = _data()
    with pytest.raises(ValueError, match="needs a BrainPropModel"):
        net.fit(
            x,
            np.zeros((NUM_SAMPLES, 3)),
            epochs=1,
            verbose=0,
            callbacks=[BrainPropMonitor(tmp_path)],
        )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"update_freq": 0}, "update_freq"),
        ({"update_freq": "batch"}, "update_freq"),
        ({"update_freq": 2.5}, "update_freq"),
        ({"update_freq": True}, "update_freq"),
        ({"probe_size": 0}, "probe_size"),
        ({"histogram_buckets": -1}, "histogram_buckets"),
        ({"seed": 1.5}, "seed"),
        ({"seed": 2**31}, "seed"),
        ({"subdir": ""}, "subdir"),
        ({"log_dir": None}, "log_dir"),
        ({"probe_data": "probe"}, "dtype string"),
        ({"probe_data": (np.zeros((0, 4)), np.zeros(0))}, "at least one"),
        ({"probe_data": (np.zeros((5, 4)), np.zeros(4))}, "same number"),
        (
            {"probe_data": _probe_dataset(np.zeros((0, 4)), np.zeros(0), 4)},
            "empty dataset",
        ),
    ],
)
@pytest.mark.backends
def test_bad_arguments(kwargs, match):
    # Arguments are checked before any file is written.
    kwargs.setdefault("log_dir", "unused_logs")
    with pytest.raises(ValueError, match=match):
        BrainPropMonitor(**kwargs)


def _bad_probes():
    x, y = _data()
    out_of_range = y[:8].copy()
    out_of_range[3] = NUM_ACTIONS + 2
    return {
        "x too narrow": (
            (x[:8, :2], y[:8]),
            r"inputs the network takes, of shape \(None, 4\)\. "
            r"Received: x with shape \(8, 2\)",
        ),
        "label out of range": (
            (x[:8], out_of_range),
            r"`probe_data`.*Labels must be < 3.*Received: label 5",
        ),
        "no targets": (x[:8], r"`probe_data`.*needs targets.*y=None"),
        "one-hot of the wrong width": (
            (x[:8], np.eye(NUM_ACTIONS + 1, dtype="float32")[y[:8]]),
            r"`probe_data`.*Received: y with shape \(8, 4\)",
        ),
    }


@pytest.mark.backends
@pytest.mark.parametrize("case", list(_bad_probes()))
@pytest.mark.parametrize("run_eagerly", [False, True], ids=["graph", "eager"])
def test_a_probe_the_model_cannot_take_stops_fit_before_any_step(
    tmp_path, case, run_eagerly
):
    probe, match = _bad_probes()[case]
    model = _model()
    model.run_eagerly = run_eagerly
    before = [_numpy(w) for w in model.weights]
    monitor = BrainPropMonitor(tmp_path, probe_data=probe)
    with pytest.raises(ValueError, match=match):
        _fit(model, monitor, epochs=1)
    assert _iterations(model) == 0
    for weight, old in zip(model.weights, before, strict=True):
        np.testing.assert_array_equal(_numpy(weight), old)


@pytest.mark.backends
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_probe_inputs_are_refused(value):
    x, y = _data()
    x[5, 1] = value
    match = rf"finite inputs.*Received: x with {value} in sample 5"
    with pytest.raises(ValueError, match=match):
        BrainPropMonitor("unused_logs", probe_data=(x, y))
    dataset = _probe_dataset(x, y, batch_size=4)
    with pytest.raises(ValueError, match=match):
        BrainPropMonitor("unused_logs", probe_data=dataset)
