r"""BrainProp's training step against backprop's, on every Keras backend.

BrainProp's only extra work over error backpropagation is choosing an action
(one argmax and one random draw per sample) and rewarding it. For each
backend of `--backends`, in a fresh process of its own (`KERAS_BACKEND` is
fixed when Keras starts), this script times training steps of the paper's
`dense` (784-1500-1000-500-10) and `conv` nets (`kbp.architectures`, 28x28x1
inputs, batch 128, SGD at 0.1), trained with backprop (softmax
cross-entropy) and with BrainProp (`kbp.wrap`), and BrainProp under each
feedback rule of `--rules` (`kbp.feedback`). Steps are compiled with XLA on
TensorFlow and JAX and run eagerly on PyTorch (`--jit_compile=auto`).

Time: every variant is built and warmed up (`--warmup_steps`, tracing and
compilation included) before anything is timed. Then each of `--rounds`
rounds times `--steps` steps of every variant, the order reversed every
other round, so that load from other programs weighs on every variant
alike. A step's time runs from the end of one step to the end of the next
(no iterator or callback start-up). Each step is timed twice: wall-clock,
and the CPU time of the whole process (`time.process_time`, all its
threads), which other programs' load does not inflate; on a busy machine
wall times come in lumps of the scheduler's slices, so read both. Ratios
are taken within each round and the tables give their median, with the
range between the 25th and 75th percentiles (IQR) in brackets:

- BrainProp / backprop per backend and network (target <= 1.03);
- each rule / symmetric BrainProp per backend and network (target <= 1.3);
- the backends side by side: ms per step of each variant, wall and CPU.
  Backends run one after another in separate processes, so this table
  compares medians across processes; the ratios above come from one.

Command (tens of minutes on 2 cores, most of it PyTorch's eager conv
steps):

    python benchmarks/step_overhead.py --backends=tensorflow,jax,torch \
        --steps=40 --rounds=5 --output_dir=/tmp/step_overhead

Each backend's process writes its measurements to
`<output_dir>/step_overhead_<backend>.json`; the script then writes the
tables to `results.md` and every measurement to `results.json`. `--merge`
combines such files (or the folders holding them) without timing anything,
e.g. backends timed at different times, or a backend timed on another
machine (a piece names its device: "jax (gpu)", see below):

    python benchmarks/step_overhead.py --backends=tensorflow \
        --output_dir=/tmp/step_tf
    python benchmarks/step_overhead.py --backends=jax,torch \
        --output_dir=/tmp/step_others
    python benchmarks/step_overhead.py \
        --merge=/tmp/step_tf,/tmp/step_others,/tmp/step_jax_gpu \
        --output_dir=/tmp/step

On a GPU machine with JAX (`pip install -e ".[jax]"` with JAX's CUDA
build; TensorFlow, a dependency, only feeds the data there, through
tf.data on the CPU), the paper's nets in ms per step, then in epochs and
seconds per epoch to the paper's accuracy:

    KERAS_BACKEND=jax python benchmarks/step_overhead.py --backends=jax \
        --steps=200 --rounds=7 --output_dir=/tmp/step_jax_gpu
    KERAS_BACKEND=jax python benchmarks/compare.py --dataset=fashion_mnist \
        --architectures=dense,conv --seeds=1,2,3 --epochs=100 \
        --output_dir=/tmp/compare_jax_gpu

Quick smoke run (seconds per backend once started):

    python benchmarks/step_overhead.py --backends=tensorflow,jax \
        --networks=dense --steps=3 --rounds=2 --warmup_steps=1 \
        --batch_size=8 --rules=kolen_pollack
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import _step_overhead_tables  # noqa: E402
import _step_times  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from keras_brainprop import cli  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
NETWORKS = ("dense", "conv")
RULES = ("feedback_alignment", "sign_symmetry", "kolen_pollack")
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
TARGETS = _step_overhead_tables.TARGETS
load_pieces = _step_overhead_tables.load_pieces
report = _step_overhead_tables.report

FLAGS = flags.FLAGS
flags.DEFINE_list(
    "backends",
    [os.environ.get("KERAS_BACKEND", "tensorflow")],
    f"Keras backends to time, each in its own process, from {BACKENDS}; "
    "default $KERAS_BACKEND, else tensorflow.",
)
flags.register_validator(
    "backends",
    lambda names: (
        bool(names)
        and set(names) <= set(BACKENDS)
        and len(set(names)) == len(names)
    ),
    message=f"--backends must name backends of {BACKENDS}, each once.",
)
flags.DEFINE_list("networks", list(NETWORKS), "Networks to time.")
flags.register_validator(
    "networks",
    lambda names: bool(names) and set(names) <= set(NETWORKS),
    message=f"--networks must name networks of {NETWORKS}.",
)
flags.DEFINE_list(
    "rules",
    list(RULES),
    "Feedback rules whose BrainProp step is timed against the symmetric "
    "one; empty for none.",
)
flags.register_validator(
    "rules",
    lambda names: set(names) <= set(RULES),
    message=f"--rules must name rules of {RULES}.",
)
flags.DEFINE_integer("steps", 40, "Timed steps per variant and round.", 1)
flags.DEFINE_integer("rounds", 5, "Interleaved rounds (medians kept).", 1)
flags.DEFINE_integer(
    "warmup_steps", 3, "Untimed steps per variant first (compilation).", 1
)
flags.DEFINE_integer("batch_size", 128, "Batch size.", 1)
flags.DEFINE_enum(
    "jit_compile",
    "auto",
    ["auto", "true", "false"],
    "auto: XLA on TensorFlow and JAX, eager on PyTorch (torch.compile is "
    "what true means there).",
)
flags.DEFINE_string(
    "output_dir", None, "If set, write results.json, results.md and pieces."
)
flags.DEFINE_list(
    "merge",
    [],
    "results.json or step_overhead_<backend>.json files of earlier runs, "
    "or their folders: report them together without timing anything.",
)
# Set by the script for the process of each backend.
flags.DEFINE_string("piece", None, "Time this backend; write JSON here.")


# One backend's process: build, warm up, time, write a piece.


def _variants(rules):
    from keras_brainprop import algorithms

    variants = {
        "backprop": algorithms.Backprop(),
        "brainprop": algorithms.BrainProp(),
    }
    for rule in rules:
        variants[rule] = algorithms.BrainProp(feedback=rule)
    return variants


def _compiled(network_name, algorithm, jit_compile):
    from keras_brainprop import architectures

    network = architectures.build(
        network_name,
        INPUT_SHAPE,
        NUM_CLASSES,
        output_activation=algorithm.output_activation,
    )
    model = algorithm.wrap(network)
    algorithm.compile(
        model, learning_rate=0.1, metrics=None, jit_compile=jit_compile
    )
    return model


def _dataset(batch_size):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.random((batch_size, *INPUT_SHAPE), dtype="float32")
    y = rng.integers(0, NUM_CLASSES, batch_size).astype("int32")
    return tf.data.Dataset.from_tensors((x, y)).repeat()


def _timed_steps(model, dataset, steps):
    """Fits `steps` + 1 steps; times the last `steps`.

    Returns:
        (wall ms per step, CPU ms per step of this process).
    """
    times = _step_times.step_times(model, dataset, steps)
    (wall_start, cpu_start), (wall_end, cpu_end) = times[0], times[-1]
    return (
        1000.0 * (wall_end - wall_start) / steps,
        1000.0 * (cpu_end - cpu_start) / steps,
    )


def _device(backend):
    """The platform the backend computes on: "cpu", "gpu" or "tpu"."""
    if backend == "jax":
        import jax

        return jax.devices()[0].platform
    if backend == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    return "gpu" if tf.config.list_logical_devices("GPU") else "cpu"


def _versions(backend):
    import keras
    import tensorflow as tf

    versions = {"keras": keras.__version__, "tensorflow": tf.__version__}
    if backend != "tensorflow":
        versions[backend] = importlib.import_module(backend).__version__
    return versions


def measure(path):
    """Times every variant under this process's backend; writes `path`."""
    import keras

    backend = keras.backend.backend()
    jit_compile = {"auto": backend != "torch", "true": True, "false": False}[
        FLAGS.jit_compile
    ]
    keras.utils.set_random_seed(0)
    dataset = _dataset(FLAGS.batch_size)
    rules = [rule for rule in FLAGS.rules if rule]
    piece = {
        "backend": backend,
        "device": _device(backend),
        "versions": _versions(backend),
        "jit_compile": jit_compile,
        "batch_size": FLAGS.batch_size,
        "steps": FLAGS.steps,
        "rounds": FLAGS.rounds,
        "networks": {},
    }
    for network in FLAGS.networks:
        models = {
            name: _compiled(network, algorithm, jit_compile)
            for name, algorithm in _variants(rules).items()
        }
        for model in models.values():
            _timed_steps(model, dataset, FLAGS.warmup_steps)
        times = {name: {"wall_ms": [], "cpu_ms": []} for name in models}
        order = list(models)
        for round_index in range(FLAGS.rounds):
            for name in order if round_index % 2 == 0 else order[::-1]:
                wall, cpu = _timed_steps(models[name], dataset, FLAGS.steps)
                times[name]["wall_ms"].append(wall)
                times[name]["cpu_ms"].append(cpu)
        piece["networks"][network] = times
        medians = ", ".join(
            f"{name} {np.median(values['wall_ms']):.1f}"
            for name, values in times.items()
        )
        print(f"{backend} {network}, wall ms/step: {medians}", flush=True)
    with open(path, "w") as file:
        json.dump(piece, file, indent=2)


# The driver: one process per backend, then the tables.


def _run_piece(backend, path):
    if importlib.util.find_spec(backend) is None:
        raise SystemExit(
            f"Error: the {backend!r} backend needs the {backend} package: "
            f'pip install -e ".[{backend}]". Received: --backends='
            f"{','.join(FLAGS.backends)}"
        )
    args = [
        sys.executable,
        os.path.abspath(__file__),
        f"--piece={path}",
        f"--networks={','.join(FLAGS.networks)}",
        f"--rules={','.join(FLAGS.rules)}",
        f"--steps={FLAGS.steps}",
        f"--rounds={FLAGS.rounds}",
        f"--warmup_steps={FLAGS.warmup_steps}",
        f"--batch_size={FLAGS.batch_size}",
        f"--jit_compile={FLAGS.jit_compile}",
    ]
    print(f"timing {backend} in its own process ...", flush=True)
    completed = subprocess.run(
        args, env=dict(os.environ, KERAS_BACKEND=backend), check=False
    )
    if completed.returncode != 0:
        raise SystemExit(
            f"Error: timing the {backend} backend failed (exit status "
            f"{completed.returncode}); its output is above."
        )
    with open(path) as file:
        return json.load(file)


def main(argv):
    del argv  # Unused.
    if FLAGS.piece:
        measure(FLAGS.piece)
        return
    if FLAGS.output_dir:
        os.makedirs(FLAGS.output_dir, exist_ok=True)
    if FLAGS.merge:
        report(load_pieces(FLAGS.merge), FLAGS.output_dir)
        return
    piece_dir = FLAGS.output_dir or tempfile.mkdtemp(prefix="kbp_steps_")
    pieces = [
        _run_piece(
            backend, os.path.join(piece_dir, f"step_overhead_{backend}.json")
        )
        for backend in FLAGS.backends
    ]
    report(pieces, FLAGS.output_dir)


if __name__ == "__main__":
    cli.run_script(main)
