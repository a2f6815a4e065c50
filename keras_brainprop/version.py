"""Version of keras_brainprop."""

__version__ = "0.1.0"
"""The package's version (PEP 440)."""
