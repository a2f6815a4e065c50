"""One experiment of the paper: build, train, evaluate and report a network.

`run(dataset, architecture, algorithm)` trains one of the paper's networks
(`keras_brainprop.architectures`) on one dataset
(`keras_brainprop.datasets`), either from reward with BrainProp or with the
paper's baseline, error backpropagation (EBP: the same network with a
softmax output, trained on the cross-entropy). It follows the paper's
protocol: SGD with the learning rate halved every 100 epochs, early stopping
on validation accuracy (patience 45, min_delta 0.001) with the best epoch's
weights restored, at most 500 epochs. The validation data are held out from
the training set; the test set is only used once training has ended.

Each seed calls `keras.utils.set_random_seed(seed)` and also seeds the
validation split and the shuffling, so a seed gives the same run for
BrainProp and EBP data-wise. Several seeds give the mean and standard
deviation of the results, as reported in the paper.

With `output_dir`, `run` writes into `<output_dir>/<dataset>_<architecture>_
<algorithm>/`: `summary.json` (all results and settings), `accuracy.png`
(validation accuracy of every seed) and per seed, in `seed_<seed>/`,
`history.json` (the per-epoch logs and epoch durations),
`model.weights.h5` (the network's weights of the best epoch, loadable into
`architectures.build(...)`) and `accuracy.png` (training and validation
accuracy per epoch). Plots need matplotlib and are skipped without it.

A script that wants to show its own `wrap` / `compile` / `fit` passes
`run(..., train_fn=fn)`: `fn` gets a `SeedRun` (data, callbacks, epochs,
hyper-parameters of one seed) and returns `fit`'s `History`; `run` does the
rest. The pieces of `run` (`load_splits`, `compile_model`,
`make_callbacks`, `finish_seed`, `summarize`) are public too. The command
line of `python -m keras_brainprop`, `examples/` and `benchmarks/` (flags,
strategy) is `keras_brainprop.cli`.

Example:

```python
from keras_brainprop import experiment

result = experiment.run("digits", "mlp", "brainprop", epochs=30, seeds=[1, 2])
print(result.summary())
result.mean_test_accuracy, result.std_test_accuracy
```
"""

import contextlib
import dataclasses
import json
import math
import os
import time
import warnings

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from keras_brainprop import architectures
from keras_brainprop import datasets
from keras_brainprop.backprop_model import BackpropModel
from keras_brainprop.model import wrap

ALGORITHMS = ("brainprop", "ebp")

# Batch size of validation and test passes: larger batches evaluate faster
# and give the same numbers (no layer depends on the batch at inference).
_EVALUATION_BATCH_SIZE = 512


def _check_algorithm(algorithm):
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"Unknown algorithm. Expected one of {ALGORITHMS}. "
            f"Received: algorithm={algorithm!r}"
        )
    return algorithm


def _mean_std(values):
    """Mean and sample standard deviation (0 for a single value)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    std = values.std(ddof=1) if values.size > 1 else 0.0
    return float(values.mean()), float(std)


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
    if max_train_examples is None:
        train = datasets.load(dataset, "train", batch_size=batch_size, **common)
        # The same rule as the datasets module: a rounded fraction is held
        # out, so the count is known without reading the data again.
        held_out = int(round(validation_fraction * spec.num_train_examples))
        num_train = spec.num_train_examples - held_out
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
    validation = datasets.load(
        dataset, "validation", batch_size=_EVALUATION_BATCH_SIZE, **common
    )
    test = datasets.load(
        dataset, "test", batch_size=_EVALUATION_BATCH_SIZE, **common
    )
    num_validation = int(round(validation_fraction * spec.num_train_examples))
    return Splits(
        train=train,
        validation=validation,
        test=test,
        input_shape=tuple(spec.input_shape),
        num_classes=spec.num_classes,
        num_train_examples=num_train,
        num_validation_examples=num_validation,
        num_test_examples=spec.num_test_examples,
    )


def output_activation(algorithm):
    """The output activation of a network trained with `algorithm`.

    Args:
        algorithm: "brainprop" (linear Q-values: `None`) or "ebp"
            (`"softmax"`, the paper's baseline).

    Returns:
        `None` or `"softmax"`, for `architectures.build`.
    """
    return None if _check_algorithm(algorithm) == "brainprop" else "softmax"


def compile_model(net, algorithm, learning_rate=0.1, seed=None, policy=None):
    """Returns `net` ready to train with BrainProp or with EBP.

    Args:
        net: A network from `architectures.build`, with a linear output
            for BrainProp and a softmax output for EBP.
        algorithm: "brainprop" wraps `net` in a `BrainPropModel` (reward,
            no loss); "ebp" compiles `net` itself with the cross-entropy,
            or, inside a `tf.distribute` strategy's scope, `net` wrapped in
            a `BackpropModel` model.
        learning_rate: SGD learning rate (no momentum, as in the paper).
        seed: Exploration seed of BrainProp; ignored by EBP.
        policy: BrainProp's action selection (`kbp.policies`); None for
            the paper's. Must be None for EBP, which chooses no actions.

    Returns:
        The compiled model to `fit`: a `BrainPropModel` or a
        `BackpropModel` sharing `net`'s weights, or `net`. All log
        "accuracy".

    Example:

    >>> net = architectures.build("mlp", (8, 8, 1), 10)
    >>> model = compile_model(net, "brainprop", learning_rate=0.1)
    """
    optimizer = keras.optimizers.SGD(learning_rate=learning_rate)
    if _check_algorithm(algorithm) == "brainprop":
        model = wrap(net, policy=policy, seed=seed)
        model.compile(optimizer=optimizer, metrics=["accuracy"])
        return model
    if policy is not None:
        raise ValueError(
            "A policy only applies to BrainProp; EBP chooses no actions. "
            f"Received: algorithm={algorithm!r}, policy={policy!r}"
        )
    model = BackpropModel(net) if tf.distribute.has_strategy() else net
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


class EpochLearningRate(keras.callbacks.Callback):
    """Sets the learning rate at the start of every epoch and logs it.

    Like `keras.callbacks.LearningRateScheduler`, but it never reads the
    optimizer's rate back into NumPy, which makes Keras 3.15 with NumPy 2
    warn twice an epoch.

    Args:
        schedule: A function of the (0-based) epoch returning the rate,
            e.g. `Hyperparameters.learning_rate_at`.

    Example:

    >>> hparams = architectures.hyperparameters("conv")
    >>> callback = EpochLearningRate(hparams.learning_rate_at)
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


def _monitoring_callbacks(logdir, probe_data):
    tensorboard = keras.callbacks.TensorBoard(log_dir=logdir)
    try:
        from keras_brainprop.callbacks import BrainPropMonitor
    except ImportError:
        logging.warning(
            "keras_brainprop.callbacks.BrainPropMonitor is not available: "
            "logging the standard TensorBoard summaries only."
        )
        return [tensorboard]
    return [tensorboard, BrainPropMonitor(logdir, probe_data=probe_data)]


def make_callbacks(
    hparams,
    *,
    test_data=None,
    logdir=None,
    probe_data=None,
    verbose=1,
    brainprop=True,
):
    """Returns the paper's training callbacks.

    The learning rate follows `hparams.learning_rate_at(epoch)` (halved
    every 100 epochs); training stops on a NaN loss or when the validation
    accuracy has not improved by `hparams.min_delta` for `hparams.patience`
    epochs, and the weights of the best validation epoch are restored.

    Args:
        hparams: An `architectures.Hyperparameters`.
        test_data: Optional test dataset, evaluated once with the last
            epoch's weights before the best ones are restored.
        logdir: If set, log TensorBoard summaries there, plus BrainProp's
            own (`keras_brainprop.callbacks.BrainPropMonitor`) for BrainProp.
        probe_data: Data for the BrainProp monitor, e.g. the validation set.
        verbose: 0 silences early stopping's messages.
        brainprop: Whether the model trains with BrainProp.

    Returns:
        A `TrainingCallbacks`; pass its `callbacks` to `fit`.

    Example:

    >>> training = make_callbacks(architectures.hyperparameters("conv"))
    >>> model.fit(train, validation_data=val, callbacks=training.callbacks)
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
    ]
    if logdir is not None:
        if brainprop:
            callbacks += _monitoring_callbacks(logdir, probe_data)
        else:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=logdir))
    return TrainingCallbacks(callbacks, early_stopping, timer, last_epoch_test)


@dataclasses.dataclass
class SeedResult:
    """The outcome of training with one seed.

    Attributes:
        seed: The seed.
        test_accuracy: Test accuracy with the weights of the best
            validation epoch (the ones kept).
        test_loss: Test loss with those weights.
        last_epoch_test_accuracy: Test accuracy with the last epoch's
            weights.
        best_epoch: The (1-based) epoch whose weights were kept.
        best_val_accuracy: Validation accuracy of that epoch.
        epochs_run: Number of epochs trained.
        seconds_per_epoch: Mean wall time of an epoch (validation included),
            leaving out the first, which also traces the graphs.
        stopped_early: Whether early stopping or a NaN ended training.
        history: Per-epoch logs (`history.history` plus "seconds").
    """

    seed: int
    test_accuracy: float
    test_loss: float
    last_epoch_test_accuracy: float
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    seconds_per_epoch: float
    stopped_early: bool
    history: dict


@dataclasses.dataclass
class Result:
    """The outcome of one experiment over one or more seeds.

    Attributes:
        dataset: Dataset name.
        architecture: Network name.
        algorithm: "brainprop" or "ebp".
        hyperparameters: The `architectures.Hyperparameters` used.
        max_epochs: The epoch limit of the run.
        runs: One `SeedResult` per seed, in order.
        num_train_examples: Training examples per epoch.
        num_validation_examples: Validation examples.
        num_test_examples: Test examples.
        output_dir: Folder of the written files, or None.
    """

    dataset: str
    architecture: str
    algorithm: str
    hyperparameters: architectures.Hyperparameters
    max_epochs: int
    runs: list
    num_train_examples: int
    num_validation_examples: int
    num_test_examples: int
    output_dir: str | None = None

    @property
    def seeds(self):
        return [run.seed for run in self.runs]

    @property
    def test_accuracies(self):
        return [run.test_accuracy for run in self.runs]

    @property
    def best_epochs(self):
        return [run.best_epoch for run in self.runs]

    @property
    def epochs_run(self):
        return [run.epochs_run for run in self.runs]

    @property
    def seconds_per_epoch(self):
        return [run.seconds_per_epoch for run in self.runs]

    @property
    def histories(self):
        return [run.history for run in self.runs]

    @property
    def mean_test_accuracy(self):
        return _mean_std(self.test_accuracies)[0]

    @property
    def std_test_accuracy(self):
        """Sample standard deviation over seeds (0 for one seed)."""
        return _mean_std(self.test_accuracies)[1]

    @property
    def mean_best_epoch(self):
        return _mean_std(self.best_epochs)[0]

    @property
    def std_best_epoch(self):
        return _mean_std(self.best_epochs)[1]

    @property
    def mean_seconds_per_epoch(self):
        return _mean_std(self.seconds_per_epoch)[0]

    def summary(self):
        """Returns a one-line, human-readable summary of the results."""
        return (
            f"{self.dataset} {self.architecture} {self.algorithm}: test "
            f"accuracy {self.mean_test_accuracy:.4f} ± "
            f"{self.std_test_accuracy:.4f} over {len(self.runs)} seed(s), "
            f"best epoch {self.mean_best_epoch:.1f} ± "
            f"{self.std_best_epoch:.1f}, "
            f"{self.mean_seconds_per_epoch:.2f} s/epoch"
        )

    @classmethod
    def from_dict(cls, data):
        """Rebuilds a `Result` from the output of `to_dict`.

        Args:
            data: A dict written by `to_dict`, e.g. read back from a
                `summary.json` or from `benchmarks/compare.py`'s
                `results.json`.

        Returns:
            The `Result`; `output_dir` is None.

        Raises:
            ValueError: If `data` lacks a field of `to_dict`'s output.
        """
        try:
            return cls(
                dataset=data["dataset"],
                architecture=data["architecture"],
                algorithm=data["algorithm"],
                hyperparameters=architectures.Hyperparameters(
                    **data["hyperparameters"]
                ),
                max_epochs=data["max_epochs"],
                runs=[SeedResult(**run) for run in data["runs"]],
                num_train_examples=data["num_train_examples"],
                num_validation_examples=data["num_validation_examples"],
                num_test_examples=data["num_test_examples"],
            )
        except (KeyError, TypeError) as error:
            raise ValueError(
                "Expected a dict written by `Result.to_dict`. Received one "
                f"with keys {sorted(data)}, which fails with: {error!r}"
            ) from error

    def to_dict(self):
        """Returns all results as JSON-serializable Python objects."""
        return {
            "dataset": self.dataset,
            "architecture": self.architecture,
            "algorithm": self.algorithm,
            "hyperparameters": dataclasses.asdict(self.hyperparameters),
            "max_epochs": self.max_epochs,
            "num_train_examples": self.num_train_examples,
            "num_validation_examples": self.num_validation_examples,
            "num_test_examples": self.num_test_examples,
            "seeds": self.seeds,
            "test_accuracies": self.test_accuracies,
            "mean_test_accuracy": self.mean_test_accuracy,
            "std_test_accuracy": self.std_test_accuracy,
            "best_epochs": self.best_epochs,
            "mean_best_epoch": self.mean_best_epoch,
            "std_best_epoch": self.std_best_epoch,
            "epochs_run": self.epochs_run,
            "seconds_per_epoch": self.seconds_per_epoch,
            "mean_seconds_per_epoch": self.mean_seconds_per_epoch,
            "runs": [dataclasses.asdict(run) for run in self.runs],
            "versions": {
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
            },
        }


def _to_floats(values):
    return [float(value) for value in values]


def _write_json(path, data):
    with open(path, "w") as file:
        json.dump(data, file, indent=2, allow_nan=True)


def plot_curves(curves, path, *, title, ylabel="accuracy", best_epoch=None):
    """Saves a PNG of per-epoch curves, if matplotlib is installed.

    Args:
        curves: Dict from a legend label to a sequence of per-epoch values
            (epoch 1 first), or to a `(values, style)` pair where `style`
            is a matplotlib format string such as "--".
        path: Where to write the PNG.
        title: The plot's title.
        ylabel: Label of the y axis.
        best_epoch: Optional (1-based) epoch marked with a vertical line.

    Returns:
        `path`, or None if matplotlib is missing (a warning says so).

    Example:

    >>> plot_curves({"validation": [0.5, 0.8, 0.9]}, "acc.png", title="run")
    'acc.png'
    """
    try:
        import matplotlib

        # Agg renders to files without a display (servers, CI).
        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        warnings.warn(
            f"matplotlib is not installed: skipping the plot {path}. "
            "Install it with `pip install keras_brainprop[examples]`.",
            stacklevel=2,
        )
        return None
    figure, axes = pyplot.subplots(figsize=(6, 4))
    for label, curve in curves.items():
        values, style = curve if isinstance(curve, tuple) else (curve, "-")
        epochs = np.arange(1, len(values) + 1)
        axes.plot(epochs, values, style, label=label)
    if best_epoch is not None:
        axes.axvline(best_epoch, color="grey", linestyle=":", label="best")
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return path


def finish_seed(history, training, splits, seed, output_dir=None):
    """Evaluates a trained model on the test set and saves its outputs.

    Args:
        history: The `keras.callbacks.History` returned by `fit`; its
            `model` (a `BrainPropModel` or a plain network) is evaluated.
        training: The `TrainingCallbacks` used by `fit`.
        splits: The `Splits`; its test set is evaluated here.
        seed: The seed of the run.
        output_dir: If set, write `history.json`, `model.weights.h5` (the
            network's weights, without the BrainProp wrapper) and
            `accuracy.png` into `<output_dir>/seed_<seed>/`.

    Returns:
        A `SeedResult`.
    """
    model = history.model
    net = getattr(model, "network", model)
    test_logs = model.evaluate(splits.test, verbose=0, return_dict=True)
    logs = {key: _to_floats(values) for key, values in history.history.items()}
    logs["seconds"] = _to_floats(training.timer.seconds)
    epochs_run = len(logs["seconds"])
    best_epoch = training.early_stopping.best_epoch + 1 if epochs_run else 0
    val_accuracy = logs.get("val_accuracy", [])
    best_val_accuracy = (
        val_accuracy[best_epoch - 1] if best_epoch else float("nan")
    )
    # The first epoch also traces the graphs: leave it out if we can.
    seconds = logs["seconds"][1:] or logs["seconds"]
    last_epoch_logs = test_logs
    if training.last_epoch_test and training.last_epoch_test.logs:
        last_epoch_logs = training.last_epoch_test.logs
    result = SeedResult(
        seed=int(seed),
        test_accuracy=float(test_logs["accuracy"]),
        test_loss=float(test_logs["loss"]),
        last_epoch_test_accuracy=float(last_epoch_logs["accuracy"]),
        best_epoch=int(best_epoch),
        best_val_accuracy=float(best_val_accuracy),
        epochs_run=epochs_run,
        seconds_per_epoch=float(np.mean(seconds)) if seconds else 0.0,
        stopped_early=bool(model.stop_training),
        history=logs,
    )
    if output_dir is not None:
        seed_dir = os.path.join(output_dir, f"seed_{seed}")
        os.makedirs(seed_dir, exist_ok=True)
        _write_json(os.path.join(seed_dir, "history.json"), logs)
        net.save_weights(os.path.join(seed_dir, "model.weights.h5"))
        plot_curves(
            {
                "training": (logs.get("accuracy", []), "--"),
                "validation": val_accuracy,
            },
            os.path.join(seed_dir, "accuracy.png"),
            title=f"{net.name}, seed {seed}: test accuracy "
            f"{result.test_accuracy:.4f}",
            best_epoch=best_epoch or None,
        )
    return result


def summarize(result):
    """Writes a `Result`'s `summary.json` and plot into its `output_dir`.

    Args:
        result: A `Result` whose `output_dir` is set (else nothing is
            written).

    Returns:
        The path of `summary.json`, or None.
    """
    if result.output_dir is None:
        return None
    os.makedirs(result.output_dir, exist_ok=True)
    path = os.path.join(result.output_dir, "summary.json")
    _write_json(path, result.to_dict())
    plot_curves(
        {
            f"seed {run.seed}": run.history.get("val_accuracy", [])
            for run in result.runs
        },
        os.path.join(result.output_dir, "accuracy.png"),
        title=f"{result.algorithm}: {result.dataset} {result.architecture}",
        ylabel="validation accuracy",
    )
    return path


@dataclasses.dataclass(frozen=True)
class SeedRun:
    """Everything the training of one seed needs; what a `train_fn` gets.

    The global seed is already set and the data loaded; a `train_fn`
    builds, compiles and fits the network with these and returns `fit`'s
    `History`.

    Attributes:
        dataset: Dataset name.
        architecture: Network name (`architectures.ARCHITECTURES`).
        algorithm: "brainprop" or "ebp".
        seed: The seed of this run.
        hparams: The `architectures.Hyperparameters` to train with.
        epochs: Maximum number of epochs.
        splits: The `Splits` (`train`, `validation` and `test` data).
        callbacks: The callbacks to pass to `fit`.
        verbose: The Keras verbosity to pass to `fit`.
    """

    dataset: str
    architecture: str
    algorithm: str
    seed: int
    hparams: architectures.Hyperparameters
    epochs: int
    splits: Splits
    callbacks: list
    verbose: int

    @property
    def train(self):
        return self.splits.train

    @property
    def validation(self):
        return self.splits.validation

    @property
    def input_shape(self):
        return self.splits.input_shape

    @property
    def num_classes(self):
        return self.splits.num_classes

    @property
    def output_activation(self):
        """`None` (linear Q-values) for BrainProp, "softmax" for EBP."""
        return output_activation(self.algorithm)


def train(seed_run, policy=None):
    """The default `train_fn` of `run`: build, compile and fit.

    Args:
        seed_run: A `SeedRun`.
        policy: BrainProp's action selection; None for the paper's. Pass
            another with e.g. `functools.partial(train, policy=...)`.

    Returns:
        The `keras.callbacks.History` of `fit`.

    Example:

    >>> run("digits", "mlp", train_fn=train)  # The same as without it.
    >>> greedy = functools.partial(train, policy=kbp.policies.Greedy())
    >>> run("digits", "mlp", train_fn=greedy)
    """
    train_data, validation_data = seed_run.train, seed_run.validation
    if tf.distribute.has_strategy():
        train_data = _shard_by_example(train_data)
        validation_data = _shard_by_example(validation_data)
    net = architectures.build(
        seed_run.architecture,
        seed_run.input_shape,
        seed_run.num_classes,
        output_activation=seed_run.output_activation,
    )
    model = compile_model(
        net,
        seed_run.algorithm,
        seed_run.hparams.learning_rate,
        seed_run.seed,
        policy=policy,
    )
    return model.fit(
        train_data,
        validation_data=validation_data,
        epochs=seed_run.epochs,
        callbacks=seed_run.callbacks,
        verbose=seed_run.verbose,
        # The dataset reshuffles itself; Keras warns about shuffle=True.
        shuffle=False,
    )


def _shard_by_example(dataset):
    # In-memory data has no files to split between workers: each worker
    # takes its replicas' shares of every global batch (what AUTO falls
    # back to, with a warning).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(options)


def run(
    dataset,
    architecture,
    algorithm="brainprop",
    *,
    epochs=None,
    seeds=(0,),
    data_dir=None,
    output_dir=None,
    logdir=None,
    batch_size=None,
    learning_rate=None,
    patience=None,
    max_train_examples=None,
    validation_fraction=0.1,
    verbose=1,
    strategy=None,
    train_fn=train,
):
    """Trains and evaluates one network with one algorithm over seeds.

    For each seed: `keras.utils.set_random_seed(seed)`, load the data
    (the validation split and the shuffling are seeded too), make the
    paper's callbacks, call `train_fn`, evaluate on the test set and write
    the outputs.

    Args:
        dataset: A name in `keras_brainprop.datasets.NAMES`.
        architecture: A name in `architectures.ARCHITECTURES`.
        algorithm: "brainprop" (reward) or "ebp" (error backpropagation of
            the cross-entropy, the paper's baseline).
        epochs: Maximum number of epochs; default the paper's 500. Early
            stopping may end training sooner.
        seeds: Seeds, one full run each.
        data_dir: Optional directory with a local copy of the data.
        output_dir: If set, write the results, weights and plots into
            `<output_dir>/<dataset>_<architecture>_<algorithm>/`.
        logdir: If set, log TensorBoard summaries into
            `<logdir>/<dataset>_<architecture>_<algorithm>/seed_<seed>/`.
        batch_size: Override of the paper's batch size.
        learning_rate: Override of the initial learning rate (0.1).
        patience: Override of the early-stopping patience (45).
        max_train_examples: If set, train on this many examples only.
        validation_fraction: Share of the training set held out for
            validation.
        verbose: Keras verbosity: 0 silent, 1 progress bar, 2 one line per
            epoch.
        strategy: Optional `tf.distribute.Strategy`; `train_fn` runs in
            its scope.
        train_fn: A function of a `SeedRun` that builds, compiles and fits
            the network and returns the `History`; default `train`.

    Returns:
        A `Result`.

    Raises:
        ValueError: For unknown names or no seeds.

    Example:

    >>> result = run("digits", "mlp", "ebp", epochs=20, seeds=[1, 2, 3])
    >>> result.mean_test_accuracy, result.std_test_accuracy
    """
    _check_algorithm(algorithm)
    seeds = [int(seed) for seed in seeds]
    if not seeds:
        raise ValueError(f"Give at least one seed. Received: seeds={seeds!r}")
    overrides = {
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "patience": patience,
    }
    hparams = dataclasses.replace(
        architectures.hyperparameters(architecture),
        **{key: value for key, value in overrides.items() if value is not None},
    )
    max_epochs = hparams.max_epochs if epochs is None else int(epochs)
    name = f"{dataset}_{architecture}_{algorithm}"
    run_dir = None if output_dir is None else os.path.join(output_dir, name)
    runs = []
    splits = None
    for seed in seeds:
        # A fresh graph state per seed keeps layer names and memory stable.
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        splits = load_splits(
            dataset,
            seed=seed,
            batch_size=hparams.batch_size,
            data_dir=data_dir,
            max_train_examples=max_train_examples,
            validation_fraction=validation_fraction,
        )
        seed_logdir = None
        if logdir is not None:
            seed_logdir = os.path.join(logdir, name, f"seed_{seed}")
        training = make_callbacks(
            hparams,
            test_data=splits.test,
            logdir=seed_logdir,
            probe_data=splits.validation,
            verbose=verbose,
            brainprop=algorithm == "brainprop",
        )
        seed_run = SeedRun(
            dataset=dataset,
            architecture=architecture,
            algorithm=algorithm,
            seed=seed,
            hparams=hparams,
            epochs=max_epochs,
            splits=splits,
            callbacks=training.callbacks,
            verbose=verbose,
        )
        scope = strategy.scope() if strategy else contextlib.nullcontext()
        with scope:
            history = train_fn(seed_run)
        seed_result = finish_seed(history, training, splits, seed, run_dir)
        if verbose:
            logging.info(
                "%s seed %d: test accuracy %.4f (best epoch %d of %d)",
                name,
                seed,
                seed_result.test_accuracy,
                seed_result.best_epoch,
                seed_result.epochs_run,
            )
        runs.append(seed_result)
    result = Result(
        dataset=dataset,
        architecture=architecture,
        algorithm=algorithm,
        hyperparameters=hparams,
        max_epochs=max_epochs,
        runs=runs,
        num_train_examples=splits.num_train_examples,
        num_validation_examples=splits.num_validation_examples,
        num_test_examples=splits.num_test_examples,
        output_dir=run_dir,
    )
    summarize(result)
    return result


def format_number(value, digits=4):
    """Formats a float for tables; NaN and None print as "–"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"
