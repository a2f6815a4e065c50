"""Feedback rules by name: the `FeedbackRule` base class and its registry.

The built-in rules (`rules.py`) register here, as a user's rules do; `get`,
`name`, `names` and `parameters` look them up.
"""

from keras_brainprop._registry import Registry

# The rule of `get(None)`, looked up by name: the built-in rules import
# this module to register.
_DEFAULT = "symmetric"


class FeedbackRule:
    """Base class of the feedback rules.

    With backprop, and with BrainProp as published, the error of the chosen
    output unit travels down through the transposed forward weights `W`.
    A feedback rule replaces them, layer by layer, by feedback weights `B`
    of the same shape: the error reaching a layer's input is `B^T` times
    the gated error at its output, while the update of `W` itself stays
    presynaptic activity times that gated error. `feedback.apply()` gives a
    network's layers feedback weights under a rule.

    A rule answers four questions for a converted layer (a
    `feedback.FeedbackLayer`): does it store feedback weights
    (`make_feedback_kernel`), what are they at this step
    (`feedback_kernel`), do they learn (`learns_feedback`: then they get the
    same gradient as the kernel), and which extra losses does the layer add
    (`losses`). A new rule subclasses `FeedbackRule`, overrides what it
    changes, returns its `__init__` arguments from `get_config()`, and is
    named with the decorator `register("my_rule")`.
    """

    learns_feedback = False

    def base_seed(self):
        """The seed the layers' feedback seeds derive from, or None."""
        return None

    def feedback_initializer(self, layer, seed):
        """Returns the initializer of `layer`'s feedback weights, or None."""
        return None

    def make_feedback_kernel(self, feedback_layer):
        """Creates the stored feedback weights of a layer, or returns None."""
        return None

    def feedback_kernel(self, feedback_layer):
        """Returns the feedback weights `B` the layer uses at this step."""
        return feedback_layer.feedback_weights

    def losses(self, feedback_layer):
        """Returns the scalar losses the layer adds at each call."""
        return []

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(
            f"{k}={v!r}" for k, v in self.get_config().items()
        )
        return f"{type(self).__name__}({arguments})"


_REGISTRY = Registry(FeedbackRule, "feedback rule", "keras_brainprop.feedback")


def register(name):
    """Registers a feedback rule class under a name: a class decorator.

    A registered rule is known by its name everywhere a rule is named:
    `kbp.wrap(model, feedback=name)`, `feedback.apply`, `get`, the
    command line's `--feedback`, and saved results (`name(rule)`). A class
    that Keras cannot serialize yet is registered with
    `keras.saving.register_keras_serializable` (package
    "keras_brainprop.feedback", the same name), so models converted with it
    save to `.keras` files and load back wherever the code that registers
    it has been imported. Its `get_config()` must return the arguments of
    its `__init__`; `get(name)` calls the class without arguments.

    Args:
        name: a lower-case identifier (letters, digits, underscores), e.g.
            "my_rule". Taking a name registered for another class raises a
            `ValueError` (a class defined again by the same code, such as a
            notebook cell run twice, replaces its former self).

    Returns:
        A decorator that registers a `FeedbackRule` subclass (else it
        raises a `TypeError`) and returns the class unchanged.

    Example:

    >>> import keras_brainprop as kbp
    >>> @kbp.feedback.register("halved_symmetric")
    ... class HalvedSymmetric(kbp.feedback.FeedbackRule):
    ...     def make_feedback_kernel(self, feedback_layer):
    ...         return None
    ...     def feedback_kernel(self, feedback_layer):
    ...         return 0.5 * feedback_layer.kernel
    >>> kbp.feedback.get("halved_symmetric")
    HalvedSymmetric()
    >>> kbp.feedback.name(HalvedSymmetric())
    'halved_symmetric'
    """

    return _REGISTRY.decorator(name)


def names():
    """Returns the names of all registered rules, the built-in ones first.

    Example:

    >>> import keras_brainprop as kbp
    >>> kbp.feedback.names()[:4]
    ('symmetric', 'feedback_alignment', 'sign_symmetry', 'kolen_pollack')
    """
    return _REGISTRY.names()


def name(rule):
    """Returns the registered name of a rule's class.

    `get(name(rule))` is a rule of the same class, with its default
    arguments (`parameters(rule)` gives the arguments that differ).

    Args:
        rule: a rule, or anything `get` accepts.

    Returns:
        The name under which the rule's class was registered (`register`);
        a `ValueError` for a class that is not registered (subclasses of a
        registered class are not registered with it).

    Example:

    >>> import keras_brainprop as kbp
    >>> kbp.feedback.name(kbp.feedback.KolenPollack(decay=0.01))
    'kolen_pollack'
    >>> kbp.feedback.name(None)
    'symmetric'
    """
    return _REGISTRY.name_of(get(rule))


def _label(rule):
    """`name(rule)`, or the class name of a rule whose class is not
    registered: for folder names and summaries."""
    return _REGISTRY.label_of(get(rule))


def parameters(rule):
    """Returns a rule's arguments that differ from its class's defaults.

    Args:
        rule: a rule, or anything `get` accepts.

    Returns:
        A dict of the entries of `rule.get_config()` whose values differ
        from those of the class called without arguments (all of them if
        it needs arguments), `{}` for a rule with its default arguments.
        Values JSON cannot write are given as their `repr`.

    Example:

    >>> import keras_brainprop as kbp
    >>> kbp.feedback.parameters(kbp.feedback.KolenPollack(decay=0.01))
    {'decay': 0.01}
    >>> kbp.feedback.parameters("kolen_pollack")
    {}
    """
    return _REGISTRY.parameters(get(rule))


def get(identifier):
    """Returns a feedback rule from an instance, a name, a config or None.

    Args:
        identifier: a `FeedbackRule` (returned as it is); a registered name
            (`names()`: "symmetric", "feedback_alignment", "sign_symmetry",
            "kolen_pollack" and the rules registered with `register`) or
            the name of a registered class, in any case, which gives the
            class with its default arguments; a config dict
            (`keras.saving.serialize_keras_object(rule)`); or None for
            `Symmetric()`.

    Returns:
        A `FeedbackRule`. Anything else raises a `ValueError`.

    Example:

    >>> import keras_brainprop as kbp
    >>> kbp.feedback.get("kolen_pollack")
    KolenPollack(decay=0.001, initializer=None, seed=None)
    >>> kbp.feedback.get("SignSymmetry")
    SignSymmetry()
    """
    rule = _REGISTRY.resolve(_DEFAULT if identifier is None else identifier)
    if rule is not None:
        return rule
    raise ValueError(
        "`feedback` must be a keras_brainprop.feedback rule, one of "
        f"{_REGISTRY.quoted_names()} (registered names), a rule config or "
        f"None. Received: feedback={identifier!r}"
    )
