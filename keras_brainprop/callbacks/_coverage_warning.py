"""A private callback of `BrainPropModel.fit()`: warns when some actions
stay never-greedy, with advice that fits the model's policy and optimizer.

`greedy_coverage` below 1 in the first epochs is normal: the README's demo
(`python -m keras_brainprop`, BrainProp on the digits at the paper's
setting) ends its first 9 epochs below 1 (0.6 to 0.9) and then learns every
class. So `fit()` warns only when it stays below 1 for
`LOW_COVERAGE_EPOCHS` epochs in a row, or when the last epoch of `fit()`
ends below 1: once per `fit()`, with a
`keras_brainprop.metrics.LowCoverageWarning`, which
`warnings.simplefilter("ignore", kbp.metrics.LowCoverageWarning)` silences.
"""

import math
import numbers
import warnings

import keras

from keras_brainprop import policies
from keras_brainprop.metrics import LowCoverageWarning

# Consecutive epochs ending with greedy_coverage < 1 before fit() warns.
LOW_COVERAGE_EPOCHS = 10

_RECOMMENDED = (
    'kbp.algorithms.get("brainprop", setting="recommended"); '
    "--setting=recommended for python -m keras_brainprop and the examples"
)


class CoverageWarning(keras.callbacks.Callback):
    """Warns once per fit() when `greedy_coverage` stays below 1.

    It warns at the end of the `LOW_COVERAGE_EPOCHS`-th epoch in a row
    that ends below 1, or, if that never happens, at the end of `fit()`
    when its last epoch ended below 1. The advice reads the model's policy
    and optimizer when it warns (`coverage_advice`).

    Args:
        coverage: The model's `GreedyCoverage` metric. Validation resets
            the metrics before the epoch ends, so the actions are read
            when it begins.
    """

    def __init__(self, coverage):
        super().__init__()
        self.coverage = coverage
        self.warned = False
        self._below = 0  # Epochs in a row that ended below 1.
        self._last = None  # (epoch, coverage, never-greedy actions).
        self._never_greedy = None

    def on_train_begin(self, logs=None):
        self.warned = False
        self._below = 0
        self._last = None

    def on_epoch_begin(self, epoch, logs=None):
        self._never_greedy = None

    def on_test_begin(self, logs=None):
        # In fit(), validation runs after the epoch's last training step.
        if not self.warned and self._never_greedy is None:
            self._never_greedy = self.coverage.never_greedy()

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.coverage.name)
        if self.warned or value is None:
            return
        if value >= 1.0:
            self._below, self._last = 0, None
            return
        never_greedy = self._never_greedy
        if never_greedy is None:
            never_greedy = self.coverage.never_greedy()
        self._below += 1
        self._last = (epoch, value, never_greedy)
        if self._below >= LOW_COVERAGE_EPOCHS:
            self._warn(
                f"Epoch {epoch + 1} ended with greedy_coverage={value:.4g}, "
                f"below 1 for {LOW_COVERAGE_EPOCHS} epochs in a row"
            )

    def on_train_end(self, logs=None):
        if not self.warned and self._last is not None:
            epoch, value, _ = self._last
            self._warn(
                f"Epoch {epoch + 1}, the last of this fit(), ended with "
                f"greedy_coverage={value:.4g}"
            )

    def _warn(self, what):
        self.warned = True
        _, _, never_greedy = self._last
        warnings.warn(
            f"{what}: action(s) {never_greedy} of "
            f"{self.coverage.num_actions} were never the greedy choice "
            "(largest Q-value) for a training sample. Their output units "
            "learn only when exploration picks them, so their classes may "
            "be learned late or never. "
            f"{coverage_advice(self.model.policy, self.model.optimizer)} "
            "This warning is shown at most once per fit().",
            LowCoverageWarning,
            stacklevel=3,
        )


def coverage_advice(policy, optimizer):
    """What to try when actions stay never-greedy, for this policy and
    optimizer: the recommended setting (`kbp.settings`, Discovery with Adam
    at 0.001) unless the model has it, else more epochs or a larger bonus.

    Args:
        policy: The model's `keras_brainprop.policies.Policy`.
        optimizer: The model's compiled optimizer, or None.

    Returns:
        One or two sentences of advice.
    """
    trains = _describe_optimizer(optimizer)
    if not isinstance(policy, policies.Discovery):
        return (
            f"The model explores with {type(policy).__name__} and trains "
            f"with {trains}. Try the recommended setting, Discovery "
            f"exploration with Adam at 0.001 ({_RECOMMENDED}), more "
            "exploration (e.g. policies.EpsilonBoltzmann(epsilon=0.1)) or "
            "more epochs."
        )
    discovery = (
        f"Discovery(bonus={_describe_value(policy.bonus)}, "
        f"min_share={policy.min_share:g})"
    )
    larger = "a larger bonus"
    if isinstance(policy.bonus, numbers.Real) and policy.bonus > 0:
        larger += f" (e.g. policies.Discovery(bonus={2 * policy.bonus:g}))"
    if not _is_recommended_optimizer(optimizer):
        return (
            f"The model already explores with {discovery} and trains with "
            f"{trains}. Try Discovery with Adam at 0.001, the recommended "
            f"setting ({_RECOMMENDED}), more epochs or {larger}."
        )
    return (
        f"The model already trains with {discovery} and Adam at 0.001, as "
        "the recommended setting does; with many classes finding every "
        "class takes more epochs (docs/many_actions.md). Try more epochs "
        f"or {larger}."
    )


def _inner(optimizer):
    # A LossScaleOptimizer (mixed precision) wraps the one compiled.
    return getattr(optimizer, "inner_optimizer", optimizer)


def _learning_rate(optimizer):
    # A variable, or a tensor of the backend under a schedule.
    try:
        rate = _inner(optimizer).learning_rate
        return float(rate.numpy() if hasattr(rate, "numpy") else rate)
    except (AttributeError, TypeError, ValueError):
        return None


def _describe_optimizer(optimizer):
    """E.g. "SGD at 0.1"; the rate is the current one under a schedule."""
    if optimizer is None:
        return "no optimizer"
    name = type(_inner(optimizer)).__name__
    rate = _learning_rate(optimizer)
    return name if rate is None else f"{name} at {rate:g}"


def _is_recommended_optimizer(optimizer):
    rate = _learning_rate(optimizer)
    return (
        type(_inner(optimizer)) is keras.optimizers.Adam
        and rate is not None
        and math.isclose(rate, 1e-3, rel_tol=1e-6)
    )


def _describe_value(value):
    return f"{value:g}" if isinstance(value, numbers.Real) else "a schedule"
