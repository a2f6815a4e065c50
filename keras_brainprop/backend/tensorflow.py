"""The TensorFlow pieces of BrainProp (see `keras_brainprop.backend`)."""

import tensorflow as tf

from keras_brainprop._errors import InvalidInputError
from keras_brainprop._errors import failed_check

# Seeds are int32 tensors `[2]`, drawn with TensorFlow's stateless random
# ops: a seed gives the same draws in eager and graph mode, other ones
# under XLA.


def fold_in(seed, data):
    """Returns a new seed from `seed` and the int `data`."""
    return tf.random.experimental.stateless_fold_in(
        tf.cast(seed, "int32"), tf.cast(data, "int32")
    )


def split(seed, num):
    """Returns `num` independent seeds derived from `seed`."""
    return tf.unstack(
        tf.random.experimental.stateless_split(tf.cast(seed, "int32"), num)
    )


def categorical(logits, seed):
    """Draws one action per row of `logits` `[batch, actions]`, int32."""
    draws = tf.random.stateless_categorical(logits, 1, seed, dtype="int32")
    # Non-finite logits make the op return `actions`: stay in range.
    return tf.minimum(draws[:, 0], tf.shape(logits)[1] - 1)


def uniform(shape, seed):
    """Uniform float32 draws in [0, 1)."""
    return tf.random.stateless_uniform(shape, seed)


def uniform_int(shape, maxval, seed):
    """Uniform int32 draws in [0, maxval)."""
    return tf.random.stateless_uniform(
        shape, seed, minval=0, maxval=maxval, dtype="int32"
    )


def assert_all(valid, message, value):
    """Fails unless `valid` is all true, naming the first offending `value`.

    Raises `InvalidInputError` at once in eager mode; in graph mode returns
    the assertion ops, for `with_checks` or `after`. The message ends with
    "Received: <value>". XLA (`jit_compile=True`) compiles assertions away.
    """
    valid = tf.reshape(valid, [-1])
    value = tf.reshape(value, [-1])
    # The first offending entry (argmax finds the first True), picked with
    # fixed shapes so that this also compiles under XLA and never indexes
    # out of range.
    first_bad = tf.argmax(tf.cast(tf.logical_not(valid), "int32"))
    picked = tf.equal(tf.range(tf.size(value, out_type=tf.int64)), first_bad)
    received = tf.reduce_sum(tf.where(picked, value, tf.zeros_like(value)))
    if tf.executing_eagerly():
        if not bool(tf.reduce_all(valid)):
            raise InvalidInputError(f"{message} {received.numpy()}")
        return []
    return [tf.debugging.Assert(tf.reduce_all(valid), [message, received])]


def with_checks(checks, structure):
    """Returns `structure`'s tensors, computed only once `checks` pass."""
    if not checks:
        return structure
    with tf.control_dependencies(checks):
        return tf.nest.map_structure(
            lambda v: tf.identity(v) if isinstance(v, tf.Tensor) else v,
            structure,
        )


def after(checks):
    """A context in which every op waits for `checks` to pass.

    Around Keras' train step, nothing of the step (the forward pass,
    batch-norm statistics, the update, the optimizer's step counter) runs
    before the checks.
    """
    return tf.control_dependencies(checks)


def clear_errors(function):
    """Returns `function` raising a failed check as `InvalidInputError`.

    A check that fails inside a traced step surfaces as a
    `tf.errors.InvalidArgumentError` whose message opens with TensorFlow's
    trace; the new error's message is the check's own, with TensorFlow's
    error as its cause.
    """

    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except InvalidInputError:
            raise
        except tf.errors.InvalidArgumentError as error:
            message = failed_check(error.message)
            if message is None:
                raise
            raise InvalidInputError(message) from error

    return run


def linear_with_feedback(op, inputs, kernel, feedback, learns_feedback):
    """`op(inputs, kernel)` whose error reaches `inputs` through `feedback`.

    `tf.custom_gradient`: the backward pass takes the vector-Jacobian
    products of `op` with a gradient tape. `op` is linear in both
    arguments, so neither product needs the forward value of its own `op`
    call: graph and XLA compilation drop those calls.
    """

    @tf.custom_gradient
    def forward(x, w, b):
        def backward(upstream):
            with tf.GradientTape() as tape:
                tape.watch([x, w])
                via_feedback = op(x, b)
                via_kernel = op(tf.stop_gradient(x), w)
            grad_x, grad_w = tape.gradient(
                [via_feedback, via_kernel],
                [x, w],
                output_gradients=[upstream, upstream],
            )
            return grad_x, grad_w, grad_w if learns_feedback else None

        # Only the backward pass reads `b`: without this dependency a graph
        # may compute it after the optimizer has updated the weights it
        # comes from (KolenPollack's, SignSymmetry's kernel).
        with tf.control_dependencies([b]):
            outputs = op(x, w)
        return outputs, backward

    return forward(inputs, kernel, feedback)


def gradients(model, x, scalar_fn, wrt_inputs=False):
    """Gradients of `scalar_fn(model(x))` in the trainable variables.

    Returns the list of gradients (None for an unused variable), and with
    `wrt_inputs` also the gradient in `x` (of the same structure), as
    `(gradients, input_gradient)`.
    """
    x = tf.nest.map_structure(tf.convert_to_tensor, x)
    inputs = tf.nest.flatten(x)
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        if wrt_inputs:
            tape.watch(inputs)
        value = scalar_fn(model(x, training=False))
    grads = tape.gradient(value, variables + (inputs if wrt_inputs else []))
    if wrt_inputs:
        return grads[: len(variables)], tf.nest.pack_sequence_as(
            x, grads[len(variables) :]
        )
    return grads


class Trainer:
    """The model-side pieces of a training step under TensorFlow.

    Mixed into `BrainPropModel` before Keras' `Model`. Under
    `tf.distribute` each replica runs the step on its share of the batch
    and TensorFlow sums the replicas' gradients: the step's loss is divided
    by the number of replicas, and each replica draws from its own seed.
    """

    # The batch's checks run inside the step (see `after`).
    checks_in_step = True

    def _training_step(self):
        """The number of updates so far, a scalar tensor."""
        return self.optimizer.iterations

    def _replica(self):
        """The replica running this step (0 outside `tf.distribute`)."""
        context = tf.distribute.get_replica_context()
        return 0 if context is None else context.replica_id_in_sync_group

    def _per_replica(self, loss):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return loss / replicas

    def _step_counter_after(self, loss):
        # TensorFlow orders the ops of one variable as written, but not an
        # assertion before them: a read of the step counter that waits for
        # the loss (and so for the reward checks) keeps the optimizer from
        # counting a step whose checks fail.
        if self.optimizer is not None and not tf.executing_eagerly():
            with tf.control_dependencies([loss]):
                tf.identity(self.optimizer.iterations.value)


def check_finite(value, message):
    """Fails with `message` if `value` holds NaN or Inf; as `assert_all`."""
    finite = tf.reduce_all(tf.math.is_finite(value))
    if tf.executing_eagerly():
        if not bool(finite):
            raise InvalidInputError(message)
        return []
    return [tf.debugging.Assert(finite, [message])]
