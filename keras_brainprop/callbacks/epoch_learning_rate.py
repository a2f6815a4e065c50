"""EpochLearningRate: the learning rate of every epoch from a schedule."""

import keras


class EpochLearningRate(keras.callbacks.Callback):
    """Sets the learning rate at the start of every epoch and logs it.

    Like `keras.callbacks.LearningRateScheduler`, but it never reads the
    optimizer's rate back into NumPy, which makes Keras 3.15 with NumPy 2
    warn twice an epoch. The rate of each epoch is logged as
    "learning_rate".

    Args:
        schedule: A function of the (0-based) epoch returning the rate,
            e.g. `architectures.Hyperparameters.learning_rate_at` (the
            paper's: halved every 100 epochs).

    Example:

    ```python
    hparams = architectures.hyperparameters("conv")
    callback = EpochLearningRate(hparams.learning_rate_at)
    model.fit(train, epochs=300, callbacks=[callback])
    ```
    """

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule
        self.learning_rate = None

    def on_epoch_begin(self, epoch, logs=None):
        self.learning_rate = float(self.schedule(epoch))
        self.model.optimizer.learning_rate = self.learning_rate

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = self.learning_rate
