"""The monitor's probe: samples taken once from probe data, and their labels.

The probe is held on the host as NumPy arrays, so that it feeds the network
on every Keras backend; `probe_data` may be NumPy arrays, tensors of the
backend or of TensorFlow, or a `tf.data.Dataset`.
"""

import keras
import numpy as np
import tensorflow as tf

# The probe goes through the network in chunks of this many samples, so a
# large probe of a deep network never holds all its activations at once.
PROBE_CHUNK = 128


def class_labels(y, num_actions):
    """The probe's class labels `[n]`, or None if its targets hold none.

    Labels are indices `[n]` or `[n, 1]`, or one-hot rows `[n, actions]`;
    a reward table of other values has no classes to recall.
    """
    if y is None or len(keras.tree.flatten(y)) != 1:
        return None
    y = np.asarray(keras.tree.flatten(y)[0])
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 1:
        labels = y.astype("int64")
        in_range = (labels >= 0) & (labels < num_actions)
        return labels if (labels == y).all() and in_range.all() else None
    one_hot = y.ndim == 2 and y.shape[1] == num_actions
    if one_hot and np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all():
        return y.argmax(axis=1)
    return None


def to_numpy(value):
    """A tensor (of TensorFlow or the backend), variable or array as NumPy."""
    if isinstance(value, tf.Tensor):  # E.g. from a tf.data pipeline.
        return value.numpy()
    if isinstance(value, keras.Variable):
        # Read through a tensor: NumPy 2 warns on the array protocol of
        # Keras' and TensorFlow's variables.
        value = keras.ops.copy(value)
    if keras.ops.is_tensor(value):
        return keras.ops.convert_to_numpy(value)
    return np.asarray(value)


def num_samples(structure):
    return int(keras.tree.flatten(structure)[0].shape[0])


def slice_samples(structure, start, stop):
    return keras.tree.map_structure(lambda t: t[start:stop], structure)


def _is_float(dtype):
    # `bfloat16` and the float8 types (ml_dtypes) are NumPy void kinds.
    return dtype.kind == "f" or "float" in dtype.name


def _dtype_name(dtype):
    # Text arrives as NumPy str or bytes, or as objects from TensorFlow.
    return "string" if dtype.kind in "OSU" else dtype.name


def _to_arrays(structure, name):
    if structure is None:
        return None
    try:
        arrays = keras.tree.map_structure(to_numpy, structure)
    except (TypeError, ValueError) as error:
        raise ValueError(
            "`probe_data` must be arrays (x, y) or a batched tf.data.Dataset "
            f"of (x, y). Its {name} could not be read as tensors: {error}"
        ) from error
    for array in keras.tree.flatten(arrays):
        if not (_is_float(array.dtype) or array.dtype.kind in "iu"):
            raise ValueError(
                "`probe_data` must hold numbers. Received: its "
                f"{name} with dtype {_dtype_name(array.dtype)}"
            )
        if array.ndim == 0:
            raise ValueError(
                "`probe_data` must hold one row per sample. Received: its "
                f"{name} as a scalar"
            )
    return arrays


def check_probe_inputs(x, network):
    """Raises `ValueError` unless the probe's `x` fits the network's input.

    Checked where the network declares one input of known shape
    (Sequential with an `Input`, functional); other networks are checked
    by running the probe.
    """
    try:
        inputs = network.inputs
    except (AttributeError, ValueError):
        return
    if not inputs or len(inputs) != 1 or len(keras.tree.flatten(x)) != 1:
        return
    expected = tuple(inputs[0].shape)
    received = tuple(keras.tree.flatten(x)[0].shape)
    compatible = len(expected) == len(received) and all(
        e is None or e == r for e, r in zip(expected[1:], received[1:])
    )
    if not compatible:
        raise ValueError(
            "BrainPropMonitor's `probe_data` must hold inputs the network "
            f"takes, of shape {expected}. Received: x with shape "
            f"{received}"
        )


def _check_finite(x):
    # The model refuses such inputs in fit() and evaluate(); on the probe
    # they would make every logged value NaN.
    for array in keras.tree.flatten(x):
        if not _is_float(array.dtype):
            continue
        values = np.reshape(array, [array.shape[0], -1])
        finite = np.isfinite(values)
        if not finite.all():
            sample, column = np.unravel_index(finite.argmin(), finite.shape)
            raise ValueError(
                "`probe_data` must hold finite inputs: NaN or Inf inputs "
                "make the probe's Q-values NaN. Received: x with "
                f"{values[sample, column]} in sample {sample}"
            )


def _concat(parts):
    if parts[0] is None:
        return None
    return keras.tree.map_structure(
        lambda *arrays: np.concatenate(arrays, 0), *parts
    )


def take_probe(probe_data, probe_size):
    """Returns (x, y) NumPy arrays of the first `probe_size` probe samples."""
    if probe_data is None:
        return None, None
    if isinstance(probe_data, tf.data.Dataset):
        batches, taken = [], 0
        for element in probe_data:
            x, y, _ = keras.utils.unpack_x_y_sample_weight(element)
            batches.append((_to_arrays(x, "x"), _to_arrays(y, "y")))
            taken += num_samples(batches[-1][0])
            if taken >= probe_size:
                break
        if not batches:
            raise ValueError(
                "`probe_data` must hold at least one sample. Received: an "
                "empty dataset"
            )
        if len({y is None for _, y in batches}) > 1:
            raise ValueError(
                "`probe_data` must give targets `y` in every batch or in none."
            )
        x, y = (_concat(parts) for parts in zip(*batches))
    else:
        x, y, _ = keras.utils.unpack_x_y_sample_weight(probe_data)
        x, y = _to_arrays(x, "x"), _to_arrays(y, "y")
    count = min(num_samples(x), probe_size)
    if count == 0:
        raise ValueError(
            "`probe_data` must hold at least one sample. Received: 0 samples"
        )
    if y is not None and num_samples(y) != num_samples(x):
        raise ValueError(
            "`probe_data`'s x and y must hold the same number of samples. "
            f"Received: {sorted({num_samples(x), num_samples(y)})} samples"
        )
    x = slice_samples(x, 0, count)
    _check_finite(x)
    y = None if y is None else slice_samples(y, 0, count)
    return x, y
