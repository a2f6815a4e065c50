"""BackpropModel (keras_brainprop/backprop_model.py): the backprop baseline
trains, saves and loads as a model around its network.
"""

import keras
import numpy as np
import pytest


@pytest.mark.backends
def test_backprop_wrapper_trains_saves_and_loads(tmp_path):

    from keras_brainprop.backprop_model import BackpropModel

    network = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(3, activation="softmax")]
    )
    model = BackpropModel(network)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    y = np.arange(16) % 3
    before = network.get_weights()[0].copy()
    model.fit(x, y, batch_size=8, verbose=0)
    assert not np.allclose(before, network.get_weights()[0])
    model.save(tmp_path / "backprop.keras")
    reloaded = keras.models.load_model(tmp_path / "backprop.keras")
    assert isinstance(reloaded, BackpropModel)
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )


@pytest.mark.backends
def test_backprop_model_loads_under_its_old_registered_name():

    from keras_brainprop.backprop_model import BackpropModel

    network = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3)])
    config = keras.saving.serialize_keras_object(BackpropModel(network))
    assert config["registered_name"] == "keras_brainprop>BackpropModel"
    config["registered_name"] = "keras_brainprop>Backprop"
    assert isinstance(
        keras.saving.deserialize_keras_object(config), BackpropModel
    )
