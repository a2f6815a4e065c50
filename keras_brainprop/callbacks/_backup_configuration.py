"""What a resumed run must share with the run that wrote its backup, and
the first place where two configurations differ."""

import json
import re

import keras

from keras_brainprop.feedback.conversion import rule_of


def _describe(obj):
    # Without memory addresses, which differ between processes.
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))


def _architecture(config):
    """The network config as JSON types, without what a backup overrides.

    Keras numbers the names it gives layers ("dense_3" when built twice in
    one process), and initializers and their seeds only decide starting
    values, which the backup replaces: none of them tells two runs apart.
    """
    if isinstance(config, dict):
        return {
            key: _architecture(value)
            for key, value in config.items()
            if key != "seed" and not key.endswith("initializer")
        }
    if isinstance(config, (list, tuple)):
        return [_architecture(value) for value in config]
    if isinstance(config, str):
        return re.sub(r"_\d+$", "", config)
    return config


def configuration_of(model):
    """What a resumed run must share with the run that wrote the backup.

    The Keras backend, the feedback rule, the policy and the reward (of a
    `BrainPropModel`) as their reprs, and the network's architecture (None
    when its config cannot be read, e.g. a subclassed network).
    """
    network = getattr(model, "network", model)
    configuration = {
        "backend": keras.backend.backend(),
        "feedback": _describe(rule_of(network)),
    }
    for name in ("policy", "reward"):
        if hasattr(model, name):
            configuration[name] = _describe(getattr(model, name))
    try:
        config = network.get_config()
    except (NotImplementedError, TypeError, ValueError, AttributeError):
        config = None
    configuration["network"] = _architecture(
        json.loads(json.dumps(config, default=_describe))
    )
    return configuration


def first_difference(saved, current, path=""):
    """Returns `(path, saved part, current part)` where the two differ."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in sorted(set(saved) | set(current), key=str):
            if saved.get(key) != current.get(key):
                return first_difference(
                    saved.get(key), current.get(key), f"{path}.{key}"
                )
    if (
        isinstance(saved, list)
        and isinstance(current, list)
        and len(saved) == len(current)
    ):
        for index, (a, b) in enumerate(zip(saved, current)):
            if a != b:
                return first_difference(a, b, f"{path}[{index}]")
    return path, saved, current
