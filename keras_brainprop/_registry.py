"""A table of classes by name: feedback rules and policies register here."""

import json
import re
import warnings

import keras

# Registered names become command-line values and parts of folder names.
_NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")


def _json_friendly(value):
    """Returns `value` if JSON can write it, else its repr.

    A function in a config (a schedule given as a callable of the step)
    stands as its name: Keras serializes a lambda with its bytecode, which
    holds the file it was defined in and differs between Python versions.
    """
    if isinstance(value, dict):
        if value.get("class_name") == "__lambda__":
            return "<lambda>"
        return {key: _json_friendly(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_friendly(item) for item in value]
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _config(obj):
    """`obj.get_config()`, or None if it cannot be serialized (e.g. a
    schedule that is a callable object without `get_config`)."""
    with warnings.catch_warnings():
        # Keras warns that a lambda is unsafe to load: nothing loads here.
        warnings.simplefilter("ignore")
        try:
            return obj.get_config()
        # OSError: Keras reads a lambda's source for its warning.
        except (TypeError, ValueError, NotImplementedError, OSError):
            return None


class Registry:
    """Classes of one kind (a base class) by their registered names.

    Args:
        base: the base class every registered class derives from.
        kind: what the classes are, for messages, e.g. "feedback rule".
        package: the Keras serialization package given to registered
            classes that Keras does not know yet.
        reserved: names that are refused (they mean something else).
    """

    def __init__(self, base, kind, package, reserved=()):
        self.base = base
        self.kind = kind
        self.package = package
        self.reserved = tuple(reserved)
        self._classes = {}

    def register(self, name, cls):
        """Registers `cls` under `name` and returns it."""
        if not isinstance(cls, type) or not issubclass(cls, self.base):
            raise TypeError(
                f"Only subclasses of {self.base.__module__}."
                f"{self.base.__qualname__} can be registered as a "
                f"{self.kind}. Received: {cls!r}"
            )
        if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
            raise ValueError(
                f"A {self.kind} name must be a lower-case identifier (letters, "
                f"digits and underscores, starting with a letter), e.g. "
                f"'my_rule'. Received: name={name!r}"
            )
        if name in self.reserved:
            raise ValueError(
                f"The name {name!r} is reserved. Received: name={name!r}"
            )
        taken = self._classes.get(name)
        if taken is not None and not _same_definition(taken, cls):
            raise ValueError(
                f"The {self.kind} name {name!r} is already registered for "
                f"{_qualified(taken)}. Choose another name. Received: "
                f"{_qualified(cls)}"
            )
        other = self._name_of(cls)
        if other is not None and other != name:
            raise ValueError(
                f"{_qualified(cls)} is already registered as {other!r}; a "
                f"class has one name. Received: name={name!r}"
            )
        if not _keras_knows(cls):
            keras.saving.register_keras_serializable(
                package=self.package, name=name
            )(cls)
        self._classes[name] = cls
        return cls

    def decorator(self, name):
        """Returns a class decorator that registers under `name`."""
        return lambda cls: self.register(name, cls)

    def names(self):
        return tuple(self._classes)

    def lookup(self, key):
        """Returns the class of a registered or class name, or None."""
        key = key.lower()
        if key in self._classes:
            return self._classes[key]
        for cls in self._classes.values():
            if key == cls.__name__.lower():
                return cls
        return None

    def resolve(self, identifier):
        """Returns the object of an instance of `base`, a registered or
        class name (the class with its default arguments) or a Keras
        config; None for anything else."""
        if isinstance(identifier, self.base):
            return identifier
        if isinstance(identifier, str):
            cls = self.lookup(identifier)
            return None if cls is None else cls()
        if isinstance(identifier, dict):
            obj = keras.saving.deserialize_keras_object(identifier)
            return obj if isinstance(obj, self.base) else None
        return None

    def _name_of(self, cls):
        for name, registered in self._classes.items():
            if registered is cls:
                return name
        return None

    def name_of(self, obj):
        """Returns the registered name of `obj`'s class, or raises."""
        name = self._name_of(type(obj))
        if name is None:
            raise ValueError(
                f"{_qualified(type(obj))} is not a registered {self.kind}, so "
                "it has no name. Register it with the decorator "
                f"`@{self.package}.register('some_name')`. Received: {obj!r}"
            )
        return name

    def label_of(self, obj):
        """The registered name of `obj`'s class, else the class's name:
        for folder names and summaries, which name unregistered classes
        too."""
        return self._name_of(type(obj)) or type(obj).__name__

    def parameters(self, obj):
        """Returns the config entries of `obj` that differ from defaults;
        `{}` if its config cannot be serialized."""
        config = _config(obj)
        if config is None:
            return {}
        try:
            default = _config(type(obj)()) or {}
        except TypeError:  # Arguments without defaults: none to compare.
            default = {}
        return {
            key: _json_friendly(value)
            for key, value in config.items()
            if key not in default or default[key] != value
        }

    def quoted_names(self):
        """The registered names for messages: "'a', 'b'"."""
        return ", ".join(repr(name) for name in self._classes)


def _qualified(cls):
    return f"{cls.__module__}.{cls.__qualname__}"


def _same_definition(cls, other):
    # A class defined again by the same code (a notebook cell run twice, a
    # module reloaded) replaces its former self.
    return cls is other or (_qualified(cls) == _qualified(other))


def _keras_knows(cls):
    registered = keras.saving.get_registered_name(cls)
    return keras.saving.get_registered_object(registered) is cls
