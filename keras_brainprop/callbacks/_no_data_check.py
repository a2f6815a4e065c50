"""A private callback of BrainPropModel.fit(): fail on empty training data."""

import keras
import tensorflow as tf


class NoDataCheck(keras.callbacks.Callback):
    """Makes fit() raise when an epoch runs no training step (empty data);
    Keras 3 only warns. `x`, what fit() got, is described in the error.

    Keras 3.15.1's JAX fit() fails before the epoch ends when it ran no
    step (`UnboundLocalError` on its last step's logs, no upstream issue
    found): the caller of fit() can then call `raise_if_no_step()`.
    """

    def __init__(self, x):
        super().__init__()
        self.description = _describe_data(x)
        self.epoch = 0
        self.steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def on_epoch_end(self, epoch, logs=None):
        self.raise_if_no_step()

    def raise_if_no_step(self):
        """Raises `ValueError` if the current epoch has run no step."""
        if self.steps == 0:
            raise ValueError(
                f"fit() got no training data: epoch {self.epoch + 1} ran no "
                "training step. The dataset or arrays are empty (or were "
                f"filtered to nothing). Received: {self.description}"
            )


def _describe_data(x):
    if isinstance(x, tf.data.Dataset):
        cardinality = int(x.cardinality())
        if cardinality < 0:
            return "x=<tf.data.Dataset of unknown size>"
        return f"x=<tf.data.Dataset of {cardinality} batches>"
    shape = getattr(x, "shape", None)
    if shape is not None:
        return f"x with shape {tuple(shape)}"
    return f"x of type {type(x).__name__}"
