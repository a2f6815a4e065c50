"""Worker of tests/test_feedback.py: feedback rules under MirroredStrategy.

    python tests/feedback_distribute_worker.py OUTPUT.json

TensorFlow fixes its devices when it starts, so this runs in a fresh
process: it splits the CPU into two logical devices and trains the same
network, from the same weights and feedback weights, on the same global
batches, once under MirroredStrategy on both devices and once on the
default device, under each rule. The policy is greedy, so the replicas
draw nothing at random. It writes the largest difference between the two
runs' weights (feedback weights included) per rule.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

RULES = ("kolen_pollack", "sign_symmetry")
GLOBAL_BATCH = 32
NUM_BATCHES = 4


def train(strategy, rule_name):
    import keras

    import keras_brainprop as kbp
    from keras_brainprop import feedback

    keras.utils.set_random_seed(1)
    with strategy.scope():
        network = keras.Sequential(
            [
                keras.Input((10,)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(12, activation="relu"),
                keras.layers.Dense(5),
            ]
        )
        rule = feedback.get(rule_name)
        if rule_name == "kolen_pollack":
            rule = feedback.KolenPollack(decay=0.1, seed=3)
        model = kbp.wrap(feedback.apply(network, rule), policy="greedy")
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(GLOBAL_BATCH * NUM_BATCHES, 10)).astype("float32")
    y = rng.integers(0, 5, len(x)).astype("int32")
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    initial = model.get_weights()
    model.fit(dataset, epochs=1, verbose=0)
    return initial, model.get_weights()


def _max_difference(weights, other_weights):
    return max(
        float(np.max(np.abs(a - b))) for a, b in zip(weights, other_weights)
    )


def main(output_path):
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    mirrored = tf.distribute.MirroredStrategy(devices)
    results = {"num_replicas": mirrored.num_replicas_in_sync}
    for rule_name in RULES:
        _, distributed = train(mirrored, rule_name)
        initial, single = train(tf.distribute.get_strategy(), rule_name)
        results[rule_name] = {
            "num_weights": len(single),
            "max_difference": _max_difference(distributed, single),
            "smallest_change": min(
                float(np.max(np.abs(a - b))) for a, b in zip(single, initial)
            ),
        }
    with open(output_path, "w") as file:
        json.dump(results, file)


if __name__ == "__main__":
    main(sys.argv[1])
