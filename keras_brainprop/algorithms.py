"""Training algorithms as objects: BrainProp and its backprop baseline.

An algorithm knows the output layer its network needs, how to turn a
network into the model to `fit`, how to compile that model and which
callbacks log it. Code that trains "with BrainProp or with backprop" asks
the algorithm object instead of comparing names, and `get` is the one place
that turns a name (a command-line flag, a result file) into such an object.

Example:

```python
from keras_brainprop import algorithms, architectures

algorithm = algorithms.get("brainprop")  # or algorithms.Backprop()
net = architectures.build(
    "mlp", (8, 8, 1), 10, output_activation=algorithm.output_activation
)
model = algorithm.wrap(net)
algorithm.compile(model, learning_rate=0.1)
model.fit(train, validation_data=validation,
          callbacks=algorithm.callbacks(log_dir="/tmp/logs"))
```
"""

import dataclasses
from typing import ClassVar

import keras
import tensorflow as tf

from keras_brainprop import feedback as feedback_lib
from keras_brainprop import settings
from keras_brainprop.backprop_model import BackpropModel
from keras_brainprop.callbacks import BrainPropMonitor
from keras_brainprop.model import wrap

__all__ = ["ALIASES", "NAMES", "Backprop", "BrainProp", "feedback_name", "get"]

NAMES = ("brainprop", "backprop")
"""The names `get` takes."""
ALIASES = {"ebp": "backprop"}
"""Former names `get` still accepts: result files and flags of earlier
versions call backprop "ebp"."""


def feedback_name(algorithm):
    """Returns the name of an algorithm's feedback rule, e.g. "symmetric".

    The rule's registered name (`keras_brainprop.feedback.name`), or the
    class name of a rule whose class is not registered; "symmetric" for an
    algorithm without a rule.

    Example:

    >>> feedback_name(Backprop(feedback="kolen_pollack"))
    'kolen_pollack'
    """
    return feedback_lib.registry._label(getattr(algorithm, "feedback", None))


def _in_strategy_scope():
    # Only TensorFlow has strategies; on JAX a plain model trains under
    # `keras.distribution` as it is, and PyTorch trains on one device.
    return keras.backend.backend() == "tensorflow" and (
        tf.distribute.has_strategy()
    )


def _compile(model, learning_rate, metrics, setting=settings.PAPER, **kwargs):
    # The paper's optimizer for both, SGD without momentum, unless a
    # BrainProp setting chooses another.
    rate = setting.learning_rate if learning_rate is None else learning_rate
    settings.check_learning_rate(rate)
    model.compile(
        optimizer=setting.make_optimizer(rate),
        metrics=None if metrics is None else list(metrics),
        **kwargs,
    )


@dataclasses.dataclass(frozen=True, eq=False)
class BrainProp:
    """Learning from reward with BrainProp (`keras_brainprop.wrap`).

    The network ends in linear Q-values, one per class; the model to fit is
    a `BrainPropModel` that chooses an action per sample and learns from
    its reward alone, without a loss.

    Args:
        policy: Action selection (`keras_brainprop.policies`); None for the
            paper's `EpsilonBoltzmann(epsilon=0.02)`.
        reward: Reward function (`keras_brainprop.rewards`); None for 1 if
            the choice is right, else 0.
        seed: Seed of the exploration; None for Keras' global seed
            (`experiment.run` uses each run's seed then).
        feedback: The feedback rule (`keras_brainprop.feedback`) or its
            name; None for `Symmetric()`, the feedback of backprop.
        setting: "paper" (or None; the paper's policy and SGD at 0.1),
            "recommended" (chosen for the network: see
            `keras_brainprop.settings`) or a `settings.Setting`. It gives
            the policy unless `policy` is set, and the optimizer and the
            learning rate unless `compile` is given one.

    Example:

    >>> from keras_brainprop import architectures, policies
    >>> net = architectures.build("mlp", (8, 8, 1), 10)
    >>> algorithm = BrainProp(policy=policies.Greedy())
    >>> model = algorithm.wrap(net)
    >>> algorithm.compile(model, learning_rate=0.1)
    >>> recommended = BrainProp(setting="recommended")
    >>> model = recommended.wrap(net)
    >>> recommended.compile(model)  # The setting's optimizer and rate.
    """

    name: ClassVar[str] = "brainprop"
    output_activation: ClassVar[str | None] = None

    policy: object = None
    reward: object = None
    seed: int | None = None
    feedback: object = None
    setting: object = None

    def __post_init__(self):
        settings.get(self.setting)  # Refuses an unknown setting now.

    def resolve(self, network):
        """The `settings.Setting` this algorithm trains `network` with.

        The setting's, with `policy` in place of its policy when set.
        """
        setting = settings.get(self.setting, network)
        if self.policy is not None:
            setting = dataclasses.replace(setting, policy=self.policy)
        return setting

    def learning_rate(self, network):
        """The initial learning rate `compile` uses without one."""
        return self.resolve(network).learning_rate

    def wrap(self, network):
        """Returns the `BrainPropModel` that trains `network` from reward."""
        return wrap(
            network,
            policy=self.resolve(network).policy,
            reward=self.reward,
            seed=self.seed,
            feedback=self.feedback,
        )

    def compile(
        self, model, learning_rate=None, metrics=("accuracy",), **kwargs
    ):
        """Compiles `model` with the setting's optimizer and no loss.

        Args:
            model: The model from `wrap`.
            learning_rate: The learning rate (finite, > 0) or a schedule;
                None for the setting's (the paper's: SGD at 0.1).
            metrics: Metrics of the greedy choice, e.g. "accuracy".
            **kwargs: Other arguments of `keras.Model.compile`, e.g.
                `jit_compile`.
        """
        setting = self.resolve(getattr(model, "network", model))
        _compile(model, learning_rate, metrics, setting, **kwargs)

    def callbacks(self, log_dir=None, probe_data=None):
        """TensorBoard's and BrainProp's own logs (`BrainPropMonitor`).

        Args:
            log_dir: The logs' directory; None for no callbacks.
            probe_data: Samples the monitor follows, e.g. validation data.

        Returns:
            A list of callbacks for `fit`.
        """
        if log_dir is None:
            return []
        return [
            keras.callbacks.TensorBoard(log_dir=log_dir),
            BrainPropMonitor(log_dir, probe_data=probe_data),
        ]


@dataclasses.dataclass(frozen=True, eq=False)
class Backprop:
    """The paper's baseline: error backpropagation of the cross-entropy.

    The network ends in a softmax and is trained on the labels with Keras'
    own training step, on every backend: the network itself, or under a
    `tf.distribute` strategy (TensorFlow) a `BackpropModel` around it
    (Keras 3.15 cannot train a plain model there). With a feedback rule
    other than `Symmetric` the network is first converted by
    `keras_brainprop.feedback.apply`, so the error reaches the lower layers
    through feedback weights (supervised feedback alignment, sign symmetry
    or Kolen-Pollack).

    Args:
        feedback: The feedback rule or its name; None for `Symmetric()`.
        setting: None for the paper's SGD at 0.1, or a `settings.Setting`
            without a policy, to train the baseline with another optimizer
            (e.g. Adam, as a reference for a BrainProp setting that uses
            it).

    Example:

    >>> from keras_brainprop import architectures
    >>> net = architectures.build(
    ...     "mlp", (8, 8, 1), 10, output_activation="softmax"
    ... )
    >>> algorithm = Backprop()
    >>> model = algorithm.wrap(net)
    >>> model is net  # The network itself outside a strategy.
    True
    >>> algorithm.compile(model, learning_rate=0.1)
    """

    name: ClassVar[str] = "backprop"
    output_activation: ClassVar[str | None] = "softmax"

    feedback: object = None
    setting: object = None

    def __post_init__(self):
        self.resolve(None)  # Refuses a bad setting now.

    def resolve(self, network):
        """The `settings.Setting` (optimizer and rate) backprop trains with."""
        del network  # The same for every network.
        if isinstance(self.setting, str) and self.setting.lower() != "paper":
            raise ValueError(
                "Named settings other than the paper's are BrainProp's; "
                "backprop keeps the paper's protocol unless given a "
                f"settings.Setting. Received: setting={self.setting!r}"
            )
        setting = settings.get(self.setting)
        if setting.policy is not None:
            raise ValueError(
                "Backprop has no policy: its setting must not name one. "
                f"Received: setting={self.setting!r}"
            )
        return setting

    def learning_rate(self, network):
        """The initial learning rate `compile` uses without one (0.1)."""
        return self.resolve(network).learning_rate

    def wrap(self, network):
        """Returns `network`, or a `BackpropModel` under a strategy."""
        network = feedback_lib.apply(network, feedback_lib.get(self.feedback))
        if _in_strategy_scope():
            return BackpropModel(network)
        return network

    def compile(
        self, model, learning_rate=None, metrics=("accuracy",), **kwargs
    ):
        """Compiles `model` with SGD(`learning_rate`) and the cross-entropy.

        Args:
            model: The model from `wrap`.
            learning_rate: The learning rate (finite, > 0) or a schedule;
                None for the setting's (the paper's 0.1).
            metrics: Metrics to compile, e.g. "accuracy".
            **kwargs: Other arguments of `keras.Model.compile`; `loss`
                replaces the sparse categorical cross-entropy.
        """
        kwargs.setdefault("loss", "sparse_categorical_crossentropy")
        setting = self.resolve(model)
        _compile(model, learning_rate, metrics, setting, **kwargs)

    def callbacks(self, log_dir=None, probe_data=None):
        """TensorBoard's logs (`probe_data` is not used).

        Returns:
            `[keras.callbacks.TensorBoard(log_dir)]`, or `[]` without
            `log_dir`.
        """
        del probe_data  # Backprop has no choices to probe.
        if log_dir is None:
            return []
        return [keras.callbacks.TensorBoard(log_dir=log_dir)]


_CLASSES = {"brainprop": BrainProp, "backprop": Backprop}
_API = ("name", "output_activation", "wrap", "compile", "callbacks")


def get(identifier, run_seed=None, **options):
    """Returns the algorithm object of a name or object, with `options` set.

    It is the one place that builds the algorithm of a run
    (`experiment.run` calls it with its `feedback`, `policy` and seed).

    Args:
        identifier: A name of `NAMES` (case-insensitive), a former name of
            `ALIASES` ("ebp" is backprop), or an algorithm object (with
            `name`, `output_activation`, `wrap`, `compile` and
            `callbacks`).
        run_seed: The seed of a run: an algorithm whose `seed` is None
            (an unseeded `BrainProp`) takes it, so that a seed names one
            run. An algorithm with a seed of its own, or without one,
            keeps its own.
        **options: Fields of the algorithm to set, e.g.
            `feedback="kolen_pollack"`, `policy=...` or, for BrainProp,
            `setting="recommended"`. An option that is None keeps the
            algorithm's own; `policy` is ignored by an algorithm without
            one (backprop).

    Returns:
        `BrainProp(**options)`, `Backprop(**options)`, or `identifier`
        itself when nothing changes, else a copy of it with the options
        set.

    Raises:
        ValueError: For an unknown name or another kind of object.

    Example:

    >>> get("ebp").name
    'backprop'
    >>> get("backprop", feedback="sign_symmetry").feedback
    'sign_symmetry'
    >>> get("brainprop", setting="recommended").setting
    'recommended'
    >>> get("backprop", policy="discovery")  # Backprop has no policy.
    Backprop(feedback=None, setting=None)
    >>> get("brainprop", run_seed=3).seed
    3
    >>> get(BrainProp(seed=5), run_seed=3).seed  # Keeps its own.
    5
    """
    algorithm = _algorithm(identifier)
    options = {
        key: value
        for key, value in options.items()
        if value is not None and (key != "policy" or hasattr(algorithm, key))
    }
    if options:
        algorithm = dataclasses.replace(algorithm, **options)
    if run_seed is not None and _unseeded(algorithm):
        algorithm = dataclasses.replace(algorithm, seed=run_seed)
    return algorithm


def _unseeded(algorithm):
    return dataclasses.is_dataclass(algorithm) and (
        getattr(algorithm, "seed", 0) is None
    )


def _algorithm(identifier):
    """The algorithm of a name (with default fields), or the object."""
    if isinstance(identifier, str):
        name = ALIASES.get(identifier.lower(), identifier.lower())
        if name in _CLASSES:
            return _CLASSES[name]()
    elif all(hasattr(identifier, attribute) for attribute in _API):
        return identifier
    names = ", ".join(repr(name) for name in NAMES)
    aliases = ", ".join(repr(alias) for alias in ALIASES)
    raise ValueError(
        f"Unknown algorithm. Expected one of {names} (or the former names "
        f"{aliases}), or an algorithm object such as "
        "keras_brainprop.algorithms.BrainProp(). "
        f"Received: algorithm={identifier!r}"
    )
