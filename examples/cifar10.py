r"""CIFAR-10: the BrainProp paper's deep, conv and loccon networks.

Trains one of the paper's CIFAR-10 networks from reward alone (BrainProp)
or from the labels by error backpropagation (the paper's baseline), with
the paper's protocol. The paper reports (BrainProp, deep, 10 seeds):
88.88% (0.27) in 105 (4) epochs, 8 s per epoch on a GTX 1080 Ti.

    python examples/cifar10.py --architecture=deep --algorithm=brainprop
    python examples/cifar10.py --architecture=deep --algorithm=backprop

CIFAR-10 is read from `--data_dir` (cifar-10-batches-py/ or
cifar-10-python.tar.gz), never downloaded.
"""

import dataclasses
import functools

import keras
from absl import flags

import keras_brainprop as kbp
from keras_brainprop import cli

ARCHITECTURES = ("deep", "conv", "loccon")  # The paper's CIFAR networks.
flags.DEFINE_enum("architecture", "deep", ARCHITECTURES, "The network.")
flags.DEFINE_enum(
    "algorithm", "brainprop", kbp.algorithms.NAMES, "From reward or labels."
)
flags.DEFINE_enum(
    "feedback", "symmetric", kbp.feedback.NAMES, "Feedback rule of the error."
)
flags.DEFINE_enum(
    "policy",
    "epsilon_boltzmann",
    kbp.policies.NAMES,
    "BrainProp's action selection (epsilon_boltzmann: the paper's).",
)
flags.DEFINE_float(
    "learning_rate",
    None,
    "Initial SGD learning rate; unset: the paper's 0.1.",
    lower_bound=0.0,
)
flags.DEFINE_integer("epochs", 500, "At most; early stopping ends sooner.")
flags.DEFINE_string("data_dir", None, "The folder holding CIFAR-10.")
flags.DEFINE_integer("seed", 0, "Seeds weights, data split and exploration.")
flags.DEFINE_string("logdir", None, "If set, write TensorBoard logs here.")
FLAGS = flags.FLAGS


def main(argv):
    del argv  # Unused.
    keras.utils.set_random_seed(FLAGS.seed)
    # The paper's protocol: SGD 0.1 halved every 100 epochs, batch size 128
    # (32 for loccon), early stopping with patience 45.
    hparams = kbp.architectures.hyperparameters(FLAGS.architecture)
    if FLAGS.learning_rate is not None:
        hparams = dataclasses.replace(
            hparams, learning_rate=FLAGS.learning_rate
        )

    # A seeded 10% of the training set is held out for early stopping.
    load = functools.partial(
        kbp.datasets.load, "cifar10", data_dir=FLAGS.data_dir, seed=FLAGS.seed
    )
    train = load("train", batch_size=hparams.batch_size)
    validation, test = load("validation"), load("test")
    info = kbp.datasets.info("cifar10")

    # BrainProp reads linear outputs as Q-values; backprop ends in softmax.
    # The policy is BrainProp's choice of action; backprop has none.
    options = {"feedback": FLAGS.feedback}
    if FLAGS.algorithm == "brainprop":
        options["policy"] = FLAGS.policy
    algorithm = kbp.algorithms.get(FLAGS.algorithm, **options)
    network = kbp.architectures.build(
        FLAGS.architecture,
        info.input_shape,
        info.num_classes,
        output_activation=algorithm.output_activation,
    )
    model = algorithm.wrap(network)
    algorithm.compile(model, learning_rate=hparams.learning_rate)

    model.fit(
        train,
        validation_data=validation,
        epochs=FLAGS.epochs,
        callbacks=[
            kbp.callbacks.EpochLearningRate(hparams.learning_rate_at),
            keras.callbacks.EarlyStopping(
                monitor="val_accuracy",
                mode="max",
                patience=hparams.patience,
                min_delta=hparams.min_delta,
                restore_best_weights=True,
            ),
            *algorithm.callbacks(log_dir=FLAGS.logdir, probe_data=validation),
        ],
        shuffle=False,  # The loader reshuffles the training set every epoch.
    )
    test_logs = model.evaluate(test, return_dict=True)
    print(f"Test accuracy: {test_logs['accuracy']:.4f}")


if __name__ == "__main__":
    cli.run_script(main)  # A missing dataset: one message, no traceback.
