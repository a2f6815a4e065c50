"""The paper's protocol: data splits and training callbacks."""

import dataclasses
import time

import keras
import tensorflow as tf

from keras_brainprop import datasets
from keras_brainprop.callbacks.epoch_learning_rate import EpochLearningRate

# Batch size of validation and test passes: larger batches evaluate faster
# and give the same numbers (no layer depends on the batch at inference).
_EVALUATION_BATCH_SIZE = 512


@dataclasses.dataclass(frozen=True)
class Splits:
    """The training, validation and test data of one run.

    Attributes:
        train: Shuffled, batched `tf.data.Dataset` of `(images, labels)`.
        validation: Batched dataset held out of the official training set.
        test: Batched dataset of the official test set.
        input_shape: Shape of one image.
        num_classes: Number of classes.
        num_train_examples: Examples in `train`.
        num_validation_examples: Examples in `validation`.
        num_test_examples: Examples in `test`.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    input_shape: tuple
    num_classes: int
    num_train_examples: int
    num_validation_examples: int
    num_test_examples: int


def load_splits(
    dataset,
    *,
    seed=0,
    batch_size=128,
    data_dir=None,
    max_train_examples=None,
    validation_fraction=0.1,
):
    """Loads a dataset's train, validation and test splits.

    Args:
        dataset: A name in `keras_brainprop.datasets.NAMES`.
        seed: Seeds the validation split and the shuffling.
        batch_size: Training batch size.
        data_dir: Optional directory with a local copy of the data.
        max_train_examples: If set, train on only the first this many
            training examples (for quick runs); validation and test data
            stay complete.
        validation_fraction: Share of the official training set held out
            for validation (early stopping).

    Returns:
        A `Splits`.

    Example:

    >>> splits = load_splits("digits", seed=1, batch_size=32)
    >>> splits.num_test_examples
    359
    """
    spec = datasets.info(dataset)
    common = {
        "data_dir": data_dir,
        "validation_fraction": validation_fraction,
        "seed": seed,
    }
    # The same rule as the datasets module: a rounded fraction is held out,
    # so the counts are known without reading the data again.
    num_validation = int(round(validation_fraction * spec.num_train_examples))
    if max_train_examples is None:
        train = datasets.load(dataset, "train", batch_size=batch_size, **common)
        num_train = spec.num_train_examples - num_validation
    else:
        images, labels = datasets.load_arrays(dataset, "train", **common)
        images = images[:max_train_examples]
        labels = labels[:max_train_examples]
        num_train = len(labels)
        train = (
            tf.data.Dataset.from_tensor_slices((images, labels))
            .shuffle(num_train, seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )
    evaluation = {"batch_size": _EVALUATION_BATCH_SIZE, **common}
    return Splits(
        train=train,
        validation=datasets.load(dataset, "validation", **evaluation),
        test=datasets.load(dataset, "test", **evaluation),
        input_shape=tuple(spec.input_shape),
        num_classes=spec.num_classes,
        num_train_examples=num_train,
        num_validation_examples=num_validation,
        num_test_examples=spec.num_test_examples,
    )


class _EpochTimer(keras.callbacks.Callback):
    """Records the wall time of every epoch, validation included."""

    def __init__(self):
        super().__init__()
        self.seconds = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


class _TestAtTrainEnd(keras.callbacks.Callback):
    """Evaluates the test set with the weights of the last epoch.

    Listed before `EarlyStopping`, so it runs before the best epoch's
    weights are restored.
    """

    def __init__(self, test_data):
        super().__init__()
        self.test_data = test_data
        self.logs = None

    def on_train_end(self, logs=None):
        self.logs = self.model.evaluate(
            self.test_data, verbose=0, return_dict=True
        )


@dataclasses.dataclass
class TrainingCallbacks:
    """The callbacks of one training run and the ones read afterwards.

    Attributes:
        callbacks: All callbacks, in order, to pass to `fit`.
        early_stopping: The `keras.callbacks.EarlyStopping` instance.
        timer: Records `seconds`, the duration of every epoch.
        last_epoch_test: Holds `logs`, the test metrics of the last epoch's
            weights, or None without test data.
    """

    callbacks: list
    early_stopping: keras.callbacks.EarlyStopping
    timer: keras.callbacks.Callback
    last_epoch_test: keras.callbacks.Callback | None


def make_callbacks(hparams, *, test_data=None, extra=(), verbose=1):
    """Returns the paper's training callbacks.

    The learning rate follows `hparams.learning_rate_at(epoch)` (halved
    every 100 epochs); training stops on a NaN loss or when the validation
    accuracy has not improved by `hparams.min_delta` for `hparams.patience`
    epochs, and the weights of the best validation epoch are restored.

    Args:
        hparams: An `architectures.Hyperparameters`.
        test_data: Optional test dataset, evaluated once with the last
            epoch's weights before the best ones are restored.
        extra: Callbacks to run after these, e.g. an algorithm's
            `callbacks(log_dir=...)`.
        verbose: 0 silences early stopping's messages.

    Returns:
        A `TrainingCallbacks`; pass its `callbacks` to `fit`.

    Example:

    ```python
    training = make_callbacks(architectures.hyperparameters("conv"))
    model.fit(train, validation_data=val, callbacks=training.callbacks)
    ```
    """
    timer = _EpochTimer()
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_accuracy",
        mode="max",
        patience=hparams.patience,
        min_delta=hparams.min_delta,
        restore_best_weights=True,
        verbose=1 if verbose else 0,
    )
    last_epoch_test = None if test_data is None else _TestAtTrainEnd(test_data)
    callbacks = [
        EpochLearningRate(hparams.learning_rate_at),
        keras.callbacks.TerminateOnNaN(),
        timer,
        *([last_epoch_test] if last_epoch_test is not None else []),
        early_stopping,
        *extra,
    ]
    return TrainingCallbacks(callbacks, early_stopping, timer, last_epoch_test)
