r"""Tiny ImageNet, the paper's `deep` network, by BrainProp or EBP.

Reproduces the BrainProp paper's Tiny ImageNet - deep result. Reported by
the authors (README; 10 seeds, mean (std); GTX 1080 Ti):

    top-1 47.50% (1.30) in 328 (75) epochs; 47 s/epoch.

Its official validation set serves as the test set.

Run (the paper's protocol: up to 500 epochs with early stopping):

    python examples/tiny_imagenet_deep.py --algorithm=brainprop --seeds=1,2,3
    python examples/tiny_imagenet_deep.py --algorithm=ebp --seeds=1,2,3

Add `--epochs=N` for a shorter run, `--output_dir=DIR` for the history,
weights, plots and summary, `--logdir=DIR` for TensorBoard; Tiny ImageNet is
read from `--data_dir` (tiny-imagenet-200/ or its .zip), never downloaded.
"""

import _common
import keras
from absl import app

import keras_brainprop
from keras_brainprop import architectures


def train(run):
    """Builds and fits the `deep` network for one seed; returns the History.

    `run` (an `experiment.SeedRun`) holds the seed's data, the paper's
    hyper-parameters and callbacks.
    """
    brainprop = run.algorithm == "brainprop"
    net = architectures.build(
        "deep",
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
    app.run(_common.main("tiny_imagenet", "deep", train))
