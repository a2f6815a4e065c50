"""keras_brainprop: train Keras classifiers by reward with BrainProp."""

from keras_brainprop import architectures
from keras_brainprop import callbacks
from keras_brainprop import cli
from keras_brainprop import datasets
from keras_brainprop import experiment
from keras_brainprop import layers
from keras_brainprop import policies
from keras_brainprop import rewards
from keras_brainprop.layers import LocallyConnected2D
from keras_brainprop.model import BrainPropModel
from keras_brainprop.model import wrap
from keras_brainprop.version import __version__
