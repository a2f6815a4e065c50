"""Feedback rules: which weights carry the error back down the network."""

import math
import numbers

import keras
import numpy as np
from keras import initializers
from keras import ops

from keras_brainprop.feedback.registry import FeedbackRule

# `get` too: conversion.py and feedback_layer.py call `rules.get`.
from keras_brainprop.feedback.registry import get  # noqa: F401
from keras_brainprop.feedback.registry import names
from keras_brainprop.feedback.registry import register

# Initializers that give every feedback weight the same value.
_CONSTANT_INITIALIZERS = (
    initializers.Zeros,
    initializers.Ones,
    initializers.Constant,
)


@register("symmetric")
@keras.saving.register_keras_serializable(package="keras_brainprop")
class Symmetric(FeedbackRule):
    """Feedback through the forward weights themselves (`B = W`).

    The default: the network is used as it is, so the update is exactly
    backprop of the chosen unit's `0.5 * delta**2`, at no extra cost. It
    assumes that every feedback synapse equals its forward synapse ("weight
    transport").

    Example:

    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> kbp.feedback.apply(net, kbp.feedback.Symmetric()) is net
    True
    """


def _check_seed(seed):
    """Returns `seed` as a Python int (None stays None), or raises."""
    if seed is None:
        return None
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        if seed >= 0:
            return int(seed)
    raise ValueError(
        f"`seed` must be a non-negative int or None. Received: seed={seed!r}"
    )


def _check_decay(decay):
    """Returns `decay` as a Python float, or raises."""
    if isinstance(decay, numbers.Real) and not isinstance(decay, bool):
        # str() gives the shortest decimal of the scalar's own precision,
        # so np.float32(1e-3) is stored as 0.001.
        number = float(str(decay)) if isinstance(decay, np.floating) else decay
        if math.isfinite(number) and number >= 0:
            return float(number)
    raise ValueError(
        "`decay` must be a finite non-negative number. Received: "
        f"decay={decay!r}"
    )


def _unseeded_kernel_initializer_error(rule, layer):
    name = type(rule).__name__
    initializer = layer.kernel_initializer
    return ValueError(
        f"{name} draws each layer's feedback weights from its kernel "
        "initializer with a seed of their own, but the kernel initializer "
        f"of layer '{layer.name}' ({type(layer).__name__}) is a callable "
        "that takes no seed, so the draw could be neither seeded nor told "
        f"apart from the kernel's. Pass `initializer=`, e.g. {name}("
        "initializer='glorot_uniform'), or use a keras.initializers "
        f"initializer in the layer. Received: kernel_initializer="
        f"{getattr(initializer, '__name__', initializer)!r}"
    )


class _RandomFeedback(FeedbackRule):
    """A rule whose stored feedback weights start from a random draw."""

    def __init__(self, initializer=None, seed=None):
        self.initializer = (
            None if initializer is None else initializers.get(initializer)
        )
        self.seed = _check_seed(seed)

    def base_seed(self):
        # `seed` if given, else the seed of a seeded initializer.
        if self.seed is not None or not isinstance(
            self.initializer, initializers.Initializer
        ):
            return self.seed
        seed = self.initializer.get_config().get("seed")
        return seed if isinstance(seed, int) else None

    def feedback_initializer(self, layer, seed):
        initializer = self.initializer
        if initializer is None:
            initializer = layer.kernel_initializer
        if not isinstance(initializer, initializers.Initializer):
            if self.initializer is None:
                raise _unseeded_kernel_initializer_error(self, layer)
            return initializer  # The user's own callable, used as it is.
        config = initializers.serialize(initializer)
        if "seed" in config.get("config", {}):
            # Each layer draws its own weights, reproducibly.
            config["config"]["seed"] = int(seed)
        elif self.initializer is None:
            raise ValueError(
                f"{type(self).__name__} draws random feedback weights from "
                "the layer's kernel initializer, but the one of layer "
                f"'{layer.name}' ({type(layer).__name__}) is not random. "
                f"Pass `initializer=`, e.g. {type(self).__name__}("
                "initializer='glorot_uniform'). Received: kernel_initializer="
                f"{config.get('class_name', config)}"
            )
        return initializers.deserialize(config)

    def get_config(self):
        initializer = self.initializer
        if initializer is not None:
            initializer = initializers.serialize(initializer)
        return {"initializer": initializer, "seed": self.seed}


@register("feedback_alignment")
@keras.saving.register_keras_serializable(package="keras_brainprop")
class FeedbackAlignment(_RandomFeedback):
    """Fixed random feedback weights (feedback alignment).

    Each converted layer draws its feedback weights `B` once, with the
    kernel's shape, and never changes them. By default they come from the
    layer's own kernel initializer (with a seed of their own), so they have
    the scale of the layer's initial forward weights. The forward weights
    learn to align with `B` (Lillicrap et al. 2016).

    Args:
        initializer: initializer of the feedback weights, or None for each
            layer's own `kernel_initializer`. A random Keras initializer
            gets a different seed in each layer, derived from `seed`, or
            from the initializer's own seed if `seed` is None; a Python
            callable is used as it is. A constant initializer ("zeros",
            "ones", `Constant`) is refused: the hidden layers would never
            learn.
        seed: non-negative int (a NumPy integer too) from which every
            layer's feedback seed derives, or None to derive it from the
            initializer's seed, or else from Python's global random state
            (which `keras.utils.set_random_seed()` sets). A seed draws the
            same feedback weights every time on one Keras backend. Keras'
            initializers draw with each backend's own generator, so on
            another backend the same seed draws other weights of the same
            distribution, as it does for the forward kernels; a saved
            model (`.keras`) carries both to every backend.

    Example:

    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> rule = kbp.feedback.FeedbackAlignment(seed=1)
    >>> net = kbp.feedback.apply(net, rule)
    >>> net.layers[0].feedback_kernel.trainable
    False

    Reference:
        Lillicrap, Cownden, Tweed, Akerman, "Random synaptic feedback weights
        support error backpropagation for deep learning", Nature
        Communications 7, 13276 (2016).
    """

    def __init__(self, initializer=None, seed=None):
        super().__init__(initializer=initializer, seed=seed)
        if isinstance(self.initializer, _CONSTANT_INITIALIZERS):
            raise ValueError(
                "FeedbackAlignment never changes its feedback weights, so "
                "with constant ones the hidden layers would never learn: "
                "zeros send no error down, and any other constant sends "
                "every unit of a layer the same error. Use a random "
                "initializer, or None for each layer's own. Received: "
                f"initializer={initializer!r}"
            )

    def make_feedback_kernel(self, feedback_layer):
        return feedback_layer.add_weight(
            name="feedback_kernel",
            shape=feedback_layer.kernel.shape,
            initializer=feedback_layer.feedback_initializer,
            trainable=False,
        )


@register("sign_symmetry")
@keras.saving.register_keras_serializable(package="keras_brainprop")
class SignSymmetry(FeedbackRule):
    """Feedback weights with the forward weights' signs, one magnitude each.

    `B = sign(W) * rms(W)`: every feedback synapse has the sign of its
    forward synapse and all of a layer's feedback synapses have the same
    magnitude (Liao, Leibo & Poggio 2016; BioTorch's "uSF"). The magnitude
    is the root mean square of the layer's current forward weights, which
    makes `B` exactly as large as `W` (equal Frobenius norms): the error
    travels down at the scale backprop would give it, whatever the
    initialization or the growth of the weights, and only the pattern of
    magnitudes is lost. `B` is recomputed from `W` at every step and is not
    stored; a converted layer's `feedback_kernel` returns it.

    Example:

    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> net = kbp.feedback.apply(net, "sign_symmetry")
    >>> kbp.feedback.rule_of(net)
    SignSymmetry()

    Reference:
        Liao, Leibo, Poggio, "How important is weight symmetry in
        backpropagation?", AAAI 2016.
    """

    def feedback_kernel(self, feedback_layer):
        kernel = ops.convert_to_tensor(feedback_layer.kernel)
        magnitude = ops.sqrt(ops.mean(ops.square(kernel)))
        return ops.stop_gradient(ops.sign(kernel) * magnitude)


@register("kolen_pollack")
@keras.saving.register_keras_serializable(package="keras_brainprop")
class KolenPollack(_RandomFeedback):
    """Feedback weights that learn like the forward weights (Kolen-Pollack).

    The feedback weights `B` start random, as with `FeedbackAlignment`, and
    receive the same update as the forward weights `W` (the tag times the
    reward-prediction error), and both decay: each converted layer adds
    `0.5 * decay * (sum(W**2) + sum(B**2))` to the loss. With plain SGD at
    learning rate `lr`, one step then changes `W - B` into exactly
    `(1 - lr * decay) * (W - B)`, so `B` converges to `W` whatever the
    data. It is what the BrainProp authors describe for the brain
    (feedback synapses receive the same updates as the forward ones), with
    the decay that makes the two meet.

    If the kernel has a regularizer or a constraint, the feedback weights
    get the same ones, so that both still receive the same update (an L2
    factor `l2` makes the contraction `1 - lr * (decay + 2 * l2)`). With
    momentum or adaptive optimizers `B` still follows `W`, but the
    contraction is no longer that exact factor. Freezing a layer
    (`layer.trainable = False`, also after conversion) freezes its
    feedback weights and its decay with it.

    Args:
        decay: weight decay of forward and feedback weights, a finite
            non-negative number (a NumPy scalar too). The default
            1e-3 shrinks `W - B` by 1e-4 per step at the paper's learning
            rate 0.1 (a factor 1/e every 10,000 steps, e.g. about 20 epochs
            of Fashion-MNIST at batch size 128), which as an L2 penalty is
            the paper's own 5e-4 of its deep network: mild enough to leave
            the forward learning as it is.
        initializer: initializer of the feedback weights, or None for each
            layer's own `kernel_initializer` (see `FeedbackAlignment`).
        seed: non-negative int seed of the feedback weights' draw, or None
            (see `FeedbackAlignment`, also for other backends' draws).

    Example:

    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> rule = kbp.feedback.KolenPollack(decay=1e-3, seed=1)
    >>> net = kbp.feedback.apply(net, rule)
    >>> net.layers[0].feedback_kernel.trainable
    True

    Reference:
        - Kolen, Pollack, "Backpropagation without weight transport", IEEE
          International Conference on Neural Networks (1994).
        - Akrout, Wilson, Humphreys, Lillicrap, Tweed, "Deep learning
          without weight transport", NeurIPS 2019.
    """

    learns_feedback = True

    def __init__(self, decay=1e-3, initializer=None, seed=None):
        super().__init__(initializer=initializer, seed=seed)
        self.decay = _check_decay(decay)

    def make_feedback_kernel(self, feedback_layer):
        layer = feedback_layer.layer
        return feedback_layer.add_weight(
            name="feedback_kernel",
            shape=feedback_layer.kernel.shape,
            initializer=feedback_layer.feedback_initializer,
            regularizer=layer.kernel_regularizer,
            constraint=layer.kernel_constraint,
            trainable=True,
        )

    def losses(self, feedback_layer):
        # A frozen layer's weights do not change: as Keras drops the
        # regularization of frozen weights, it adds no decay.
        if not self.decay or not feedback_layer.layer.trainable:
            return []
        # Float32 variables (the layer does not autocast): the decay is
        # exact under mixed precision too.
        kernel = ops.convert_to_tensor(feedback_layer.kernel)
        feedback = ops.convert_to_tensor(feedback_layer.feedback_weights)
        squares = ops.sum(ops.square(kernel)) + ops.sum(ops.square(feedback))
        return [0.5 * self.decay * squares]

    def get_config(self):
        return {"decay": self.decay, **super().get_config()}


NAMES = names()
"""The built-in rules' names; `names()` also lists the rules registered
later."""
