"""Training speed and memory of LocallyConnected2D against Keras 2 and Conv2D.

Compares, as the locally connected layers of the paper's MNIST "loccon"
network at batch 32:

    Input 28x28x1 -> LC32 3x3 s1 'valid' -> ReLU -> BN -> LC32 3x3 s2 'valid'
    -> ReLU -> BN -> Dropout .3 -> Flatten -> Dense 500 -> ReLU -> Dropout .3
    -> Dense 10

(no biases, normal(0, 0.005) initialisation) keras_brainprop's layer,
`tf_keras.layers.LocallyConnected2D` with implementation 1, 2 or 3 (all in
tf_keras), and `keras.layers.Conv2D` (weight sharing, the speed to aim for).
Two tables (`--tables`, both by default):

- "network": one training step of the whole network (forward, backward and
  SGD(0.1) update of softmax cross-entropy, compiled with `tf.function`),
  and its memory. The step is the same hand-written GradientTape step in
  both frameworks, so `fit()`'s per-step bookkeeping, which differs between
  Keras 2 and 3, is left out. The Dense 4608->500 layer weighs on every
  variant's step, so this table understates the layers' own differences.
- "layers": the locally connected layers alone, LC32 3x3 s1 on 28x28x1 ->
  ReLU -> LC32 3x3 s2 on 26x26x32: forward and backward (gradients of the
  summed outputs w.r.t. the inputs and both kernels, compiled with
  `tf.function`, no optimizer).

Time: within a table, all variants are built in this process and timed in
interleaved rounds. Each variant first runs once untimed (tracing; the
"first call" column) and `--warmup_steps` more untimed steps. Then every
round runs `--steps` steps of each variant (`--slow_steps` for Keras 2's
implementations 2 and 3, which take up to seconds per step), in the order
of `--variants` and again in reverse, so that a change in machine load
during a round weighs on every variant alike. A variant's time / ours is
taken within each round, and the table gives the median over `--repeats`
rounds with the interquartile range (IQR, 25th to 75th percentile) as the
spread. TensorFlow runs with `--intra_op_threads` and `--inter_op_threads`
threads (1 and 1 by default, stated in each table's title, with the load
average): with TensorFlow's own choice (0: one thread per core) the ratios
also depend on how much of the other cores other processes leave free, and
spread two to three times wider on a busy machine.

Memory ("network" table only): each variant also runs alone in a fresh
subprocess that builds it and trains `--memory_steps` steps. "peak RSS" is
that process's maximum resident set size (VmHWM, TensorFlow runtime
included); "training peak" is how far the maximum rose above the resident
size measured just before training (activations, gradients, Keras 2's
dense or sparse kernels, traced graphs).

Run from the repository root (about 20 minutes on 2 cores shared with
other work, most of it Keras 2's implementations 2 and 3):

    python benchmarks/locally_connected.py

Add `--tables=layers` for the layers alone (about 3 minutes with
`--variants=keras_brainprop,tf_keras_1,conv2d`, a minute of it tracing
implementation 1), `--jit_compile` to compile the Keras 3 variants with XLA,
or `--nomemory` to skip the memory subprocesses.

It compares with Keras 2 (tf_keras) inside `tf.function`, so it runs under
the TensorFlow backend only; with `KERAS_BACKEND=jax` or `torch` it stops
with a message saying so (benchmarks/step_overhead.py times training steps
on every backend).
"""

import json
import os
import subprocess
import sys
import time

import _locally_connected_variants as _variants
from absl import app
from absl import flags

_VARIANTS = (
    "keras_brainprop",
    "tf_keras_1",
    "tf_keras_2",
    "tf_keras_3",
    "conv2d",
)

_SLOW_VARIANTS = ("tf_keras_2", "tf_keras_3")
_TABLES = ("network", "layers")
_NAMES = {
    "keras_brainprop": "keras_brainprop LocallyConnected2D",
    "tf_keras_1": "tf_keras LocallyConnected2D impl 1",
    "tf_keras_2": "tf_keras LocallyConnected2D impl 2",
    "tf_keras_3": "tf_keras LocallyConnected2D impl 3",
    "conv2d": "keras Conv2D (shared weights)",
}

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 32, "Samples per training step.")
flags.DEFINE_integer(
    "steps",
    2,
    "Steps per variant in each half of a timed round.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "slow_steps", 1, "`--steps` for tf_keras impl 2 and 3.", lower_bound=1
)
flags.DEFINE_integer("repeats", 15, "Timed rounds.", lower_bound=1)
flags.DEFINE_integer(
    "warmup_steps",
    3,
    "Untimed steps per variant after its first call.",
    lower_bound=0,
)
flags.DEFINE_integer(
    "intra_op_threads",
    1,
    "TensorFlow's threads within an op; 0: its default, one per core.",
    lower_bound=0,
)
flags.DEFINE_integer(
    "inter_op_threads",
    1,
    "TensorFlow's threads running independent ops; 0: its default.",
    lower_bound=0,
)
flags.DEFINE_integer(
    "memory_steps", 3, "Training steps of each memory subprocess."
)
flags.DEFINE_list("variants", list(_VARIANTS), "Variants to compare.")
flags.DEFINE_list(
    "tables",
    list(_TABLES),
    "Tables to measure: 'network' (training step of the whole network, "
    "and memory) and/or 'layers' (the locally connected layers alone).",
)
flags.DEFINE_bool(
    "jit_compile", False, "Compile the Keras 3 variants with XLA."
)
flags.DEFINE_bool("memory", True, "Measure memory in subprocesses.")
flags.DEFINE_enum(
    "memory_variant",
    None,
    _VARIANTS,
    "Internal: measure only this variant's memory and print it.",
)


def _status_megabytes(field):
    """A memory field of /proc/self/status (Linux), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"No {field} in /proc/self/status")


def _resident_megabytes():
    """Current resident set size of this process, in MiB."""
    return _status_megabytes("VmRSS")


def _peak_megabytes():
    """Maximum resident set size of this process so far, in MiB.

    VmHWM, not `ru_maxrss`: Linux carries `ru_maxrss` over `exec`, so a
    subprocess would report its parent's peak.
    """
    return _status_megabytes("VmHWM")


def _steps(variant):
    return FLAGS.slow_steps if variant in _SLOW_VARIANTS else FLAGS.steps


def _train(step, batches, steps):
    """Runs `steps` steps; returns the seconds per step."""
    images, labels = batches
    start = time.perf_counter()
    for index in range(steps):
        loss = step(images[index], labels[index])
    loss.numpy()  # Waits for the last step.
    return (time.perf_counter() - start) / steps


def _time_variants(variants, make_step):
    """Per-round ms per step and first-call seconds of each variant.

    `make_step(variant)` builds the variant and returns its compiled step.
    Each round times every variant in the order of `variants`, then in
    reverse. The result maps each variant to its times.
    """
    batches = _variants.training_batches(
        max(FLAGS.steps, FLAGS.slow_steps), FLAGS.batch_size
    )
    steps, first_call = {}, {}
    for variant in variants:
        print(f"building and warming up {variant} ...", flush=True)
        steps[variant] = make_step(variant)
        first_call[variant] = _train(steps[variant], batches, 1)
        for _ in range(FLAGS.warmup_steps):
            _train(steps[variant], batches, 1)
    milliseconds = {variant: [] for variant in variants}
    for round_index in range(FLAGS.repeats):
        print(f"timed round {round_index + 1}/{FLAGS.repeats}", flush=True)
        seconds = dict.fromkeys(variants, 0.0)
        for variant in [*variants, *reversed(variants)]:
            seconds[variant] += _train(steps[variant], batches, _steps(variant))
        for variant in variants:
            milliseconds[variant].append(1000 * seconds[variant] / 2)
    timings = {
        variant: {
            "ms": milliseconds[variant],
            "first_call_s": first_call[variant],
        }
        for variant in variants
    }
    return timings


def _measure_memory(variant):
    """Peak memory of building and training `variant` in this process."""
    step = _variants.training_step(
        variant, _variants.build_model(variant), FLAGS.jit_compile
    )
    batches = _variants.training_batches(FLAGS.memory_steps, FLAGS.batch_size)
    resident_before_training = _resident_megabytes()
    _train(step, batches, FLAGS.memory_steps)
    peak = _peak_megabytes()
    return {
        "peak_mib": peak,
        "training_peak_mib": peak - resident_before_training,
    }


def _memory_in_subprocess(variant):
    """Runs `_measure_memory(variant)` in a fresh Python process."""
    command = [
        sys.executable,
        __file__,
        f"--memory_variant={variant}",
        f"--batch_size={FLAGS.batch_size}",
        f"--memory_steps={FLAGS.memory_steps}",
        f"--jit_compile={FLAGS.jit_compile}",
        f"--intra_op_threads={FLAGS.intra_op_threads}",
        f"--inter_op_threads={FLAGS.inter_op_threads}",
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, check=False
    )
    for line in completed.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"Variant {variant} failed:\n{completed.stderr[-3000:]}")


def _median_and_iqr(values, digits=1, unit=""):
    """'median (25th-75th percentile)' of `values`."""
    import numpy as np

    low, median, high = np.percentile(values, [25, 50, 75])
    return (
        f"{median:.{digits}f}{unit} "
        f"({low:.{digits}f}\u2013{high:.{digits}f}{unit})"
    )


def _print_table(title, variants, timings, memory=None):
    """A markdown table of `timings`; memory columns if `memory` is given."""
    import numpy as np

    ours = np.array(timings["keras_brainprop"]["ms"])
    # Ratios within each round, where every variant saw the same load.
    ratios = {v: np.array(timings[v]["ms"]) / ours for v in variants}
    print(
        f"\n{title}, batch {FLAGS.batch_size}, CPU, intra_op_threads="
        f"{FLAGS.intra_op_threads}, inter_op_threads="
        f"{FLAGS.inter_op_threads} (0: TensorFlow's default), "
        f"jit_compile={FLAGS.jit_compile} (Keras 3 variants); median "
        f"(IQR) over {FLAGS.repeats} interleaved rounds "
        f"({os.cpu_count()} cores)\n"
    )
    memory_header = " peak RSS (MiB) | training peak (MiB) |"
    print(
        "| locally connected layer | steps/round | ms/step | time / ours | "
        "first call (s) |" + (memory_header if memory is not None else "")
    )
    print(
        "| --- | ---: | ---: | ---: | ---: |"
        + (" ---: | ---: |" if memory is not None else "")
    )
    for variant in variants:
        memory_cells = ""
        if memory is not None:
            peak, training_peak = "-", "-"
            if variant in memory:
                peak = f"{memory[variant]['peak_mib']:.0f}"
                training_peak = f"{memory[variant]['training_peak_mib']:.0f}"
            memory_cells = f" {peak} | {training_peak} |"
        print(
            f"| {_NAMES[variant]} | {2 * _steps(variant)} | "
            f"{_median_and_iqr(timings[variant]['ms'])} | "
            f"{_median_and_iqr(ratios[variant], 2)} | "
            f"{timings[variant]['first_call_s']:.1f} |" + memory_cells
        )
    keras2 = [v for v in variants if v.startswith("tf_keras")]
    if keras2:
        fastest = min(keras2, key=lambda v: np.median(ratios[v]))
        print(
            f"\nOurs is {_median_and_iqr(ratios[fastest], unit='x')} faster "
            f"than the fastest Keras 2 variant ({_NAMES[fastest]}); target "
            ">= 5x."
        )
    if "conv2d" in variants:
        print(
            f"Ours takes {_median_and_iqr(1 / ratios['conv2d'], 2, 'x')} the "
            "time of the Conv2D variant; target <= 2x."
        )


def main(argv):
    del argv  # Unused.
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise app.UsageError(
            "benchmarks/locally_connected.py compares with Keras 2 "
            "(tf_keras) in tf.function steps, which run under the "
            "TensorFlow backend only; run it with KERAS_BACKEND=tensorflow. "
            f"Received: KERAS_BACKEND={keras.backend.backend()!r}"
        )
    # Before any TensorFlow op, which would fix the thread pools.
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(FLAGS.inter_op_threads)
    if FLAGS.memory_variant:
        result = _measure_memory(FLAGS.memory_variant)
        print("RESULT " + json.dumps(result))
        return
    unknown = sorted(set(FLAGS.variants) - set(_VARIANTS))
    if unknown or "keras_brainprop" not in FLAGS.variants:
        raise app.UsageError(
            f"--variants must include keras_brainprop and be among "
            f"{_VARIANTS}. Received: --variants={FLAGS.variants}"
        )
    unknown = sorted(set(FLAGS.tables) - set(_TABLES))
    if unknown or not FLAGS.tables:
        raise app.UsageError(
            f"--tables must be among {_TABLES}. Received: "
            f"--tables={FLAGS.tables}"
        )
    variants = [variant for variant in _VARIANTS if variant in FLAGS.variants]
    timings = {}
    if "network" in FLAGS.tables:
        print("== whole network: training steps ==", flush=True)
        timings["network"] = _time_variants(
            variants,
            lambda v: _variants.training_step(
                v, _variants.build_model(v), FLAGS.jit_compile
            ),
        )
    if "layers" in FLAGS.tables:
        print("== locally connected layers alone ==", flush=True)
        timings["layers"] = _time_variants(
            variants,
            lambda v: _variants.gradient_step(
                v, _variants.build_local_layers(v), FLAGS.jit_compile
            ),
        )
    memory = {} if FLAGS.memory else None
    if "network" in FLAGS.tables and FLAGS.memory:
        for variant in variants:
            print(f"measuring memory of {variant} ...", flush=True)
            memory[variant] = _memory_in_subprocess(variant)
    if "network" in timings:
        _print_table(
            "Whole loccon MNIST network, one training step",
            variants,
            timings["network"],
            memory,
        )
    if "layers" in timings:
        _print_table(
            "Locally connected layers alone (LC -> ReLU -> LC), "
            "forward + backward",
            variants,
            timings["layers"],
        )


if __name__ == "__main__":
    app.run(main)
