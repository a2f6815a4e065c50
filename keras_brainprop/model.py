"""BrainPropModel: trains a Keras classifier from reward with BrainProp."""

import warnings

import keras
import tensorflow as tf

from keras_brainprop import _keras_fixes
from keras_brainprop import policies
from keras_brainprop import rewards as rewards_lib

_LOSS_ERROR = (
    "BrainPropModel learns from reward, not from a loss: the network picks "
    "an action, gets a scalar reward and learns from the reward-prediction "
    "error of that action alone. Do not pass `loss` to compile(); choose the "
    "reward with wrap(model, reward=...). Received: loss={loss!r}"
)


def _output_activation_name(network):
    layers = getattr(network, "layers", None)
    if not layers:
        return None
    last = layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return "softmax"
    activation = getattr(last, "activation", None)
    name = getattr(activation, "__name__", None)
    return name if name in ("softmax", "sigmoid") else None


def _check_q_values(outputs):
    if isinstance(outputs, (list, tuple, dict)):
        raise ValueError(
            "BrainProp needs a network with a single output, the Q-values "
            "[batch, actions]. Received: a network with "
            f"{len(outputs)} outputs"
        )
    shape = tuple(outputs.shape)
    if len(shape) != 2 or shape[-1] is None:
        raise ValueError(
            "The network's output must be Q-values of shape [batch, actions] "
            "with a known number of actions. Received: output shape "
            f"{shape}"
        )


def _check_network(network):
    if not isinstance(network, keras.Model):
        raise ValueError(f"wrap() takes a keras.Model. Received: {network!r}")
    try:
        outputs = network.outputs
    except (AttributeError, ValueError):
        outputs = None  # Subclassed or unbuilt: checked at the first call.
    if outputs is not None:
        _check_q_values(outputs[0] if len(outputs) == 1 else outputs)
    activation = _output_activation_name(network)
    if activation is not None:
        warnings.warn(
            f"The network's output layer applies {activation}. BrainProp "
            "reads the outputs as Q-values, estimates of the reward of each "
            "action, and regresses them onto rewards; a squashing output "
            "slows or stalls learning. Use a linear output layer.",
            stacklevel=3,
        )


def _replica_id():
    context = tf.distribute.get_replica_context()
    if context is None:
        return tf.constant(0, "int32")
    return tf.cast(context.replica_id_in_sync_group, "int32")


def _finite_inputs(x):
    # One NaN or Inf input turns every weight into NaN in a single step:
    # stop before the update instead. One cheap pass over the batch.
    def check(value):
        if isinstance(value, tf.Tensor) and value.dtype.is_floating:
            return tf.debugging.check_numerics(
                value,
                "Training inputs must be finite; a NaN or Inf input would "
                "make every weight NaN. Received: inputs with NaN or Inf",
            )
        return value

    return tf.nest.map_structure(check, x)


def _static_num_actions(network):
    # Known before the first call for Sequential and functional networks.
    try:
        outputs = network.outputs
    except (AttributeError, ValueError):
        return None
    if outputs and len(outputs) == 1 and len(outputs[0].shape) == 2:
        return outputs[0].shape[-1]
    return None


def _after_checks(value):
    return tf.identity(value) if isinstance(value, tf.Tensor) else value


def _describe_data(x):
    if isinstance(x, tf.data.Dataset):
        cardinality = int(x.cardinality())
        if cardinality < 0:
            return "x=<tf.data.Dataset of unknown size>"
        return f"x=<tf.data.Dataset of {cardinality} batches>"
    shape = getattr(x, "shape", None)
    if shape is not None:
        return f"x with shape {tuple(shape)}"
    return f"x of type {type(x).__name__}"


class _NoDataCheck(keras.callbacks.Callback):
    """Makes fit() raise when an epoch runs no training step (empty data);
    Keras 3 only warns and returns."""

    def __init__(self, description):
        super().__init__()
        self.description = description
        self.steps = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def on_epoch_end(self, epoch, logs=None):
        if self.steps == 0:
            raise ValueError(
                f"fit() got no training data: epoch {epoch + 1} ran no "
                "training step. The dataset or arrays are empty (or were "
                f"filtered to nothing). Received: {self.description}"
            )


@keras.saving.register_keras_serializable(package="keras_brainprop")
class BrainPropModel(_keras_fixes.ReplicaSafeModel):
    """A Keras model that trains its network from reward with BrainProp.

    For each training sample the network outputs Q-values, one per action
    (class); the policy picks an action; the reward function scores it
    (1 if right, 0 if wrong by default); and only the chosen output unit
    learns, from the reward-prediction error `delta = r - Q[action]`. The
    update is an SGD step on the batch mean of `0.5 * delta**2` (weighted by
    `sample_weight`, Keras-style: summed and divided by the batch size) plus
    the network's regularization losses; the error reaches the lower layers
    through the chosen unit alone, which is what BrainProp's attention-gated
    feedback computes. The labels are never shown to the network.

    `fit()` logs `loss`, `reward` (mean reward of the actions taken), `rpe`
    (mean delta), `explore_rate` (share of actions that differ from the greedy
    one) and the metrics given to `compile()`, computed on the Q-values (so
    "accuracy" is the greedy accuracy). `evaluate()` acts greedily and logs
    `loss`, `reward`, `rpe` and the compiled metrics. `predict()` returns
    Q-values. TensorFlow backend only.

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

    def __init__(self, network, policy=None, reward=None, seed=None, **kwargs):
        if keras.backend.backend() != "tensorflow":
            raise ValueError(
                "BrainPropModel runs on the TensorFlow backend only. Set "
                "KERAS_BACKEND=tensorflow. Received: backend="
                f"{keras.backend.backend()!r}"
            )
        _check_network(network)
        kwargs.setdefault("name", f"brainprop_{network.name}")
        super().__init__(**kwargs)
        self.network = network
        self.policy = policies.get(policy)
        self.reward = rewards_lib.get(reward)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reward_tracker = keras.metrics.Mean(name="reward")
        self.rpe_tracker = keras.metrics.Mean(name="rpe")
        self.explore_rate_tracker = keras.metrics.Mean(name="explore_rate")
        # A built network needs no build step (callbacks such as
        # BackupAndRestore require a built model before fit()).
        self.built = network.built

    def call(self, inputs, training=None):
        q_values = self.network(inputs, training=training)
        _check_q_values(q_values)
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
        # Our own "loss" tracker replaces the one compile() creates, which
        # would track a compiled loss that BrainProp does not have.
        keras_loss_tracker = getattr(self, "_loss_tracker", None)
        own = [
            self.loss_tracker,
            self.reward_tracker,
            self.rpe_tracker,
            self.explore_rate_tracker,
        ]
        others = [
            m
            for m in super().metrics
            if m is not keras_loss_tracker and all(m is not o for o in own)
        ]
        return own + others

    def _step_seed(self):
        # A fresh stateless seed per step and per replica, derived from the
        # base seed and the step counter: no state changes hands, so it works
        # under tf.distribute and a resumed run draws exactly as before.
        seed = tf.random.experimental.stateless_fold_in(
            tf.cast(self.seed_generator.state, "int32"),
            tf.cast(self.optimizer.iterations, "int32"),
        )
        return tf.random.experimental.stateless_fold_in(seed, _replica_id())

    def _rewards(self, y, actions, num_actions):
        rewards = self.reward(y, actions, num_actions)
        batch_size = actions.shape[0]  # Static when known: checked earlier.
        if batch_size is None:
            batch_size = tf.shape(actions)[0]
        return rewards_lib.check_rewards(rewards, batch_size)

    def _prediction_error(self, q_values, actions, rewards, sample_weight):
        """Returns (mean 0.5 * delta**2 weighted Keras-style, delta)."""
        chosen_q = tf.gather(
            tf.cast(q_values, "float32"), actions, batch_dims=1
        )
        reward_prediction_error = rewards - chosen_q
        per_sample = 0.5 * tf.square(reward_prediction_error)
        if sample_weight is not None:
            sample_weight = tf.reshape(tf.cast(sample_weight, "float32"), [-1])
            per_sample = per_sample * sample_weight
        batch_size = tf.cast(tf.shape(per_sample)[0], "float32")
        loss = tf.math.divide_no_nan(tf.reduce_sum(per_sample), batch_size)
        return loss, reward_prediction_error

    def _update_metrics(self, y, q_values, sample_weight, loss, rpe, rewards):
        self.loss_tracker.update_state(loss, sample_weight=tf.shape(rpe)[0])
        self.reward_tracker.update_state(rewards)
        self.rpe_tracker.update_state(rpe)
        if y is not None and self._compile_metrics is not None:
            self._compile_metrics.update_state(y, q_values, sample_weight)

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
            callbacks = [_NoDataCheck(_describe_data(x)), *(callbacks or [])]
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
        x = _finite_inputs(x)
        num_actions = _static_num_actions(self.network)
        if num_actions is not None:
            # Bad targets stop the step before the forward pass, which
            # would update batch-norm statistics.
            checks = self.reward.check_targets(y, num_actions)
            with tf.control_dependencies(checks):
                x = tf.nest.map_structure(_after_checks, x)
        with tf.GradientTape() as tape:
            q_values = self(x, training=True)
            num_actions = q_values.shape[-1]
            # The policy only reads Q; credit flows through Q[action] alone.
            actions = self.policy(
                tf.stop_gradient(q_values),
                self.optimizer.iterations,
                self._step_seed(),
            )
            rewards = self._rewards(y, actions, num_actions)
            loss, rpe = self._prediction_error(
                q_values, actions, rewards, sample_weight
            )
            if self.losses:
                loss += tf.cast(tf.add_n(self.losses), "float32")
            # Gradients are summed over replicas: average the global batch.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled_loss = self.optimizer.scale_loss(loss / replicas)
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        # The reward checks (inside `loss`) also guard the optimizer's step
        # counter, which does not depend on the gradients.
        with tf.control_dependencies([loss]):
            self.optimizer.apply(gradients, self.trainable_variables)

        greedy = tf.argmax(q_values, axis=-1, output_type="int32")
        explored = tf.cast(tf.not_equal(actions, greedy), "float32")
        self.explore_rate_tracker.update_state(explored)
        self._update_metrics(y, q_values, sample_weight, loss, rpe, rewards)
        # Across workers each step log costs a collective: keep the loss.
        return _keras_fixes.step_logs(self.get_metrics_result(), keep=["loss"])

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        q_values = self(x, training=False)
        actions = tf.argmax(q_values, axis=-1, output_type="int32")
        rewards = self._rewards(y, actions, q_values.shape[-1])
        loss, rpe = self._prediction_error(
            q_values, actions, rewards, sample_weight
        )
        if self.losses:
            loss += tf.cast(tf.add_n(self.losses), "float32")
        self._update_metrics(y, q_values, sample_weight, loss, rpe, rewards)
        logs = self.get_metrics_result()
        logs.pop("explore_rate", None)  # Evaluation is greedy.
        return _keras_fixes.step_logs(logs, keep=["loss"])

    def _get_metrics_result_or_logs(self, logs):
        # Keras reads the final logs from the metrics' variables, summed
        # over all replicas, only if the step logs name every metric; ours
        # may name fewer (see test_step and _keras_fixes.step_logs).
        results = self.get_metrics_result()
        if not isinstance(logs, dict) or not set(logs) <= set(results):
            return logs
        explored = tf.convert_to_tensor(self.explore_rate_tracker.count)
        if "explore_rate" not in logs and not explored:
            results.pop("explore_rate", None)  # Evaluation: greedy.
        return results

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "network": keras.saving.serialize_keras_object(self.network),
            "policy": keras.saving.serialize_keras_object(self.policy),
            "reward": keras.saving.serialize_keras_object(self.reward),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("network", "policy", "reward"):
            config[key] = keras.saving.deserialize_keras_object(
                config[key], custom_objects=custom_objects
            )
        return cls(**config)


def wrap(model, policy=None, reward=None, seed=None):
    """Returns a BrainPropModel that trains `model` from reward.

    The returned model shares `model`'s layers and weights, so training it
    trains `model`. Works with Sequential, functional and subclassed models
    whose single output holds one linear unit per action.

    Args:
        model: a `keras.Model` classifier with output `[batch, actions]`. A
            BrainPropModel is re-wrapped around its network.
        policy: action selection; default the paper's
            `policies.EpsilonBoltzmann(epsilon=0.02, temperature=1.0)`.
        reward: reward function; default `rewards.CorrectChoice()`.
        seed: int seed of the exploration, or None for Keras' global seed.

    Returns:
        A `BrainPropModel`; compile it (without a loss) and fit it.

    Example:

    >>> model = keras_brainprop.wrap(net)
    >>> model.compile(optimizer=keras.optimizers.SGD(0.1),
    ...               metrics=["accuracy"])
    >>> model.fit(train_ds, validation_data=val_ds, epochs=20)
    """
    if isinstance(model, BrainPropModel):
        model = model.network
    return BrainPropModel(model, policy=policy, reward=reward, seed=seed)
