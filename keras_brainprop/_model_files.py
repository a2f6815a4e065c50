"""BrainPropModel's files: weights with random states, weights files, export.

A mixin of `BrainPropModel`: Keras saves weights only, while a BrainProp
model must also restore its random-number states (exploration, dropout) to
continue exactly; and its weights files are the plain network's own, so the
trained network deploys without the wrapper. The files hold NumPy arrays
only, so a model saved under one Keras backend loads under the others.
"""

import importlib.util

import h5py
import keras

from keras_brainprop import _keras_fixes
from keras_brainprop.feedback.conversion import feedback_layers
from keras_brainprop.feedback.conversion import to_plain

# The group of a `save_weights()` file holding what the plain network's
# weights file lacks: the model's random-number states, the optimizer's
# state and the feedback weights.
_STATE_GROUP = "brainprop_model"
# Keras names a layer's group in a weights file after its class, so a
# network that holds FeedbackLayers (saved by `network.save_weights()`, or
# by a BrainPropModel before its files were the plain network's) has groups
# of this name.
_CONVERTED_LAYOUT = "feedback_layer"


def _has_converted_layout(file):
    # visit() stops at the first name for which the function returns a value.
    return bool(
        file.visit(
            lambda name: (
                name.rsplit("/", 1)[-1].startswith(_CONVERTED_LAYOUT) or None
            )
        )
    )


class PortableCompileConfig:
    """A compile config that compiles alike under every backend it loads in.

    Keras 3.15.1 saves two things of the saving backend in a model's
    compile config (no upstream issue found); this mixin saves them as the
    user asked, so that the loading backend decides, as at the first
    compile:

    - `jit_compile="auto"` as the value it resolved to: True under JAX,
      so a model saved there would load under PyTorch with `torch.compile`
      (which BrainProp's step does not survive), and False under
      TensorFlow on CPU, so JAX would run the loaded model eagerly;
    - the optimizer as its PyTorch subclass (e.g. module
      `keras.src.backend.torch.optimizers.torch_adam`), which TensorFlow
      and JAX would load and fail to apply. It is saved as the public
      `keras.optimizers` class it subclasses.
    """

    def compile(self, *args, **kwargs):
        self._asked_jit_compile = kwargs.get("jit_compile", "auto")
        return super().compile(*args, **kwargs)

    def compile_from_config(self, config):
        # Keras' own skips compile() for a model that overrides it.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            # Create the optimizer's variables so its saved state loads.
            self.optimizer.build(self.trainable_variables)

    def get_compile_config(self):
        config = super().get_compile_config()
        if not config:
            return config
        if getattr(self, "_asked_jit_compile", None) == "auto":
            config["jit_compile"] = "auto"
        optimizer = config.get("optimizer")
        if (
            isinstance(optimizer, dict)
            and str(optimizer.get("module")).startswith("keras.src.backend.")
            and hasattr(keras.optimizers, optimizer.get("class_name", ""))
        ):
            config["optimizer"] = {
                **optimizer,
                "module": "keras.optimizers",
                "registered_name": None,
            }
        return config


class ModelFiles(PortableCompileConfig):
    """Saving and exporting for a `keras.Model` with a `network`."""

    def _random_states(self):
        # Seed-generator states: the exploration seed and the counters of
        # dropout and other random layers. Keras saves weights only.
        weights = {id(weight) for weight in self.weights}
        return [v for v in self.variables if id(v) not in weights]

    def save_own_variables(self, store):
        # Saved with the weights so that a reloaded or restored model draws
        # the same dropout masks and exploration as the original would.
        super().save_own_variables(store)
        for i, state in enumerate(self._random_states()):
            store[f"random_state_{i}"] = state

    def load_own_variables(self, store):
        states = self._random_states()
        saved = [key for key in store.keys() if key.startswith("random_")]
        if saved and len(saved) != len(states):
            raise ValueError(
                f"The saved model has {len(saved)} random-number states but "
                f"this one has {len(states)}: the networks differ. Received: "
                f"{sorted(saved)}"
            )
        for i, state in enumerate(states if saved else []):
            state.assign(store[f"random_state_{i}"])
        # Files written before random states were saved have none.
        super().load_own_variables(
            {k: store[k] for k in store.keys() if not k.startswith("random_")}
        )

    def save_weights(self, filepath, overwrite=True, max_shard_size=None):
        """Saves the plain network's weights file, with this model's state.

        The file is the plain network's own `.weights.h5` (that of
        `feedback.to_plain(model.network)`, the network itself under the
        default symmetric feedback), so the plain network loads it
        (`network.load_weights(path)`) whatever the feedback rule, and so
        does a BrainPropModel of the same network, which also reads what
        only it uses: the optimizer's state, the random-number states
        (exploration, dropout) and the feedback weights. `load_weights()`
        also takes a file the plain network saved. Sharded files
        (`max_shard_size`) are written for the network alone:
        `model.network.save_weights(...)`.
        """
        if max_shard_size is not None:
            raise ValueError(
                "BrainPropModel writes one `.weights.h5` file. For sharded "
                "files of the network's weights alone, call "
                "model.network.save_weights(path, max_shard_size=...). "
                f"Received: max_shard_size={max_shard_size!r}"
            )
        to_plain(self.network).save_weights(filepath, overwrite=overwrite)
        stores = {"vars": {}, "optimizer": {}, "feedback": {}}
        self.save_own_variables(stores["vars"])
        optimizer = getattr(self, "optimizer", None)  # None if uncompiled.
        if optimizer is not None and optimizer.built:
            optimizer.save_own_variables(stores["optimizer"])
        for i, layer in enumerate(feedback_layers(self.network)):
            if layer.feedback_weights is not None:
                stores["feedback"][str(i)] = layer.feedback_weights
        with h5py.File(filepath, "a") as file:
            group = file.create_group(_STATE_GROUP)
            for name, store in stores.items():
                entries = group.create_group(name)
                for key, value in store.items():
                    entries[key] = keras.ops.convert_to_numpy(value)

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        """Loads a weights file of this model or of the plain network.

        See `save_weights()`. A plain network's file leaves the feedback
        weights as they are. A file of the converted network
        (`model.network.save_weights()` under a feedback rule) loads too.
        A `.keras` file loads as in Keras.
        """
        if not str(filepath).endswith(".weights.h5"):
            return super().load_weights(filepath, skip_mismatch, **kwargs)
        with h5py.File(filepath, "r") as file:
            converted = _has_converted_layout(file)
            stores = {}
            if _STATE_GROUP in file:
                stores = {
                    name: {key: value[()] for key, value in entries.items()}
                    for name, entries in file[_STATE_GROUP].items()
                }
        feedback = stores.get("feedback", {})
        targets = self._feedback_weights_for(feedback)  # Checked first.
        network = self.network if converted else to_plain(self.network)
        network.load_weights(filepath, skip_mismatch, **kwargs)
        if not stores:
            return  # The plain network's file.
        for key, variable in targets.items():
            variable.assign(feedback[key])
        self.load_own_variables(stores["vars"])
        optimizer = getattr(self, "optimizer", None)
        if stores["optimizer"] and optimizer is not None:
            if not optimizer.built:
                optimizer.build(self.trainable_variables)
            optimizer.load_own_variables(stores["optimizer"])

    def _feedback_weights_for(self, store):
        # The variables that a file's feedback weights load into, by key.
        if not store:
            return {}  # Saved under the symmetric rule, or a plain file.
        targets = {
            str(i): layer.feedback_weights
            for i, layer in enumerate(feedback_layers(self.network))
            if layer.feedback_weights is not None
        }
        shapes = {key: tuple(value.shape) for key, value in store.items()}
        if shapes != {key: tuple(v.shape) for key, v in targets.items()}:
            raise ValueError(
                f"The weights file holds feedback weights of {len(store)} "
                "layers that do not match those of this model's network "
                f"under {self.feedback!r} ({len(targets)} layers store "
                "feedback weights). Received: feedback weight shapes "
                f"{shapes}"
            )
        return targets

    def export(
        self,
        filepath,
        format="tf_saved_model",
        verbose=None,
        input_signature=None,
        **kwargs,
    ):
        """Exports the Q-value function, `predict()`'s, for inference.

        Arguments as `keras.Model.export`; the input signature defaults to
        the network's inputs. The artifact returns the Q-values, as
        `predict(x)` does; the greedy action is their argmax.

        Which formats a backend exports is Keras' choice: a TensorFlow
        SavedModel (`format="tf_saved_model"`, the default) under
        TensorFlow and JAX (through `jax2tf`); under PyTorch a PyTorch
        `ExportedProgram` (`format="torch"`, a `.pt2` file), since Keras
        exports a SavedModel from PyTorch only through the `torch_xla`
        package. A format the backend cannot export raises a `ValueError`
        that names the backend and the way out: load the saved `.keras`
        model under a backend that exports it.

        Example:

        ```python
        model.export("q_values")  # TensorFlow or JAX.
        tf.saved_model.load("q_values").serve(x)  # == model.predict(x)
        model.export("q_values.pt2", format="torch")  # PyTorch.
        torch.export.load("q_values.pt2").module()(x)
        ```
        """
        _check_export_format(format)
        if input_signature is None:
            input_signature = _keras_fixes.input_signature(self.network)
        if format == "torch" and "dynamic_shapes" not in kwargs:
            # Keras 3.15.1 traces the program with a batch of one and
            # torch.export fixes that size: Q-values of any batch size.
            kwargs["dynamic_shapes"] = _dynamic_batch(input_signature)
        return super().export(
            filepath,
            format=format,
            verbose=verbose,
            input_signature=input_signature,
            **kwargs,
        )


def _dynamic_batch(input_signature):
    """torch.export's `dynamic_shapes` with the batch size of each input."""
    import torch

    batch = torch.export.Dim("batch", min=1)
    specs = keras.tree.flatten(input_signature)
    if len(specs) == 1:
        return {0: batch}
    # Keras passes several inputs as one list argument.
    return [([{0: batch} for _ in specs],)]


def _check_export_format(format):
    """Refuses a format the current backend cannot export, saying why."""
    backend = keras.backend.backend()
    if backend == "torch" and format == "tf_saved_model":
        # Keras 3.15.1 lowers the PyTorch graph through torch_xla, a
        # package built for one PyTorch version at a time.
        if importlib.util.find_spec("torch_xla") is None:
            raise ValueError(
                "On the PyTorch backend, Keras exports a TensorFlow "
                "SavedModel through the torch_xla package, which is not "
                "installed. Export a PyTorch ExportedProgram instead, "
                "model.export('q_values.pt2', format='torch'), or save the "
                "model (model.save('model.keras')) and export the SavedModel "
                "under the TensorFlow or JAX backend (KERAS_BACKEND="
                "tensorflow or jax), which loads the file. Received: "
                "format='tf_saved_model' on backend 'torch'"
            )
    if format == "torch" and backend != "torch":
        raise ValueError(
            "format='torch' writes a PyTorch ExportedProgram, which only "
            f"the PyTorch backend exports. On the {backend} backend, export "
            "format='tf_saved_model', or save the model (model.save("
            "'model.keras')) and export it under KERAS_BACKEND=torch, which "
            f"loads the file. Received: format='torch' on backend '{backend}'"
        )
