"""Version of keras_brainprop."""

__version__ = "0.1.0"
