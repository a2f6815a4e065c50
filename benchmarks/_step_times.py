"""The step times of a short fit, shared by the timing benchmarks."""

import time
import warnings


def step_times(model, dataset, steps):
    """Fits one epoch of `steps` + 1 steps; times the end of every step.

    Reading the logs at every step's end waits for the step to finish on
    backends that dispatch asynchronously (JAX). `fit()`'s coverage warning
    is silenced: on random data after one epoch its advice is noise.

    Args:
        model: A compiled Keras model.
        dataset: A `tf.data.Dataset` of at least `steps` + 1 batches.
        steps: The number of steps to time after the first.

    Returns:
        A list of `(time.perf_counter(), time.process_time())`, one per
        step.
    """
    import keras

    from keras_brainprop.metrics import LowCoverageWarning

    times = []

    class StepTimes(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            times.append((time.perf_counter(), time.process_time()))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LowCoverageWarning)
        model.fit(
            dataset,
            steps_per_epoch=steps + 1,
            epochs=1,
            verbose=0,
            shuffle=False,
            callbacks=[StepTimes()],
        )
    return times
