"""Tests of fit()'s warning of never-greedy actions: when it warns, once per
fit(), its category and its advice for the model's policy and optimizer.

The callback is driven directly with the epochs' logs where only the rule
is tested; the fits use a network with a constant kernel and a learning
rate of 0, so its greedy actions never change: Q = x @ KERNEL makes action
0 greedy for x = A, action 2 for x = B and action 1 for x = C.
"""

import types
import warnings

import keras
import numpy as np
import pytest

import keras_brainprop as kbp
from keras_brainprop import policies
from keras_brainprop.callbacks import _coverage_warning
from keras_brainprop.callbacks._coverage_warning import LOW_COVERAGE_EPOCHS
from keras_brainprop.callbacks._coverage_warning import CoverageWarning
from keras_brainprop.callbacks._coverage_warning import coverage_advice
from keras_brainprop.metrics import LowCoverageWarning

KERNEL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], "float32")
A, B, C = [1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]


class _Coverage:
    # What the callback reads of GreedyCoverage.
    name = "greedy_coverage"
    num_actions = 3

    def never_greedy(self):
        return [1]


def _callback(policy=None, optimizer=None):
    callback = CoverageWarning(_Coverage())
    callback.set_model(
        types.SimpleNamespace(
            policy=policy or policies.EpsilonBoltzmann(),
            optimizer=optimizer or keras.optimizers.SGD(0.1),
        )
    )
    return callback


def _run(callback, coverages, end=True):
    """Runs the callback through a fit() with these epoch-end coverages;
    returns the number of warnings after each epoch, then the warnings."""
    counts = []
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        callback.on_train_begin()
        for epoch, value in enumerate(coverages):
            callback.on_epoch_begin(epoch)
            callback.on_epoch_end(epoch, {"greedy_coverage": value})
            counts.append(len(record))
        if end:
            callback.on_train_end()
    return counts, [w for w in record if w.category is LowCoverageWarning]


def test_the_rule_waits_ten_epochs():
    assert LOW_COVERAGE_EPOCHS == 10


def test_no_warning_in_epochs_one_to_nine_then_one_after_ten():
    counts, [warning] = _run(_callback(), [0.5] * 12)
    assert counts == [0] * 9 + [1] * 3
    message = str(warning.message)
    assert message.startswith(
        "Epoch 10 ended with greedy_coverage=0.5, below 1 for 10 epochs in a "
        "row: action(s) [1] of 3 were never the greedy choice"
    )
    assert message.endswith("This warning is shown at most once per fit().")


def test_coverage_of_one_starts_the_count_again():
    counts, found = _run(_callback(), [0.5, 0.5, 1.0, 0.5, 0.5, 1.0])
    assert counts == [0] * 6
    assert found == []
    again = [0.5] * 9 + [1.0] + [0.5] * 10
    counts, [_] = _run(_callback(), again, end=False)
    assert counts == [0] * 19 + [1]


def test_warns_at_the_end_of_fit_when_the_last_epoch_is_below_one():
    assert _run(_callback(), [1.0, 0.5], end=False) == ([0, 0], [])
    counts, [warning] = _run(_callback(), [1.0, 0.5])
    assert str(warning.message).startswith(
        "Epoch 2, the last of this fit(), ended with greedy_coverage=0.5: "
        "action(s) [1] of 3"
    )
    counts, [_] = _run(_callback(), [0.25])


def test_warns_once_per_fit():
    callback = _callback()
    for _ in range(2):
        _, found = _run(callback, [0.5] * 12)
        assert len(found) == 1


def test_category_is_public_and_ignore_silences_it():
    assert issubclass(LowCoverageWarning, UserWarning)
    assert "LowCoverageWarning" in kbp.metrics.__all__
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", kbp.metrics.LowCoverageWarning)
        callback = _callback()
        callback.on_train_begin()
        for epoch in range(4):
            callback.on_epoch_end(epoch, {"greedy_coverage": 0.5})
        callback.on_train_end()
    assert record == []


# The advice.


def test_advice_for_the_papers_policy_is_the_recommended_setting():
    advice = coverage_advice(
        policies.EpsilonBoltzmann(), keras.optimizers.SGD(0.1)
    )
    assert advice.startswith(
        "The model explores with EpsilonBoltzmann and trains with SGD at "
        "0.1. Try the recommended setting, Discovery exploration with Adam "
        'at 0.001 (kbp.algorithms.get("brainprop", setting="recommended"); '
        "--setting=recommended for python -m keras_brainprop and the "
        "examples)"
    )
    assert "more epochs" in advice


def test_advice_for_discovery_is_not_discovery_again():
    advice = coverage_advice(policies.Discovery(), keras.optimizers.SGD(0.1))
    assert advice.startswith(
        "The model already explores with Discovery(bonus=0.1, "
        "min_share=0.25) and trains with SGD at 0.1. Try Discovery with "
        "Adam at 0.001, the recommended setting"
    )
    assert "Discovery exploration" not in advice
    assert "policies.Discovery(bonus=0.2)" in advice


def test_advice_for_the_recommended_setting_is_more_epochs_or_bonus():
    advice = coverage_advice(
        policies.Discovery(bonus=0.5), keras.optimizers.Adam(1e-3)
    )
    assert advice == (
        "The model already trains with Discovery(bonus=0.5, min_share=0.25) "
        "and Adam at 0.001, as the recommended setting does; with many "
        "classes finding every class takes more epochs "
        "(docs/many_actions.md). Try more epochs or a larger bonus (e.g. "
        "policies.Discovery(bonus=1))."
    )
    assert 'setting="recommended"' not in advice


def test_advice_reads_the_rate_of_the_optimizer():
    # Adam at another rate is not the recommended setting.
    advice = coverage_advice(policies.Discovery(), keras.optimizers.Adam(0.1))
    assert "trains with Adam at 0.1. Try Discovery with Adam at 0.001" in (
        advice
    )
    assert _coverage_warning._describe_optimizer(None) == "no optimizer"


# In fit().


def _network():
    layer = keras.layers.Dense(3, use_bias=False)
    network = keras.Sequential([keras.Input((2,)), layer])
    layer.kernel.assign(KERNEL)
    return network


def _fit(rows, epochs, policy=None, optimizer=None):
    """Fits on `rows` (two steps an epoch); returns the LowCoverageWarnings."""
    keras.utils.set_random_seed(3)
    model = kbp.wrap(_network(), policy=policy or "epsilon_greedy", seed=1)
    model.compile(
        optimizer=optimizer or keras.optimizers.SGD(0.0), run_eagerly=True
    )
    x = np.array(rows, "float32")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        history = model.fit(
            x, np.zeros(len(x), "int32"), batch_size=2, epochs=epochs, verbose=0
        )
    found = [w for w in record if w.category is LowCoverageWarning]
    return history.history["greedy_coverage"], found


def test_fit_warns_once_after_ten_epochs_below_one():
    coverage, [warning] = _fit([A, B, A, B], epochs=11)
    assert coverage == [pytest.approx(2 / 3)] * 11
    message = str(warning.message)
    assert "Epoch 10 ended with greedy_coverage=0.6667" in message
    assert "action(s) [1] of 3" in message
    assert "explores with EpsilonGreedy and trains with SGD at 0." in message


def test_fit_of_two_epochs_below_one_warns_at_its_end():
    _, [warning] = _fit([A, B, A, B], epochs=2)
    assert "Epoch 2, the last of this fit()" in str(warning.message)


def test_fit_with_every_action_greedy_does_not_warn():
    coverage, found = _fit([A, B, C, C], epochs=4)
    assert coverage == [1.0] * 4
    assert found == []


def test_fit_with_the_recommended_setting_advises_more_epochs():
    _, [warning] = _fit(
        [A, B, A, B],
        epochs=1,
        policy="discovery",
        optimizer=keras.optimizers.Adam(1e-3),
    )
    message = str(warning.message)
    assert "already trains with Discovery(bonus=0.1" in message
    assert "Try more epochs or a larger bonus" in message
