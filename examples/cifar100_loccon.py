r"""CIFAR-100, the paper's `loccon` network (locally connected).

Reproduces the BrainProp paper's CIFAR100 - loccon run. Its accuracy is in
the paper's results table; the authors' README (DESIGN.md section 3) only
gives 45-60 s/epoch for the locally connected nets.

Run (the paper's protocol: up to 500 epochs with early stopping):

    python examples/cifar100_loccon.py --algorithm=brainprop --seeds=1,2,3
    python examples/cifar100_loccon.py --algorithm=ebp --seeds=1,2,3

Add `--epochs=N` for a shorter run, `--output_dir=DIR` for the history,
weights, plots and summary, `--logdir=DIR` for TensorBoard; CIFAR-100 is
read from `--data_dir` (cifar-100-python/ or its .tar.gz), never downloaded.
"""

import _common
import keras
from absl import app

import keras_brainprop
from keras_brainprop import architectures


def train(run):
    """Builds and fits the `loccon` network for one seed; returns the History.

    `run` (an `experiment.SeedRun`) holds the seed's data, the paper's
    hyper-parameters and callbacks.
    """
    brainprop = run.algorithm == "brainprop"
    net = architectures.build(
        "loccon",
        run.input_shape,
        run.num_classes,
        output_activation=None if brainprop else "softmax",
    )
    # BrainProp learns from reward alone: no loss, only the wrapped network.
    model = keras_brainprop.wrap(net) if brainprop else net
    model.compile(
        optimizer=keras.optimizers.SGD(run.hparams.learning_rate),
        loss=None if brainprop else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model.fit(
        run.train,
        validation_data=run.validation,
        epochs=run.epochs,
        callbacks=run.callbacks,
        verbose=run.verbose,
        shuffle=False,  # kbp.datasets.load reshuffles every epoch itself.
    )


if __name__ == "__main__":
    _common.define_flags()
    app.run(_common.main("cifar100", "loccon", train))
