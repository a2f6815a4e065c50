"""fit() on empty training data fails with one clear error
(keras_brainprop/callbacks/_no_data_check.py) and moves no weight.
"""

import numpy as np
import pytest
import tensorflow as tf
from _helpers import assert_unchanged
from _helpers import compiled_model
from _helpers import toy_data
from _helpers import toy_net


def _filtered_to_nothing():
    x, y = toy_data(8)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    return dataset.filter(lambda x, y: y > 100).batch(4)


@pytest.mark.parametrize(
    "make_data, received",
    [
        (
            lambda: (np.zeros((0, 6), "float32"), np.zeros(0, "int64")),
            r"x with shape \(0, 6\)",
        ),
        (
            lambda: (
                tf.data.Dataset.from_tensor_slices(
                    (np.zeros((0, 6), "float32"), np.zeros(0, "int64"))
                ).batch(4),
            ),
            r"x=<tf.data.Dataset of 0 batches>",
        ),
        (lambda: (_filtered_to_nothing(),), "x=<tf.data.Dataset of unknown"),
    ],
    ids=["arrays", "dataset", "filtered_dataset"],
)
def test_empty_data_raises(make_data, received):
    network = toy_net()
    before = network.get_weights()
    model = compiled_model(network, run_eagerly=True)
    with pytest.warns(UserWarning, match="ran out of data"):
        with pytest.raises(
            ValueError, match=f"no training data.*Received: {received}"
        ):
            model.fit(*make_data(), epochs=3, verbose=0)
    assert_unchanged(network, before)
