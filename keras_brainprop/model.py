"""BrainPropModel: trains a Keras classifier from reward with BrainProp."""

import warnings

import keras
import tensorflow as tf

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


@keras.saving.register_keras_serializable(package="keras_brainprop")
class BrainPropModel(keras.Model):
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
        return rewards_lib.check_rewards(rewards, tf.shape(actions)[0])

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

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
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
        self.optimizer.apply(gradients, self.trainable_variables)

        greedy = tf.argmax(q_values, axis=-1, output_type="int32")
        explored = tf.cast(tf.not_equal(actions, greedy), "float32")
        self.explore_rate_tracker.update_state(explored)
        self._update_metrics(y, q_values, sample_weight, loss, rpe, rewards)
        return self.get_metrics_result()

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
        return logs

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
