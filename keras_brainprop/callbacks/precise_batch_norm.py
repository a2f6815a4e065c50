"""PreciseBatchNorm: batch-norm statistics re-estimated before evaluation."""

import keras
import tensorflow as tf


class PreciseBatchNorm(keras.callbacks.Callback):
    """Re-estimates batch-normalization statistics before every evaluation.

    In inference mode a `BatchNormalization` layer normalizes with its
    moving statistics, an exponential average of past batches that starts
    at mean 0 and variance 1. When the network's activations are far from
    that start, as they are with the small initial weights of the BrainProp
    paper (variances 1,000 to 10,000 times below 1), the moving statistics
    lag the weights by about `1 / (1 - momentum)` steps (100 at Keras'
    default 0.99, but they need several times that to forget a start so
    far off), and validation accuracy in the first epochs measures that lag
    rather than what the network has learned. This callback follows
    "precise BN": before each evaluation (the validation at the end of an
    epoch of `fit`, or `evaluate`) it runs the network in training mode on
    `num_batches` batches of `data` and sets every batch-normalization
    layer's moving mean and variance to the average of those batches'
    statistics. No weight is trained and no optimizer state changes; layers
    such as `Dropout` act as in training during those passes. Networks
    without batch normalization are left alone.

    Because `fit` evaluates before it saves a checkpoint (`ModelCheckpoint`,
    `EarlyStopping(restore_best_weights=True)`), the statistics kept with
    the best epoch's weights are the re-estimated ones.

    It works on every Keras backend (the data is read through NumPy).

    Args:
        data: A `tf.data.Dataset` of training batches, `(x, y)` tuples or
            `x` alone, e.g. the training data given to `fit`. Each
            evaluation reads its first `num_batches` batches (a reshuffling
            dataset gives other batches each time).
        num_batches: Batches averaged per re-estimate, >= 1.

    Example:

    ```python
    callback = PreciseBatchNorm(train_data, num_batches=16)
    model.fit(train_data, validation_data=validation_data,
              epochs=10, callbacks=[callback])
    ```

    Reference:
        Wu, Johnson, "Rethinking 'Batch' in BatchNorm", 2021.
    """

    def __init__(self, data, num_batches=16):
        super().__init__()
        if not isinstance(data, tf.data.Dataset):
            raise ValueError(
                "`data` must be a tf.data.Dataset of training batches. "
                f"Received: data={type(data).__name__}"
            )
        if (
            isinstance(num_batches, bool)
            or not isinstance(num_batches, int)
            or num_batches < 1
        ):
            raise ValueError(
                "`num_batches` must be an integer >= 1. "
                f"Received: num_batches={num_batches!r}"
            )
        self.data = data
        self.num_batches = num_batches

    def on_test_begin(self, logs=None):
        self.recompute()

    def recompute(self):
        """Sets the moving statistics to the average over `num_batches`."""
        network = getattr(self.model, "network", self.model)
        layers = batch_norm_layers(network)
        if not layers:
            return
        momenta = [layer.momentum for layer in layers]
        # As NumPy: the network may run on another backend than tf.data.
        batches = self.data.take(self.num_batches).as_numpy_iterator()
        try:
            for count, batch in enumerate(batches):
                # Momentum count / (count + 1) makes the moving statistics
                # the running mean of the batches' statistics so far.
                for layer in layers:
                    layer.momentum = count / (count + 1)
                x = batch[0] if isinstance(batch, tuple) else batch
                network(x, training=True)
        finally:
            for layer, momentum in zip(layers, momenta, strict=True):
                layer.momentum = momentum


def batch_norm_layers(network):
    """Every `keras.layers.BatchNormalization` inside `network`, in order.

    Example:

    >>> batch_norm_layers(architectures.build("conv", (28, 28, 1), 10))
    [<BatchNormalization ...>, <BatchNormalization ...>]
    """
    found, stack = [], [network]
    while stack:
        layer = stack.pop(0)
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        stack[:0] = [
            child
            for child in getattr(layer, "layers", ())
            if child is not layer
        ]
    return found
