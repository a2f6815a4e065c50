"""Callbacks: TensorBoard monitoring, exact resumption, the paper's schedule,
batch-norm statistics re-estimated before evaluation."""

from keras_brainprop.callbacks.backup_and_restore import BackupAndRestore
from keras_brainprop.callbacks.brainprop_monitor import BrainPropMonitor
from keras_brainprop.callbacks.epoch_learning_rate import EpochLearningRate
from keras_brainprop.callbacks.precise_batch_norm import PreciseBatchNorm

__all__ = [
    "BackupAndRestore",
    "BrainPropMonitor",
    "EpochLearningRate",
    "PreciseBatchNorm",
]
