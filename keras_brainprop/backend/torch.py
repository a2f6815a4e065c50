"""The PyTorch pieces of BrainProp (see `keras_brainprop.backend`)."""

import keras
import numpy as np
import torch
from keras.src.backend.torch.core import get_device

from keras_brainprop._errors import InvalidInputError
from keras_brainprop.backend._self_running_checks import after  # noqa: F401
from keras_brainprop.backend._self_running_checks import with_checks  # noqa: F401

# PyTorch has no stateless random ops: a seed, an int64 tensor `[2]`, seeds
# a `torch.Generator` for each draw. Keras runs PyTorch steps eagerly, so
# reading the seed on the host costs one small copy per draw.


def _ints(seed):
    return [int(s) for s in torch.as_tensor(seed).reshape([-1]).tolist()]


def _seed(*entropy):
    # NumPy's SeedSequence mixes the words into well-spread new seeds.
    words = [e % 2**32 for e in entropy]
    state = np.random.SeedSequence(words).generate_state(2)
    return torch.as_tensor(state.astype("int64"))


def _generator(seed):
    generator = torch.Generator(device=get_device())
    first, second = _ints(seed)
    generator.manual_seed((first << 32 | second) & 0x7FFFFFFFFFFFFFFF)
    return generator


def fold_in(seed, data):
    """Returns a new seed from `seed` and the int `data`."""
    return _seed(*_ints(seed), int(data))


def split(seed, num):
    """Returns `num` independent seeds derived from `seed`."""
    return [_seed(*_ints(seed), 2**31 + i) for i in range(num)]


def categorical(logits, seed):
    """Draws one action per row of `logits` `[batch, actions]`, int32."""
    logits = torch.as_tensor(logits, dtype=torch.float32)
    probabilities = torch.softmax(logits, dim=-1)
    # A row without a distribution (NaN Q-values) draws action 0.
    valid = torch.isfinite(probabilities).all(-1, keepdim=True)
    probabilities = torch.where(
        valid, probabilities, torch.ones_like(probabilities)
    )
    draws = torch.multinomial(probabilities, 1, generator=_generator(seed))
    return draws[:, 0].to(torch.int32)


def uniform(shape, seed):
    """Uniform float32 draws in [0, 1)."""
    return torch.rand(
        tuple(shape), generator=_generator(seed), device=get_device()
    )


def uniform_int(shape, maxval, seed):
    """Uniform int32 draws in [0, maxval)."""
    return torch.randint(
        0,
        int(maxval),
        tuple(shape),
        generator=_generator(seed),
        device=get_device(),
        dtype=torch.int32,
    )


def assert_all(valid, message, value):
    """Fails unless `valid` is all true, naming the first offending `value`.

    PyTorch runs the step eagerly: raises `InvalidInputError` at once,
    before anything that uses the checked tensor. The message ends with
    "Received: <value>". Returns no ops.
    """
    valid = torch.as_tensor(valid).reshape([-1])
    if bool(valid.all()):
        return []
    value = torch.as_tensor(value).reshape([-1])
    index = int(torch.argmin(valid.to(torch.int32))) if value.numel() > 1 else 0
    raise InvalidInputError(f"{message} {value[index].detach().cpu().numpy()}")


def check_finite(value, message):
    """Fails with `message` if `value` holds NaN or Inf; as `assert_all`."""
    if not bool(torch.isfinite(torch.as_tensor(value)).all()):
        raise InvalidInputError(message)
    return []


def clear_errors(function):
    """Returns `function`: failed checks raise their own error eagerly."""
    return function


class _LinearWithFeedback(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, op, learns_feedback):
        ctx.save_for_backward(x, w, b)
        ctx.op = op
        ctx.learns_feedback = learns_feedback
        return op(x, w)

    @staticmethod
    def backward(ctx, upstream):
        x, w, b = ctx.saved_tensors
        with torch.enable_grad():
            x_ = x.detach().requires_grad_(True)
            w_ = w.detach().requires_grad_(True)
            (grad_x,) = torch.autograd.grad(
                ctx.op(x_, b.detach()), x_, upstream
            )
            (grad_w,) = torch.autograd.grad(
                ctx.op(x.detach(), w_), w_, upstream
            )
        grad_b = grad_w if ctx.learns_feedback else None
        return grad_x, grad_w, grad_b, None, None


def linear_with_feedback(op, inputs, kernel, feedback, learns_feedback):
    """`op(inputs, kernel)` whose error reaches `inputs` through `feedback`.

    `torch.autograd.Function`: the backward pass takes `op`'s
    vector-Jacobian products with `torch.autograd.grad`, in `inputs` with
    `feedback` in place of the kernel and in the kernel as backprop does.
    """
    return _LinearWithFeedback.apply(
        inputs, kernel, feedback, op, learns_feedback
    )


def gradients(model, x, scalar_fn, wrt_inputs=False):
    """Gradients of `scalar_fn(model(x))` in the trainable variables.

    Returns the list of gradients (None for an unused variable), and with
    `wrt_inputs` also the gradient in `x` (of the same structure), as
    `(gradients, input_gradient)`.
    """
    x = keras.tree.map_structure(
        lambda v: torch.as_tensor(v, device=get_device()).detach(), x
    )
    inputs = keras.tree.flatten(x)
    for tensor in inputs:
        tensor.requires_grad_(wrt_inputs)
    variables = [v.value for v in model.trainable_variables]
    value = scalar_fn(model(x, training=False))
    sources = variables + (inputs if wrt_inputs else [])
    grads = list(torch.autograd.grad(value, sources, allow_unused=True))
    if wrt_inputs:
        return grads[: len(variables)], keras.tree.pack_sequence_as(
            x, grads[len(variables) :]
        )
    return grads


class Trainer:
    """The model-side pieces of a training step under PyTorch.

    Keras runs PyTorch on one device, eagerly: the step counter is read
    from the optimizer, and there are no replicas.
    """

    # The batch's checks run inside the step (see `after`).
    checks_in_step = True

    def _training_step(self):
        """The number of updates so far."""
        return self.optimizer.iterations.value

    def _replica(self):
        return 0

    def _per_replica(self, loss):
        return loss

    def _step_counter_after(self, loss):
        pass
