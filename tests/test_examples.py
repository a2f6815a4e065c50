"""Runs every script in examples/ on a tiny slice of its data.

Each script runs in its own Python process, as a user would start it, on
data written to a temporary directory in the dataset's real distribution
format (IDX files, CIFAR python pickles, the Tiny ImageNet folder), on a
thousand real Fashion-MNIST images, or on scikit-learn's digits. Every
default data location is pointed at an empty folder, so nothing but the
files written here can be read and nothing is ever downloaded. Scripts run
under TensorFlow, except in the tests marked `backends`, which run them on
this process's Keras backend (`KERAS_BACKEND`), so also under JAX and
PyTorch.
"""

import contextlib
import gzip
import importlib.util
import os
import pathlib
import pickle
import re
import resource
import struct
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from keras_brainprop import datasets

ROOT = pathlib.Path(__file__).resolve().parents[1]
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
TEST_ACCURACY = re.compile(r"^Test accuracy: (\d\.\d{4})$", re.MULTILINE)
BACKEND = keras.backend.backend()
# The tiny data keep every run under 20 s on an idle 2-core machine, half of
# it TensorFlow's start-up; a loaded machine may take several times longer,
# so only a hang (such as a download attempt) fails a test.
TIMEOUT = 180


@pytest.fixture(scope="module")
def empty_home(tmp_path_factory):
    return tmp_path_factory.mktemp("home")


def run_example(script, *args, home, expect_exit=0, backend="tensorflow"):
    """Runs `examples/<script> *args` under the Keras `backend`; returns the
    `CompletedProcess`.

    Fails unless the process exits with `expect_exit` within `TIMEOUT`
    seconds. Prints the run's wall and CPU time (shown by `pytest -s`).
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key != datasets.DATA_DIR_ENV
    }
    env.update(
        HOME=str(home),
        KERAS_HOME=str(home / ".keras"),
        TFDS_DATA_DIR=str(home / "tensorflow_datasets"),
        TF_CPP_MIN_LOG_LEVEL="2",
        KERAS_BACKEND=backend,
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    start = time.perf_counter()
    cpu_start = resource.getrusage(resource.RUSAGE_CHILDREN)
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )
    seconds = time.perf_counter() - start
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = sum(
        getattr(cpu, field) - getattr(cpu_start, field)
        for field in ("ru_utime", "ru_stime")
    )
    print(
        f"\n{script} {' '.join(map(str, args))}: {seconds:.1f} s wall, "
        f"{cpu_seconds:.1f} s CPU"
    )
    assert completed.returncode == expect_exit, completed.stderr[-4000:]
    return completed


def printed_accuracy(stdout):
    """The accuracy printed by the script, checked to be in [0, 1]."""
    found = TEST_ACCURACY.findall(stdout)
    assert found, stdout
    accuracy = float(found[-1])
    assert 0.0 <= accuracy <= 1.0
    return accuracy


# Tiny datasets in their real formats.


def _idx_bytes(array):
    """An unsigned-byte IDX file holding `array`, gzipped."""
    header = struct.pack(f">HBB{array.ndim}I", 0, 8, array.ndim, *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def write_idx_dataset(directory, train, test):
    """Writes `(images, labels)` pairs as MNIST's four IDX files."""
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, (images, labels) in (("train", train), ("t10k", test)):
        (directory / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
            _idx_bytes(images)
        )
        (directory / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            _idx_bytes(labels)
        )
    return directory


def random_images(count, shape, num_classes, seed):
    """Random uint8 images with labels that cycle through the classes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, *shape), dtype=np.uint8)
    return images, np.arange(count) % num_classes


def cifar_pickle(images, labels, label_key):
    """One CIFAR batch file: channel-major rows of 3072 bytes, as shipped."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)
    batch = {b"batch_label": b"tiny", b"data": rows, label_key: list(labels)}
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [label // 5 for label in labels]
    return pickle.dumps(batch, protocol=2)


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    train = random_images(120, (28, 28), 10, seed=1)
    test = random_images(40, (28, 28), 10, seed=2)
    return write_idx_dataset(root, train, test)


@pytest.fixture(scope="module")
def fashion_mnist_dir(tmp_path_factory):
    """The first 1,000 training and 200 test images of the real data."""
    if not os.path.isdir(FASHION_MNIST_DIR):
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    splits = []
    for split in ("train", "test"):
        images, labels = datasets.load_arrays(
            "fashion_mnist",
            split,
            data_dir=FASHION_MNIST_DIR,
            validation_fraction=0.0,
            scale=False,
        )
        size = 1000 if split == "train" else 200
        splits.append((images[:size, ..., 0], labels[:size]))
    datasets.clear_cache()
    root = tmp_path_factory.mktemp("fashion")
    return write_idx_dataset(root, *splits)


@pytest.fixture(scope="module")
def cifar10_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar10")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    parts = [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]
    for seed, part in enumerate(parts):
        images, labels = random_images(24, (32, 32, 3), 10, seed)
        (folder / part).write_bytes(cifar_pickle(images, labels, b"labels"))
    return root


@pytest.fixture(scope="module")
def cifar100_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar100")
    folder = root / "cifar-100-python"
    folder.mkdir()
    for seed, (part, count) in enumerate((("train", 200), ("test", 50))):
        images, labels = random_images(count, (32, 32, 3), 100, seed)
        (folder / part).write_bytes(
            cifar_pickle(images, labels, b"fine_labels")
        )
    meta = {
        b"fine_label_names": [f"class_{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"group_{i}".encode() for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


@pytest.fixture(scope="module")
def tiny_imagenet_dir(tmp_path_factory):
    """Four classes of Tiny ImageNet's folder layout, 8 JPEGs each."""
    root = tmp_path_factory.mktemp("tiny_imagenet")
    folder = root / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819", "n01641577", "n01644900"]
    images, labels = random_images(48, (64, 64, 3), len(wnids), seed=3)
    annotations = []
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        wnid = wnids[label]
        if index < 32:
            path = folder / "train" / wnid / "images" / f"{wnid}_{index}.JPEG"
        else:
            path = folder / "val" / "images" / f"val_{index}.JPEG"
            annotations.append(f"{path.name}\t{wnid}\t0\t0\t63\t63\n")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tf.io.encode_jpeg(image).numpy())
    (folder / "val" / "val_annotations.txt").write_text("".join(annotations))
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    return root


# The benchmark scripts: one per dataset of the paper (and Fashion-MNIST
# below). Together the runs cover every architecture of the paper and both
# algorithms; each network's own tests are in tests/test_architectures.py.


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, data_dir, architecture, algorithm",
    [
        ("mnist.py", "mnist_dir", "loccon", "brainprop"),
        ("cifar10.py", "cifar10_dir", "conv", "backprop"),
        ("cifar100.py", "cifar100_dir", "deep", "backprop"),
        ("tiny_imagenet.py", "tiny_imagenet_dir", "deep", "brainprop"),
    ],
)
def test_dataset_script(
    request, empty_home, tmp_path, script, data_dir, architecture, algorithm
):
    # BrainProp's setting and policy; refused for backprop.
    brainprop_flags = ["--setting=recommended", "--policy=square_cb"]
    stdout = run_example(
        script,
        f"--architecture={architecture}",
        f"--algorithm={algorithm}",
        *(brainprop_flags if algorithm == "brainprop" else []),
        "--learning_rate=0.05",
        "--epochs=1",
        f"--data_dir={request.getfixturevalue(data_dir)}",
        f"--logdir={tmp_path}",
        home=empty_home,
    ).stdout
    printed_accuracy(stdout)
    assert "learning_rate: 0.0500" in stdout
    if algorithm == "brainprop":
        assert "--policy=square_cb replaces the recommended setting's" in stdout
        assert "--learning_rate=0.05 replaces the recommended" in stdout
    # The algorithm's callbacks: TensorBoard, and BrainProp's monitor.
    assert list((tmp_path / "train").glob("events.out.tfevents.*"))
    monitor_logs = list((tmp_path / "brainprop").glob("events.out.tfevents.*"))
    assert bool(monitor_logs) == (algorithm == "brainprop")


@pytest.mark.slow
@pytest.mark.backends
def test_dataset_example_on_this_backend(mnist_dir, empty_home):
    stdout = run_example(
        "mnist.py",
        "--architecture=conv",
        "--algorithm=brainprop",
        "--epochs=1",
        f"--data_dir={mnist_dir}",
        home=empty_home,
        backend=BACKEND,
    ).stdout
    assert f"Keras backend: {BACKEND}" in stdout
    printed_accuracy(stdout)


@pytest.mark.slow
def test_fashion_mnist(fashion_mnist_dir, empty_home):
    stdout = run_example(
        "fashion_mnist.py",
        "--architecture=dense",
        "--algorithm=backprop",
        "--epochs=5",
        f"--data_dir={fashion_mnist_dir}",
        home=empty_home,
    ).stdout
    # 900 real training images, 35 SGD steps: twice chance (0.32 measured).
    assert printed_accuracy(stdout) > 0.2


@pytest.mark.slow
def test_missing_data_is_one_message_and_no_download(tmp_path, empty_home):
    completed = run_example(
        "cifar10.py",
        "--epochs=1",
        f"--data_dir={tmp_path}",
        home=empty_home,
        expect_exit=1,
    )
    assert "Error: No local copy of 'cifar10'" in completed.stderr
    assert str(tmp_path) in completed.stderr
    assert "Traceback" not in completed.stderr


# The idea examples, on scikit-learn's digits.


@pytest.mark.slow
def test_custom_reward(empty_home):
    stdout = run_example(
        "custom_reward.py", "--epochs=2", home=empty_home
    ).stdout
    # One table row per training: accuracy, mean reward, costly errors.
    rows = re.findall(
        r"^\| (plain reward|reward table) .*? \| (\d\.\d{4}) \| "
        r"(-?\d\.\d{4}) \| (\d+) of 359 \|$",
        stdout,
        re.MULTILINE,
    )
    assert [row[0] for row in rows] == ["plain reward", "reward table"], stdout
    for _, accuracy, mean_reward, costly_errors in rows:
        assert 0.0 <= float(accuracy) <= 1.0
        assert -1.0 <= float(mean_reward) <= float(accuracy)
        assert int(costly_errors) <= 359


@pytest.mark.slow
def test_custom_reward_that_diverges_reports_no_accuracy(empty_home):
    # A huge penalty made the weights NaN; the table still printed rows.
    completed = run_example(
        "custom_reward.py",
        "--penalty=1e30",
        "--epochs=1",
        home=empty_home,
        expect_exit=1,
    )
    assert "| reward table" not in completed.stdout
    assert "Traceback" not in completed.stderr
    assert "Error: Training diverged" in completed.stderr
    assert "smaller --penalty than 1e+30" in completed.stderr


@pytest.mark.slow
def test_distributed_on_two_cpu_replicas(empty_home):
    stdout = run_example(
        "distributed.py",
        "--strategy=mirrored",
        "--cpu_replicas=2",
        "--algorithm=backprop",
        "--epochs=1",
        home=empty_home,
    ).stdout
    assert "2 replicas in sync" in stdout
    printed_accuracy(stdout)


@pytest.mark.slow
@pytest.mark.backends
def test_distributed_on_two_jax_cpu_devices(empty_home):
    if BACKEND != "jax":
        pytest.skip("keras.distribution.DataParallel trains under JAX only")
    stdout = run_example(
        "distributed.py",
        "--strategy=data_parallel",
        "--cpu_replicas=2",
        "--epochs=1",
        home=empty_home,
        backend=BACKEND,
    ).stdout
    assert "2 replicas in sync, Keras backend jax" in stdout
    printed_accuracy(stdout)


@pytest.mark.slow
def test_tensorboard_monitor_writes_brainprop_summaries(empty_home, tmp_path):
    stdout = run_example(
        "tensorboard_monitor.py",
        f"--logdir={tmp_path}",
        "--epochs=2",
        "--update_freq=50",
        home=empty_home,
    ).stdout
    printed_accuracy(stdout)
    tags = set()
    for path in (tmp_path / "brainprop").glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    expected = {"probe/q_values", "probe/actions", "probe/rpe_std", "reward"}
    for unit in ("epoch", "batch"):
        assert {f"{unit}/{tag}" for tag in expected} <= tags, sorted(tags)
    assert list((tmp_path / "train").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_resume_after_a_kill_ends_like_an_uninterrupted_run(
    empty_home, tmp_path
):
    def checksum(stdout):
        found = re.findall(r"^Weights checksum: (\w+)$", stdout, re.MULTILINE)
        assert found, stdout
        return found[-1]

    resumed = tmp_path / "resumed"
    args = ("--epochs=2", "--save_every=20")
    killed = run_example(
        "resume.py",
        f"--backup_dir={resumed}",
        "--kill_at_step=150",
        *args,
        home=empty_home,
        expect_exit=-9,  # SIGKILL.
    ).stdout
    assert "Test accuracy" not in killed
    assert (resumed / "backup.npz").is_file()
    rerun = run_example(
        "resume.py", f"--backup_dir={resumed}", *args, home=empty_home
    ).stdout
    assert "Resumed at epoch 2, step 59" in rerun
    assert not (resumed / "backup.npz").exists()
    fresh = run_example(
        "resume.py",
        f"--backup_dir={tmp_path / 'fresh'}",
        *args,
        home=empty_home,
    ).stdout
    assert "Resumed" not in fresh
    assert checksum(rerun) == checksum(fresh)
    assert printed_accuracy(rerun) == printed_accuracy(fresh)


# Flag checks, in this process: a script's flags are parsed before its
# main() loads any data.

DATASET_SCRIPTS = (
    "mnist.py",
    "fashion_mnist.py",
    "cifar10.py",
    "cifar100.py",
    "tiny_imagenet.py",
)


@contextlib.contextmanager
def script_flags(script):
    """Imports `examples/<script>`; yields a parser of its flags.

    The parser takes the arguments, parses them into the global
    `flags.FLAGS` and returns it. The script's flags are removed on exit.
    """
    before = set(flags.FLAGS)
    path = ROOT / "examples" / script
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))

    def parse(*args):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["prog", *args])
        return flags.FLAGS

    try:
        yield parse
    finally:
        flags.FLAGS.unparse_flags()
        for name in set(flags.FLAGS) - before:
            delattr(flags.FLAGS, name)


@pytest.mark.parametrize(
    "script",
    [*DATASET_SCRIPTS, "distributed.py", "resume.py", "tensorboard_monitor.py"],
)
def test_examples_refuse_epochs_below_one(script):
    # --epochs=0 reported the untrained network's accuracy.
    with script_flags(script) as parse:
        for epochs in (0, -3):
            with pytest.raises(flags.IllegalFlagValueError, match="epochs"):
                parse(f"--epochs={epochs}")
        assert parse("--epochs=1").epochs == 1


@pytest.mark.parametrize("script", DATASET_SCRIPTS)
def test_dataset_examples_check_the_learning_rate_when_parsing(script):
    # 0 was refused only after the data had loaded, and inf accepted.
    with script_flags(script) as parse:
        for rate in ("0", "-0.1", "inf", "nan"):
            with pytest.raises(
                flags.IllegalFlagValueError, match="finite number > 0"
            ):
                parse(f"--learning_rate={rate}")
        assert parse("--learning_rate=0.3").learning_rate == 0.3


@pytest.mark.parametrize("script", DATASET_SCRIPTS)
def test_dataset_examples_refuse_a_policy_for_backprop(script):
    with script_flags(script) as parse:
        with pytest.raises(flags.IllegalFlagValueError, match="--policy"):
            parse("--algorithm=backprop", "--policy=discovery")
        with pytest.raises(flags.IllegalFlagValueError, match="--setting"):
            parse("--algorithm=backprop", "--setting=recommended")
        parsed = parse("--setting=Recommended")
        assert (parsed.setting, parsed.policy) == ("recommended", None)
        parsed = parse("--algorithm=BrainProp", "--policy=Discovery")
        assert (parsed.algorithm, parsed.policy) == ("brainprop", "discovery")
        assert parse("--feedback=Sign_Symmetry").feedback == "sign_symmetry"


def test_distributed_refuses_cpu_replicas_without_mirrored():
    with script_flags("distributed.py") as parse:
        with pytest.raises(
            flags.IllegalFlagValueError, match="--strategy=mirrored"
        ):
            parse("--strategy=default", "--cpu_replicas=2")
        parsed = parse("--strategy=Mirrored", "--cpu_replicas=2")
        assert (parsed.strategy, parsed.cpu_replicas) == ("mirrored", 2)


@pytest.mark.parametrize(
    "script, flag",
    [("resume.py", "save_every"), ("tensorboard_monitor.py", "update_freq")],
)
def test_frequencies_below_one_are_flag_errors(script, flag):
    # They failed with a traceback once the data had loaded.
    with script_flags(script) as parse:
        with pytest.raises(flags.IllegalFlagValueError, match=flag):
            parse(f"--{flag}=0")


@pytest.mark.slow
def test_flag_errors_are_one_line_and_help_exits_0(empty_home, tmp_path):
    completed = run_example(
        "resume.py",
        f"--backup_dir={tmp_path}",
        "--save_every=0",
        home=empty_home,
        expect_exit=1,
    )
    assert "Traceback" not in completed.stderr
    assert "Error: flag --save_every=0" in completed.stderr
    helped = run_example("tensorboard_monitor.py", "--help", home=empty_home)
    assert "--update_freq" in helped.stdout
