"""What a resumed run must share with the run that wrote its backup, the
first place where two configurations differ, and the check that refuses a
backup of another configuration."""

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


def check_configuration(manifest, current, backup_dir):
    """Refuses a backup that another configuration wrote.

    `manifest` is the backup's, `current` this run's `configuration_of`:
    a difference raises a `ValueError` that names the first one.
    """
    saved = manifest.get("configuration")
    # Backups recorded no backend while TensorFlow was the only one.
    saved_backend = (saved or {}).get("backend", "tensorflow")
    if saved_backend != current["backend"]:
        raise ValueError(
            f"The backup in {backup_dir} was written under Keras' "
            f"{saved_backend} backend, and this process runs "
            f"{current['backend']} (KERAS_BACKEND). It resumes exactly "
            "only under the backend that wrote it: the backends draw "
            "other random numbers from the same seeds (exploration, "
            "dropout) and round differently. Run with "
            f"KERAS_BACKEND={saved_backend} to resume it, or use a new "
            "backup_dir for a new run (a model saved with model.save() "
            f"loads under any backend). Received: backend="
            f"{saved_backend!r} in the backup, {current['backend']!r} "
            "here"
        )
    if saved is None:
        return  # Written before backups recorded their configuration.
    for key in ("feedback", "policy", "reward", "network"):
        if key not in saved or key not in current:
            continue
        if saved[key] == current[key]:
            continue
        if key == "network":
            path, theirs, ours = first_difference(saved[key], current[key])
            difference = f"network{path}={theirs!r} while this model has "
            difference += repr(ours)
        else:
            difference = (
                f"{key}={saved[key]} while this model uses {current[key]}"
            )
        raise ValueError(
            f"The backup in {backup_dir} was made by a different "
            "model configuration: resuming it would continue another "
            "run with this model. Use a new backup_dir for a new run. "
            f"Received: a backup written with {difference}"
        )
