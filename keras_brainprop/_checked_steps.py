"""BrainPropModel's train and test steps check each batch before they run.

Bad input (non-finite inputs, bad targets for the reward) stops the step
before the forward pass and any update, with the check's own message, in
eager and graph mode and on every backend (`keras_brainprop._checks`).
"""

import keras

from keras_brainprop import _checks
from keras_brainprop import backend
from keras_brainprop import rewards as rewards_lib


class CheckedSteps:
    """A mixin of `BrainPropModel`: its steps check the batch first.

    Placed before `backend.Trainer` in the model's bases, so that Keras'
    step for the backend runs after the checks.
    """

    def train_step(self, *args):
        # Keras' step for this backend (`*args` is the JAX state and the
        # batch, or the batch alone), after the batch's checks: bad input
        # stops the step before the forward pass and any update.
        with backend.after(self._checks_in_step(args[-1])):
            return super().train_step(*args)

    def test_step(self, *args):
        with backend.after(self._checks_in_step(args[-1])):
            return super().test_step(*args)

    def _checks_in_step(self, data):
        # Under JAX the batch is checked on the host before the step.
        return self._check_batch(data) if self.checks_in_step else []

    def _check_batch(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        return _checks.check_batch(x, y, self.reward, self.network)

    def _checks_rewards_in_step(self):
        # CorrectChoice's rewards of checked targets are finite.
        return type(self.reward) is not rewards_lib.CorrectChoice

    def make_train_function(self, force=False):
        # A failed check raises with its own message first, also in graph
        # mode (see `_checks.with_clear_errors`).
        super().make_train_function(force)
        self.train_function = _checks.with_clear_errors(self.train_function)
        return self.train_function

    def make_test_function(self, force=False):
        super().make_test_function(force)
        self.test_function = _checks.with_clear_errors(self.test_function)
        return self.test_function
