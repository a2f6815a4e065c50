"""Cost of one BrainProp training step relative to one backprop step.

BrainProp's only extra work over error backpropagation is choosing an action
(one argmax and one random draw per sample). This script times training
steps of the same network trained with BrainProp (`kbp.wrap`) and with
backprop (softmax cross-entropy), alternating the two in one run, and prints
milliseconds per step and their ratio. With `--rules`, it also times
BrainProp under other feedback rules (`keras_brainprop.feedback`) and
prints each one's step time relative to the symmetric (default) step.

Command:

    python benchmarks/step_overhead.py --steps=50 --repeats=7

Networks: the paper's MNIST `dense` net (784-1500-1000-500-10) and a `conv`
net (Conv32 s1 - Conv32 s2 - Dense 500, BN after ReLU) on 28x28x1 inputs,
batch 128, SGD(0.1).
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from keras_brainprop import algorithms  # noqa: E402
from keras_brainprop import feedback  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 50, "Training steps per timed run.")
flags.DEFINE_integer("repeats", 7, "Timed runs per variant (median kept).")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_list("networks", ["dense", "conv"], "Networks to time.")
flags.DEFINE_bool("jit_compile", False, "Compile the steps with XLA.")
flags.DEFINE_list(
    "rules",
    [name for name in feedback.NAMES if name != "symmetric"],
    "Feedback rules whose BrainProp step is timed against the symmetric one.",
)

NUM_CLASSES = 10


def build_network(name, output_activation=None):
    init = keras.initializers.RandomNormal(stddev=0.005)
    layers = keras.layers
    if name == "dense":
        body = [layers.Flatten()] + [
            layers.Dense(
                units,
                activation="relu",
                use_bias=False,
                kernel_initializer=init,
            )
            for units in (1500, 1000, 500)
        ]
    elif name == "conv":
        body = []
        for strides in (1, 2):
            body += [
                layers.Conv2D(
                    32,
                    3,
                    strides,
                    "same",
                    use_bias=False,
                    kernel_initializer=init,
                ),
                layers.ReLU(),
                layers.BatchNormalization(),
            ]
        body += [
            layers.Flatten(),
            layers.Dense(
                500, activation="relu", use_bias=False, kernel_initializer=init
            ),
        ]
    else:
        raise ValueError(f"Unknown network. Received: {name!r}")
    return keras.Sequential(
        [keras.Input((28, 28, 1)), *body]
        + [
            layers.Dense(
                NUM_CLASSES,
                activation=output_activation,
                use_bias=False,
                kernel_initializer=init,
            )
        ]
    )


def compiled(name, algorithm):
    network = build_network(name, algorithm.output_activation)
    model = algorithm.wrap(network)
    algorithm.compile(
        model, learning_rate=0.1, metrics=None, jit_compile=FLAGS.jit_compile
    )
    return model


def ms_per_step(model, dataset):
    start = time.perf_counter()
    model.fit(
        dataset, steps_per_epoch=FLAGS.steps, epochs=1, verbose=0, shuffle=False
    )
    return 1000.0 * (time.perf_counter() - start) / FLAGS.steps


def main(argv):
    del argv
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((FLAGS.batch_size, 28, 28, 1), dtype="float32")
    y = rng.integers(0, NUM_CLASSES, FLAGS.batch_size)
    dataset = tf.data.Dataset.from_tensors((x, y)).repeat()

    print(
        f"batch {FLAGS.batch_size}, {FLAGS.steps} steps per run, median of "
        f"{FLAGS.repeats} runs, jit_compile={FLAGS.jit_compile}\n"
    )
    rules = [rule for rule in FLAGS.rules if rule != "symmetric"]
    print(
        "| network | backprop ms/step | BrainProp ms/step | BrainProp / "
        "backprop |" + "".join(f" {rule} / symmetric |" for rule in rules)
    )
    print("| --- | ---: | ---: | ---: |" + " ---: |" * len(rules))
    for name in FLAGS.networks:
        models = {"backprop": compiled(name, algorithms.Backprop())}
        for rule in ["symmetric", *rules]:
            models[rule] = compiled(name, algorithms.BrainProp(feedback=rule))
        for model in models.values():
            ms_per_step(model, dataset)  # Trace and warm up.
        times = {variant: [] for variant in models}
        for _ in range(FLAGS.repeats):
            for variant, model in models.items():  # Alternate: fair noise.
                times[variant].append(ms_per_step(model, dataset))
        # Ratios within a round, then their median: the machine's load
        # changes less within a round than across the run.
        symmetric = np.array(times["symmetric"])
        ratios = [
            np.median(np.array(times[rule]) / symmetric) for rule in rules
        ]
        print(
            f"| {name} | {np.median(times['backprop']):.2f} "
            f"| {np.median(symmetric):.2f} "
            f"| {np.median(symmetric / np.array(times['backprop'])):.3f} |"
            + "".join(f" {ratio:.3f} |" for ratio in ratios)
        )


if __name__ == "__main__":
    app.run(main)
