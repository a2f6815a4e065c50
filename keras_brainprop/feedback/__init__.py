"""Feedback pathways: BrainProp's error sent down through feedback weights.

`apply(network, rule)` gives every Dense, Conv1D/2D/3D and
LocallyConnected2D layer of a network feedback weights under a rule;
`to_plain()` undoes it; `diagnostics` shows what the feedback does.
Rules: `Symmetric` (backprop, the default), `FeedbackAlignment`,
`SignSymmetry`, `KolenPollack`; `get()` maps their names to them.
"""

from keras_brainprop.feedback import diagnostics
from keras_brainprop.feedback.conversion import apply
from keras_brainprop.feedback.conversion import feedback_layers
from keras_brainprop.feedback.conversion import rule_of
from keras_brainprop.feedback.conversion import to_plain
from keras_brainprop.feedback.feedback_layer import FeedbackLayer
from keras_brainprop.feedback.rules import NAMES
from keras_brainprop.feedback.rules import FeedbackAlignment
from keras_brainprop.feedback.rules import FeedbackRule
from keras_brainprop.feedback.rules import KolenPollack
from keras_brainprop.feedback.rules import SignSymmetry
from keras_brainprop.feedback.rules import Symmetric
from keras_brainprop.feedback.rules import get

__all__ = [
    "NAMES",
    "FeedbackAlignment",
    "FeedbackLayer",
    "FeedbackRule",
    "KolenPollack",
    "SignSymmetry",
    "Symmetric",
    "apply",
    "diagnostics",
    "feedback_layers",
    "get",
    "rule_of",
    "to_plain",
]
