"""BrainProp's files (keras_brainprop/_model_files.py): `.keras` files,
weights files that the plain network reads, export; partly on every backend."""

import importlib.util
import os
import subprocess
import sys

import keras
import model_files_worker as worker
import numpy as np
import pytest
import tensorflow as tf
from _helpers import Subclassed
from _helpers import assert_weights_equal
from _helpers import quiet_fit
from _helpers import small_data
from _helpers import small_net

import keras_brainprop as kbp
from keras_brainprop import feedback

_WORKER = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "model_files_worker.py"
)
BACKEND = keras.backend.backend()


def _run_under_every_backend(command, directory):
    """Runs the worker's `command`: in this process, and one per backend."""
    processes = [
        subprocess.Popen(
            [sys.executable, _WORKER, command, str(directory)],
            env=dict(
                os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="-1"
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for backend in worker.BACKENDS
        if backend != BACKEND
    ]
    try:
        getattr(worker, command)(str(directory))
        for process in processes:
            _, stderr = process.communicate(timeout=900)
            assert process.returncode == 0, stderr[-3000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


@pytest.mark.slow
@pytest.mark.backends
@pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in ("jax", "torch")),
    reason="needs the [jax] and [torch] extras (.ci/run's backend legs)",
)
def test_files_saved_under_each_backend_load_under_each(tmp_path):
    # Run under TensorFlow, JAX or PyTorch, the test covers all nine pairs.
    _run_under_every_backend("save", tmp_path)
    _run_under_every_backend("load", tmp_path)
    for saver in worker.BACKENDS:
        saved = np.load(tmp_path / saver / "saved.npz")
        assert len(saved.files) > 40
        for loader in worker.BACKENDS:
            loaded = np.load(tmp_path / loader / f"loaded_from_{saver}.npz")
            assert np.isfinite(loaded["trained_loss"])
            assert set(loaded.files) == {*saved.files, "trained_loss"}
            for key in saved.files:
                message = f"{key}: saved under {saver}, loaded under {loader}"
                if key.endswith("q_values"):
                    np.testing.assert_allclose(
                        loaded[key], saved[key], atol=1e-5, err_msg=message
                    )
                else:  # Weights, optimizer and seed states, configs.
                    np.testing.assert_array_equal(
                        loaded[key], saved[key], err_msg=message
                    )


def _small_model(**wrap_kwargs):
    network = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(5, activation="relu"),
            keras.layers.Dense(3),
        ]
    )
    model = kbp.wrap(network, **wrap_kwargs)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    return model


@pytest.mark.slow
@pytest.mark.backends
def test_export_serves_the_q_values(tmp_path):
    model = worker.trained_models()["brainprop"]
    if BACKEND == "torch":
        path = tmp_path / "q_values.pt2"
        model.export(path, format="torch", verbose=False)
    else:
        path = tmp_path / "q_values"
        model.export(path, verbose=False)
    for images in (worker.IMAGES, worker.IMAGES[:3]):  # Any batch size.
        np.testing.assert_allclose(
            worker.serve(path, images),
            model.predict(images, verbose=0),
            atol=1e-5,
        )


@pytest.mark.backends
def test_export_refuses_a_format_the_backend_cannot_export(tmp_path):
    model = _small_model()
    if BACKEND == "torch":
        try:
            import torch_xla  # noqa: F401

            pytest.skip("torch_xla exports a SavedModel under PyTorch")
        except ImportError:
            pass
        with pytest.raises(ValueError, match="torch_xla") as error:
            model.export(tmp_path / "q_values")
        assert "format='torch'" in str(error.value)
        assert "Received: format='tf_saved_model' on backend 'torch'" in str(
            error.value
        )
    else:
        with pytest.raises(ValueError, match="PyTorch backend") as error:
            model.export(tmp_path / "q_values.pt2", format="torch")
        assert f"Received: format='torch' on backend '{BACKEND}'" in str(
            error.value
        )
    assert not os.listdir(tmp_path)


@pytest.mark.backends
def test_compile_config_is_that_of_every_backend():
    # Keras would save what "auto" resolved to on this backend, and under
    # PyTorch its own subclass of the optimizer.
    config = _small_model().get_compile_config()
    assert config["jit_compile"] == "auto"
    assert config["optimizer"]["module"] == "keras.optimizers"
    assert config["optimizer"]["class_name"] == "Adam"
    model = _small_model()
    model.compile(jit_compile=False)
    assert model.get_compile_config()["jit_compile"] is False


@pytest.mark.slow
@pytest.mark.backends
def test_weights_file_round_trip_restores_the_whole_state(tmp_path):
    x = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2])
    rule = feedback.KolenPollack(seed=1)
    model = _small_model(feedback=rule, seed=2)
    model.train_on_batch(x, y)
    path = str(tmp_path / "model.weights.h5")
    model.save_weights(path)
    restored = _small_model(feedback=rule, seed=5)
    restored.load_weights(path)
    for expected, variable in [
        *zip(model.weights, restored.weights, strict=True),
        *zip(
            model.optimizer.variables,
            restored.optimizer.variables,
            strict=True,
        ),
        *zip(model._random_states(), restored._random_states(), strict=True),
    ]:
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(variable),
            keras.ops.convert_to_numpy(expected),
        )
    # The plain network reads the same file.
    plain = feedback.to_plain(_small_model(feedback=rule).network)
    plain.load_weights(path)
    np.testing.assert_allclose(
        plain.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6
    )


# Export() serves the Q-values.


def _exported(model, path):
    # Keep the artifact while serving: serve() reads its variables.
    model.export(path, verbose=False)
    return tf.saved_model.load(path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "make_network, prepare",
    [
        (small_net, "fit"),
        (Subclassed, "fit"),
        (small_net, "call"),
        (Subclassed, "call"),
    ],
    ids=[
        "sequential_fit",
        "subclassed_fit",
        "sequential_call",
        "subclassed_call",
    ],
)
def test_export_serves_what_predict_returns(make_network, prepare, tmp_path):
    x, y = small_data()
    model = kbp.wrap(make_network())
    model.compile()
    if prepare == "fit":
        quiet_fit(model, x, y, batch_size=8)
    else:
        model(x)
    artifact = _exported(model, str(tmp_path / "q_values"))
    np.testing.assert_allclose(
        artifact.serve(tf.constant(x)).numpy(),
        model.predict(x, verbose=0),
        atol=1e-6,
    )


def test_export_of_a_network_with_a_dict_output(tmp_path):
    inputs = keras.Input((6,))
    network = keras.Model(inputs, {"q": keras.layers.Dense(3)(inputs)})
    model = kbp.wrap(network)
    x, _ = small_data()
    artifact = _exported(model, str(tmp_path / "q_values"))
    expected = network.predict(x, verbose=0)["q"]
    np.testing.assert_allclose(artifact.serve(tf.constant(x)).numpy(), expected)
    np.testing.assert_allclose(model.predict(x, verbose=0), expected)


# Weights files move between the wrapped model and the network.


@pytest.mark.slow
def test_wrapped_weights_file_loads_into_the_plain_network(tmp_path):
    x, y = small_data()
    network = small_net()
    model = kbp.wrap(network)
    model.compile()
    quiet_fit(model, x, y, batch_size=8)
    path = tmp_path / "trained.weights.h5"
    model.save_weights(path)
    deployed = small_net()
    deployed.load_weights(path)
    assert_weights_equal(network, deployed)
    np.testing.assert_allclose(
        deployed.predict(x, verbose=0), model.predict(x, verbose=0)
    )


def test_network_weights_file_loads_into_a_wrapped_model(tmp_path):
    network = small_net()
    path = tmp_path / "network.weights.h5"
    network.save_weights(path)
    model = kbp.wrap(small_net())
    model.compile()
    model.load_weights(path)
    assert_weights_equal(network, model.network)


@pytest.mark.slow
def test_wrapped_weights_file_restores_optimizer_and_random_states(tmp_path):
    x, y = small_data()
    model = kbp.wrap(small_net(dropout=0.5), seed=3)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    quiet_fit(model, x, y, batch_size=8)
    path = tmp_path / "trained.weights.h5"
    model.save_weights(path)
    expected = [v.numpy() for v in model.variables + model.optimizer.variables]

    restored = kbp.wrap(small_net(dropout=0.5), seed=3)
    restored.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    restored.load_weights(path)
    actual = [
        v.numpy() for v in restored.variables + restored.optimizer.variables
    ]
    assert len(actual) == len(expected)
    for a, b in zip(expected, actual):
        np.testing.assert_array_equal(a, b)
    # Both continue alike: same dropout masks, exploration and momentum.
    after = [
        quiet_fit(m, x, y, batch_size=8).history for m in (model, restored)
    ]
    assert after[0] == after[1]
    assert_weights_equal(model, restored)


def test_sharded_weights_files_point_to_the_network(tmp_path):
    model = kbp.wrap(small_net())
    with pytest.raises(ValueError, match=r"model.network.save_weights"):
        model.save_weights(tmp_path / "w.weights.json", max_shard_size=0.1)
