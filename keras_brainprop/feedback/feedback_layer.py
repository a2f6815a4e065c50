"""FeedbackLayer: a layer whose error goes down through feedback weights."""

import keras
from keras import ops

from keras_brainprop import backend
from keras_brainprop.feedback import rules as rules_lib
from keras_brainprop.layers import LocallyConnected2D

# Layers that compute activation(op(x, kernel) + bias) with op linear in x
# and in the kernel: the error can go down through any kernel of the
# kernel's shape. Exact classes only: a subclass may compute otherwise.
CONVERTIBLE = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    LocallyConnected2D,
)


def _causal_padding(layer):
    left = layer.dilation_rate[0] * (layer.kernel_size[0] - 1)
    if layer.data_format == "channels_last":
        return ((0, 0), (left, 0), (0, 0))
    return ((0, 0), (0, 0), (left, 0))


def _kernel_op(layer):
    """Returns `op(inputs, kernel)`, the layer's output before the bias."""
    if isinstance(layer, keras.layers.Dense):
        return ops.matmul
    if isinstance(layer, LocallyConnected2D):
        return layer.locally_connected_op
    padding = layer.padding

    def convolution(inputs, kernel):
        conv_padding = padding
        if padding == "causal":  # Conv1D pads before a 'valid' convolution.
            inputs = ops.pad(inputs, _causal_padding(layer))
            conv_padding = "valid"
        return ops.conv(
            inputs,
            kernel,
            strides=list(layer.strides),
            padding=conv_padding,
            dilation_rate=layer.dilation_rate,
            data_format=layer.data_format,
        )

    return convolution


def _add_bias_and_activate(layer, outputs):
    """The rest of the layer's own `call`, after its kernel operation."""
    if isinstance(layer, LocallyConnected2D):
        return layer._add_bias_and_activate(outputs)
    if layer.bias is not None:
        bias = ops.cast(layer.bias, outputs.dtype)
        if not isinstance(layer, keras.layers.Dense):
            rank = len(layer.kernel_size)
            if layer.data_format == "channels_last":
                shape = (1,) * (rank + 1) + (layer.filters,)
            else:
                shape = (1, layer.filters) + (1,) * rank
            bias = ops.reshape(bias, shape)
        outputs = ops.add(outputs, bias)
    if layer.activation is not None:
        outputs = layer.activation(outputs)
    return outputs


@keras.saving.register_keras_serializable(package="keras_brainprop")
class FeedbackLayer(keras.layers.Wrapper):
    """Wraps a layer so that its error goes down through feedback weights.

    Computes exactly what the wrapped layer computes, with the layer's own
    weights (they are shared, not copied). Only the backward pass differs:
    the error reaching the layer's input is the transposed operation with
    the feedback weights `feedback_kernel` (same shape as `kernel`) instead
    of `kernel`, while the kernel's and the bias's gradients are those of
    backprop. The `rule` decides what the feedback weights are and whether
    they learn; `feedback_weights` is the stored variable (None when the
    rule computes them, as `SignSymmetry` does). `feedback.apply()` wraps
    every convertible layer of a network; there is little reason to build
    one by hand.

    It also behaves as the wrapped layer in the rest of a Keras model: it
    passes masks on as that layer does (`supports_masking`,
    `compute_mask`), adds the loss of its `activity_regularizer`, and
    freezing the wrapped layer (`layer.trainable = False`) freezes the
    feedback weights too.

    The layer does not autocast its variables: under mixed precision it
    casts kernel, feedback weights and inputs to its compute dtype itself,
    and its losses (`KolenPollack`'s decay) read the float32 variables.

    A network holding these layers, saved on its own, loads only where
    `keras_brainprop` has been imported (Keras imports no other package's
    classes by itself); `feedback.to_plain(network)` saves a plain Keras
    network instead.

    Args:
        layer: a built or unbuilt `Dense`, `Conv1D`, `Conv2D`, `Conv3D` or
            `keras_brainprop.LocallyConnected2D` (exactly these classes).
        rule: a `keras_brainprop.feedback` rule other than `Symmetric`, or
            its name.
        feedback_initializer: initializer of stored feedback weights, for
            rules that store them (None: Keras' default, glorot_uniform);
            `apply()` passes each layer one with its own seed.
        **kwargs: base layer arguments; `name` defaults to the wrapped
            layer's name and `dtype` to its dtype policy.

    Input shape:
        That of the wrapped layer.

    Output shape:
        That of the wrapped layer.

    Example:

    >>> dense = keras.layers.Dense(4)
    >>> layer = FeedbackLayer(dense, feedback.FeedbackAlignment(seed=1),
    ...                       feedback_initializer="glorot_uniform")
    >>> outputs = layer(keras.ops.ones((2, 3)))
    >>> tuple(layer.feedback_kernel.shape)
    (3, 4)
    """

    def __init__(self, layer, rule, feedback_initializer=None, **kwargs):
        if type(layer) not in CONVERTIBLE:
            raise ValueError(
                "FeedbackLayer wraps a Dense, Conv1D, Conv2D, Conv3D or "
                f"LocallyConnected2D layer. Received: layer '{layer.name}' "
                f"of class {type(layer).__name__}"
            )
        rule = rules_lib.get(rule)
        if isinstance(rule, rules_lib.Symmetric):
            raise ValueError(
                "FeedbackLayer needs a rule with feedback weights of their "
                "own; with Symmetric() use the layer itself. Received: "
                f"rule={rule!r}"
            )
        kwargs.setdefault("name", layer.name)
        kwargs.setdefault("dtype", layer.dtype_policy)
        kwargs["autocast"] = False
        activity_regularizer = kwargs.pop("activity_regularizer", None)
        super().__init__(layer, **kwargs)
        if activity_regularizer is not None:
            self.activity_regularizer = keras.regularizers.get(
                activity_regularizer
            )
        self.rule = rule
        self.feedback_initializer = (
            None
            if feedback_initializer is None
            else keras.initializers.get(feedback_initializer)
        )
        self.input_spec = layer.input_spec
        self.feedback_weights = None

    def build(self, input_shape=None):
        super().build(input_shape)
        self.feedback_weights = self.rule.make_feedback_kernel(self)
        self.built = True

    @property
    def kernel(self):
        """The wrapped layer's (forward) kernel."""
        return self.layer.kernel

    @property
    def supports_masking(self):
        return self.layer.supports_masking

    def compute_mask(self, inputs, previous_mask=None):
        return self.layer.compute_mask(inputs, previous_mask)

    @property
    def activity_regularizer(self):
        # The base class's __call__ adds its loss, as the wrapped layer's
        # own __call__ would (which this layer never runs).
        return self.layer.activity_regularizer

    @activity_regularizer.setter
    def activity_regularizer(self, value):
        # The base class sets None before the wrapped layer is stored.
        if "layer" in self.__dict__:
            self.layer.activity_regularizer = value

    @property
    def variables(self):
        self._follow_wrapped_trainable()
        return super().variables

    @property
    def weights(self):
        self._follow_wrapped_trainable()
        return super().weights

    def _follow_wrapped_trainable(self):
        # Keras' trainable setter of the wrapped layer does not reach the
        # feedback weights this layer owns: they learn only while it does.
        feedback = self.__dict__.get("feedback_weights")
        if feedback is not None and self.rule.learns_feedback:
            feedback.trainable = self.trainable and self.layer.trainable

    @property
    def activation(self):
        """The wrapped layer's activation."""
        return self.layer.activation

    @property
    def feedback_kernel(self):
        """The feedback weights the error goes down through at this step.

        A variable for rules that store them (`FeedbackAlignment`,
        `KolenPollack`), a tensor computed from the kernel otherwise
        (`SignSymmetry`).
        """
        return self.rule.feedback_kernel(self)

    def call(self, inputs):
        inputs = ops.cast(inputs, self.compute_dtype)
        kernel = ops.cast(self.kernel, self.compute_dtype)
        feedback = ops.cast(self.feedback_kernel, self.compute_dtype)
        # The error reaches the inputs through the feedback weights, the
        # kernel learns as with backprop (see backend.linear_with_feedback).
        outputs = backend.linear_with_feedback(
            _kernel_op(self.layer),
            inputs,
            kernel,
            feedback,
            self.rule.learns_feedback,
        )
        for loss in self.rule.losses(self):
            self.add_loss(loss)
        return _add_bias_and_activate(self.layer, outputs)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        base_config = super().get_config()
        # The wrapped layer's config holds it.
        base_config.pop("activity_regularizer", None)
        config = {
            "rule": keras.saving.serialize_keras_object(self.rule),
            "feedback_initializer": (
                None
                if self.feedback_initializer is None
                else keras.initializers.serialize(self.feedback_initializer)
            ),
        }
        return {**base_config, **config}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(
            config["layer"], custom_objects=custom_objects
        )
        config["rule"] = keras.saving.deserialize_keras_object(
            config["rule"], custom_objects=custom_objects
        )
        return cls(**config)
