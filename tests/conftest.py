"""Shared test setup: quiet TensorFlow, a fresh Keras state per test, and
the tf.distribute worker runs (`distributed_runs`).

The README's test command runs the tests in two pytest-xdist workers; each
worker that runs a test reading `distributed_runs` starts those processes
once for itself.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402
from _distributed import distributed_runs  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.clear_session()
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")
