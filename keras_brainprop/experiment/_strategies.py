"""Which data-parallel setups `run` can train under on each Keras backend."""

import tensorflow as tf

from keras_brainprop.experiment._uneven_batches import replicate_uneven_batches


def check_strategy(strategy, backend):
    """Refuses a data-parallel setup the Keras backend cannot train under.

    Args:
        strategy: None, a `tf.distribute.Strategy` (TensorFlow) or a
            `keras.distribution` distribution (JAX).
        backend: The Keras backend, "tensorflow", "jax" or "torch".

    Raises:
        ValueError: For a setup of another backend's; TensorFlow's default
            strategy (one device) passes everywhere.
    """
    if strategy is None:
        return
    # keras.distribution has no public base class: a mesh tells it apart.
    if hasattr(strategy, "device_mesh"):
        if backend != "jax":
            raise ValueError(
                "A keras.distribution distribution trains under the JAX "
                "backend only in Keras 3.15 (KERAS_BACKEND=jax); under "
                "TensorFlow use a tf.distribute strategy, and PyTorch trains "
                f"on one device. Received: strategy={strategy!r} with "
                f"KERAS_BACKEND={backend!r}"
            )
        replicate_uneven_batches()
        return
    # TensorFlow's default strategy is one device: harmless anywhere.
    if backend != "tensorflow" and strategy is not tf.distribute.get_strategy():
        raise ValueError(
            "A tf.distribute strategy trains under the TensorFlow backend "
            "only (KERAS_BACKEND=tensorflow); under JAX use "
            "keras.distribution.DataParallel, and PyTorch trains on one "
            f"device. Received: strategy={strategy!r} with "
            f"KERAS_BACKEND={backend!r}"
        )
