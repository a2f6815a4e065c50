r"""MNIST, the paper's `loccon` network (locally connected, batch 32).

Reproduces the BrainProp paper's MNIST - loccon run. Its accuracy is in the
paper's results table; the authors' README (DESIGN.md section 3) only gives
45-60 s/epoch for the locally connected nets. It uses
`keras_brainprop.layers.LocallyConnected2D`, which Keras 3 lacks.

Run (the paper's protocol: up to 500 epochs with early stopping):

    python examples/mnist_loccon.py --algorithm=brainprop --seeds=1,2,3
    python examples/mnist_loccon.py --algorithm=ebp --seeds=1,2,3

Add `--epochs=N` for a shorter run, `--output_dir=DIR` for the history,
weights, plots and summary, `--logdir=DIR` for TensorBoard; MNIST is read
from `--data_dir` (the four IDX files or Keras' mnist.npz), never
downloaded.
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
    app.run(_common.main("mnist", "loccon", train))
