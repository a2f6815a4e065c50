"""BackpropModel: the backprop baseline as a model around its network."""

import keras

from keras_brainprop import _keras_fixes
from keras_brainprop._model_files import PortableCompileConfig


@keras.saving.register_keras_serializable(package="keras_brainprop")
class BackpropModel(PortableCompileConfig, _keras_fixes.ReplicaSafeModel):
    """The backprop (EBP) baseline: `network` trained by Keras' own step.

    Only needed under `tf.distribute`, where Keras 3.15 cannot train a plain
    model (see `keras_brainprop._keras_fixes`); elsewhere compile `network`.
    It trains, evaluates and saves on every backend (TensorFlow, JAX,
    PyTorch) all the same.

    Args:
        network: the `keras.Model` to train, e.g. from
            `architectures.build(..., output_activation="softmax")`.
        **kwargs: passed to `keras.Model`.

    Example:

    ```python
    with tf.distribute.MirroredStrategy().scope():
        model = BackpropModel(net)
        model.compile(optimizer="sgd",
                      loss="sparse_categorical_crossentropy")
    model.fit(dataset)
    ```
    """

    def __init__(self, network, **kwargs):
        kwargs.setdefault("name", f"backprop_{network.name}")
        super().__init__(**kwargs)
        self.network = network
        self.built = network.built

    def call(self, inputs, training=None):
        return self.network(inputs, training=training)

    def train_step(self, *args):
        # The batch, or under JAX the state and the batch; the logs change
        # only across tf.distribute workers.
        return _keras_fixes.step_logs(super().train_step(*args))

    def test_step(self, *args):
        return _keras_fixes.step_logs(super().test_step(*args))

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "network": keras.saving.serialize_keras_object(self.network),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(
            config["network"], custom_objects=custom_objects
        )
        return cls(**config)


# Files saved before the rename name the class "keras_brainprop>Backprop".
keras.saving.get_custom_objects()["keras_brainprop>Backprop"] = BackpropModel
