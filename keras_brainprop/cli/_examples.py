"""The dataset examples (examples/mnist.py, cifar10.py, ...): their flags
and their training run, the paper's protocol on one dataset."""

import dataclasses
import functools

import keras
from absl import flags

from keras_brainprop import algorithms
from keras_brainprop import architectures as architectures_lib
from keras_brainprop import callbacks
from keras_brainprop import datasets
from keras_brainprop.cli._flag_parts import brainprop_options
from keras_brainprop.cli._flag_parts import define_feedback_flag
from keras_brainprop.cli._flag_parts import define_learning_rate_flag
from keras_brainprop.cli._flag_parts import define_setting_flags
from keras_brainprop.cli._scripts import initial_learning_rate
from keras_brainprop.cli._scripts import raise_if_diverged

# The flags belong to the example that calls `example_main`.
flags.disclaim_key_flags()


def define_network_flags(architectures, architecture, flag_values=flags.FLAGS):
    """Defines an example's `--architecture` and `--algorithm`.

    Args:
        architectures: The networks `--architecture` offers.
        architecture: Its default.
        flag_values: The `absl.flags.FlagValues` to define them in.
    """
    flags.DEFINE_enum(
        "architecture",
        architecture,
        architectures,
        "The network.",
        case_sensitive=False,
        flag_values=flag_values,
    )
    flags.DEFINE_enum(
        "algorithm",
        "brainprop",
        algorithms.NAMES,
        "From reward or labels.",
        case_sensitive=False,
        flag_values=flag_values,
    )


def example_main(
    dataset,
    architectures,
    architecture,
    data_dir_help,
    flag_values=flags.FLAGS,
):
    """Defines a dataset example's flags; returns its `main(argv)`.

    The flags: `--architecture` (one of `architectures`), `--algorithm`
    (brainprop or backprop), `--feedback` (a name `kbp.feedback.names()`
    holds), `--setting` and `--policy` (BrainProp's, see
    `define_setting_flags`), `--learning_rate` (unset: the setting's),
    `--epochs` (at most; 500 by default), `--data_dir`, `--seed` and
    `--logdir`. `main` trains the chosen network on `dataset` with the
    paper's protocol: SGD at 0.1 halved every 100 epochs, the network's
    batch size (128; 32 for loccon), early stopping on a seeded 10% of the
    training set held out for validation (patience 45, best weights
    restored). BrainProp's setting and policy apply to BrainProp alone;
    `--learning_rate` replaces the initial rate of either. It prints the
    parts of the setting that flags replace, then the Keras backend and the
    test accuracy; a run that diverged raises `ValueError` instead.

    Args:
        dataset: The `kbp.datasets` name, read from `--data_dir`.
        architectures: The networks `--architecture` offers.
        architecture: Its default.
        data_dir_help: The help of `--data_dir`: what the folder holds.
        flag_values: The `absl.flags.FlagValues` to define them in.

    Returns:
        The example's `main(argv)`, for `run_script`.

    Example:

    ```python
    main = cli.example_main(
        "mnist", ("dense", "conv", "loccon"), "conv",
        data_dir_help="The folder holding MNIST.",
    )
    if __name__ == "__main__":
        cli.run_script(main)
    ```
    """
    _define_example_flags(
        architectures, architecture, data_dir_help, flag_values
    )

    def main(argv):
        del argv  # Unused.
        _train_example(dataset, flag_values)

    return main


def _define_example_flags(
    architectures, architecture, data_dir_help, flag_values=flags.FLAGS
):
    """Defines the flags of a dataset example; `_train_example` reads them.

    `--architecture` (one of `architectures`), `--algorithm` (brainprop or
    backprop), `--feedback` (a name `kbp.feedback.names()` holds),
    `--setting` and `--policy` (BrainProp's, see `define_setting_flags`),
    `--learning_rate` (unset: the setting's), `--epochs` (at most 500),
    `--data_dir`, `--seed` and `--logdir`.

    Args:
        architectures: The networks `--architecture` offers.
        architecture: Its default.
        data_dir_help: The help of `--data_dir`: what the folder holds.
        flag_values: The `absl.flags.FlagValues` to define them in.
    """
    define_network_flags(architectures, architecture, flag_values)
    define_feedback_flag("Feedback rule of the error.", flag_values)
    # BrainProp's --setting and --policy (backprop has neither).
    define_setting_flags(flag_values=flag_values)
    define_learning_rate_flag(
        "Initial learning rate, finite and > 0; unset: the setting's (the "
        "paper's: SGD at 0.1).",
        flag_values,
    )
    flags.DEFINE_integer(
        "epochs",
        500,
        "At most; early stopping ends sooner.",
        lower_bound=1,
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "data_dir", None, data_dir_help, flag_values=flag_values
    )
    flags.DEFINE_integer(
        "seed",
        0,
        "Seeds weights, data split and exploration.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "logdir",
        None,
        "If set, write TensorBoard logs here.",
        flag_values=flag_values,
    )


def _train_example(dataset, flag_values=flags.FLAGS):
    """Trains and tests the `--architecture` network on `dataset`.

    The paper's protocol: SGD at 0.1 halved every 100 epochs, the network's
    batch size (128; 32 for loccon), early stopping on a seeded 10% of the
    training set held out for validation, with patience 45 and the best
    weights restored. BrainProp's `--setting` (policy, optimizer, rate) and
    `--policy` apply to BrainProp alone; `--learning_rate` replaces the
    initial rate of either. Prints the parts of the setting that flags
    replace, then the Keras backend and the test accuracy.

    Args:
        dataset: The `kbp.datasets` name, read from `--data_dir`.
        flag_values: The parsed flags of `_define_example_flags`.

    Raises:
        ValueError: If training diverged (NaN weights): there is no test
            accuracy to report.
    """
    seed = flag_values.seed
    keras.utils.set_random_seed(seed)
    hparams = architectures_lib.hyperparameters(flag_values.architecture)
    load = functools.partial(
        datasets.load, dataset, data_dir=flag_values.data_dir, seed=seed
    )
    train = load("train", batch_size=hparams.batch_size)
    validation, test = load("validation"), load("test")
    info = datasets.info(dataset)

    # BrainProp reads linear outputs as Q-values; backprop ends in softmax.
    options = {"feedback": flag_values.feedback}
    if flag_values.algorithm == "brainprop":
        options.update(brainprop_options(flag_values))
    algorithm = algorithms.get(flag_values.algorithm, **options)
    network = architectures_lib.build(
        flag_values.architecture,
        info.input_shape,
        info.num_classes,
        output_activation=algorithm.output_activation,
    )
    rate = initial_learning_rate(algorithm, network, flag_values.learning_rate)
    hparams = dataclasses.replace(hparams, learning_rate=rate)
    model = algorithm.wrap(network)
    algorithm.compile(model, learning_rate=hparams.learning_rate)

    history = model.fit(
        train,
        validation_data=validation,
        epochs=flag_values.epochs,
        callbacks=[
            callbacks.EpochLearningRate(hparams.learning_rate_at),
            keras.callbacks.TerminateOnNaN(),
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy",
                mode="max",
                patience=hparams.patience,
                min_delta=hparams.min_delta,
                restore_best_weights=True,
            ),
            *algorithm.callbacks(
                log_dir=flag_values.logdir, probe_data=validation
            ),
        ],
        shuffle=False,  # The loader reshuffles the training set every epoch.
    )
    raise_if_diverged(history, hparams.learning_rate)
    test_logs = model.evaluate(test, return_dict=True)
    print(f"Keras backend: {keras.backend.backend()}")
    print(f"Test accuracy: {test_logs['accuracy']:.4f}")
