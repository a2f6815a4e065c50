r"""Watch a BrainProp agent learn in TensorBoard.

`fit()` reports how much reward the agent earns. `BrainPropMonitor` shows
why: on a fixed probe set (here the validation digits) it logs the spread
of the reward-prediction error `delta = r - Q[action]`, histograms of the
Q-values and of the actions taken (a class the agent never picks is never
learned), and per layer how far its weights moved, i.e. how deep the
reward's credit reaches. Keras' own `TensorBoard` callback writes the loss
and accuracy curves beside it, in the same log directory.

Offline (scikit-learn's digits), about 20 seconds on two cores:

    python examples/tensorboard_monitor.py --logdir=/tmp/kbp_logs
    tensorboard --logdir /tmp/kbp_logs

then open http://localhost:6006. The monitor's tags are under
`brainprop/`: `epoch/reward`, `epoch/probe/rpe_std` and
`epoch/update_norm/<layer>` in the Scalars tab; `epoch/probe/q_values` and
`epoch/probe/actions` in the Histograms tab; with `--update_freq=N` the
same every N batches, under `batch/`.
"""

import keras
from absl import flags

import keras_brainprop as kbp
from keras_brainprop import cli

flags.DEFINE_string("logdir", "/tmp/kbp_logs", "Where to write the logs.")
flags.DEFINE_integer("epochs", 20, "Training epochs.", lower_bound=1)
flags.DEFINE_integer(
    "update_freq", 20, "Also log every this many batches.", lower_bound=1
)
flags.DEFINE_integer("seed", 0, "Seeds the weights and the exploration.")
FLAGS = flags.FLAGS


def main(argv):
    del argv  # Unused.
    keras.utils.set_random_seed(FLAGS.seed)
    x_train, y_train = kbp.datasets.load_arrays("digits", "train")
    x_val, y_val = kbp.datasets.load_arrays("digits", "validation")
    x_test, y_test = kbp.datasets.load_arrays("digits", "test")

    hparams = kbp.architectures.hyperparameters("mlp")
    model = kbp.wrap(kbp.architectures.build("mlp", x_train.shape[1:], 10))
    model.compile(
        optimizer=keras.optimizers.SGD(hparams.learning_rate),
        metrics=["accuracy"],
    )
    # The probe: the first 256 validation digits, logged at the end of
    # every epoch and every `update_freq` batches.
    monitor = kbp.callbacks.BrainPropMonitor(
        FLAGS.logdir,
        probe_data=(x_val, y_val),
        probe_size=256,
        update_freq=FLAGS.update_freq,
    )
    model.fit(
        x_train,
        y_train,
        batch_size=hparams.batch_size,
        epochs=FLAGS.epochs,
        validation_data=(x_val, y_val),
        callbacks=[keras.callbacks.TensorBoard(FLAGS.logdir), monitor],
        verbose=2,
    )
    test_logs = model.evaluate(x_test, y_test, return_dict=True, verbose=0)
    print(f"Test accuracy: {test_logs['accuracy']:.4f}")
    print(
        f"Logs written to {FLAGS.logdir}: tensorboard --logdir {FLAGS.logdir}"
    )


if __name__ == "__main__":
    cli.run_script(main)  # A bad flag: one message, no traceback.
