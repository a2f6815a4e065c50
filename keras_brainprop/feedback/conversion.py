"""apply(): gives a network's layers feedback weights under a rule."""

import random

import keras
import numpy as np

from keras_brainprop.feedback import rules as rules_lib
from keras_brainprop.feedback.feedback_layer import CONVERTIBLE
from keras_brainprop.feedback.feedback_layer import FeedbackLayer

# Weighted layers that pass the feedback on as backprop does: the weights
# of normalization layers and PReLU are a gain, an offset or a slope per
# unit (local to the unit: nothing to transport), and an Embedding reads
# integer indices, so no error goes below it.
_PASS_THROUGH = tuple(
    cls
    for cls in (
        keras.layers.BatchNormalization,
        keras.layers.LayerNormalization,
        keras.layers.GroupNormalization,
        getattr(keras.layers, "RMSNormalization", None),
        keras.layers.Normalization,
        keras.layers.PReLU,
        keras.layers.Embedding,
    )
    if cls is not None
)


def _nested_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model) and _is_graph_network(layer):
            yield from _nested_layers(layer)


def _network_of(model):
    """`model.network` of a BrainPropModel or BackpropModel, else `model`."""
    # Imported here: keras_brainprop.model imports this module.
    from keras_brainprop.backprop_model import BackpropModel
    from keras_brainprop.model import BrainPropModel

    if isinstance(model, (BrainPropModel, BackpropModel)):
        return model.network
    return model


def feedback_layers(network):
    """Returns the `FeedbackLayer`s of a network, nested models included.

    Args:
        network: a Sequential or functional `keras.Model`, or a
            `BrainPropModel` (its `network`'s layers).

    Returns:
        A list of `FeedbackLayer`, in the order of `network.layers`; empty
        for a network that `apply()` left unchanged.

    Example:

    >>> net = keras.Sequential(
    ...     [keras.Input((64,)), keras.layers.Dense(32), keras.layers.Dense(10)]
    ... )
    >>> net = feedback.apply(net, "feedback_alignment")
    >>> [tuple(layer.feedback_kernel.shape) for layer in feedback_layers(net)]
    [(64, 32), (32, 10)]
    """
    network = _network_of(network)
    if not _is_graph_network(network):
        return []
    return [
        layer
        for layer in _nested_layers(network)
        if isinstance(layer, FeedbackLayer)
    ]


def rule_of(network):
    """Returns the feedback rule a network trains under.

    Args:
        network: a `keras.Model`, or a `BrainPropModel` (the rule of its
            `network`, i.e. `model.feedback`).

    Returns:
        The rule of the network's `FeedbackLayer`s (the first one's), or
        `Symmetric()` for a network without feedback weights.

    Example:

    >>> net = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    >>> feedback.rule_of(feedback.apply(net, "sign_symmetry"))
    SignSymmetry()
    """
    layers = feedback_layers(network)
    return layers[0].rule if layers else rules_lib.Symmetric()


def _same_rule(rule, other):
    return type(rule) is type(other) and rule.get_config() == other.get_config()


def _is_graph_network(model):
    # Sequential and functional models know their layer graph; a subclassed
    # model's graph exists only in its call().
    if isinstance(model, keras.Sequential):
        return True
    try:
        return model.outputs is not None
    except AttributeError:
        return False


def _subclassed_error(model, rule):
    return ValueError(
        f"Feedback weights cannot be attached to the subclassed model "
        f"'{model.name}' ({type(model).__name__}): which layer feeds which is "
        f"known only to its call(), so the feedback path of {rule!r} cannot "
        "be laid along it. Build the network as a keras.Sequential or a "
        "functional keras.Model(inputs, outputs), or use "
        "feedback='symmetric' (backprop's feedback through the forward "
        f"weights). Received: a {type(model).__name__} model"
    )


def _layer_error(layer, rule):
    return ValueError(
        f"{rule!r} cannot send feedback through layer '{layer.name}' "
        f"({type(layer).__name__}). Feedback weights exist for the classes "
        "Dense, Conv1D, Conv2D, Conv3D and keras_brainprop."
        "LocallyConnected2D (not their subclasses); layers without weights, "
        "normalization layers, PReLU and Embedding pass the feedback on as "
        "backprop does. Replace the layer or use feedback='symmetric'. "
        f"Received: layer '{layer.name}' of class {type(layer).__name__}"
    )


def _converter(rule):
    seed = rule.base_seed()
    if seed is None:
        # keras.utils.set_random_seed() seeds Python's random module.
        seed = random.randint(0, 2**31 - 1)
    seeds = np.random.default_rng(seed)

    def convert(layer):
        if type(layer) in CONVERTIBLE:
            if getattr(layer, "quantization_mode", None) is not None:
                raise _layer_error(layer, rule)
            initializer = rule.feedback_initializer(
                layer, int(seeds.integers(0, 2**31 - 1))
            )
            return FeedbackLayer(layer, rule, feedback_initializer=initializer)
        if isinstance(layer, keras.Model):
            # Sequential and functional models are converted recursively;
            # this one is neither.
            if layer.weights:
                raise _subclassed_error(layer, rule)
            return layer
        if layer.weights and not isinstance(layer, _PASS_THROUGH):
            raise _layer_error(layer, rule)
        return layer

    return convert


def apply(network, rule=None):
    """Returns the network with its feedback sent through `rule`'s weights.

    Under `Symmetric` (the default) the network is returned as it is. Under
    any other rule, every `Dense`, `Conv1D`, `Conv2D`, `Conv3D` and
    `keras_brainprop.LocallyConnected2D` of the network (nested Sequential
    and functional models included) is wrapped in a `FeedbackLayer` with
    feedback weights `feedback_kernel` of its kernel's shape: the error
    then reaches the layer's input through the feedback weights, while the
    kernel's update stays presynaptic activity times the gated error at
    its output. Layers without weights (activations, pooling, dropout,
    flatten, reshape, add, ...), normalization layers (`BatchNormalization`,
    `LayerNormalization`, ...), `PReLU` and `Embedding` pass the feedback on
    as backprop does: their weights are per unit, or there is no layer
    below them. Any other weighted layer (e.g.
    `DepthwiseConv2D`, `Conv2DTranspose`, `LSTM`, `MultiHeadAttention`)
    raises a `ValueError` naming it.

    The result is a new model object built from the same layers: it shares
    every layer and weight with `network`, so training it trains
    `network`'s weights too, and `network` itself stays a plain Keras
    model. The result (e.g. after `keras.models.load_model`, when nothing is
    shared any more) gives the plain network back with `to_plain()`.
    A network that already trains under an equal rule (same class and
    config) is returned as it is; under another rule, conversion starts
    from its plain network (new feedback weights). Call `apply()` where the
    network's variables should live, e.g. inside a `tf.distribute` strategy
    scope (TensorFlow) or a `keras.distribution` scope (JAX). It uses Keras
    layers and `keras.ops` only and converts alike on every backend; the
    drawn feedback weights are the backend's draws (see
    `FeedbackAlignment`'s seed).

    A converted network saved on its own (`network.save(...)`) loads only
    where `keras_brainprop` has been imported: Keras imports no other
    package's classes itself. Save `to_plain(network)` for a file that
    plain Keras loads.

    Args:
        network: a built Sequential or functional `keras.Model` (not a
            `BrainPropModel`: re-wrap it with
            `keras_brainprop.wrap(model, feedback=rule)`).
        rule: a `keras_brainprop.feedback` rule, its name, or None for
            `Symmetric()`.

    Returns:
        The converted network (or `network` itself under `Symmetric`).

    Example:

    >>> net = keras.Sequential([
    ...     keras.Input((64,)),
    ...     keras.layers.Dense(32, activation="relu"),
    ...     keras.layers.Dense(10, use_bias=False),
    ... ])
    >>> converted = feedback.apply(net, feedback.KolenPollack(seed=1))
    >>> tuple(converted.layers[0].feedback_kernel.shape)
    (64, 32)
    >>> converted.layers[0].kernel is net.layers[0].kernel
    True
    """
    rule = rules_lib.get(rule)
    if not isinstance(network, keras.Model):
        raise ValueError(
            f"feedback.apply() takes a keras.Model. Received: {network!r}"
        )
    if _network_of(network) is not network:
        raise ValueError(
            "feedback.apply() converts a network and returns the converted "
            "network. To train a wrapped model under a feedback rule, "
            "re-wrap it: keras_brainprop.wrap(model, feedback=rule). "
            f"Received: the {type(network).__name__} '{network.name}'"
        )
    layers = feedback_layers(network)
    if layers and all(_same_rule(rule, layer.rule) for layer in layers):
        return network
    network = to_plain(network)
    if isinstance(rule, rules_lib.Symmetric):
        return network
    if not _is_graph_network(network):
        raise _subclassed_error(network, rule)
    if not network.built:
        raise ValueError(
            "feedback.apply() gives each layer feedback weights of its "
            "kernel's shape, so the network must be built: start a "
            "Sequential with keras.Input(shape) or call "
            f"network.build(input_shape). Received: the unbuilt network "
            f"'{network.name}'"
        )
    return keras.models.clone_model(
        network, clone_function=_converter(rule), recursive=True
    )


def to_plain(network):
    """Returns the network without feedback weights (the inverse of apply).

    Every `FeedbackLayer` is replaced by the layer it wraps; all layers and
    weights are shared with `network`, so the result holds the trained
    forward weights and computes the same outputs, with backprop's
    feedback. Use it to get the trained plain Keras network of a model
    trained with a feedback rule, e.g. after loading it from a file.

    Args:
        network: a `keras.Model`, converted by `apply()` or not, or a
            `BrainPropModel` (then its `network`'s plain network).

    Returns:
        The plain network; `network` itself if it has no feedback weights.

    Example:

    ```python
    model = keras.models.load_model("brainprop_kp.keras")
    plain = feedback.to_plain(model.network)
    plain.save("trained.keras")  # A plain Keras model.
    ```
    """
    network = _network_of(network)
    if not feedback_layers(network):
        return network

    def unwrap(layer):
        return layer.layer if isinstance(layer, FeedbackLayer) else layer

    return keras.models.clone_model(
        network, clone_function=unwrap, recursive=True
    )
