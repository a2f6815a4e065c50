"""Shared test setup: quiet TensorFlow, a fresh Keras state per test, and
the tf.distribute worker runs (`distributed_runs`).

Layout: the tests of a module live in a file named after it,
tests/test_<module>.py or tests/test_<subpackage>_<module>.py (e.g.
keras_brainprop/feedback/rules.py -> test_feedback_rules.py; a private
module drops its underscore: _checks.py -> test_checks.py;
benchmarks/compare.py -> test_benchmarks_compare.py). test_<subpackage>.py
holds what spans the subpackage. Helpers the files share are in
tests/_helpers.py, the NumPy reference of a BrainProp step in
tests/_references.py; the *_worker.py scripts are the processes some tests
start.

Marks (setup.cfg): `slow` tests start Python afresh (the examples,
benchmarks, tf.distribute workers) or train for a second or more;
`python -m pytest -m "not slow"` leaves them out while working (about a
minute). `backends` tests also run under KERAS_BACKEND=jax and torch.

The README's test command runs every test in two pytest-xdist workers; each
worker that runs a test reading `distributed_runs` starts those processes
once for itself.
"""

import gc
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import pytest  # noqa: E402
from _distributed import distributed_runs  # noqa: E402, F401


@pytest.fixture(scope="module", autouse=True)
def _long_lived_objects_set_aside():
    # clear_session() before each test runs a full garbage collection. What
    # lives when a test module starts (TensorFlow, the modules, their
    # caches) lives on: set aside from those collections, it is not walked
    # again before every test.
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.clear_session()
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")
