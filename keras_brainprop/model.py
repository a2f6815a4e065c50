"""BrainPropModel: trains a Keras classifier from reward with BrainProp."""

import warnings

import keras
from keras import ops

from keras_brainprop import _checks
from keras_brainprop import _keras_fixes
from keras_brainprop import backend
from keras_brainprop import feedback as feedback_lib
from keras_brainprop import policies
from keras_brainprop import rewards as rewards_lib
from keras_brainprop._checked_steps import CheckedSteps
from keras_brainprop._model_files import ModelFiles
from keras_brainprop.callbacks._coverage_warning import CoverageWarning
from keras_brainprop.callbacks._no_data_check import NoDataCheck
from keras_brainprop.metrics import GreedyCoverage
from keras_brainprop.metrics import _with_greedy_accuracy
from keras_brainprop.step import brainprop_step

_LOSS_ERROR = (
    "BrainPropModel learns from reward, not from a loss: the network picks "
    "an action, gets a scalar reward and learns from the reward-prediction "
    "error of that action alone. Do not pass `loss` to compile(); choose the "
    "reward with wrap(model, reward=...). Received: {}"
)

_H5_ERROR = (
    "BrainPropModel saves to the native `.keras` format: the legacy HDF5 "
    "format keeps neither its random-number states nor its own objects "
    "(policy, reward), and does not load it back. Save with "
    "model.save('model.keras'), or the network alone with "
    "model.network.save(...). Received: a save to the legacy HDF5 format "
    "(.h5)"
)


@keras.saving.register_keras_serializable(package="keras_brainprop")
class BrainPropModel(
    ModelFiles, CheckedSteps, backend.Trainer, _keras_fixes.ReplicaSafeModel
):
    """A Keras model that trains its network from reward with BrainProp.

    For each sample the network outputs Q-values, one per action (class);
    the policy picks an action, the reward function scores it (1 if right,
    0 if wrong by default) and only the chosen output unit learns, from the
    reward-prediction error `delta = r - Q[action]` (see
    `keras_brainprop.step.brainprop_step`), plus the network's
    regularization losses. The labels are never shown to the network.

    `fit()` logs `loss`, `reward` (mean reward of the actions taken), `rpe`
    (mean delta), `explore_rate` (share of non-greedy actions),
    `greedy_coverage` (share of the actions that were the greedy choice for
    at least one sample of the epoch, see
    `keras_brainprop.metrics.GreedyCoverage`; below 1 for 10 epochs in a
    row, or in the last epoch, it warns once per `fit()` with a
    `keras_brainprop.metrics.LowCoverageWarning` naming the actions left
    out) and the metrics given to `compile()`,
    computed on the Q-values (so "accuracy" is the greedy accuracy).
    `evaluate()` acts greedily and logs the same but `explore_rate` and
    `greedy_coverage`. `predict()` returns Q-values without
    checking the inputs (NaN inputs give NaN Q-values); `export()` exports
    that function.

    The step is Keras' own on every backend (TensorFlow, JAX, PyTorch):
    `train_step` checks the batch and hands over to it, and
    `compute_loss` is BrainProp's (see `keras_brainprop.step`), so
    `jit_compile`, `steps_per_execution` and distribution behave as for any
    Keras model. The few pieces that differ per backend (the random draws,
    the feedback layers' backward pass, the step counter, failed checks
    inside a compiled step) are in `keras_brainprop.backend`.

    Args:
        network: a `keras.Model` with one output of shape `[batch, actions]`,
            ideally linear (no softmax). Its layers and weights are shared.
        policy: a `keras_brainprop.policies.Policy` or its name; defaults to
            `EpsilonBoltzmann(epsilon=0.02, temperature=1.0)`, the paper's.
        reward: a `keras_brainprop.rewards.Reward`, a callable
            `fn(y, actions) -> [batch] rewards`, or None for
            `CorrectChoice()`.
        seed: int seed of the exploration; None draws one from Keras' global
            seed, so `keras.utils.set_random_seed()` controls it. A seed
            draws the same actions in eager and graph mode, other ones under
            `jit_compile=True` (see `keras_brainprop.policies`).
        feedback: the feedback rule, a `keras_brainprop.feedback` rule or
            its name ("symmetric", "feedback_alignment", "sign_symmetry",
            "kolen_pollack"); the network is converted with
            `feedback.apply()` and the converted one becomes
            `model.network` (it shares the layers and weights of `network`).
            None uses the network as it is: backprop's symmetric feedback,
            or the rule of a network that `feedback.apply()` converted.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:

    ```python
    net = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(10, use_bias=False),
    ])
    model = BrainPropModel(net)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=10)
    ```

    Reference:
        Pozzi, Bohté, Roelfsema, "Attention-Gated Brain Propagation: How the
        brain can implement reward-based error backpropagation", NeurIPS 2020.
    """

    def __init__(
        self,
        network,
        policy=None,
        reward=None,
        seed=None,
        feedback=None,
        **kwargs,
    ):
        backend.check_supported()
        _checks.check_network(network)
        if feedback is not None:
            network = feedback_lib.apply(network, feedback)
        kwargs.setdefault("name", f"brainprop_{network.name}")
        super().__init__(**kwargs)
        self.network = network
        self.feedback = feedback_lib.rule_of(network)
        self.policy = policies.get(policy)
        self.reward = rewards_lib.get(reward)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.reward_tracker = keras.metrics.Mean(name="reward")
        self.rpe_tracker = keras.metrics.Mean(name="rpe")
        self.explore_rate_tracker = keras.metrics.Mean(name="explore_rate")
        self._warned_no_targets = False
        self._evaluating = False
        # Built now for Sequential and functional networks, else at the
        # first call.
        self.greedy_coverage_tracker = GreedyCoverage(
            _checks._static_num_actions(network)
        )
        # A built network needs no build step (callbacks such as
        # BackupAndRestore require a built model before fit()).
        self.built = network.built

    def call(self, inputs, training=None):
        q_values = _checks.check_q_values(
            self.network(inputs, training=training)
        )
        # A subclassed network's number of actions is known from now on.
        self.greedy_coverage_tracker.build(q_values.shape[-1])
        return q_values

    def build(self, input_shape):
        if not self.network.built:
            # A symbolic call builds any network; build() would warn for a
            # subclassed one without its own build() method.
            self.network(
                keras.tree.map_shape_structure(keras.KerasTensor, input_shape)
            )
        self.built = True

    def compile(self, optimizer=None, loss=None, **kwargs):
        """Configures training; `optimizer` defaults to the paper's SGD(0.1).

        Accepts every argument of `keras.Model.compile` except `loss` (and
        `loss_weights`): BrainProp's objective is fixed by the reward. In
        `metrics` and `weighted_metrics`, "accuracy" (or "acc") is
        `keras_brainprop.metrics.GreedyAccuracy`, for every form of targets.
        """
        loss_weights = kwargs.pop("loss_weights", None)
        for name, value in [("loss", loss), ("loss_weights", loss_weights)]:
            if value is not None:
                raise ValueError(_LOSS_ERROR.format(f"{name}={value!r}"))
        if optimizer is None:
            optimizer = keras.optimizers.SGD(learning_rate=0.1)
        for key in ("metrics", "weighted_metrics"):
            if kwargs.get(key) is not None:
                kwargs[key] = _with_greedy_accuracy(kwargs[key])
        super().compile(optimizer=optimizer, **kwargs)

    @property
    def metrics(self):
        # Those evaluate() returns, in its order, then those of training
        # alone. Compiled metrics are left out until a batch with targets
        # builds them (never, for a reward that needs none).
        loss = _keras_fixes.compile_loss_tracker(self)
        own = [loss] if loss is not None else []
        own += [self.reward_tracker, self.rpe_tracker]
        training = self._training_metrics()
        compiled = _keras_fixes.compiled_metrics(self)
        others = [
            m
            for m in super().metrics
            if all(m is not o for o in own + training)
            and (m is not compiled or compiled.built)
        ]
        return own + others + training

    def _training_metrics(self):
        # Logged by fit() alone: evaluation is greedy and explores nothing.
        return [self.explore_rate_tracker, self.greedy_coverage_tracker]

    @property
    def metrics_names(self):
        """The names of the values `evaluate()` returns, in their order.

        `train_on_batch()` returns the same values followed by
        `explore_rate` and `greedy_coverage`. The compiled metrics are
        named once a batch with targets has built them.
        """
        compiled = _keras_fixes.compiled_metrics(self)
        training = self._training_metrics()
        names = []
        for metric in self.metrics:
            if metric is compiled:
                names += [m.name for m in compiled.metrics]
            elif all(metric is not m for m in training):
                names.append(metric.name)
        return names

    def _step_seed(self):
        # A fresh seed per step and per replica, derived from the base seed
        # and the step counter: no state changes hands, so it works under
        # distribution and a resumed run draws exactly as before.
        seed = backend.fold_in(
            self.seed_generator.state.value, self._training_step()
        )
        return backend.fold_in(seed, self._replica())

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        """BrainProp's loss: `0.5 * delta**2` of the chosen actions.

        In training the policy picks the actions (a fresh seed per step);
        in evaluation they are the greedy ones. Adds the network's
        regularization losses and updates the reward, reward-prediction
        error and (in training) exploration and coverage metrics.
        """
        if training:
            step = brainprop_step(
                y_pred,
                y,
                self.reward,
                self.policy,
                self._training_step(),
                self._step_seed(),
                sample_weight,
            )
            self.explore_rate_tracker.update_state(step.explored)
            self.greedy_coverage_tracker.update_state(y_pred, sample_weight)
            self._step_counter_after(step.loss)
        else:
            step = brainprop_step(
                y_pred, y, self.reward, sample_weight=sample_weight
            )
        self.reward_tracker.update_state(step.rewards)
        self.rpe_tracker.update_state(step.reward_prediction_error)
        loss = step.loss
        if self.losses:
            regularization = [
                ops.cast(ops.sum(r), "float32") for r in self.losses
            ]
            loss = loss + ops.sum(ops.stack(regularization))
        return self._per_replica(loss)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if y is None:  # A reward without targets: nothing to compare with.
            compiled = _keras_fixes.compiled_metrics(self)
            if compiled is not None and not self._warned_no_targets:
                self._warned_no_targets = True
                warnings.warn(
                    "The metrics given to compile() compare the Q-values "
                    "with targets, and this data has none (the reward needs "
                    "none): they are skipped. Pass `y` to fit() or "
                    "evaluate() to compute them. Received: y=None",
                    stacklevel=2,
                )
            logs = self.get_metrics_result()
        else:
            logs = super().compute_metrics(x, y, y_pred, sample_weight)
        if self._evaluating:
            for metric in self._training_metrics():
                logs.pop(metric.name, None)
        # Across workers each step log costs a collective: keep the loss.
        return _keras_fixes.step_logs(logs, keep=["loss"])

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        *args,
        **kwargs,
    ):
        """Trains the network from reward; arguments as `keras.Model.fit`.

        Unlike Keras, raises `ValueError` when an epoch gets no training
        data (an empty dataset), before any weight changes.
        """
        _checks.check_target_dtype(y)  # Keras' own error names no target.
        no_data = None
        if not isinstance(callbacks, keras.callbacks.CallbackList):
            # First, so that it stops fit() before other callbacks act.
            no_data = NoDataCheck(x)
            callbacks = [
                no_data,
                *(callbacks or []),
                CoverageWarning(self.greedy_coverage_tracker),
            ]
        try:
            return super().fit(
                x, y, batch_size, epochs, verbose, callbacks, *args, **kwargs
            )
        except UnboundLocalError:
            # Keras 3.15.1's JAX fit() fails on the logs of an epoch that ran
            # no step, before the epoch ends.
            if no_data is not None:
                no_data.raise_if_no_step()
            raise

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """Evaluates the greedy policy; arguments as `keras.Model.evaluate`.

        Checks the inputs and targets as `fit()` does.
        """
        _checks.check_target_dtype(y)
        self._evaluating = True
        try:
            return super().evaluate(x, y, *args, **kwargs)
        finally:
            self._evaluating = False

    def test_on_batch(self, *args, **kwargs):
        self._evaluating = True
        try:
            return super().test_on_batch(*args, **kwargs)
        finally:
            self._evaluating = False

    def get_config(self):
        if _keras_fixes.saving_legacy_h5():
            raise ValueError(_H5_ERROR)
        return {
            "name": self.name,
            "trainable": self.trainable,
            "network": keras.saving.serialize_keras_object(self.network),
            "policy": keras.saving.serialize_keras_object(self.policy),
            "reward": keras.saving.serialize_keras_object(self.reward),
            "seed": self.seed,
            "feedback": keras.saving.serialize_keras_object(self.feedback),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("network", "policy", "reward", "feedback"):
            config[key] = keras.saving.deserialize_keras_object(
                config.get(key), custom_objects=custom_objects
            )
        return cls(**config)


def wrap(model, policy=None, reward=None, seed=None, feedback=None):
    """Returns a BrainPropModel that trains `model` from reward.

    The returned model shares `model`'s layers and weights, so training it
    trains `model`: a Sequential, functional or subclassed classifier whose
    single output `[batch, actions]` holds one linear unit per action. A
    BrainPropModel is re-wrapped around its network. `policy`, `reward`,
    `seed` and `feedback` are as for `BrainPropModel`: with a feedback rule
    such as `feedback="kolen_pollack"`, the error reaches the lower layers
    through feedback weights instead of the forward ones, and
    `model.network` is the converted network (`feedback.to_plain()` gives
    the plain one back).

    Example:

    ```python
    model = keras_brainprop.wrap(net)
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  metrics=["accuracy"])
    model.fit(train_ds, validation_data=val_ds, epochs=20)
    ```
    """
    if isinstance(model, BrainPropModel):
        model = model.network
    return BrainPropModel(
        model, policy=policy, reward=reward, seed=seed, feedback=feedback
    )
