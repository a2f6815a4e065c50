"""What differs per Keras backend: one small module per backend.

BrainProp is written once, in `keras.ops` and `keras.random`. What those
cannot express lives here, chosen at import from `keras.backend.backend()`
as Keras chooses its own trainers:

- stateless random draws from a seed tensor (`fold_in`, `split`,
  `categorical`, `uniform`, `uniform_int`): Keras' random ops take an int or
  a `SeedGenerator`, and a policy draws from a seed derived from the
  training step inside a compiled step;
- `linear_with_feedback`: the backward pass of a feedback layer, which
  sends the error down through feedback weights instead of the kernel (a
  custom vector-Jacobian product, written with each backend's autodiff);
- `gradients`: the gradients of a scalar function of a network's output
  (feedback diagnostics and attention maps);
- `assert_all`, `check_finite`, `with_checks`, `after` and
  `clear_errors`: input checks that fail
  before any weight moves, eagerly or inside a compiled step, with the
  check's own message;
- `Trainer`: the step counter and replica of the current training step,
  and the loss scaling of data-parallel replicas.

Each module states why each piece differs on its backend.
"""

import keras

BACKENDS = ("tensorflow", "jax", "torch")

NAME = keras.backend.backend()

if NAME == "tensorflow":
    from keras_brainprop.backend import tensorflow as _impl
elif NAME == "jax":
    from keras_brainprop.backend import jax as _impl
elif NAME == "torch":
    from keras_brainprop.backend import torch as _impl
else:
    _impl = None

after = getattr(_impl, "after", None)
assert_all = getattr(_impl, "assert_all", None)
categorical = getattr(_impl, "categorical", None)
check_finite = getattr(_impl, "check_finite", None)
clear_errors = getattr(_impl, "clear_errors", None)
fold_in = getattr(_impl, "fold_in", None)
gradients = getattr(_impl, "gradients", None)
linear_with_feedback = getattr(_impl, "linear_with_feedback", None)
split = getattr(_impl, "split", None)
uniform = getattr(_impl, "uniform", None)
uniform_int = getattr(_impl, "uniform_int", None)
with_checks = getattr(_impl, "with_checks", None)
Trainer = getattr(_impl, "Trainer", keras.Model)


def check_supported():
    """Raises `ValueError` unless the Keras backend is one BrainProp runs on."""
    if _impl is None:
        raise ValueError(
            "keras_brainprop runs on the TensorFlow, JAX and PyTorch "
            "backends of Keras. Set KERAS_BACKEND to 'tensorflow', 'jax' or "
            f"'torch'. Received: backend={NAME!r}"
        )
