"""What lets Keras 3.15's `fit()` run under `tf.distribute`.

Keras 3.15 (TensorFlow backend) has two bugs that stop a model from training
under a distribution strategy (keras-team/keras#20585):

- it builds the model from the first distributed batch averaged over the
  replicas, which fails across workers and whenever the first batch does
  not split evenly over the replicas (e.g. 359 test images over 2);
- across workers it reduces every per-step log over axis 0, which fails for
  the scalar logs every model returns.

`ReplicaSafeModel` fixes both for a model that inherits from it;
`BrainPropModel` does, and `Backprop` trains any plain network with Keras'
own `train_step` under the same strategies, for BrainProp-vs-backprop
comparisons.
"""

import socket

import keras
import tensorflow as tf


def free_local_ports(count):
    """Returns `count` distinct free TCP ports on 127.0.0.1.

    For a multi-worker cluster on one machine (tests, benchmarks, trying
    `MultiWorkerMirroredStrategy` out). The ports are bound together, so
    they differ, and freed just before the workers bind them.

    Example:

    >>> ports = free_local_ports(2)
    >>> workers = [f"localhost:{port}" for port in ports]
    """
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def in_multi_worker_mode():
    """True when the current strategy spans several worker processes."""
    # The same check Keras itself uses; tf.distribute has no public one.
    return tf.distribute.get_strategy().extended._in_multi_worker_mode()


def step_logs(logs, keep=None):
    """Returns per-step logs Keras can reduce across workers.

    Args:
        logs: dict of scalar tensors returned by a train or test step.
        keep: names to keep across workers (None keeps all). Each kept log
            costs one collective per step; the epoch's logs are read from
            the metrics anyway.

    Returns:
        `logs` unchanged on one worker; otherwise the kept logs with shape
        `[1]`.
    """
    if not in_multi_worker_mode():
        return logs
    names = logs if keep is None else [n for n in keep if n in logs]
    return {name: tf.reshape(logs[name], [1]) for name in names}


class ReplicaSafeModel(keras.Model):
    """A `keras.Model` that builds from one replica's share of a batch.

    Subclass it instead of `keras.Model` and return `step_logs(...)` from
    `train_step` / `test_step` to train under `tf.distribute` with Keras
    3.15 (see the module docstring).
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is not None and strategy is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda value: strategy.experimental_local_results(value)[0],
                    next(batches),
                )
                break
            iterator = None
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


@keras.saving.register_keras_serializable(package="keras_brainprop")
class Backprop(ReplicaSafeModel):
    """The backprop (EBP) baseline: `network` trained by Keras' own step.

    Only needed under `tf.distribute` (`experiment.compile_model` uses it
    whenever a strategy is active); elsewhere compile the network itself.

    Args:
        network: the `keras.Model` to train, e.g. from
            `architectures.build(..., output_activation="softmax")`.
        **kwargs: passed to `keras.Model`.

    Example:

    >>> with tf.distribute.MirroredStrategy().scope():
    ...     model = Backprop(net)
    ...     model.compile(optimizer="sgd",
    ...                   loss="sparse_categorical_crossentropy")
    >>> model.fit(dataset)
    """

    def __init__(self, network, **kwargs):
        kwargs.setdefault("name", f"backprop_{network.name}")
        super().__init__(**kwargs)
        self.network = network
        self.built = network.built

    def call(self, inputs, training=None):
        return self.network(inputs, training=training)

    def train_step(self, data):
        return step_logs(super().train_step(data))

    def test_step(self, data):
        return step_logs(super().test_step(data))

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "network": keras.saving.serialize_keras_object(self.network),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(
            config["network"], custom_objects=custom_objects
        )
        return cls(**config)
