"""BrainPropModel: trains a Keras classifier from reward with BrainProp."""

import keras
import tensorflow as tf

from keras_brainprop import _checks
from keras_brainprop import _keras_fixes
from keras_brainprop import feedback as feedback_lib
from keras_brainprop import policies
from keras_brainprop import rewards as rewards_lib
from keras_brainprop.callbacks._coverage_warning import CoverageWarning
from keras_brainprop.callbacks._no_data_check import NoDataCheck
from keras_brainprop.metrics import GreedyCoverage
from keras_brainprop.step import brainprop_step

_LOSS_ERROR = (
    "BrainPropModel learns from reward, not from a loss: the network picks "
    "an action, gets a scalar reward and learns from the reward-prediction "
    "error of that action alone. Do not pass `loss` to compile(); choose the "
    "reward with wrap(model, reward=...). Received: loss={loss!r}"
)


@keras.saving.register_keras_serializable(package="keras_brainprop")
class BrainPropModel(_keras_fixes.ReplicaSafeModel):
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
    `keras_brainprop.metrics.GreedyCoverage`; the first epoch below 1 warns,
    naming the actions left out) and the metrics given to `compile()`,
    computed on the Q-values (so "accuracy" is the greedy accuracy).
    `evaluate()` acts greedily and logs the same but `explore_rate` and
    `greedy_coverage`. `predict()` returns Q-values. TensorFlow backend only.

    Args:
        network: a `keras.Model` with one output of shape `[batch, actions]`,
            ideally linear (no softmax). Its layers and weights are shared.
        policy: a `keras_brainprop.policies.Policy` or its name; defaults to
            `EpsilonBoltzmann(epsilon=0.02, temperature=1.0)`, the paper's.
        reward: a `keras_brainprop.rewards.Reward`, a callable
            `fn(y, actions) -> [batch] rewards`, or None for
            `CorrectChoice()`.
        seed: int seed of the exploration; None draws one from Keras' global
            seed, so `keras.utils.set_random_seed()` controls it.
        feedback: the feedback rule, a `keras_brainprop.feedback` rule or
            its name ("symmetric", "feedback_alignment", "sign_symmetry",
            "kolen_pollack"); the network is converted with
            `feedback.apply()` and the converted one becomes
            `model.network` (it shares the layers and weights of `network`).
            None uses the network as it is: backprop's symmetric feedback,
            or the rule of a network that `feedback.apply()` converted.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:

    >>> net = keras.Sequential([
    ...     keras.Input((64,)),
    ...     keras.layers.Dense(32, activation="relu"),
    ...     keras.layers.Dense(10, use_bias=False),
    ... ])
    >>> model = BrainPropModel(net)
    >>> model.compile(optimizer=keras.optimizers.SGD(0.1),
    ...               metrics=["accuracy"])
    >>> model.fit(x_train, y_train, epochs=10)

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
        if keras.backend.backend() != "tensorflow":
            raise ValueError(
                "BrainPropModel runs on the TensorFlow backend only. Set "
                "KERAS_BACKEND=tensorflow. Received: backend="
                f"{keras.backend.backend()!r}"
            )
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
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reward_tracker = keras.metrics.Mean(name="reward")
        self.rpe_tracker = keras.metrics.Mean(name="rpe")
        self.explore_rate_tracker = keras.metrics.Mean(name="explore_rate")
        # Built now for Sequential and functional networks, else at the
        # first call.
        self.greedy_coverage_tracker = GreedyCoverage(
            _checks._static_num_actions(network)
        )
        # A built network needs no build step (callbacks such as
        # BackupAndRestore require a built model before fit()).
        self.built = network.built

    def call(self, inputs, training=None):
        q_values = self.network(inputs, training=training)
        _checks.check_q_values(q_values)
        # A subclassed network's number of actions is known from now on.
        self.greedy_coverage_tracker.build(q_values.shape[-1])
        return q_values

    def build(self, input_shape):
        if not self.network.built:
            self.network.build(input_shape)
        self.built = True

    def compile(self, optimizer=None, loss=None, **kwargs):
        """Configures training; `optimizer` defaults to the paper's SGD(0.1).

        Accepts every argument of `keras.Model.compile` except `loss` (and
        `loss_weights`): BrainProp's objective is fixed by the reward.
        """
        if loss is not None or kwargs.get("loss_weights") is not None:
            raise ValueError(_LOSS_ERROR.format(loss=loss))
        kwargs.pop("loss_weights", None)
        if optimizer is None:
            optimizer = keras.optimizers.SGD(learning_rate=0.1)
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            # Create the optimizer's variables so its saved state loads.
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        # Our own "loss" tracker replaces the one compile() creates.
        own = [
            self.loss_tracker,
            self.reward_tracker,
            self.rpe_tracker,
            self.explore_rate_tracker,
            self.greedy_coverage_tracker,
        ]
        others = _keras_fixes.without_compile_loss_tracker(
            self, super().metrics
        )
        return own + [m for m in others if all(m is not o for o in own)]

    def _step_seed(self):
        # A fresh stateless seed per step and per replica, derived from the
        # base seed and the step counter: no state changes hands, so it works
        # under tf.distribute and a resumed run draws exactly as before.
        fold_in = tf.random.experimental.stateless_fold_in
        seed = fold_in(
            tf.cast(self.seed_generator.state, "int32"),
            tf.cast(self.optimizer.iterations, "int32"),
        )
        context = tf.distribute.get_replica_context()
        replica = 0 if context is None else context.replica_id_in_sync_group
        return fold_in(seed, tf.cast(replica, "int32"))

    def _with_regularization(self, loss):
        # The network's regularization losses, as Keras adds them to a
        # compiled loss.
        if self.losses:
            loss += tf.cast(tf.add_n(self.losses), "float32")
        return loss

    def _update_metrics(self, y, q_values, sample_weight, loss, step):
        self.loss_tracker.update_state(
            loss, sample_weight=tf.shape(step.rewards)[0]
        )
        self.reward_tracker.update_state(step.rewards)
        self.rpe_tracker.update_state(step.reward_prediction_error)
        if y is None:  # A reward without targets: nothing to compare with.
            return self.get_metrics_result()
        return self.compute_metrics(None, y, q_values, sample_weight)

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
        if not isinstance(callbacks, keras.callbacks.CallbackList):
            # First, so that it stops fit() before other callbacks act.
            callbacks = [
                NoDataCheck(x),
                *(callbacks or []),
                CoverageWarning(self.greedy_coverage_tracker),
            ]
        return super().fit(
            x, y, batch_size, epochs, verbose, callbacks, *args, **kwargs
        )

    def _random_states(self):
        # Seed-generator states: the exploration seed and the counters of
        # dropout and other random layers. Keras saves weights only.
        weights = {id(weight) for weight in self.weights}
        return [v for v in self.variables if id(v) not in weights]

    def save_own_variables(self, store):
        # Saved with the weights so that a reloaded or restored model draws
        # the same dropout masks and exploration as the original would.
        super().save_own_variables(store)
        for i, state in enumerate(self._random_states()):
            store[f"random_state_{i}"] = state

    def load_own_variables(self, store):
        states = self._random_states()
        saved = [key for key in store.keys() if key.startswith("random_")]
        if saved and len(saved) != len(states):
            raise ValueError(
                f"The saved model has {len(saved)} random-number states but "
                f"this one has {len(states)}: the networks differ. Received: "
                f"{sorted(saved)}"
            )
        for i, state in enumerate(states if saved else []):
            state.assign(store[f"random_state_{i}"])
        # Files written before random states were saved have none.
        super().load_own_variables(
            {k: store[k] for k in store.keys() if not k.startswith("random_")}
        )

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = _checks.check_batch(x, y, self.reward, self.network)
        with tf.GradientTape() as tape:
            q_values = self(x, training=True)
            step = brainprop_step(
                q_values,
                y,
                self.reward,
                self.policy,
                self.optimizer.iterations,
                self._step_seed(),
                sample_weight,
            )
            loss = self._with_regularization(step.loss)
            # Gradients are summed over replicas: average the global batch.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled_loss = self.optimizer.scale_loss(loss / replicas)
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        # The reward checks (inside `loss`) also guard the optimizer's step
        # counter, which does not depend on the gradients.
        with tf.control_dependencies([loss]):
            self.optimizer.apply(gradients, self.trainable_variables)

        self.explore_rate_tracker.update_state(step.explored)
        self.greedy_coverage_tracker.update_state(q_values, sample_weight)
        logs = self._update_metrics(y, q_values, sample_weight, loss, step)
        # Across workers each step log costs a collective: keep the loss.
        return _keras_fixes.step_logs(logs, keep=["loss"])

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        q_values = self(x, training=False)
        step = brainprop_step(
            q_values, y, self.reward, sample_weight=sample_weight
        )
        loss = self._with_regularization(step.loss)
        logs = self._update_metrics(y, q_values, sample_weight, loss, step)
        # Evaluation is greedy; coverage describes training.
        logs.pop("explore_rate", None)
        logs.pop("greedy_coverage", None)
        return _keras_fixes.step_logs(logs, keep=["loss"])

    def get_config(self):
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

    >>> model = keras_brainprop.wrap(net)
    >>> model.compile(optimizer=keras.optimizers.SGD(0.1),
    ...               metrics=["accuracy"])
    >>> model.fit(train_ds, validation_data=val_ds, epochs=20)
    """
    if isinstance(model, BrainPropModel):
        model = model.network
    return BrainPropModel(
        model, policy=policy, reward=reward, seed=seed, feedback=feedback
    )
