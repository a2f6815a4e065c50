r"""Resume an interrupted fit() exactly, even in the middle of an epoch.

`kbp.callbacks.BackupAndRestore` writes the whole training state every
`--save_every` steps: weights, optimizer, the random states behind
exploration and dropout, metrics and history, in one atomic write, so a
process killed at any moment leaves a readable backup. Run the same
command again and `fit()` restores it, skips the batches already trained
and continues; it ends with the same weights as a run never interrupted.

Offline (scikit-learn's digits), a few seconds per command:

    # 1. Killed (SIGKILL, by the script itself) after 150 training steps:
    python examples/resume.py --backup_dir=/tmp/kbp_resume --kill_at_step=150
    # 2. The same command without the kill resumes from step 140:
    python examples/resume.py --backup_dir=/tmp/kbp_resume
    # 3. A run never interrupted prints the same checksum and accuracy:
    python examples/resume.py --backup_dir=/tmp/kbp_fresh

Run 2 prints "Resumed at epoch 2, step 59" (where the backup of step 140
was made) and deletes the backup when training ends. Exactness needs the
same batches in the same order: the training set is read as one endless,
seeded stream, `dataset.repeat()` with `steps_per_epoch`; and deterministic
TensorFlow ops (`enable_op_determinism`). Under JAX and PyTorch
(`KERAS_BACKEND=jax` or `torch` before each command) the CPU steps are
deterministic already.
"""

import hashlib
import os
import signal

import keras
import tensorflow as tf
from absl import flags

import keras_brainprop as kbp
from keras_brainprop import cli

flags.DEFINE_string("backup_dir", "/tmp/kbp_resume", "One folder per run.")
flags.DEFINE_integer(
    "save_every", 20, "Back up every this many steps.", lower_bound=1
)
flags.DEFINE_integer(
    "kill_at_step", None, "Kill the process at this step.", lower_bound=1
)
flags.DEFINE_integer("epochs", 5, "Training epochs.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seeds the weights, data and exploration.")
FLAGS = flags.FLAGS


class KillAtStep(keras.callbacks.Callback):
    """Kills this process, as a crash would, once `step` steps are done."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main(argv):
    del argv  # Unused.
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(FLAGS.seed)
    hparams = kbp.architectures.hyperparameters("mlp")
    train = kbp.datasets.load(
        "digits", "train", batch_size=hparams.batch_size, seed=FLAGS.seed
    )
    test = kbp.datasets.load("digits", "test")

    network = kbp.architectures.build("mlp", (8, 8, 1), 10)
    model = kbp.wrap(network)
    model.compile(
        optimizer=keras.optimizers.SGD(hparams.learning_rate),
        metrics=["accuracy"],
    )
    backup = kbp.callbacks.BackupAndRestore(
        FLAGS.backup_dir, save_freq=FLAGS.save_every
    )
    callbacks = [backup]
    if FLAGS.kill_at_step:
        callbacks.append(KillAtStep(FLAGS.kill_at_step))
    model.fit(
        train.repeat(),  # One endless stream: a resumed run replays it.
        steps_per_epoch=len(train),
        epochs=FLAGS.epochs,
        callbacks=callbacks,
        verbose=2,
    )
    if backup.restored:
        epoch, step = backup.restored["epoch"], backup.restored["batch"]
        print(f"Resumed at epoch {epoch + 1}, step {step}")
    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(weight.numpy().tobytes())
    test_logs = model.evaluate(test, return_dict=True, verbose=0)
    print(f"Weights checksum: {digest.hexdigest()[:16]}")
    print(f"Test accuracy: {test_logs['accuracy']:.4f}")


if __name__ == "__main__":
    cli.run_script(main)  # A bad flag: one message, no traceback.
