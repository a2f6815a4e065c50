"""Keras 3 layers that Keras itself no longer ships."""

import keras
import numpy as np
from keras import activations
from keras import constraints
from keras import initializers
from keras import ops
from keras import regularizers

__all__ = ["LocallyConnected2D"]

_PADDINGS = ("valid", "same")
_DATA_FORMATS = ("channels_last", "channels_first")


def _normalize_pair(value, name):
    """Returns `value` as a tuple of two positive ints, or raises."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        pair = tuple(value)
    else:
        raise ValueError(
            f"`{name}` must be a positive int or a tuple of 2 positive ints. "
            f"Received: {name}={value!r}"
        )
    if not all(
        isinstance(item, (int, np.integer))
        and not isinstance(item, bool)
        and item > 0
        for item in pair
    ):
        raise ValueError(
            f"`{name}` must be a positive int or a tuple of 2 positive ints. "
            f"Received: {name}={value!r}"
        )
    return tuple(int(item) for item in pair)


def _output_length(input_length, kernel_length, stride, padding):
    """Output positions along one axis (Keras 2's rule), or None."""
    if input_length is None:
        return None
    if padding == "same":
        return (input_length + stride - 1) // stride
    return (input_length - kernel_length) // stride + 1


def _same_padding(input_length, kernel_length, stride):
    """(before, after) zero padding of Keras 2's locally connected 'same'.

    Keras 2 starts the window of output position `i` at input
    `i * stride - kernel_length // 2`. With a stride above 1 or an even
    kernel this can differ from the TensorFlow 'SAME' rule of `Conv2D`.
    """
    output_length = _output_length(input_length, kernel_length, stride, "same")
    before = kernel_length // 2
    padded_length = (output_length - 1) * stride + kernel_length
    return before, max(0, padded_length - before - input_length)


@keras.saving.register_keras_serializable(package="keras_brainprop")
class LocallyConnected2D(keras.layers.Layer):
    """2D locally connected layer: a convolution without weight sharing.

    Like `keras.layers.Conv2D`, every output position sees one
    `kernel_size` window of the input, but each position has its own filter
    bank instead of all positions sharing one. For channels_last:

        output[b, i, j, f] = activation(
            sum_m patch(b, i, j)[m] * kernel[i * output_cols + j, m, f]
            + bias[i, j, f])

    where `patch(b, i, j)` is the flattened window whose top-left corner is
    input pixel `(i * stride_rows - pad_top, j * stride_cols - pad_left)`;
    the pads are 0 for 'valid' and `kernel_rows // 2`, `kernel_cols // 2`
    for 'same' (zeros are read outside the input).

    All patches are gathered with one indexed gather and contracted with the
    per-position kernels in one batched matrix product, so forward and
    backward passes cost a few large ops whatever the number of positions.

    Weight layout (Keras 2 compatible): the kernel has shape
    `(output_rows * output_cols, kernel_rows * kernel_cols * input_channels,
    filters)` and the bias `(output_rows, output_cols, filters)`, exactly as
    Keras 2's `LocallyConnected2D(implementation=1)`, so weights of a Keras 2
    model load with `set_weights` unchanged and give the same outputs.
    Positions are in row-major order. The middle axis follows the input's
    own layout: `(kernel_row, kernel_col, channel)` for channels_last and
    `(channel, kernel_row, kernel_col)` for channels_first. With
    channels_first, Keras 2 adds the bias after *reshaping* (not
    transposing) it to `(filters, output_rows, output_cols)`; this layer
    does the same. Keras 2's implementation 1 only allows 'valid'; 'same'
    here follows Keras 2's implementations 2 and 3 (pads above, and
    `ceil(input_size / stride)` outputs), which with a stride above 1 or an
    even kernel can place windows one pixel off from `Conv2D`'s 'same'.

    Args:
        filters: int, the number of output channels.
        kernel_size: int or tuple of 2 ints, the window's height and width.
        strides: int or tuple of 2 ints, the step between windows along the
            height and the width. Defaults to `1`.
        padding: `"valid"` (no padding) or `"same"` (zero padding, Keras 2's
            rule above). Case-insensitive. Defaults to `"valid"`.
        data_format: `"channels_last"` (inputs `(batch, rows, cols,
            channels)`) or `"channels_first"` (inputs `(batch, channels,
            rows, cols)`). Defaults to `keras.config.image_data_format()`.
        activation: activation function or its name. Defaults to `None`
            (linear).
        use_bias: bool, whether to add a bias per position and filter.
            Defaults to `True`.
        kernel_initializer: initializer for the kernel. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer for the bias. Defaults to `"zeros"`.
        kernel_regularizer: optional regularizer for the kernel.
        bias_regularizer: optional regularizer for the bias.
        activity_regularizer: optional regularizer for the output.
        kernel_constraint: optional constraint for the kernel.
        bias_constraint: optional constraint for the bias.
        **kwargs: base layer arguments, e.g. `name` and `dtype`.

    Input shape:
        4D tensor `(batch, rows, cols, channels)` for channels_last or
        `(batch, channels, rows, cols)` for channels_first. The spatial size
        must be known when the layer is built.

    Output shape:
        4D tensor `(batch, output_rows, output_cols, filters)` for
        channels_last or `(batch, filters, output_rows, output_cols)` for
        channels_first, where `output_rows = (rows - kernel_rows) //
        stride_rows + 1` for 'valid' and `ceil(rows / stride_rows)` for
        'same' (likewise for columns).

    Example:

    >>> model = keras.Sequential([
    ...     keras.Input((28, 28, 1)),
    ...     LocallyConnected2D(32, 3, use_bias=False),
    ...     LocallyConnected2D(32, 3, strides=2, use_bias=False),
    ... ])
    >>> model.output_shape
    (None, 12, 12, 32)
    >>> tuple(model.layers[0].kernel.shape)
    (676, 9, 32)

    Reference:
        - Pozzi, Bohté and Roelfsema, "Attention-Gated Brain Propagation:
          How the brain can implement reward-based error backpropagation",
          NeurIPS 2020 (the "loccon" networks).
        - Keras 2's `keras.layers.LocallyConnected2D` (now in `tf-keras`),
          whose weight layout this layer keeps.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(activity_regularizer=activity_regularizer, **kwargs)
        if (
            not isinstance(filters, (int, np.integer))
            or isinstance(filters, bool)
            or filters <= 0
        ):
            raise ValueError(
                "`filters` must be a positive int. "
                f"Received: filters={filters!r}"
            )
        self.filters = int(filters)
        self.kernel_size = _normalize_pair(kernel_size, "kernel_size")
        self.strides = _normalize_pair(strides, "strides")
        normalized_padding = (
            padding.lower() if isinstance(padding, str) else padding
        )
        if normalized_padding not in _PADDINGS:
            raise ValueError(
                "`padding` must be 'valid' or 'same'. "
                f"Received: padding={padding!r}"
            )
        self.padding = normalized_padding
        if data_format is None:
            data_format = keras.config.image_data_format()
        if data_format not in _DATA_FORMATS:
            raise ValueError(
                "`data_format` must be 'channels_last' or 'channels_first'. "
                f"Received: data_format={data_format!r}"
            )
        self.data_format = data_format
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _split_shape(self, input_shape):
        """Returns (rows, cols, channels) of a 4D input shape."""
        if self.data_format == "channels_last":
            return input_shape[1], input_shape[2], input_shape[3]
        return input_shape[2], input_shape[3], input_shape[1]

    def build(self, input_shape):
        rows, cols, channels = self._split_shape(input_shape)
        if rows is None or cols is None or channels is None:
            raise ValueError(
                "LocallyConnected2D needs fully known spatial sizes and "
                f"channels. Received: input_shape={tuple(input_shape)}"
            )
        kernel_rows, kernel_cols = self.kernel_size
        stride_rows, stride_cols = self.strides
        self.output_rows = _output_length(
            rows, kernel_rows, stride_rows, self.padding
        )
        self.output_cols = _output_length(
            cols, kernel_cols, stride_cols, self.padding
        )
        if self.output_rows <= 0 or self.output_cols <= 0:
            raise ValueError(
                f"LocallyConnected2D '{self.name}' has no output position: "
                f"a {rows}x{cols} input is smaller than kernel_size="
                f"{self.kernel_size} with padding='{self.padding}'. Use a "
                "larger input, a smaller kernel or padding='same'. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        channel_axis = -1 if self.data_format == "channels_last" else 1
        self.input_spec = keras.layers.InputSpec(
            ndim=4, axes={channel_axis: channels}
        )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(
                self.output_rows * self.output_cols,
                kernel_rows * kernel_cols * channels,
                self.filters,
            ),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.output_rows, self.output_cols, self.filters),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        self._build_patch_indices(rows, cols)

    def _build_patch_indices(self, rows, cols):
        """Precomputes which (padded) input pixels each position reads.

        Row-major pixel indices within one padded sample, shape
        `(positions, kernel_rows * kernel_cols)`; `call` adds each sample's
        offset and gathers every patch of the batch at once.
        """
        kernel_rows, kernel_cols = self.kernel_size
        stride_rows, stride_cols = self.strides
        if self.padding == "same":
            self._row_padding = _same_padding(rows, kernel_rows, stride_rows)
            self._col_padding = _same_padding(cols, kernel_cols, stride_cols)
        else:
            self._row_padding = (0, 0)
            self._col_padding = (0, 0)
        padded_cols = cols + sum(self._col_padding)
        # (output_rows, 1, kernel_rows, 1) and (1, output_cols, 1,
        # kernel_cols) broadcast to (position row, position col, kernel row,
        # kernel col).
        input_row = (
            np.arange(self.output_rows)[:, None, None, None] * stride_rows
            + np.arange(kernel_rows)[None, None, :, None]
        )
        input_col = (
            np.arange(self.output_cols)[None, :, None, None] * stride_cols
            + np.arange(kernel_cols)[None, None, None, :]
        )
        self._patch_indices = (
            (input_row * padded_cols + input_col)
            .reshape(self.output_rows * self.output_cols, -1)
            .astype("int32")
        )

    def call(self, inputs):
        outputs = self.locally_connected_op(inputs, self.kernel)
        return self._add_bias_and_activate(outputs)

    def locally_connected_op(self, inputs, kernel):
        """The layer's linear part: `inputs` contracted with `kernel`.

        Like `Conv2D.convolution_op`: no bias, no activation, so that the
        same operation can run with another kernel of the same shape
        (`keras_brainprop.feedback` sends errors through feedback weights
        this way). Written in `keras.ops` only, so that every backend's
        autodiff differentiates it in both `inputs` and `kernel`.
        """
        if self.data_format == "channels_first":
            inputs = ops.transpose(inputs, (0, 2, 3, 1))
        if self.padding == "same":
            inputs = ops.pad(
                inputs, ((0, 0), self._row_padding, self._col_padding, (0, 0))
            )
        _, rows, cols, channels = inputs.shape
        # One gather, position-major, needs no transpose of the (large)
        # patches before the batched matmul: pixel rows of `channels` values
        # are taken at `position_pixel + sample * pixels_per_sample`.
        pixels = ops.reshape(inputs, (-1, channels))
        sample_offsets = ops.arange(ops.shape(inputs)[0], dtype="int32")
        indices = ops.expand_dims(
            ops.convert_to_tensor(self._patch_indices), 1
        ) + ops.reshape(sample_offsets * (rows * cols), (1, -1, 1))
        # (positions, batch, kernel_rows * kernel_cols, channels)
        patches = ops.take(pixels, indices, axis=0)
        if self.data_format == "channels_first":
            # Keras 2 flattens a channels_first patch channel-major.
            patches = ops.transpose(patches, (0, 1, 3, 2))
        patches = ops.reshape(patches, (patches.shape[0], -1, kernel.shape[1]))
        # One batched matmul over positions: (positions, batch, filters).
        outputs = ops.matmul(patches, kernel)
        if self.data_format == "channels_last":
            outputs = ops.transpose(outputs, (1, 0, 2))
            outputs = ops.reshape(
                outputs, (-1, self.output_rows, self.output_cols, self.filters)
            )
        else:
            outputs = ops.transpose(outputs, (1, 2, 0))
            outputs = ops.reshape(
                outputs, (-1, self.filters, self.output_rows, self.output_cols)
            )
        return outputs

    def _add_bias_and_activate(self, outputs):
        if self.use_bias:
            # Cast: feedback.FeedbackLayer calls this without autocasting.
            bias = ops.cast(self.bias, outputs.dtype)
            if self.data_format == "channels_first":
                bias = ops.reshape(
                    bias, (self.filters, self.output_rows, self.output_cols)
                )
            outputs = outputs + bias
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        rows, cols, _ = self._split_shape(input_shape)
        output_rows = _output_length(
            rows, self.kernel_size[0], self.strides[0], self.padding
        )
        output_cols = _output_length(
            cols, self.kernel_size[1], self.strides[1], self.padding
        )
        if self.data_format == "channels_last":
            return (input_shape[0], output_rows, output_cols, self.filters)
        return (input_shape[0], self.filters, output_rows, output_cols)

    def get_config(self):
        base_config = super().get_config()
        config = {
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(
                self.kernel_initializer
            ),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(
                self.kernel_regularizer
            ),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(
                self.activity_regularizer
            ),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        }
        return {**base_config, **config}
