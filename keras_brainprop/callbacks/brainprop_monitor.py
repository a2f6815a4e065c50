"""BrainPropMonitor: shows in TensorBoard what a BrainProp agent learns."""

import os

import keras
import tensorflow as tf
from keras import ops

from keras_brainprop.callbacks._probe import PROBE_CHUNK
from keras_brainprop.callbacks._probe import check_probe_inputs
from keras_brainprop.callbacks._probe import num_samples
from keras_brainprop.callbacks._probe import slice_samples
from keras_brainprop.callbacks._probe import take_probe
from keras_brainprop.callbacks._probe import to_numpy
from keras_brainprop.callbacks._probe_summaries import write_probe_summaries
from keras_brainprop.feedback import diagnostics as feedback_diagnostics
from keras_brainprop.feedback.conversion import feedback_layers
from keras_brainprop.feedback.conversion import to_plain
from keras_brainprop.step import brainprop_step

# The training logs this callback copies, and the names it logs them under.
_TRAIN_LOGS = {
    "reward": "reward",
    "rpe": "rpe_mean",
    "explore_rate": "explore_rate",
    "greedy_coverage": "greedy_coverage",
}


def _layer_path(variable, network_name):
    """The path of the layer that owns `variable`, e.g. "block/dense"."""
    layer_path = variable.path.rpartition("/")[0] or variable.path
    inner_path = layer_path.removeprefix(network_name + "/")
    return inner_path or layer_path


def _is_positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _copy_weights(weights, snapshot):
    # A copy of each weight's value: JAX's fit() donates (frees) the
    # buffers of the weights at the next step.
    for weight, copy in zip(weights, snapshot, strict=True):
        copy.assign(ops.copy(weight))


def _global_norm(tensors):
    return ops.sqrt(sum(ops.sum(ops.square(t)) for t in tensors))


class BrainPropMonitor(keras.callbacks.Callback):
    """Logs to TensorBoard how a BrainProp agent learns from reward.

    Writes summaries to `log_dir/subdir` (by default `log_dir/brainprop`,
    beside the `train` and `validation` folders of
    `keras.callbacks.TensorBoard`, so both can share one `log_dir`) every
    epoch, and every `update_freq` training batches if it is an int. Tags,
    with `U` the unit, `epoch` (step = epoch index, 0-based, like
    `keras.callbacks.TensorBoard`) or `batch` (step = the optimizer's
    iteration count):

    - `U/reward`, `U/rpe_mean`, `U/explore_rate`, `U/greedy_coverage`: the
      training logs (per batch, the values over the epoch so far, as in the
      progress bar).
    - `U/probe/...`: a fixed set of samples run through the network in
      inference mode, the model's policy (at the current training step,
      with a fixed seed, so that a change between two logs comes from the
      network, not from the draw) and its reward: scalars `reward`,
      `rpe_mean`, `rpe_std`, `explore_rate` (share of non-greedy actions),
      `action_frequency/K` (share of samples that took action `K`),
      `greedy_frequency/K` (share whose largest Q-value is action `K`'s)
      and, when the probe has class labels (indices or one-hot rows),
      `recall/K` (share of class `K`'s samples whose greedy action is `K`;
      left out for a class absent from the probe); histograms `q_values`
      (all probe Q-values), `rpe` (the probe's `delta = r - Q[action]`) and
      `actions` (one bucket per action). Left out without `probe_data`.
    - `U/feedback/...`, for a network with feedback weights
      (`keras_brainprop.feedback`): per converted layer, `angle/LAYER`
      (degrees between forward and feedback weights) and
      `norm_ratio/LAYER` (their norms' ratio); on the first probe chunk,
      `update_angle/LAYER` and `update_angle/all` (degrees between the
      update the feedback produces and backprop's update of `Q[action]`,
      what `Symmetric` would apply); for image probes, images `input` and
      `attention` (the feedback that reaches the input of three probe
      images). See `keras_brainprop.feedback.diagnostics`.
    - `U/update_norm/LAYER`, `U/relative_update_norm/LAYER`: how far credit
      reaches down the network: the L2 norm of the change of each layer's
      trainable weights over the epoch (or interval), and that norm divided
      by the norm of the old weights (0 if those were all zero). `LAYER` is
      the layer's path in the network, e.g. `dense` or `block/conv2d`. The
      weights are compared on the accelerator, with one copy of them (two
      with an int `update_freq`).

    The monitor runs on every Keras backend and writes with `tf.summary`
    (TensorFlow is a dependency), as `keras.callbacks.TensorBoard` does
    under JAX. For the same weights and probe the values are the same on
    each backend, except what follows from a policy's random draws: each
    backend draws its own random numbers from the seed.

    The monitor needs a `BrainPropModel` (from `keras_brainprop.wrap`); any
    other model raises a `ValueError` when training starts. The probe is
    checked then too, before the first step: inputs the network cannot
    take and targets the model refuses in `fit()` (labels out of range,
    missing, of the wrong width) raise a `ValueError` naming the probe.

    Args:
        log_dir: the directory of the logs, as for
            `keras.callbacks.TensorBoard`.
        probe_data: None, arrays `(x, y)` (`x` alone if the reward needs no
            targets) or a batched `tf.data.Dataset` of `(x, y)` from which
            the first batches are taken. Sample weights are ignored.
            Float inputs must be finite (checked here).
        probe_size: the number of probe samples taken from `probe_data`.
        update_freq: `"epoch"`, or an int `N` to log every `N` training
            batches as well as every epoch. Each batch-level log runs the
            probe, so keep `N` large for large probes.
        histogram_buckets: the number of buckets of the Q-value and `delta`
            histograms.
        seed: int seed (int32) of the policy's draws on the probe.
        subdir: the sub-directory of `log_dir` that receives the logs.

    Example:

    ```python
    model = keras_brainprop.wrap(net)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  metrics=["accuracy"])
    model.fit(
        x_train, y_train, validation_data=(x_val, y_val), epochs=20,
        callbacks=[
            keras.callbacks.TensorBoard("logs/run1"),
            keras_brainprop.callbacks.BrainPropMonitor(
                "logs/run1", probe_data=(x_val, y_val), probe_size=512),
        ],
    )
    ```

    Then run `tensorboard --logdir logs`.
    """

    def __init__(
        self,
        log_dir,
        probe_data=None,
        probe_size=256,
        update_freq="epoch",
        histogram_buckets=30,
        seed=0,
        subdir="brainprop",
    ):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not str(log_dir):
            raise ValueError(
                f"`log_dir` must be a directory path. Received: log_dir="
                f"{log_dir!r}"
            )
        if update_freq != "epoch" and not _is_positive_int(update_freq):
            raise ValueError(
                "`update_freq` must be 'epoch' or a positive int number of "
                f"batches. Received: update_freq={update_freq!r}"
            )
        if not _is_positive_int(probe_size):
            raise ValueError(
                "`probe_size` must be a positive int. Received: "
                f"probe_size={probe_size!r}"
            )
        if not _is_positive_int(histogram_buckets):
            raise ValueError(
                "`histogram_buckets` must be a positive int. Received: "
                f"histogram_buckets={histogram_buckets!r}"
            )
        if (
            not isinstance(seed, int)
            or isinstance(seed, bool)
            or not -(2**31) <= seed < 2**31
        ):
            raise ValueError(
                f"`seed` must be an int32 int. Received: seed={seed!r}"
            )
        if not isinstance(subdir, str) or not subdir:
            raise ValueError(
                "`subdir` must be a non-empty folder name. Received: "
                f"subdir={subdir!r}"
            )
        self.log_dir = os.fspath(log_dir)
        self.probe_size = probe_size
        self.update_freq = update_freq
        self.histogram_buckets = histogram_buckets
        self.seed = seed
        self.subdir = subdir
        # Read the probe now, so bad probe data fails before training does.
        self._probe_x, self._probe_y = take_probe(probe_data, probe_size)
        self._probe_seed = ops.convert_to_tensor([seed, 0], "int32")
        # With per-epoch logs only, our batch hook does nothing, so Keras may
        # dispatch batch hooks asynchronously (it would not otherwise).
        self.async_safe = update_freq == "epoch"
        self._writer = None
        self._weights = []
        self._layer_indices = {}
        self._epoch_snapshot = []
        self._interval_snapshot = []
        self._epoch_start_iteration = 0
        self._last_batch_log = 0
        self._plain_network = None

    def set_model(self, model):
        # Imported here: model.py imports this package.
        from keras_brainprop.model import BrainPropModel

        if not isinstance(model, BrainPropModel):
            raise ValueError(
                "BrainPropMonitor needs a BrainPropModel, e.g. "
                "keras_brainprop.wrap(network): it reads the model's policy "
                f"and reward. Received: a {type(model).__name__}"
            )
        super().set_model(model)

    def on_train_begin(self, logs=None):
        # Before the first step, so that a probe the model cannot take
        # stops the run before any weight moves.
        if self._probe_x is not None:
            self._check_probe()
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(
                os.path.join(self.log_dir, self.subdir)
            )
        # The trainable set may change between fits (e.g. unfrozen layers).
        network = self.model.network
        # Backprop's twin of a network with feedback weights (shared
        # weights), for the feedback diagnostics.
        self._plain_network = None
        if feedback_layers(network):
            self._plain_network = to_plain(network)
        self._weights = list(network.trainable_weights)
        self._layer_indices = {}
        for index, weight in enumerate(self._weights):
            layer = _layer_path(weight, network.name)
            self._layer_indices.setdefault(layer, []).append(index)
        self._epoch_snapshot = self._new_snapshot()
        self._interval_snapshot = []
        self._last_batch_log = self._iterations()
        if self.update_freq != "epoch":
            self._interval_snapshot = self._new_snapshot()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start_iteration = self._iterations()
        _copy_weights(self._weights, self._epoch_snapshot)

    def on_train_batch_end(self, batch, logs=None):
        if self.update_freq == "epoch":
            return
        # `batch` counts from 0 in each epoch and, with steps_per_execution,
        # is the last step of the execution.
        step = self._epoch_start_iteration + batch + 1
        if step - self._last_batch_log < self.update_freq:
            return
        self._write("batch", step, logs, self._interval_snapshot)
        _copy_weights(self._weights, self._interval_snapshot)
        self._last_batch_log = step

    def on_epoch_end(self, epoch, logs=None):
        self._write("epoch", epoch, logs, self._epoch_snapshot)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._epoch_snapshot = []
        self._interval_snapshot = []

    def _iterations(self):
        return int(to_numpy(self.model.optimizer.iterations))

    def _new_snapshot(self):
        # Variables, not tensors: PyTorch's optimizer updates the weights'
        # tensors in place, and a variable is one copy kept on the device.
        return [
            keras.Variable(
                ops.copy(weight),
                dtype=weight.dtype,
                trainable=False,
                name="brainprop_monitor_snapshot",
            )
            for weight in self._weights
        ]

    def _write(self, unit, step, logs, snapshot):
        # Under JAX, reading `self.model` first brings the weights of the
        # running fit() back to the model's variables.
        model = self.model
        with self._writer.as_default():
            for key, name in _TRAIN_LOGS.items():
                if logs and key in logs:
                    value = to_numpy(logs[key])
                    tf.summary.scalar(f"{unit}/{name}", value, step)
            if self._probe_x is not None:
                self._write_probe(f"{unit}/probe", step)
            if self._plain_network is not None and self._probe_x is not None:
                feedback_diagnostics.write_summaries(
                    f"{unit}/feedback",
                    model.network,
                    slice_samples(self._probe_x, 0, PROBE_CHUNK),
                    None
                    if self._probe_y is None
                    else slice_samples(self._probe_y, 0, PROBE_CHUNK),
                    model,
                    step,
                    self._probe_seed,
                    self._plain_network,
                )
            self._write_update_norms(unit, step, snapshot)

    def _check_probe(self):
        check_probe_inputs(self._probe_x, self.model.network)
        try:
            q_values, _ = self._run_probe()
            if self._probe_y is not None:
                self.model.reward.check_targets(
                    self._probe_y, q_values.shape[-1]
                )
        except (ValueError, tf.errors.InvalidArgumentError) as error:
            # InvalidInputError, the backends' failed check, is both.
            message = getattr(error, "message", None) or str(error)
            raise ValueError(
                "BrainPropMonitor's `probe_data` must be data the model "
                f"trains on, (x, y) as for fit(): {message}"
            ) from error

    def _run_probe(self):
        # The Q-values of the whole probe and the step on them.
        model = self.model
        count = num_samples(self._probe_x)
        q_chunks = [
            model.network(
                slice_samples(self._probe_x, start, start + PROBE_CHUNK),
                training=False,
            )
            for start in range(0, count, PROBE_CHUNK)
        ]
        q_values = ops.cast(ops.concatenate(q_chunks, axis=0), "float32")
        probe = brainprop_step(
            q_values,
            self._probe_y,
            model.reward,
            model.policy,
            ops.convert_to_tensor(model.optimizer.iterations),
            self._probe_seed,
        )
        return q_values, probe

    def _write_probe(self, prefix, step):
        q_values, probe = self._run_probe()
        write_probe_summaries(
            prefix, step, q_values, probe, self._probe_y, self.histogram_buckets
        )

    def _write_update_norms(self, unit, step, snapshot):
        for layer, indices in self._layer_indices.items():
            old = [ops.cast(snapshot[i], "float32") for i in indices]
            new = [ops.cast(self._weights[i], "float32") for i in indices]
            norm = _global_norm([n - o for n, o in zip(new, old)])
            relative = ops.divide_no_nan(norm, _global_norm(old))
            tf.summary.scalar(
                f"{unit}/update_norm/{layer}", to_numpy(norm), step
            )
            tf.summary.scalar(
                f"{unit}/relative_update_norm/{layer}",
                to_numpy(relative),
                step,
            )
