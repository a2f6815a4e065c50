"""Helpers the tests share: toy networks and data, training states, and
fresh Python processes for the scripts."""

import os
import pathlib
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_brainprop as kbp

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOY_ACTIONS = 4
EAGER_AND_GRAPH = pytest.mark.parametrize(
    "run_eagerly", [True, False], ids=["eager", "graph"]
)


def toy_net(
    num_actions=TOY_ACTIONS, dropout=0.0, batch_norm=False, output_bias=False
):
    """6 inputs, 8 ReLU units, then the Q-values."""
    layers = [keras.Input((6,)), keras.layers.Dense(8, activation="relu")]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization())
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(num_actions, use_bias=output_bias))
    return keras.Sequential(layers)


def toy_data(num_samples=64, num_actions=TOY_ACTIONS, seed=0):
    """Normal inputs for `toy_net` and random class labels."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_samples, 6)).astype("float32")
    return x, rng.integers(0, num_actions, size=num_samples)


def small_net(num_actions=3, dropout=0.0):
    """`toy_net` with 3 actions and an output bias."""
    return toy_net(num_actions, dropout, output_bias=True)


def small_data(num_samples=16, num_actions=3, seed=0):
    """`toy_data` for `small_net`."""
    return toy_data(num_samples, num_actions, seed)


def compiled_model(network, run_eagerly=False, **wrap_kwargs):
    model = kbp.wrap(network, **wrap_kwargs)
    model.compile(run_eagerly=run_eagerly)
    return model


def training_state(model):
    """Every variable of the training state: weights, random-number
    states, and the optimizer's variables (its step counter included)."""
    return [
        np.array(v.numpy())
        for v in [*model.variables, *model.optimizer.variables]
    ]


def assert_states_equal(expected, actual, atol=1e-6):
    assert len(expected) == len(actual)
    for i, (a, b) in enumerate(zip(expected, actual)):
        np.testing.assert_allclose(a, b, atol=atol, rtol=0, err_msg=str(i))


def assert_weights_equal(a, b):
    """Asserts that models `a` and `b` hold the same weights, exactly."""
    assert len(a.weights) == len(b.weights)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy(), err_msg=wa.path)


def assert_unchanged(network, before):
    for b, a in zip(before, network.get_weights()):
        np.testing.assert_array_equal(b, a)


def assert_histories_equal(expected, actual, atol=1e-6):
    assert expected.keys() == actual.keys()
    for key in expected:
        np.testing.assert_allclose(
            expected[key], actual[key], atol=atol, rtol=0, err_msg=key
        )


class Interrupted(Exception):
    pass


class InterruptAfterBatches(keras.callbacks.Callback):
    """Raises after `after_batches` batch ends, as a killed process stops."""

    def __init__(self, after_batches):
        super().__init__()
        self.after_batches = after_batches
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.batches == self.after_batches:
            raise Interrupted(f"after {self.batches} batches")


def in_graph(function, *args):
    """Runs `function` traced by tf.function, as in fit()'s graph mode."""
    return tf.function(function, autograph=False)(*args)


def fit_fails(model, match, *args, **kwargs):
    """Asserts that fit() raises our error, whose message starts the text."""
    with pytest.raises(ValueError, match=match) as error:
        model.fit(*args, verbose=0, **kwargs)
    assert isinstance(error.value, tf.errors.InvalidArgumentError)
    return error.value


TRAINING_ONLY = ["explore_rate", "greedy_coverage"]


class Subclassed(keras.Model):
    """A network without a build() method: Keras builds it by a call."""

    def __init__(self, num_actions=3):
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.q_values = keras.layers.Dense(num_actions)

    def call(self, inputs):
        return self.q_values(self.hidden(inputs))


def frozen(network, run_eagerly=False, metrics=("accuracy",), **wrap_kwargs):
    """A greedy model whose weights do not move (SGD with rate 0)."""
    model = kbp.wrap(network, policy="greedy", **wrap_kwargs)
    model.compile(
        optimizer=keras.optimizers.SGD(0.0),
        metrics=list(metrics),
        run_eagerly=run_eagerly,
    )
    return model


def quiet_fit(model, *args, **kwargs):
    # The coverage warning of untrained toy networks is not under test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kbp.metrics.LowCoverageWarning)
        return model.fit(*args, verbose=0, **kwargs)


def subprocess_env(backend="tensorflow"):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND=backend)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    return env


def run_python(*args, backend="tensorflow"):
    """Runs `python *args` in a fresh process under `backend`; returns the
    completed run."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=subprocess_env(backend),
        timeout=300,
        check=False,
    )


def run_benchmark(script, *args):
    """Runs `benchmarks/<script>` with `args` in a fresh Python process."""
    return run_python(str(ROOT / "benchmarks" / script), *args)


def assert_merging_a_run_twice_fails(script, run_dir):
    """`--merge` of one results folder twice repeats its seeds: an error."""
    merged = run_benchmark(
        script,
        f"--merge={run_dir},{run_dir}",
        f"--output_dir={run_dir.parent / 'merged'}",
    )
    assert merged.returncode != 0
    assert "appear in more than one file" in merged.stderr


LEARNING_RATE = 0.1
RULE_NAMES = [
    "symmetric",
    "feedback_alignment",
    "sign_symmetry",
    "kolen_pollack",
]


def relu_net(num_inputs=6, num_actions=4):
    """Two ReLU hidden layers and a linear output, all with biases."""
    return keras.Sequential(
        [
            keras.Input((num_inputs,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(7, activation="relu"),
            keras.layers.Dense(num_actions),
        ]
    )


def loccon_net(num_actions=3, dropout=0.2):
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(4, 3, padding="same"),
            keras.layers.ReLU(),
            keras.layers.BatchNormalization(),
            kbp.LocallyConnected2D(3, 2, strides=2),
            keras.layers.Flatten(),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(num_actions, use_bias=False),
        ]
    )


def random_batch(input_shape, num_actions, batch_size=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch_size, *input_shape)).astype("float32")
    y = rng.integers(0, num_actions, size=(batch_size,))
    return x, y


def to_numpy(value):
    """A variable's or tensor's value (`SignSymmetry`'s B is a tensor)."""
    return tf.convert_to_tensor(value).numpy()


def angle_degrees(a, b):
    a, b = np.ravel(to_numpy(a)), np.ravel(to_numpy(b))
    cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def brainprop_model(network, rule, **compile_kwargs):
    """A greedy BrainPropModel training `network` under a feedback rule."""
    model = kbp.wrap(network, policy="greedy", seed=0, feedback=rule)
    compile_kwargs.setdefault("optimizer", keras.optimizers.SGD(LEARNING_RATE))
    model.compile(**compile_kwargs)
    return model
