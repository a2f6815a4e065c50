r"""MNIST, the paper's `dense` network, trained by BrainProp or EBP.

Reproduces the BrainProp paper's MNIST - dense result. Reported by the
authors (README; 10 seeds, mean (std); GTX 1080 Ti):

    top-1 98.68% (0.07); 3 s/epoch.

Run (the paper's protocol: up to 500 epochs with early stopping):

    python examples/mnist_dense.py --algorithm=brainprop --seeds=1,2,3
    python examples/mnist_dense.py --algorithm=ebp --seeds=1,2,3

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
    """Builds and fits the `dense` network for one seed; returns the History.

    `run` (an `experiment.SeedRun`) holds the seed's data, the paper's
    hyper-parameters and callbacks.
    """
    brainprop = run.algorithm == "brainprop"
    net = architectures.build(
        "dense",
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
    app.run(_common.main("mnist", "dense", train))
