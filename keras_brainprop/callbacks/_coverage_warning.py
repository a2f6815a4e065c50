"""A private callback of BrainPropModel.fit(): warn of never-greedy actions."""

import warnings

import keras


class CoverageWarning(keras.callbacks.Callback):
    """Warns once per fit() when an epoch ends with `greedy_coverage < 1`.

    `coverage` is the model's `GreedyCoverage` metric. Validation resets the
    metrics before the epoch ends, so the actions are read when it begins.
    """

    def __init__(self, coverage):
        super().__init__()
        self.coverage = coverage
        self.warned = False
        self._never_greedy = None

    def on_train_begin(self, logs=None):
        self.warned = False

    def on_epoch_begin(self, epoch, logs=None):
        self._never_greedy = None

    def on_test_begin(self, logs=None):
        # In fit(), validation runs after the epoch's last training step.
        if not self.warned and self._never_greedy is None:
            self._never_greedy = self.coverage.never_greedy()

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.coverage.name)
        if self.warned or value is None or value >= 1.0:
            return
        never_greedy = self._never_greedy
        if never_greedy is None:
            never_greedy = self.coverage.never_greedy()
        self.warned = True
        warnings.warn(
            f"Epoch {epoch + 1} ended with greedy_coverage={value:.4g}: "
            f"action(s) {never_greedy} of {self.coverage.num_actions} were "
            "never the greedy choice (largest Q-value) for a training "
            "sample. Their output units learn only when exploration picks "
            "them, so their classes may be learned late or never. Try "
            "the recommended setting, Discovery exploration with Adam at "
            '0.001 (kbp.algorithms.get("brainprop", setting="recommended")'
            "; --setting=recommended for python -m keras_brainprop and the "
            "examples), more exploration (e.g. "
            "policies.EpsilonBoltzmann(epsilon=0.1)) or more epochs. This "
            "warning is shown once per fit().",
            stacklevel=2,
        )
