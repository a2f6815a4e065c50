"""The BrainProp paper's networks and training hyper-parameters.

`build(name, input_shape, num_classes)` returns a `keras.Sequential` for any
input shape and number of classes, ending in a linear, bias-free
`Dense(num_classes)` whose outputs BrainProp reads as Q-values. Pass
`output_activation="softmax"` for the error-backpropagation (EBP) baseline
of the paper: the same layers and initialisation with a softmax output,
trained with cross-entropy.

Architectures (`ARCHITECTURES`), as in the authors' code (all convolutions
3x3 without bias; "BN" is `BatchNormalization`, placed after the ReLU):

- `"dense"` (MNIST): Flatten, Dense 1500, 1000, 500 (ReLU each), output.
- `"conv"`: Conv32 stride 1, ReLU, BN, Conv32 stride 2, ReLU, BN,
  Dropout 0.3, Flatten, Dense 500, ReLU, Dropout 0.3, output ('same').
- `"loccon"`: `"conv"` with `LocallyConnected2D` layers ('valid' padding).
- `"deep"` (CIFAR-10/100, Tiny ImageNet): Conv64 x2, MaxPool, Dropout 0.3,
  Conv128 x2, MaxPool, Dropout 0.3, Conv128 x3, MaxPool, Dropout 0.8,
  Flatten, Dense 500, ReLU, Dropout 0.3, output; each conv 'same' and
  followed by ReLU then BN; L2 5e-4 on every kernel.
- `"mlp"` (not in the paper): Flatten, Dense 256, ReLU, output. A small net
  for quick runs on tiny data such as scikit-learn's 8x8 digits; it is the
  default of `python -m keras_brainprop`. Its batch size is 16 and its
  initial kernels have standard deviation 0.05.

Every kernel starts from a normal distribution with mean 0 and standard
deviation 0.005 (0.01 for `"dense"`), and no layer has a bias
(BatchNormalization keeps its offset and scale).

`hyperparameters(name)` gives the paper's protocol for a network: SGD with
learning rate 0.1, halved every 100 epochs, batch size 128 (32 for
`"loccon"`), at most 500 epochs, early stopping on validation accuracy with
patience 45 and min_delta 0.001.

Example:

```python
from keras_brainprop import architectures

net = architectures.build("conv", (28, 28, 1), 10)
hparams = architectures.hyperparameters("conv")
hparams.batch_size, hparams.learning_rate_at(250)  # (128, 0.025)
```

Reference:
    Pozzi, Bohté, Roelfsema, "Attention-Gated Brain Propagation: How the
    brain can implement reward-based error backpropagation", NeurIPS 2020.
"""

import dataclasses

import keras

__all__ = ["ARCHITECTURES", "Hyperparameters", "build", "hyperparameters"]

ARCHITECTURES = ("dense", "conv", "loccon", "deep", "mlp")
"""The names `build` and `hyperparameters` accept."""


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """The training protocol of one network, as in the paper.

    Attributes:
        batch_size: Examples per SGD step.
        learning_rate: Initial SGD learning rate (no momentum).
        decay_factor: The learning rate is multiplied by this factor...
        decay_every_epochs: ...every this many epochs.
        max_epochs: Upper bound on the number of training epochs.
        patience: Early stopping waits this many epochs without an
            improvement of the validation accuracy.
        min_delta: Smallest change of the validation accuracy that counts
            as an improvement.
        initializer_stddev: Standard deviation of the normal (mean 0)
            initial kernels.
        l2: L2 regularization factor of every kernel; 0 for none.

    Example:

    >>> Hyperparameters(batch_size=32).learning_rate_at(100)
    0.05
    """

    batch_size: int
    learning_rate: float = 0.1
    decay_factor: float = 0.5
    decay_every_epochs: int = 100
    max_epochs: int = 500
    patience: int = 45
    min_delta: float = 0.001
    initializer_stddev: float = 0.005
    l2: float = 0.0

    def learning_rate_at(self, epoch):
        """Returns the learning rate of a (0-based) epoch.

        Args:
            epoch: int, the epoch index, counting from 0.

        Returns:
            `learning_rate * decay_factor ** (epoch // decay_every_epochs)`.

        Example:

        >>> hyperparameters("conv").learning_rate_at(99)
        0.1
        """
        steps = epoch // self.decay_every_epochs
        return self.learning_rate * self.decay_factor**steps


_HYPERPARAMETERS = {
    "dense": Hyperparameters(batch_size=128, initializer_stddev=0.01),
    "conv": Hyperparameters(batch_size=128),
    "loccon": Hyperparameters(batch_size=32),
    "deep": Hyperparameters(batch_size=128, l2=5e-4),
    # Not the paper's: measured on the 8x8 digits, where smaller batches and
    # a larger initial scale let BrainProp learn within a few dozen epochs.
    "mlp": Hyperparameters(batch_size=16, initializer_stddev=0.05),
}


def _check_name(name):
    if name not in ARCHITECTURES:
        raise ValueError(
            f"Unknown architecture. Expected one of {ARCHITECTURES}. "
            f"Received: name={name!r}"
        )
    return name


def hyperparameters(name):
    """Returns the paper's training hyper-parameters for a network.

    Args:
        name: One of `ARCHITECTURES`.

    Returns:
        A frozen `Hyperparameters`; change fields with
        `dataclasses.replace`.

    Raises:
        ValueError: If `name` is unknown.

    Example:

    >>> hyperparameters("loccon").batch_size
    32
    """
    return _HYPERPARAMETERS[_check_name(name)]


class _LayerFactory:
    """Makes the bias-free layers of one network with shared settings."""

    def __init__(self, hparams):
        self.hparams = hparams

    def _kernel_settings(self):
        # A fresh initializer per layer: each kernel gets its own draw.
        regularizer = None
        if self.hparams.l2:
            regularizer = keras.regularizers.L2(self.hparams.l2)
        return {
            "use_bias": False,
            "kernel_initializer": keras.initializers.RandomNormal(
                mean=0.0, stddev=self.hparams.initializer_stddev
            ),
            "kernel_regularizer": regularizer,
        }

    def dense(self, units, activation=None, name=None):
        return keras.layers.Dense(
            units, activation=activation, name=name, **self._kernel_settings()
        )

    def conv_block(self, filters, strides=1, padding="same", local=False):
        """A 3x3 (locally connected) convolution, then ReLU, then BN."""
        if local:
            # Imported here so the other networks need no custom layer.
            from keras_brainprop.layers import LocallyConnected2D

            layer_class = LocallyConnected2D
        else:
            layer_class = keras.layers.Conv2D
        convolution = layer_class(
            filters,
            3,
            strides=strides,
            padding=padding,
            **self._kernel_settings(),
        )
        return [
            convolution,
            keras.layers.ReLU(),
            keras.layers.BatchNormalization(),
        ]


def _dense_layers(factory):
    return [
        keras.layers.Flatten(),
        factory.dense(1500, "relu"),
        factory.dense(1000, "relu"),
        factory.dense(500, "relu"),
    ]


def _mlp_layers(factory):
    return [keras.layers.Flatten(), factory.dense(256, "relu")]


def _conv_layers(factory, local=False):
    padding = "valid" if local else "same"
    return [
        *factory.conv_block(32, 1, padding, local),
        *factory.conv_block(32, 2, padding, local),
        keras.layers.Dropout(0.3),
        keras.layers.Flatten(),
        factory.dense(500, "relu"),
        keras.layers.Dropout(0.3),
    ]


def _deep_layers(factory):
    def pool_and_drop(rate):
        return [keras.layers.MaxPooling2D(2), keras.layers.Dropout(rate)]

    return [
        *factory.conv_block(64),
        *factory.conv_block(64),
        *pool_and_drop(0.3),
        *factory.conv_block(128),
        *factory.conv_block(128),
        *pool_and_drop(0.3),
        *factory.conv_block(128),
        *factory.conv_block(128),
        *factory.conv_block(128),
        *pool_and_drop(0.8),
        keras.layers.Flatten(),
        factory.dense(500, "relu"),
        keras.layers.Dropout(0.3),
    ]


_BODIES = {
    "dense": _dense_layers,
    "conv": _conv_layers,
    "loccon": lambda factory: _conv_layers(factory, local=True),
    "deep": _deep_layers,
    "mlp": _mlp_layers,
}


def build(name, input_shape, num_classes, output_activation=None):
    """Builds one of the paper's networks for any input and class count.

    Args:
        name: One of `ARCHITECTURES`.
        input_shape: Shape of one example, e.g. `(28, 28, 1)`. The
            convolutional networks need `(height, width, channels)`.
        num_classes: Number of classes, i.e. output units (actions).
        output_activation: Activation of the output layer. `None` (linear)
            for BrainProp, whose outputs are Q-values; `"softmax"` for the
            paper's error-backpropagation baseline.

    Returns:
        A built `keras.Sequential` named `name` whose last layer,
        `Dense(num_classes, use_bias=False)` named "output", has
        `output_activation`.

    Raises:
        ValueError: For an unknown `name`, a `num_classes` below 1, or an
            input shape the network cannot take.

    Example:

    >>> net = build("dense", (28, 28, 1), 10)
    >>> net.output_shape
    (None, 10)
    >>> ebp_net = build("dense", (28, 28, 1), 10, output_activation="softmax")
    """
    hparams = hyperparameters(name)
    if isinstance(num_classes, bool) or not (
        isinstance(num_classes, int) and num_classes >= 1
    ):
        raise ValueError(
            "`num_classes` must be a positive int. "
            f"Received: num_classes={num_classes!r}"
        )
    input_shape = tuple(input_shape)
    if name in ("conv", "loccon", "deep") and len(input_shape) != 3:
        raise ValueError(
            f"The {name!r} network takes images (height, width, channels). "
            f"Received: input_shape={input_shape}"
        )
    factory = _LayerFactory(hparams)
    output = factory.dense(num_classes, output_activation, name="output")
    return keras.Sequential(
        [keras.Input(input_shape), *_BODIES[name](factory), output],
        name=name,
    )
