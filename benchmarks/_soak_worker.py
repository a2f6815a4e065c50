"""One training run of the soak test; benchmarks/soak.py starts, kills and
restarts it. Not meant to be run by hand.

Trains a small conv net on scikit-learn's digits with BrainProp, reading our
loader's seeded, reshuffled data as one endless stream, with TensorFlow's op
determinism on. With `--callback=kbp` or `--callback=keras` it backs up the
training state (`keras_brainprop.callbacks.BackupAndRestore` or Keras' own
`BackupAndRestore`, `keras_double` with `double_checkpoint=True`) every
`--save_freq` steps and resumes from the backup.
It appends "start <step>" and then one completed step per line to
`--progress`, and at the end writes the final training state to `--output`.
"""

import json
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

import keras_brainprop as kbp  # noqa: E402
from keras_brainprop import datasets  # noqa: E402
from keras_brainprop import policies  # noqa: E402
from keras_brainprop.callbacks import backup_and_restore  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum(
    "callback", "none", ["none", "kbp", "keras", "keras_double"], "Backups."
)
flags.DEFINE_string("backup_dir", None, "Directory of the backup.")
flags.DEFINE_string("progress", None, "File the completed steps go to.")
flags.DEFINE_string("output", None, "Where the final state is written.")
flags.DEFINE_integer("epochs", 30, "Training epochs.")
flags.DEFINE_integer("save_freq", 25, "Steps between backups.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("seed", 0, "Seed of everything.")


def build_network():
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(16, 3, padding="same", use_bias=False),
            layers.ReLU(),
            layers.BatchNormalization(),
            layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False),
            layers.ReLU(),
            layers.BatchNormalization(),
            layers.Dropout(0.3),
            layers.Flatten(),
            layers.Dense(64, activation="relu", use_bias=False),
            layers.Dropout(0.3),
            layers.Dense(10, use_bias=False),
        ]
    )


class Progress(keras.callbacks.Callback):
    """Appends the step counter to a file: where a run (re)starts, then
    each completed step (replayed batches are not counted again)."""

    def __init__(self, path):
        super().__init__()
        self.file = open(path, "a", buffering=1)

    def on_train_begin(self, logs=None):
        iterations = int(self.model.optimizer.iterations.numpy())
        self.file.write(f"start {iterations}\n")
        self.last = iterations

    def on_train_batch_end(self, batch, logs=None):
        iterations = int(self.model.optimizer.iterations.numpy())
        if iterations != self.last:
            self.file.write(f"{iterations}\n")
            self.last = iterations

    def on_train_end(self, logs=None):
        self.file.close()


def main(argv):
    del argv
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(FLAGS.seed)
    train = datasets.load(
        "digits", "train", batch_size=FLAGS.batch_size, seed=FLAGS.seed
    )
    model = kbp.wrap(
        build_network(), policy=policies.EpsilonBoltzmann(epsilon=0.1)
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        metrics=["accuracy"],
    )
    callbacks = []
    if FLAGS.callback == "kbp":
        callbacks.append(
            backup_and_restore.BackupAndRestore(
                FLAGS.backup_dir, save_freq=FLAGS.save_freq
            )
        )
    elif FLAGS.callback.startswith("keras"):
        callbacks.append(
            keras.callbacks.BackupAndRestore(
                FLAGS.backup_dir,
                save_freq=FLAGS.save_freq,
                double_checkpoint=FLAGS.callback == "keras_double",
            )
        )
    callbacks.append(Progress(FLAGS.progress))
    # Resumption is measured here, not learning: no coverage advice.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kbp.metrics.LowCoverageWarning)
        history = model.fit(
            train.repeat(),
            steps_per_epoch=len(train),
            epochs=FLAGS.epochs,
            callbacks=callbacks,
            verbose=0,
        ).history
    state = [*model.variables, *model.optimizer.variables]
    arrays = {f"state_{i}": np.asarray(v.numpy()) for i, v in enumerate(state)}
    arrays["history"] = np.array(json.dumps(history))
    arrays["iterations"] = np.asarray(model.optimizer.iterations.numpy())
    backup_and_restore.write_atomically(FLAGS.output, arrays)


if __name__ == "__main__":
    flags.mark_flags_as_required(["progress", "output"])
    app.run(main)
