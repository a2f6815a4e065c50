"""The name of a run: the folder of its outputs and of its TensorBoard logs.

Two runs of `run` share a folder only if nothing that can differ between
them does: the dataset, the network, the algorithm, its feedback rule,
policy and setting, their parameters and the Keras backend. The name is

    <dataset>_<architecture>_<algorithm>[_<rule>][_<policy>][_<setting>]
        [_<parameters>][_<backend>]

where each bracketed part is left out when it is the default: the rule
when "symmetric", the policy when the paper's ("paper", and always for
backprop, which has none), the setting when "paper", the backend when
"tensorflow". `<parameters>` is a short hash of the rule's and the policy's
parameters that differ from their classes' defaults
(`keras_brainprop.feedback.parameters`, `keras_brainprop.policies.
parameters`): the first 8 hexadecimal digits of the SHA-256 of the JSON,
keys sorted and without spaces, of `{"feedback": ..., "policy": ...}` (the
non-empty ones), the same on every machine. Runs with default parameters
keep the names of earlier versions, so their folders are found again.
"""

import dataclasses
import hashlib
import json

import keras

from keras_brainprop import algorithms
from keras_brainprop import architectures
from keras_brainprop import datasets
from keras_brainprop import feedback as feedback_lib
from keras_brainprop import policies
from keras_brainprop import settings

# The hexadecimal digits of the parameters' hash in a name.
_HASH_DIGITS = 8


@dataclasses.dataclass(frozen=True)
class Description:
    """What names a run, and what its `Result` records of its algorithm.

    Attributes:
        dataset: Dataset name.
        architecture: Network name.
        algorithm: The algorithm's name, "brainprop" or "backprop".
        feedback: The name of the feedback rule (`feedback.name`).
        policy: The name of the policy (`policies.name`): the algorithm's,
            or its setting's if it sets none; None for an algorithm without
            a policy (backprop).
        setting: The name of the algorithm's setting ("paper" by default),
            with characters a folder name cannot hold replaced by "_";
            None for an algorithm without settings.
        feedback_parameters: The rule's parameters that differ from its
            class's defaults (`feedback.parameters`).
        policy_parameters: The same of the policy; `{}` without one.
        backend: The Keras backend.
        learning_rate: The initial learning rate of the algorithm's
            setting, or None if it sets none (then the protocol's).
    """

    dataset: str
    architecture: str
    algorithm: str
    feedback: str
    policy: str | None
    setting: str | None
    feedback_parameters: dict
    policy_parameters: dict
    backend: str
    learning_rate: float | None

    @property
    def name(self):
        """The run's folder name (see the module docstring)."""
        parts = [self.dataset, self.architecture, self.algorithm]
        if self.feedback != "symmetric":
            parts.append(self.feedback)
        if self.policy not in (None, "paper"):
            parts.append(self.policy)
        if self.setting not in (None, "paper"):
            parts.append(self.setting)
        if self.feedback_parameters or self.policy_parameters:
            parts.append(self.parameters_hash)
        if self.backend != "tensorflow":
            parts.append(self.backend)
        return "_".join(parts)

    @property
    def parameters_hash(self):
        """8 hexadecimal digits that stand for the rule's and policy's
        parameters."""
        parameters = {
            key: value
            for key, value in (
                ("feedback", self.feedback_parameters),
                ("policy", self.policy_parameters),
            )
            if value
        }
        text = json.dumps(parameters, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:_HASH_DIGITS]

    def result_fields(self):
        """The fields of `Result` that describe the run."""
        keys = (
            "dataset",
            "architecture",
            "algorithm",
            "feedback",
            "policy",
            "setting",
            "feedback_parameters",
            "policy_parameters",
            "backend",
        )
        return {key: getattr(self, key) for key in keys}


def _safe(text):
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


def _trained_setting(algorithm, dataset, architecture):
    """The `settings.Setting` an algorithm with an explicit setting trains
    the network with, or None (then the paper's protocol)."""
    if getattr(algorithm, "setting", None) is None:
        return None
    spec = datasets.info(dataset)
    network = architectures.build(
        architecture,
        spec.input_shape,
        spec.num_classes,
        output_activation=algorithm.output_activation,
    )
    return algorithm.resolve(network)


def describe(dataset, architecture, algorithm, backend=None):
    """Describes a run of an algorithm object (`algorithms.get`'s).

    Args:
        dataset: A name in `keras_brainprop.datasets.NAMES`.
        architecture: A name in `architectures.ARCHITECTURES`.
        algorithm: The algorithm object of the run.
        backend: The Keras backend; None for this process's.

    Returns:
        A `Description`.

    Raises:
        ValueError: For an unknown policy or feedback rule name.
    """
    # Algorithm objects of users may have no rule, policy or setting.
    setting = _trained_setting(algorithm, dataset, architecture)
    has_policy = hasattr(algorithm, "policy")
    policy = getattr(algorithm, "policy", None)
    if setting is not None:
        policy = setting.policy
    setting_name = None
    if hasattr(algorithm, "setting"):
        setting_name = _safe(settings.get(algorithm.setting).name)
    rule = getattr(algorithm, "feedback", None)
    return Description(
        dataset=dataset,
        architecture=architecture,
        algorithm=algorithm.name,
        # Unregistered classes are named by their class names.
        feedback=feedback_lib.registry._label(rule),
        policy=policies._label(policy) if has_policy else None,
        setting=setting_name,
        feedback_parameters=feedback_lib.parameters(rule),
        policy_parameters=policies.parameters(policy) if has_policy else {},
        backend=backend or keras.backend.backend(),
        learning_rate=None if setting is None else setting.learning_rate,
    )


def run_name(
    dataset,
    architecture,
    algorithm="brainprop",
    *,
    feedback=None,
    policy=None,
    backend=None,
):
    """Returns the folder name of a run of `run` with these arguments.

    `run` writes into `<output_dir>/<run_name(...)>/` and logs into
    `<logdir>/<run_name(...)>/seed_<seed>/`; the name holds everything
    that can differ between two runs of one network (see
    `keras_brainprop.experiment.naming`).

    Args:
        dataset: A name in `keras_brainprop.datasets.NAMES`.
        architecture: A name in `architectures.ARCHITECTURES`.
        algorithm: A name or object for `keras_brainprop.algorithms.get`,
            as for `run`.
        feedback: The `feedback` of `run`: a rule or its name, or None for
            the algorithm's own.
        policy: The `policy` of `run`: a policy or its name, or None for
            the algorithm's own.
        backend: A Keras backend, "tensorflow", "jax" or "torch"; None for
            this process's (`keras.backend.backend()`).

    Returns:
        The name, a string.

    Raises:
        ValueError: For unknown names, or a rule or policy that has none.

    Example:

    >>> run_name("digits", "mlp", "backprop", backend="tensorflow")
    'digits_mlp_backprop'
    >>> run_name("digits", "mlp", policy="discovery", backend="jax")
    'digits_mlp_brainprop_discovery_jax'
    >>> from keras_brainprop import policies
    >>> bonus = policies.Discovery(bonus=0.5)
    >>> run_name("digits", "mlp", policy=bonus, backend="tensorflow")
    'digits_mlp_brainprop_discovery_b9a3c29b'
    """
    algorithm = algorithms.get(algorithm, feedback=feedback, policy=policy)
    return describe(dataset, architecture, algorithm, backend).name
