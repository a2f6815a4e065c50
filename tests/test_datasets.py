"""Tests for keras_brainprop.datasets.

Small files in each real distribution format are written to tmp_path; the
real Fashion-MNIST files (Debian package dataset-fashion-mnist) and
scikit-learn's digits are read when installed. No test touches the network:
the environment is pointed at empty directories and tensorflow-datasets is
replaced by fakes wherever it could be reached.
"""

import dataclasses
import gzip
import json
import pathlib
import pickle
import struct
import sys
import tarfile
import types
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from keras_brainprop import datasets
from keras_brainprop.datasets import _idx
from keras_brainprop.datasets import _load
from keras_brainprop.datasets import _sources

FASHION_MNIST_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path_factory):
    """Points every default data location at empty folders."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KERAS_HOME", str(home / ".keras"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(home / "tensorflow_datasets"))
    monkeypatch.delenv(datasets.DATA_DIR_ENV, raising=False)
    datasets.clear_cache()
    yield home
    datasets.clear_cache()


# Writers for the distribution formats.


def write_idx(path, array, compress=True):
    header = bytes([0, 0, 0x08, array.ndim])
    header += struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + np.ascontiguousarray(array, np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def indexed_images(num_examples, shape, offset=0):
    """Random uint8 images whose first pixel holds the example's index."""
    rng = np.random.default_rng(offset)
    images = rng.integers(0, 256, (num_examples, *shape), dtype=np.uint8)
    images.reshape(num_examples, -1)[:, 0] = np.arange(num_examples) + offset
    images.reshape(num_examples, -1)[0, 1] = 0
    images.reshape(num_examples, -1)[0, 2] = 255
    return images


def write_mnist_like(directory, num_train=50, num_test=20, compress=True):
    """Writes the four IDX files; returns (train images, labels, test ...)."""
    directory.mkdir(parents=True, exist_ok=True)
    train_images = indexed_images(num_train, (28, 28))
    train_labels = (np.arange(num_train) % 10).astype(np.uint8)
    test_images = indexed_images(num_test, (28, 28), offset=100)
    test_labels = (np.arange(num_test) * 3 % 10).astype(np.uint8)
    suffix = ".gz" if compress else ""
    for prefix, images, labels in (
        ("train", train_images, train_labels),
        ("t10k", test_images, test_labels),
    ):
        write_idx(
            directory / f"{prefix}-images-idx3-ubyte{suffix}", images, compress
        )
        write_idx(
            directory / f"{prefix}-labels-idx1-ubyte{suffix}", labels, compress
        )
    return train_images, train_labels, test_images, test_labels


def cifar_batch(num_examples, num_classes, label_key, offset):
    """A CIFAR pickle dict; red, green, blue planes hold 10, 20, 30 + i."""
    planes = np.zeros((num_examples, 3, 1024), np.uint8)
    for channel in range(3):
        planes[:, channel] = 10 * (channel + 1)
    planes[:, 0, 0] = np.arange(num_examples) + offset
    labels = [(offset + i) % num_classes for i in range(num_examples)]
    batch = {b"batch_label": b"testing", b"data": planes.reshape(-1, 3072)}
    batch[label_key] = labels
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [label % 20 for label in labels]
    return batch


def write_cifar(root, name, num_per_batch=6, num_test=5):
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        parts = [f"data_batch_{i}" for i in range(1, 6)]
        num_classes, label_key = 10, b"labels"
    else:
        folder = root / "cifar-100-python"
        parts = ["train"]
        num_classes, label_key = 100, b"fine_labels"
    folder.mkdir(parents=True)
    num_train = num_per_batch * 5
    per_part = num_train // len(parts)
    for index, part in enumerate(parts):
        batch = cifar_batch(per_part, num_classes, label_key, index * per_part)
        (folder / part).write_bytes(pickle.dumps(batch, protocol=2))
    test = cifar_batch(num_test, num_classes, label_key, 200)
    test_file = "test_batch" if name == "cifar10" else "test"
    (folder / test_file).write_bytes(pickle.dumps(test, protocol=2))
    return folder, num_train, num_classes


# Class colours of the fake Tiny ImageNet; wnids.txt lists them unsorted.
TINY_COLOURS = {
    "n03000000": (250, 0, 0),
    "n01000000": (0, 250, 0),
    "n02000000": (0, 0, 250),
}


def solid_jpeg(colour, channels=3):
    image = np.empty((64, 64, channels), np.uint8)
    image[...] = colour[:channels]
    return tf.io.encode_jpeg(image, quality=100).numpy()


def tiny_imagenet_files(train_per_class=3):
    """Relative path -> bytes of a small Tiny ImageNet tree."""
    files = {"wnids.txt": "\n".join(TINY_COLOURS).encode() + b"\n"}
    for wnid, colour in TINY_COLOURS.items():
        files[f"train/{wnid}/{wnid}_boxes.txt"] = b"unused"
        for i in range(train_per_class):
            path = f"train/{wnid}/images/{wnid}_{i}.JPEG"
            files[path] = solid_jpeg(colour)
    annotations = []
    for i, wnid in enumerate(["n02000000", "n03000000", "n01000000"] * 2):
        files[f"val/images/val_{i}.JPEG"] = solid_jpeg(TINY_COLOURS[wnid])
        annotations.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    # A greyscale image, as in the real data set.
    files["val/images/val_6.JPEG"] = solid_jpeg((128, 128, 128), channels=1)
    annotations.append("val_6.JPEG\tn01000000\t0\t0\t63\t63")
    files["val/val_annotations.txt"] = "\n".join(annotations).encode()
    return files


# Static information and arguments.


@pytest.mark.parametrize("name", datasets.NAMES)
def test_info_describes_every_dataset(name):
    spec = datasets.info(name)
    assert spec.name == name
    assert len(spec.input_shape) == 3
    assert spec.num_classes >= 10
    assert spec.max_pixel_value in (16, 255)
    with pytest.raises(AttributeError):
        spec.num_classes = 3


def test_info_accepts_hyphenated_names():
    assert datasets.info("Fashion-MNIST").name == "fashion_mnist"


@pytest.mark.parametrize(
    ("kwargs", "received"),
    [
        ({"name": "imagenet"}, "name='imagenet'"),
        ({"split": "val"}, "split='val'"),
        ({"validation_fraction": 1.0}, "validation_fraction=1.0"),
        ({"validation_fraction": -0.1}, "validation_fraction=-0.1"),
        ({"validation_fraction": "0.1"}, "validation_fraction='0.1'"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"seed": None}, "seed=None"),
    ],
)
def test_bad_arguments_raise_value_error(tmp_path, kwargs, received):
    write_mnist_like(tmp_path)
    arguments = {"name": "mnist", "split": "train", "data_dir": tmp_path}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=received.replace(".", r"\.")):
        datasets.load(**arguments)


def test_unknown_name_is_rejected_by_info():
    with pytest.raises(ValueError, match="name='svhn'"):
        datasets.info("svhn")


# IDX files.


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_are_read(tmp_path, compress):
    train_images, train_labels, test_images, test_labels = write_mnist_like(
        tmp_path / "mnist", compress=compress
    )
    x, y = datasets.load_arrays("mnist", "test", data_dir=tmp_path)
    assert x.shape == (20, 28, 28, 1) and x.dtype == np.float32
    assert y.dtype == np.int32
    np.testing.assert_allclose(x[..., 0], test_images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, test_labels)
    x_train, _ = datasets.load_arrays(
        "mnist", "train", data_dir=tmp_path, validation_fraction=0.0
    )
    np.testing.assert_allclose(x_train[..., 0], train_images / 255.0, 1e-6)
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    np.testing.assert_array_equal(
        datasets.load_arrays(
            "mnist", "train", data_dir=tmp_path, validation_fraction=0.0
        )[1],
        train_labels,
    )


def test_idx_files_directly_in_data_dir(tmp_path):
    write_mnist_like(tmp_path)
    x, _ = datasets.load_arrays("fashion_mnist", "test", data_dir=tmp_path)
    assert x.shape == (20, 28, 28, 1)


def test_corrupt_idx_file_raises_value_error(tmp_path):
    write_mnist_like(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(b"\x00\x00\x0d\x01" + struct.pack(">I", 20) + bytes(80))
    )
    with pytest.raises(ValueError, match="0x00000d01"):
        datasets.load_arrays("mnist", "test", data_dir=tmp_path)


def test_truncated_idx_file_raises_value_error(tmp_path):
    write_mnist_like(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(20, np.uint8))
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-3]))
    with pytest.raises(ValueError, match="truncated"):
        datasets.load_arrays("mnist", "test", data_dir=tmp_path)


def test_keras_mnist_npz_and_environment_directory(
    tmp_path, monkeypatch, isolated_environment
):
    keras_datasets = isolated_environment / ".keras" / "datasets"
    keras_datasets.mkdir(parents=True)
    images = indexed_images(12, (28, 28))
    np.savez(
        keras_datasets / "mnist.npz",
        x_train=images,
        y_train=np.arange(12) % 10,
        x_test=images[:4],
        y_test=np.arange(4),
    )
    x, y = datasets.load_arrays("mnist", "test")
    assert x.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(y, np.arange(4))
    # $KBP_DATA_DIR/<name> comes before the Keras cache.
    write_mnist_like(tmp_path / "fashion-mnist", num_test=7)
    write_mnist_like(tmp_path / "mnist", num_test=9)
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(tmp_path))
    assert datasets.load_arrays("mnist", "test")[0].shape[0] == 9
    assert datasets.load_arrays("fashion_mnist", "test")[0].shape[0] == 7


def test_a_new_dataset_is_one_registry_entry(tmp_path, monkeypatch):
    # An IDX-format dataset the package does not know, declared in one place.
    entry = _sources.Dataset(
        name="kuzushiji_mnist",
        input_shape=(28, 28, 1),
        num_classes=10,
        num_train_examples=60000,
        num_test_examples=10000,
        max_pixel_value=255,
        tfds_name=None,
        homepage="https://github.com/rois-codh/kmnist",
        looked_for="the four Kuzushiji-MNIST IDX files",
        how_to_get="download them from https://github.com/rois-codh/kmnist",
        find=_idx.find,
        aliases=("kmnist",),
    )
    monkeypatch.setitem(_load.REGISTRY, "kuzushiji_mnist", entry)
    spec = datasets.info("Kuzushiji-MNIST")
    assert type(spec) is datasets.DatasetInfo
    assert (spec.name, spec.input_shape) == ("kuzushiji_mnist", (28, 28, 1))
    with pytest.raises(datasets.DatasetNotFoundError) as caught:
        datasets.load_arrays("kuzushiji_mnist", "test", data_dir=tmp_path)
    message = str(caught.value)
    assert "Looked for the four Kuzushiji-MNIST IDX files in" in message
    assert str(tmp_path / "kmnist") in caught.value.paths_tried
    assert "github.com/rois-codh/kmnist. tensorflow-datasets" in message
    _, _, test_images, test_labels = write_mnist_like(tmp_path / "kmnist")
    x, y = datasets.load_arrays("kuzushiji_mnist", "test", data_dir=tmp_path)
    np.testing.assert_allclose(x[..., 0], test_images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, test_labels)
    images, labels, sizes = collect(
        datasets.load("kuzushiji_mnist", "validation", data_dir=tmp_path)
    )
    assert images.shape == (5, 28, 28, 1) and sizes == [5]
    assert len(np.unique(labels)) == 5  # Stratified: five classes, one each.


# Validation split.


def example_ids(images):
    """Recovers the index stored in each image's first pixel."""
    flat = np.asarray(images).reshape(len(images), -1)[:, 0]
    return np.rint(flat * 255).astype(int) if flat.dtype.kind == "f" else flat


@pytest.mark.parametrize("stratify", [True, False])
def test_validation_split_partitions_training_set(tmp_path, stratify):
    write_mnist_like(tmp_path, num_train=50)
    splits = {
        split: datasets.load_arrays(
            "mnist",
            split,
            data_dir=tmp_path,
            validation_fraction=0.2,
            seed=3,
            stratify=stratify,
        )
        for split in ("train", "validation")
    }
    train_ids = example_ids(splits["train"][0])
    validation_ids = example_ids(splits["validation"][0])
    assert len(train_ids) == 40 and len(validation_ids) == 10
    assert not set(train_ids) & set(validation_ids)
    assert sorted([*train_ids, *validation_ids]) == list(range(50))
    np.testing.assert_array_equal(splits["train"][1], train_ids % 10)
    if stratify:
        np.testing.assert_array_equal(
            np.bincount(splits["validation"][1], minlength=10), [1] * 10
        )
    # The same seed chooses the same examples; another seed others.
    again = datasets.load_arrays(
        "mnist",
        "validation",
        data_dir=tmp_path,
        validation_fraction=0.2,
        seed=3,
        stratify=stratify,
    )
    np.testing.assert_array_equal(example_ids(again[0]), validation_ids)
    other = datasets.load_arrays(
        "mnist",
        "validation",
        data_dir=tmp_path,
        validation_fraction=0.2,
        seed=4,
        stratify=stratify,
    )
    assert set(example_ids(other[0])) != set(validation_ids)


def test_stratified_split_rounds_to_requested_size(tmp_path):
    write_mnist_like(tmp_path, num_train=47)
    _, y = datasets.load_arrays(
        "mnist", "validation", data_dir=tmp_path, validation_fraction=0.3
    )
    assert len(y) == round(0.3 * 47)
    assert np.bincount(y, minlength=10).max() <= 2


def test_zero_validation_fraction(tmp_path):
    write_mnist_like(tmp_path, num_train=30)
    x, _ = datasets.load_arrays(
        "mnist", "train", data_dir=tmp_path, validation_fraction=0
    )
    assert len(x) == 30
    with pytest.raises(ValueError, match="'validation' split .* is empty"):
        datasets.load(
            "mnist", "validation", data_dir=tmp_path, validation_fraction=0
        )


# tf.data pipelines.


def collect(dataset):
    batches = list(dataset.as_numpy_iterator())
    images = np.concatenate([images for images, _ in batches])
    labels = np.concatenate([labels for _, labels in batches])
    return images, labels, [len(labels) for _, labels in batches]


def test_load_returns_batched_scaled_pipeline(tmp_path):
    write_mnist_like(tmp_path, num_train=50, num_test=20)
    test = datasets.load("mnist", "test", data_dir=tmp_path, batch_size=8)
    assert isinstance(test, tf.data.Dataset)
    assert test.element_spec == (
        tf.TensorSpec((None, 28, 28, 1), tf.float32),
        tf.TensorSpec((None,), tf.int32),
    )
    images, labels, sizes = collect(test)
    assert sizes == [8, 8, 4]
    assert images.min() >= 0.0 and images.max() <= 1.0
    # Not shuffled: the same order as load_arrays.
    expected_images, expected_labels = datasets.load_arrays(
        "mnist", "test", data_dir=tmp_path
    )
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)


def test_train_pipeline_is_shuffled_and_seeded(tmp_path):
    write_mnist_like(tmp_path, num_train=50)

    def two_epochs(seed):
        datasets.clear_cache()
        train = datasets.load(
            "mnist", "train", data_dir=tmp_path, batch_size=16, seed=seed
        )
        return [example_ids(collect(train)[0]) for _ in range(2)]

    first_epoch, second_epoch = two_epochs(seed=7)
    assert sorted(first_epoch) == sorted(second_epoch)
    assert list(first_epoch) != sorted(first_epoch)
    assert list(first_epoch) != list(second_epoch)
    again = two_epochs(seed=7)
    np.testing.assert_array_equal(again[0], first_epoch)
    np.testing.assert_array_equal(again[1], second_epoch)
    assert list(two_epochs(seed=8)[0]) != list(first_epoch)


def test_unbatched_and_unshuffled_train(tmp_path):
    write_mnist_like(tmp_path, num_train=20)
    train = datasets.load(
        "mnist",
        "train",
        data_dir=tmp_path,
        batch_size=None,
        shuffle=False,
        validation_fraction=0.0,
    )
    assert train.element_spec[0].shape == (28, 28, 1)
    ids = [example_ids(image[np.newaxis])[0] for image, _ in train]
    assert ids == list(range(20))


def test_arrays_are_fresh_and_cached(tmp_path):
    write_mnist_like(tmp_path)
    x, y = datasets.load_arrays("mnist", "test", data_dir=tmp_path, scale=False)
    assert x.dtype == np.uint8 and x.flags.writeable and y.flags.writeable
    x[:] = 0
    hits = _sources.read_source.cache_info().hits
    again, _ = datasets.load_arrays(
        "mnist", "test", data_dir=tmp_path, scale=False
    )
    assert again.max() > 0
    assert _sources.read_source.cache_info().hits == hits + 1


# CIFAR.


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
@pytest.mark.parametrize("as_archive", [False, True])
def test_cifar_pickles(tmp_path, name, as_archive):
    folder, num_train, num_classes = write_cifar(tmp_path / "src", name)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if as_archive:
        archive = "cifar-10-python.tar.gz"
        if name == "cifar100":
            archive = "cifar-100-python.tar.gz"
        with tarfile.open(data_dir / archive, "w:gz") as tar:
            tar.add(folder, arcname=folder.name)
    else:
        folder.rename(data_dir / folder.name)
    x, y = datasets.load_arrays(
        name, "train", data_dir=data_dir, validation_fraction=0
    )
    assert x.shape == (num_train, 32, 32, 3) and x.dtype == np.float32
    # Channel-major rows become channels_last images.
    np.testing.assert_allclose(
        x[:, 5, 7], np.tile([10 / 255, 20 / 255, 30 / 255], (num_train, 1))
    )
    np.testing.assert_array_equal(example_ids(x), np.arange(num_train))
    np.testing.assert_array_equal(y, np.arange(num_train) % num_classes)
    x_test, y_test = datasets.load_arrays(name, "test", data_dir=data_dir)
    assert x_test.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(y_test, (200 + np.arange(5)) % num_classes)


def test_cifar_in_keras_cache_layout(isolated_environment):
    keras_datasets = isolated_environment / ".keras" / "datasets"
    write_cifar(keras_datasets / "cifar-10-batches-py-target", "cifar10")
    x, _ = datasets.load_arrays("cifar10", "test")
    assert x.shape == (5, 32, 32, 3)


def test_cifar_with_bad_rows_raises_value_error(tmp_path):
    folder, _, _ = write_cifar(tmp_path, "cifar100")
    batch = {b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 1]}
    (folder / "test").write_bytes(pickle.dumps(batch))
    with pytest.raises(ValueError, match=r"\[N, 3072\]"):
        datasets.load_arrays("cifar100", "test", data_dir=tmp_path)


# Tiny ImageNet.


@pytest.mark.parametrize("as_zip", [False, True])
def test_tiny_imagenet(tmp_path, as_zip):
    files = tiny_imagenet_files()
    if as_zip:
        with zipfile.ZipFile(tmp_path / "tiny-imagenet-200.zip", "w") as zf:
            for relative, content in files.items():
                zf.writestr(f"tiny-imagenet-200/{relative}", content)
    else:
        for relative, content in files.items():
            path = tmp_path / "tiny-imagenet-200" / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    x, y = datasets.load_arrays(
        "tiny_imagenet", "train", data_dir=tmp_path, validation_fraction=0
    )
    assert x.shape == (9, 64, 64, 3) and x.dtype == np.float32
    # Labels follow the sorted WordNet ids, not the order in wnids.txt.
    np.testing.assert_array_equal(y, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    sorted_colours = np.array([TINY_COLOURS[w] for w in sorted(TINY_COLOURS)])
    np.testing.assert_allclose(
        x.mean(axis=(1, 2)), sorted_colours[y] / 255, atol=0.02
    )
    x_test, y_test = datasets.load_arrays(
        "tiny_imagenet", "test", data_dir=tmp_path
    )
    assert x_test.shape == (7, 64, 64, 3)
    np.testing.assert_array_equal(y_test, [1, 2, 0, 1, 2, 0, 0])
    np.testing.assert_allclose(x_test[6], 128 / 255, atol=0.02)


# Missing data and downloads.


def test_missing_data_error_names_paths_and_remedies(tmp_path):
    # An empty folder: it exists (a missing one is refused), holds nothing.
    (tmp_path / "nowhere").mkdir()
    with pytest.raises(datasets.DatasetNotFoundError) as caught:
        datasets.load("cifar100", "train", data_dir=tmp_path / "nowhere")
    error = caught.value
    assert isinstance(error, FileNotFoundError)
    message = str(error)
    for path in (
        tmp_path / "nowhere",
        tmp_path / "nowhere" / "cifar100",
        tmp_path / "nowhere" / "cifar-100",
    ):
        assert str(path) in message
        assert str(path) in error.paths_tried
    assert "cifar-100-python.tar.gz" in message
    assert "download=True" in message
    assert error.name == "cifar100"


def test_missing_fashion_mnist_mentions_debian_package(tmp_path, monkeypatch):
    entry = dataclasses.replace(
        _load.REGISTRY["fashion_mnist"], system_dirs=(str(tmp_path / "system"),)
    )
    monkeypatch.setitem(_load.REGISTRY, "fashion_mnist", entry)
    with pytest.raises(datasets.DatasetNotFoundError) as caught:
        datasets.load_arrays("fashion_mnist", "test")
    assert "dataset-fashion-mnist" in str(caught.value)
    assert str(tmp_path / "system") in str(caught.value)


def test_missing_tiny_imagenet_says_tfds_cannot_help(tmp_path):
    with pytest.raises(datasets.DatasetNotFoundError, match="zip") as caught:
        datasets.load("tiny_imagenet", data_dir=tmp_path, download=True)
    assert "cannot fetch" in str(caught.value)


class _UnusableModule(types.ModuleType):
    """Fails the test on any use of tensorflow-datasets."""

    def __getattr__(self, attribute):
        raise AssertionError(f"tensorflow_datasets.{attribute} was used")


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_missing_data_never_reaches_tensorflow_datasets(
    tmp_path, monkeypatch, name
):
    monkeypatch.setitem(
        sys.modules,
        "tensorflow_datasets",
        _UnusableModule("tensorflow_datasets"),
    )
    with pytest.raises(datasets.DatasetNotFoundError):
        datasets.load(name, "train", data_dir=tmp_path)


def fake_tfds(monkeypatch, prepared_dirs):
    """Replaces the network-facing tensorflow-datasets API with fakes."""
    tfds = pytest.importorskip("tensorflow_datasets")
    images = indexed_images(10, (28, 28, 1))

    class ReadOnlyBuilder:
        def __init__(self, builder_dir):
            prepared_dirs.append(pathlib.Path(builder_dir))

        def as_dataset(self, split, as_supervised, batch_size):
            assert as_supervised and batch_size == -1
            count = 10 if split == "train" else 4
            return tf.constant(images[:count]), tf.range(count, dtype=tf.int64)

    def no_network(*args, **kwargs):
        raise AssertionError("tensorflow-datasets network API was called")

    monkeypatch.setattr(tfds, "builder_from_directory", ReadOnlyBuilder)
    monkeypatch.setattr(tfds, "load", no_network)
    monkeypatch.setattr(tfds, "builder", no_network)
    return tfds


def write_prepared(dataset_dir, version):
    (dataset_dir / version).mkdir(parents=True)
    (dataset_dir / version / "dataset_info.json").write_text(json.dumps({}))


def test_prepared_tfds_copy_is_read_without_download(
    tmp_path, monkeypatch, isolated_environment
):
    prepared_dirs = []
    fake_tfds(monkeypatch, prepared_dirs)
    tfds_dir = isolated_environment / "tensorflow_datasets" / "mnist"
    write_prepared(tfds_dir, "3.0.0")
    write_prepared(tfds_dir, "3.0.1")
    write_prepared(tfds_dir, "3.0.2.incomplete123")
    x, y = datasets.load_arrays("mnist", "test")
    assert x.shape == (4, 28, 28, 1) and y.dtype == np.int32
    assert prepared_dirs == [tfds_dir / "3.0.1"]


def test_download_only_when_requested(tmp_path, monkeypatch):
    prepared_dirs = []
    tfds = fake_tfds(monkeypatch, prepared_dirs)
    with pytest.raises(datasets.DatasetNotFoundError):
        datasets.load_arrays("mnist", "test", data_dir=tmp_path)

    downloads = []

    class DownloadingBuilder:
        def __init__(self, name, data_dir):
            self.name, self.data_dir = name, pathlib.Path(data_dir)

        def download_and_prepare(self):
            downloads.append(self.name)
            write_prepared(self.data_dir / self.name, "3.0.1")

    monkeypatch.setattr(tfds, "builder", DownloadingBuilder)
    x, _ = datasets.load_arrays(
        "mnist", "test", data_dir=tmp_path, download=True
    )
    assert downloads == ["mnist"]
    assert prepared_dirs == [tmp_path / "mnist" / "3.0.1"]
    assert x.shape == (4, 28, 28, 1)


# Real data.


def test_digits():
    pytest.importorskip("sklearn")
    spec = datasets.info("digits")
    x_test, y_test = datasets.load_arrays("digits", "test")
    x_train, y_train = datasets.load_arrays("digits", "train")
    x_validation, _ = datasets.load_arrays("digits", "validation")
    assert x_test.shape == (spec.num_test_examples, 8, 8, 1)
    assert len(x_train) + len(x_validation) == spec.num_train_examples
    assert len(x_validation) == round(0.1 * spec.num_train_examples)
    assert x_train.max() == 1.0 and x_train.min() == 0.0
    assert set(np.unique(y_train)) == set(range(10))
    assert np.bincount(y_test).min() >= 35
    # The test split does not depend on the seed.
    np.testing.assert_array_equal(
        datasets.load_arrays("digits", "test", seed=5)[1], y_test
    )
    images, labels = next(iter(datasets.load("digits", batch_size=32)))
    assert images.shape == (32, 8, 8, 1) and labels.shape == (32,)


@pytest.mark.backends
def test_loaded_data_train_a_model_on_this_backend():
    # tf.data pipelines feed Keras' fit and evaluate on every backend.
    import keras

    pytest.importorskip("sklearn")
    train = datasets.load("digits", "train", batch_size=64, seed=1)
    test = datasets.load("digits", "test")
    model = keras.Sequential(
        [
            keras.Input(datasets.info("digits").input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(train, epochs=2, verbose=0)
    logs = model.evaluate(test, verbose=0, return_dict=True)
    assert logs["accuracy"] > 0.8


@pytest.mark.slow
@pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(),
    reason=f"{FASHION_MNIST_DIR} is absent: apt-get install "
    "dataset-fashion-mnist",
)
def test_real_fashion_mnist_from_debian_package():
    spec = datasets.info("fashion_mnist")
    x_train, y_train = datasets.load_arrays("fashion_mnist", "train")
    x_validation, y_validation = datasets.load_arrays(
        "fashion_mnist", "validation"
    )
    x_test, y_test = datasets.load_arrays("fashion_mnist", "test")
    assert x_train.shape == (54000, 28, 28, 1)
    assert x_validation.shape == (6000, 28, 28, 1)
    assert x_test.shape == (spec.num_test_examples, 28, 28, 1)
    assert len(x_train) + len(x_validation) == spec.num_train_examples
    np.testing.assert_array_equal(np.bincount(y_validation), [600] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [1000] * 10)
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert y_train.dtype == np.int32
    images, labels = next(iter(datasets.load("fashion_mnist", "test")))
    assert images.shape == (128, 28, 28, 1)
    np.testing.assert_array_equal(labels, y_test[:128])


def test_download_explains_missing_importlib_resources(tmp_path, monkeypatch):
    tfds = fake_tfds(monkeypatch, [])

    class BrokenBuilder:
        def __init__(self, name, data_dir):
            pass

        def download_and_prepare(self):
            raise ModuleNotFoundError(
                "No module named 'importlib_resources'",
                name="importlib_resources",
            )

    monkeypatch.setattr(tfds, "builder", BrokenBuilder)
    with pytest.raises(ImportError, match="pip install importlib_resources"):
        datasets.load("cifar10", data_dir=tmp_path, download=True)


# Many-class composites.


def item_ids(composites, items):
    """The example index stored in each item's first pixel, [N, items]."""
    width = composites.shape[2] // items
    return np.stack(
        [example_ids(composites[:, :, item * width]) for item in range(items)],
        axis=1,
    )


@pytest.mark.parametrize(
    "name, items, shape",
    [
        ("mnist_100", 2, (28, 56, 1)),
        ("fashion_mnist_1000", 3, (28, 84, 1)),
        ("digits_100", 2, (8, 16, 1)),
        ("digits_1000", 3, (8, 24, 1)),
    ],
)
def test_composites_describe_their_classes(name, items, shape):
    spec = datasets.info(name)
    assert spec.num_classes == 10**items and spec.input_shape == shape
    assert spec.tfds_name is None


def test_composites_are_balanced_labelled_by_their_items(tmp_path):
    train_images, train_labels, test_images, test_labels = write_mnist_like(
        tmp_path, num_train=200, num_test=60
    )
    spec = datasets.info("mnist_100")
    sizes = {}
    for split, base_labels in (
        ("train", train_labels),
        ("validation", train_labels),
        ("test", test_labels),
    ):
        images, labels = datasets.load_arrays(
            "mnist_100", split, data_dir=tmp_path, seed=3, scale=False
        )
        sizes[split] = len(labels)
        assert images.shape[1:] == spec.input_shape
        counts = np.bincount(labels, minlength=100)
        assert counts.max() - counts.min() <= 1
        ids = item_ids(images, 2)
        offset = 100 if split == "test" else 0
        # The label's tens are the left item's class, its units the right's.
        np.testing.assert_array_equal(
            labels,
            base_labels[ids[:, 0] - offset] * 10
            + base_labels[ids[:, 1] - offset],
        )
    assert sizes == {"train": 54000, "validation": 6000, "test": 10000}


def test_composites_never_mix_splits(tmp_path):
    write_mnist_like(tmp_path, num_train=200, num_test=60)
    ids = {
        split: set(
            item_ids(
                datasets.load_arrays(
                    "mnist_1000", split, data_dir=tmp_path, seed=5, scale=False
                )[0],
                3,
            ).ravel()
        )
        for split in ("train", "validation", "test")
    }
    assert ids["test"] <= set(range(100, 160))
    assert ids["train"] | ids["validation"] <= set(range(200))
    assert not ids["train"] & ids["validation"]
    # The validation images are the base dataset's own validation split.
    base_validation = datasets.load_arrays(
        "mnist", "validation", data_dir=tmp_path, seed=5, scale=False
    )[0]
    assert ids["validation"] == set(example_ids(base_validation))


@pytest.mark.slow
def test_composites_are_deterministic(tmp_path):
    write_mnist_like(tmp_path, num_train=200, num_test=60)

    def arrays(split, seed):
        datasets.clear_cache()
        return datasets.load_arrays(
            "mnist_100", split, data_dir=tmp_path, seed=seed
        )

    for split in ("train", "test"):
        first, again = arrays(split, 1), arrays(split, 1)
        np.testing.assert_array_equal(first[0], again[0])
        np.testing.assert_array_equal(first[1], again[1])
    # The seed moves the validation split, not the test set.
    assert not np.array_equal(arrays("train", 1)[0], arrays("train", 2)[0])
    np.testing.assert_array_equal(arrays("test", 1)[0], arrays("test", 2)[0])


def test_composites_through_the_pipeline(tmp_path):
    write_mnist_like(tmp_path, num_train=200, num_test=60)
    images, labels = next(
        iter(datasets.load("mnist_1000", "test", data_dir=tmp_path))
    )
    assert images.shape == (128, 28, 84, 1) and images.dtype == tf.float32
    assert 0 <= int(tf.reduce_min(labels)) and int(tf.reduce_max(labels)) < 1000


def test_composites_need_every_base_class(tmp_path):
    write_mnist_like(tmp_path, num_train=200, num_test=3)
    with pytest.raises(ValueError, match="every class .* Received: no image"):
        datasets.load_arrays("mnist_100", "test", data_dir=tmp_path)


def test_bad_number_of_actions_names_the_composites():
    match = "digits_100.*Received: name='digits_50'"
    with pytest.raises(ValueError, match=match):
        datasets.info("digits_50")


def test_composites_of_the_real_digits():
    images, labels = datasets.load_arrays("digits_1000", "test")
    assert images.shape == (10000, 8, 24, 1)
    assert np.array_equal(np.bincount(labels), np.full(1000, 10))


@pytest.mark.parametrize("name", ["fashion_mnist", "digits"])
def test_a_data_dir_that_is_not_a_folder_is_refused(name, tmp_path):
    # It was passed over for the system's copy, without a word.
    missing = tmp_path / "no_such_folder"
    with pytest.raises(ValueError, match="does not exist") as error:
        datasets.load(name, "test", data_dir=missing)
    assert f"data_dir={str(missing)!r}" in str(error.value)
    a_file = tmp_path / "mnist.npz"
    a_file.write_bytes(b"")
    with pytest.raises(ValueError, match="is not a folder"):
        datasets.load_arrays(name, "test", data_dir=a_file)
