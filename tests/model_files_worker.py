"""Saves and loads BrainProp's `.keras` files under one Keras backend.

tests/test_model_files.py runs it under each backend, in a process of its
own (or imports it, for the backend the test runs under):

    KERAS_BACKEND=jax python tests/model_files_worker.py save DIR
    KERAS_BACKEND=jax python tests/model_files_worker.py load DIR

`save` trains one step and writes `DIR/<backend>/<name>.keras` for each
model of `MODELS`, with what the models hold and predict in
`DIR/<backend>/saved.npz`. `load` loads the files of every backend found
in DIR and writes what the loaded models hold and predict in
`DIR/<backend>/loaded_from_<saver>.npz`, for the test to compare, with
the loss of one more training step of the loaded BrainPropModel.
"""

import json
import os
import sys

import keras
import numpy as np

import keras_brainprop as kbp
from keras_brainprop import algorithms
from keras_brainprop import feedback
from keras_brainprop import policies

BACKENDS = ("tensorflow", "jax", "torch")
# A BrainPropModel with Kolen-Pollack feedback, its converted network
# alone, that network made plain again, and a backprop network.
MODELS = ("brainprop", "converted", "to_plain", "backprop")
NUM_ACTIONS = 4
IMAGES = np.random.default_rng(0).normal(size=(8, 6, 6, 2)).astype("float32")
LABELS = np.arange(8) % NUM_ACTIONS


def network(output_activation=None):
    """Every kind of weight: convolution, local, batch norm, dense."""
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(3, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            kbp.LocallyConnected2D(2, 2, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(NUM_ACTIONS, activation=output_activation),
        ]
    )


def trained_models():
    """The models of `MODELS`, each trained one step."""
    keras.utils.set_random_seed(1)
    epsilon = keras.optimizers.schedules.ExponentialDecay(0.2, 10, 0.5)
    brainprop = kbp.wrap(
        network(),
        policy=policies.EpsilonBoltzmann(epsilon=epsilon, temperature=0.5),
        seed=3,
        feedback=feedback.KolenPollack(decay=0.01, seed=2),
    )
    brainprop.compile(optimizer=keras.optimizers.Adam(0.01))
    brainprop.train_on_batch(IMAGES, LABELS)
    backprop = algorithms.Backprop()
    plain = backprop.wrap(network(backprop.output_activation))
    backprop.compile(plain, learning_rate=0.1)
    plain.train_on_batch(IMAGES, LABELS)
    return {
        "brainprop": brainprop,
        "converted": brainprop.network,
        "to_plain": feedback.to_plain(brainprop),
        "backprop": plain,
    }


def _numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


def _json(config):
    return np.array(json.dumps(config, sort_keys=True))


def describe(models):
    """What the models predict and hold, as NumPy arrays by name."""
    summary = {}
    for name, model in models.items():
        summary[f"{name}/q_values"] = _numpy(model.predict(IMAGES, verbose=0))
        for index, weight in enumerate(model.weights):
            summary[f"{name}/weight_{index}"] = _numpy(weight)
    brainprop = models["brainprop"]
    summary["brainprop/config"] = _json(brainprop.get_config())
    for index, layer in enumerate(feedback.feedback_layers(brainprop)):
        summary[f"brainprop/feedback_{index}"] = _numpy(layer.feedback_weights)
    for index, variable in enumerate(brainprop.optimizer.variables):
        summary[f"brainprop/optimizer_{index}"] = _numpy(variable)
    # The seed generators' states: int64, uint32 or int32 by backend.
    for index, state in enumerate(brainprop._random_states()):
        summary[f"brainprop/random_state_{index}"] = _numpy(state).astype(
            "int64"
        )
    return summary


def save(directory):
    """Saves the trained models and their summary under this backend."""
    folder = os.path.join(directory, keras.backend.backend())
    os.makedirs(folder, exist_ok=True)
    models = trained_models()
    for name, model in models.items():
        model.save(os.path.join(folder, f"{name}.keras"))
    np.savez(os.path.join(folder, "saved.npz"), **describe(models))


def load(directory):
    """Loads every backend's files under this one and summarizes them."""
    folder = os.path.join(directory, keras.backend.backend())
    os.makedirs(folder, exist_ok=True)
    for saver in BACKENDS:
        if not os.path.exists(os.path.join(directory, saver, "saved.npz")):
            continue
        models = {
            # A plain Keras model saves the jit_compile its backend resolved
            # "auto" to: saved under JAX, under PyTorch it would predict with
            # torch.compile, a minute on two CPUs.
            name: keras.models.load_model(
                os.path.join(directory, saver, f"{name}.keras"),
                compile=name != "backprop",
            )
            for name in MODELS
        }
        summary = describe(models)
        # The loaded BrainPropModel trains on (it compiles as this backend
        # compiles "auto").
        logs = models["brainprop"].train_on_batch(
            IMAGES, LABELS, return_dict=True
        )
        summary["trained_loss"] = np.float32(logs["loss"])
        np.savez(os.path.join(folder, f"loaded_from_{saver}.npz"), **summary)


def serve(path, inputs):
    """The outputs of an exported artifact: a SavedModel or a `.pt2`."""
    if str(path).endswith(".pt2"):
        import torch

        program = torch.export.load(str(path)).module()
        return program(torch.as_tensor(inputs)).detach().cpu().numpy()
    import tensorflow as tf

    artifact = tf.saved_model.load(str(path))  # Holds the variables.
    return artifact.serve(inputs).numpy()


if __name__ == "__main__":
    command, directory = sys.argv[1:]
    {"save": save, "load": load}[command](directory)
