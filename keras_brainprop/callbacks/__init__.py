"""Callbacks: TensorBoard monitoring, exact resumption, the paper's schedule."""

from keras_brainprop.callbacks.backup_and_restore import BackupAndRestore
from keras_brainprop.callbacks.brainprop_monitor import BrainPropMonitor
from keras_brainprop.callbacks.epoch_learning_rate import EpochLearningRate

__all__ = ["BackupAndRestore", "BrainPropMonitor", "EpochLearningRate"]
