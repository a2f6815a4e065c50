"""keras_brainprop: train Keras classifiers by reward with BrainProp.

The command-line driver (`python -m keras_brainprop`, `keras_brainprop.cli`)
is not imported here, so importing the package defines no absl flags.
"""

from keras_brainprop import algorithms
from keras_brainprop import architectures
from keras_brainprop import callbacks
from keras_brainprop import datasets
from keras_brainprop import experiment
from keras_brainprop import feedback
from keras_brainprop import layers
from keras_brainprop import metrics
from keras_brainprop import policies
from keras_brainprop import rewards
from keras_brainprop import settings
from keras_brainprop.backprop_model import BackpropModel
from keras_brainprop.layers import LocallyConnected2D
from keras_brainprop.model import BrainPropModel
from keras_brainprop.model import wrap
from keras_brainprop.version import __version__

__all__ = [
    "BackpropModel",
    "BrainPropModel",
    "LocallyConnected2D",
    "__version__",
    "algorithms",
    "architectures",
    "callbacks",
    "datasets",
    "experiment",
    "feedback",
    "layers",
    "metrics",
    "policies",
    "rewards",
    "settings",
    "wrap",
]
