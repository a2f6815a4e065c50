"""Feedback pathways: BrainProp's error sent down through feedback weights.

`apply(network, rule)` gives every Dense, Conv1D/2D/3D and
LocallyConnected2D layer of a network feedback weights under a rule;
`to_plain()` undoes it; `diagnostics` shows what the feedback does.
Rules: `Symmetric` (backprop, the default), `FeedbackAlignment`,
`SignSymmetry`, `KolenPollack`. Every rule has a registered name ("symmetric",
"feedback_alignment", "sign_symmetry", "kolen_pollack"): `get()` maps names to
rules, `name()` rules to names, `names()` lists them, and `parameters()` gives
a rule's arguments that differ from its defaults. To add a rule, subclass
`FeedbackRule` and decorate it with `register("my_rule")`: it then works by
name in `wrap`, `apply`, the command line and saved results.
"""

from keras_brainprop.feedback import diagnostics
from keras_brainprop.feedback.conversion import apply
from keras_brainprop.feedback.conversion import feedback_layers
from keras_brainprop.feedback.conversion import rule_of
from keras_brainprop.feedback.conversion import to_plain
from keras_brainprop.feedback.feedback_layer import FeedbackLayer
from keras_brainprop.feedback.registry import FeedbackRule
from keras_brainprop.feedback.registry import get
from keras_brainprop.feedback.registry import name
from keras_brainprop.feedback.registry import names
from keras_brainprop.feedback.registry import parameters
from keras_brainprop.feedback.registry import register
from keras_brainprop.feedback.rules import NAMES
from keras_brainprop.feedback.rules import FeedbackAlignment
from keras_brainprop.feedback.rules import KolenPollack
from keras_brainprop.feedback.rules import SignSymmetry
from keras_brainprop.feedback.rules import Symmetric

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
    "name",
    "names",
    "parameters",
    "register",
    "rule_of",
    "to_plain",
]
