"""The run loop: for every seed, load the data, train, evaluate, report."""

import contextlib
import dataclasses
import math
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from keras_brainprop import algorithms
from keras_brainprop import architectures
from keras_brainprop import feedback as feedback_lib
from keras_brainprop.callbacks import PreciseBatchNorm
from keras_brainprop.experiment import naming
from keras_brainprop.experiment import protocol
from keras_brainprop.experiment import reporting
from keras_brainprop.experiment._arguments import check_arguments
from keras_brainprop.experiment._strategies import check_strategy
from keras_brainprop.experiment.results import Result
from keras_brainprop.experiment.results import SeedResult


def _from_splits(name):
    return property(
        lambda self: getattr(self.splits, name), doc=f"`splits.{name}`."
    )


@dataclasses.dataclass(frozen=True)
class SeedRun:
    """Everything the training of one seed needs; what a `train_fn` gets.

    The global seed is already set and the data loaded; a `train_fn`
    builds, wraps, compiles and fits the network with these and returns
    `fit`'s `History`.

    Attributes:
        dataset: Dataset name.
        architecture: Network name (`architectures.ARCHITECTURES`).
        algorithm: The algorithm object (`keras_brainprop.algorithms`);
            an unseeded `BrainProp` gets this run's seed.
        seed: The seed of this run.
        hparams: The `architectures.Hyperparameters` to train with.
        epochs: Maximum number of epochs.
        splits: The `Splits` (`train`, `validation` and `test` data).
        callbacks: The callbacks to pass to `fit`.
        verbose: The Keras verbosity to pass to `fit`.
    """

    dataset: str
    architecture: str
    algorithm: object
    seed: int
    hparams: architectures.Hyperparameters
    epochs: int
    splits: protocol.Splits
    callbacks: list
    verbose: int

    train = _from_splits("train")
    validation = _from_splits("validation")
    input_shape = _from_splits("input_shape")
    num_classes = _from_splits("num_classes")

    @property
    def output_activation(self):
        """The algorithm's: None (linear Q-values) or "softmax"."""
        return self.algorithm.output_activation


def train(seed_run):
    """The default `train_fn` of `run`: build, wrap, compile and fit.

    Args:
        seed_run: A `SeedRun`.

    Returns:
        The `keras.callbacks.History` of `fit`.

    Example:

    ```python
    run("digits", "mlp", train_fn=train)  # The same as without it.
    ```
    """
    train_data, validation_data = seed_run.train, seed_run.validation
    if tf.distribute.has_strategy():
        train_data = _shard_by_example(train_data)
        validation_data = _shard_by_example(validation_data)
    algorithm = seed_run.algorithm
    network = architectures.build(
        seed_run.architecture,
        seed_run.input_shape,
        seed_run.num_classes,
        output_activation=algorithm.output_activation,
    )
    model = algorithm.wrap(network)
    algorithm.compile(model, learning_rate=seed_run.hparams.learning_rate)
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


def _floats(values):
    return [float(value) for value in values]


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
        A `SeedResult`; if training diverged (a NaN or Inf loss, or weights
        that are no longer finite), one with `diverged=True` and NaN test
        metrics, as the network measures nothing.
    """
    model = history.model
    test_logs = model.evaluate(splits.test, verbose=0, return_dict=True)
    logs = {key: _floats(values) for key, values in history.history.items()}
    diverged = not all(map(math.isfinite, logs.get("loss", []))) or not all(
        np.isfinite(weight).all() for weight in model.get_weights()
    )
    logs["seconds"] = _floats(training.timer.seconds)
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
    if diverged:
        nan = {"accuracy": float("nan"), "loss": float("nan")}
        test_logs = last_epoch_logs = nan
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
        diverged=diverged,
    )
    if output_dir is not None:
        # The plain network's weights: they load into `architectures.build`
        # whatever feedback rule trained them.
        reporting.save_seed(result, feedback_lib.to_plain(model), output_dir)
    return result


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
    feedback=None,
    policy=None,
    precise_batch_norm=False,
    train_fn=train,
):
    """Trains and evaluates one network with one algorithm over seeds.

    For each seed: `keras.utils.set_random_seed(seed)`, load the data
    (the validation split and the shuffling are seeded too), make the
    paper's callbacks and the algorithm's, call `train_fn`, evaluate on the
    test set and write the outputs.

    Args:
        dataset: A name in `keras_brainprop.datasets.NAMES`.
        architecture: A name in `architectures.ARCHITECTURES`.
        algorithm: A name or object for `keras_brainprop.algorithms.get`:
            "brainprop" (reward) or "backprop" (error backpropagation of
            the cross-entropy, the paper's baseline; "ebp" is accepted),
            or e.g. `algorithms.BrainProp(policy=...)`. `algorithms.get`
            gives it `feedback` and `policy`, and each seed's run its seed
            if it has none of its own.
        epochs: Maximum number of epochs; default the paper's 500. Early
            stopping may end training sooner.
        seeds: Seeds, one full run each.
        data_dir: Optional directory with a local copy of the data.
        output_dir: If set, write the results, weights and plots into
            `<output_dir>/<run_name(...)>/`: the run's name
            (`experiment.run_name`) is `<dataset>_<architecture>_<algorithm
            name>`, followed by the rule, policy and setting when not the
            default ones, a hash of their parameters when not the
            defaults, and the backend under JAX or PyTorch (`..._jax`).
        logdir: If set, log TensorBoard summaries into `<logdir>/<run_name(
            ...)>/seed_<seed>/` (the folder named as in `output_dir`).
        batch_size: Override of the paper's batch size.
        learning_rate: Override of the initial learning rate: the paper's
            0.1, or the rate of a BrainProp `setting`.
        patience: Override of the early-stopping patience (45).
        max_train_examples: If set, train on this many examples only.
        validation_fraction: Share of the training set held out for
            validation.
        verbose: Keras verbosity: 0 silent, 1 progress bar, 2 one line per
            epoch.
        strategy: Optional data-parallel setup for the Keras backend, in
            whose scope `train_fn` runs: a `tf.distribute.Strategy` under
            TensorFlow, a `keras.distribution` distribution (such as
            `DataParallel`) under JAX; PyTorch trains on one device (Keras
            3.15 has no PyTorch distribution). Under JAX, a batch that does
            not split evenly over the devices (the last of an epoch) goes
            whole to each.
        feedback: Optional feedback rule (`keras_brainprop.feedback`) or
            its name, for either algorithm; it replaces the algorithm's
            own (default `Symmetric`). A rule other than "symmetric" is
            added to the output names: `<dataset>_<architecture>_<algorithm
            name>_<feedback.name(rule)>`.
        policy: Optional action-selection policy (`keras_brainprop.
            policies`) or its name, e.g. "discovery"; it replaces
            BrainProp's own. An algorithm without a policy (backprop)
            ignores it. A policy other than the paper's is added to the
            output names after the rule: `..._<policies.name(policy)>`.
        precise_batch_norm: Whether to re-estimate the batch-norm
            statistics on 16 training batches before every evaluation
            (`keras_brainprop.callbacks.PreciseBatchNorm`), for either
            algorithm. Off in the paper's protocol.
        train_fn: A function of a `SeedRun` that builds, compiles and fits
            the network and returns the `History`; default `train`.

    Returns:
        A `Result`.

    Raises:
        ValueError: For unknown names, no seeds or a repeated one, `epochs`
            below 1, a learning rate that is not a finite number > 0, or a
            `strategy` the Keras backend cannot train under; all before
            any data loads. A seed whose training diverges does not
            raise: its `SeedResult` has `diverged=True` and NaN test
            metrics, and `Result.diverged_seeds` lists it.

    Example:

    ```python
    result = run("digits", "mlp", "backprop", epochs=20, seeds=[1, 2])
    result.mean_test_accuracy, result.std_test_accuracy
    ```
    """
    seeds = check_arguments(seeds, epochs, learning_rate)
    # Each seed's algorithm: an unseeded one explores with the run's seed.
    by_seed = {
        seed: algorithms.get(
            algorithm, run_seed=seed, feedback=feedback, policy=policy
        )
        for seed in seeds
    }
    backend = keras.backend.backend()
    check_strategy(strategy, backend)
    description = naming.describe(
        dataset, architecture, by_seed[seeds[0]], backend
    )
    # A BrainProp setting chooses the policy and rate for the network.
    if learning_rate is None:
        learning_rate = description.learning_rate
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
    name = description.name
    run_dir = None if output_dir is None else os.path.join(output_dir, name)
    runs = []
    for seed in seeds:
        # A fresh graph state per seed keeps layer names and memory stable.
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        splits = protocol.load_splits(
            dataset,
            seed=seed,
            batch_size=hparams.batch_size,
            data_dir=data_dir,
            max_train_examples=max_train_examples,
            validation_fraction=validation_fraction,
        )
        seed_algorithm = by_seed[seed]
        seed_logdir = None
        if logdir is not None:
            seed_logdir = os.path.join(logdir, name, f"seed_{seed}")
        training = protocol.make_callbacks(
            hparams,
            test_data=splits.test,
            extra=seed_algorithm.callbacks(
                log_dir=seed_logdir, probe_data=splits.validation
            )
            + ([PreciseBatchNorm(splits.train)] if precise_batch_norm else []),
            verbose=verbose,
        )
        seed_run = SeedRun(
            dataset=dataset,
            architecture=architecture,
            algorithm=seed_algorithm,
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
        if seed_result.diverged:
            logging.warning(
                "%s seed %d diverged: the loss became NaN or Inf; no test "
                "accuracy (try a smaller learning rate than %g).",
                name,
                seed,
                hparams.learning_rate,
            )
        elif verbose:
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
        hyperparameters=hparams,
        max_epochs=max_epochs,
        runs=runs,
        num_train_examples=splits.num_train_examples,
        num_validation_examples=splits.num_validation_examples,
        num_test_examples=splits.num_test_examples,
        output_dir=run_dir,
        **description.result_fields(),
    )
    reporting.summarize(result)
    return result
