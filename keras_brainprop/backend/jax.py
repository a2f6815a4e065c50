"""The JAX pieces of BrainProp (see `keras_brainprop.backend`)."""

import jax
import jax.numpy as jnp
import keras
import numpy as np

from keras_brainprop._errors import InvalidInputError
from keras_brainprop._errors import failed_check
from keras_brainprop.backend._self_running_checks import after  # noqa: F401
from keras_brainprop.backend._self_running_checks import with_checks  # noqa: F401

# Seeds are raw uint32 keys `[2]` (as Keras' own JAX random ops use), drawn
# with `jax.random`: the same seed draws the same under `jit` or not, and
# a sharded batch (`keras.distribution.DataParallel`) draws as one device.


def _key(seed):
    return jnp.asarray(seed).astype("uint32")


def fold_in(seed, data):
    """Returns a new seed from `seed` and the int `data`."""
    return jax.random.fold_in(_key(seed), jnp.asarray(data, "uint32"))


def split(seed, num):
    """Returns `num` independent seeds derived from `seed`."""
    return list(jax.random.split(_key(seed), num))


def categorical(logits, seed):
    """Draws one action per row of `logits` `[batch, actions]`, int32."""
    draws = jax.random.categorical(_key(seed), logits, axis=-1)
    return jnp.clip(draws, 0, logits.shape[-1] - 1).astype("int32")


def uniform(shape, seed):
    """Uniform float32 draws in [0, 1)."""
    return jax.random.uniform(_key(seed), tuple(shape), "float32")


def uniform_int(shape, maxval, seed):
    """Uniform int32 draws in [0, maxval)."""
    return jax.random.randint(_key(seed), tuple(shape), 0, maxval, "int32")


def _raise_unless_valid(valid, value, message):
    valid = np.reshape(np.asarray(valid), [-1])
    if valid.all():
        return
    value = np.reshape(np.asarray(value), [-1])
    received = value[np.argmin(valid)] if value.size > 1 else value[0]
    raise InvalidInputError(f"{message} {received}")


def assert_all(valid, message, value):
    """Fails unless `valid` is all true, naming the first offending `value`.

    Eagerly, raises `InvalidInputError` at once. Inside a compiled step a
    host callback raises it, which fails the whole step: JAX steps are
    pure functions, so none of the step's updates (weights, optimizer and
    batch-norm state) is kept. The message ends with "Received: <value>".
    Returns no ops: JAX orders the callback itself.
    """
    if isinstance(valid, jax.core.Tracer) or isinstance(value, jax.core.Tracer):
        jax.debug.callback(
            lambda v, x: _raise_unless_valid(v, x, message), valid, value
        )
    else:
        _raise_unless_valid(valid, value, message)
    return []


def _raise_unless_finite(value, message):
    if not np.isfinite(np.asarray(value)).all():
        raise InvalidInputError(message)


def check_finite(value, message):
    """Fails with `message` if `value` holds NaN or Inf; as `assert_all`."""
    if isinstance(value, jax.core.Tracer):
        jax.debug.callback(lambda v: _raise_unless_finite(v, message), value)
    else:
        _raise_unless_finite(value, message)
    return []


def clear_errors(function):
    """Returns `function` raising a failed check as `InvalidInputError`.

    A check that fails inside a compiled step surfaces as JAX's runtime
    error holding the callback's traceback; the new error's message is the
    check's own, with JAX's error as its cause.
    """

    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except jax.errors.JaxRuntimeError as error:
            message = failed_check(str(error))
            if message is None:
                raise
            raise InvalidInputError(message) from error

    return run


def linear_with_feedback(op, inputs, kernel, feedback, learns_feedback):
    """`op(inputs, kernel)` whose error reaches `inputs` through `feedback`.

    `jax.custom_vjp`: the backward pass takes `op`'s vector-Jacobian
    products with `jax.vjp`, in `inputs` with `feedback` in place of the
    kernel and in the kernel as backprop does. `op` is linear in both
    arguments: under `jit` the forward values of those products are
    dropped.
    """

    @jax.custom_vjp
    def forward(x, w, b):
        return op(x, w)

    def forward_with_residuals(x, w, b):
        return op(x, w), (x, w, b)

    def backward(residuals, upstream):
        x, w, b = residuals
        _, vjp_x = jax.vjp(lambda x_: op(x_, b), x)
        _, vjp_w = jax.vjp(lambda w_: op(x, w_), w)
        (grad_x,) = vjp_x(upstream)
        (grad_w,) = vjp_w(upstream)
        grad_b = grad_w if learns_feedback else jnp.zeros_like(b)
        return grad_x, grad_w, grad_b

    forward.defvjp(forward_with_residuals, backward)
    return forward(inputs, kernel, feedback)


def gradients(model, x, scalar_fn, wrt_inputs=False):
    """Gradients of `scalar_fn(model(x))` in the trainable variables.

    Returns the list of gradients, and with `wrt_inputs` also the gradient
    in `x` (of the same structure), as `(gradients, input_gradient)`. JAX
    differentiates functions of arrays, so the network runs statelessly on
    its variables' values.
    """
    x = keras.tree.map_structure(jnp.asarray, x)
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def value(trainable, x):
        outputs, _ = model.stateless_call(
            trainable, non_trainable, x, training=False
        )
        return scalar_fn(outputs)

    grads, input_grad = jax.grad(value, argnums=(0, 1))(trainable, x)
    if wrt_inputs:
        return list(grads), input_grad
    return list(grads)


_TRAIN_STATE = (
    "trainable_variables",
    "non_trainable_variables",
    "optimizer_variables",
    "metrics_variables",
)
_TEST_STATE = (
    "trainable_variables",
    "non_trainable_variables",
    "metrics_variables",
)


def _restore(model, state, names):
    model._jax_state = dict(zip(names, state))
    model._jax_state_synced = False
    model.jax_state_sync()


class Trainer:
    """The model-side pieces of a training step under JAX.

    Keras' JAX trainer keeps the optimizer's variables out of the model's
    state while it differentiates the loss, so the loss cannot read the
    step counter from `optimizer.iterations` (it would be a constant of
    the compiled step); `compute_loss_and_updates` receives the optimizer's
    state and hands the counter to the loss. A `DataParallel` distribution
    shards one global batch: one replica, one draw for the whole batch.
    """

    _step_counter = None

    # Checks run on the host, before each compiled step: a check that fails
    # inside one (a host callback raising) fails the whole step, and Keras
    # 3.15.1's JAX `fit()` and `evaluate()` have by then handed the step
    # their state to reuse (donated) and detached the variables from their
    # values (attached again by `jax_state_sync` when they end, which
    # `evaluate()` skips on an error). So a failed check attaches the state
    # of the step it stops: the model keeps every earlier update.
    checks_in_step = False
    _host_checks = None

    def make_train_function(self, force=False):
        self._host_checks = _TRAIN_STATE
        try:
            return super().make_train_function(force)
        finally:
            self._host_checks = None

    def make_test_function(self, force=False):
        self._host_checks = _TEST_STATE
        try:
            return super().make_test_function(force)
        finally:
            self._host_checks = None

    def _make_function(self, step_function, concatenate_outputs=False):
        # Keras' private hook around its compiled step (no public one).
        names = self._host_checks
        if names is None:  # predict(): nothing to check.
            return super()._make_function(step_function, concatenate_outputs)
        # A reward function's output can only be checked in the step: keep
        # a copy of the state the compiled step is handed (one copy of the
        # weights per step, with a reward function only).
        copy_state = self._checks_rewards_in_step()

        def checked_step(state, data):
            try:
                self._check_batch(data)
            except Exception:
                _restore(self, state, names)
                raise
            kept = jax.tree.map(jnp.copy, state) if copy_state else None
            try:
                return step_function(state, data)
            except Exception:
                if kept is not None:
                    _restore(self, kept, names)
                raise

        return super()._make_function(checked_step, concatenate_outputs)

    def compute_loss_and_updates(self, *args, optimizer_variables=None, **kw):
        if optimizer_variables is not None:
            index = next(
                i
                for i, v in enumerate(self.optimizer.variables)
                if v is self.optimizer.iterations
            )
            self._step_counter = optimizer_variables[index]
        try:
            return super().compute_loss_and_updates(
                *args, optimizer_variables=optimizer_variables, **kw
            )
        finally:
            self._step_counter = None

    def _training_step(self):
        """The number of updates so far, a scalar."""
        if self._step_counter is not None:
            return self._step_counter
        return self.optimizer.iterations.value

    def _replica(self):
        return 0

    def _per_replica(self, loss):
        return loss

    def _step_counter_after(self, loss):
        pass
