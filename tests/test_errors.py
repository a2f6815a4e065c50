"""InvalidInputError (keras_brainprop/_errors.py): what every failed input
check raises, with our message first.
"""

import numpy as np
import pytest
import tensorflow as tf
from _helpers import EAGER_AND_GRAPH
from _helpers import compiled_model
from _helpers import fit_fails
from _helpers import toy_data
from _helpers import toy_net


@pytest.mark.slow
@EAGER_AND_GRAPH
def test_check_errors_start_with_our_text(run_eagerly):
    # In graph mode TensorFlow's error opens with its trace; ours opens
    # with the check's message and keeps TensorFlow's as its cause (Keras'
    # traceback filtering re-raises it `from None`: then as its context).
    model = compiled_model(toy_net(), run_eagerly)
    x, y = toy_data(8)
    error = fit_fails(
        model,
        r"^Labels must be < 4, the number of actions \(the width of the "
        r"model's output\). Received: label\W*12$",
        x,
        np.where(y == 0, 12, y),
        batch_size=8,
    )
    if not run_eagerly:
        original = error.__cause__ or error.__context__
        assert type(original) is tf.errors.InvalidArgumentError
        assert str(original).startswith("Graph execution error")
