"""Image classification data for BrainProp experiments, offline first.

`load` returns a batched, prefetched `tf.data.Dataset` of
`(images, labels)`: float32 pixels scaled to [0, 1], shaped
`[batch, height, width, channels]` (channels_last), and int32 class labels.
`load_arrays` returns the same examples as NumPy arrays, and `info` describes
a dataset (input shape, number of classes) without reading any data, so an
experiment can build its network first.

Supported names (`NAMES`): `"mnist"`, `"fashion_mnist"`, `"cifar10"`,
`"cifar100"`, `"tiny_imagenet"` and `"digits"`.

Splits: `"train"`, `"validation"` and `"test"`. The validation split is
carved out of the official training set (a seeded, by default stratified,
`validation_fraction` of it) and `"train"` excludes it, so early stopping
never sees the test set. Tiny ImageNet's test labels are not public: its
official validation set serves as the test split. scikit-learn's digits come
as one set of 1,797 images: a fixed, stratified 20% of it (359 images,
independent of `seed`) is the test split.

Where the data comes from, in this order:

1. Local files in the original distribution formats, looked for in
   `data_dir`, `data_dir/<name>`, `$KBP_DATA_DIR/<name>`, the Keras cache
   (`~/.keras/datasets`) and system directories:
   - MNIST, Fashion-MNIST: the four IDX files (`train-images-idx3-ubyte.gz`,
     `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz`,
     `t10k-labels-idx1-ubyte.gz`; gzipped or not). The Debian package
     `dataset-fashion-mnist` installs them in
     `/usr/share/datasets/fashion-mnist`, which is searched automatically.
     MNIST is also read from Keras' `mnist.npz`.
   - CIFAR-10/100: the python pickles (`cifar-10-batches-py/` or
     `cifar-100-python/`) or their `.tar.gz` archives. Pickles can run code
     when read: only use archives from the official site.
   - Tiny ImageNet: the `tiny-imagenet-200/` folder or its `.zip`.
     Labels are the positions of the WordNet ids in sorted order.
   - digits: bundled with scikit-learn.
2. A tensorflow-datasets copy that is already prepared on disk (in
   `data_dir` or the default tensorflow-datasets directory, `$TFDS_DATA_DIR`
   or `~/tensorflow_datasets`); read without any network access.
3. Only when `download=True`: a tensorflow-datasets download (MNIST,
   Fashion-MNIST, CIFAR-10/100).

Nothing is ever downloaded unless `download=True` is passed: missing data
raises `DatasetNotFoundError` naming every place looked in and how to get
the data. Decoded arrays are cached in-process (as uint8), so loading the
train, validation and test splits decodes the files once.

Example:

```python
from keras_brainprop import datasets

train = datasets.load("fashion_mnist", "train", batch_size=128, seed=1)
validation = datasets.load("fashion_mnist", "validation", seed=1)
test = datasets.load("fashion_mnist", "test")
spec = datasets.info("fashion_mnist")
spec.input_shape, spec.num_classes  # ((28, 28, 1), 10)
```
"""

import collections
import dataclasses
import functools
import gzip
import os
import pathlib
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import tensorflow as tf

NAMES = (
    "mnist",
    "fashion_mnist",
    "cifar10",
    "cifar100",
    "tiny_imagenet",
    "digits",
)
SPLITS = ("train", "validation", "test")

# Environment variable naming an extra root directory for local copies.
DATA_DIR_ENV = "KBP_DATA_DIR"

# Fraction and seed of the fixed test split carved out of the digits.
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_TEST_SEED = 0


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static description of a supported dataset.

    Available without reading any data, so an experiment can build its
    network before loading.

    Attributes:
        name: One of `NAMES`.
        input_shape: Shape of one image, `(height, width, channels)`.
        num_classes: Number of classes; labels are `0 .. num_classes - 1`.
        num_train_examples: Size of the full training set, before the
            validation split is carved out of it.
        num_test_examples: Size of the test split.
        max_pixel_value: Largest stored pixel value (255, or 16 for digits);
            `load` divides the pixels by it.
        tfds_name: The tensorflow-datasets name, or `None` if the dataset is
            not available there.
        homepage: Where the data comes from.
    """

    name: str
    input_shape: tuple
    num_classes: int
    num_train_examples: int
    num_test_examples: int
    max_pixel_value: int
    tfds_name: str | None
    homepage: str


class DatasetNotFoundError(FileNotFoundError):
    """No local copy of a dataset was found and no download was requested.

    Attributes:
        name: The dataset asked for.
        paths_tried: Every path looked in, in order.
    """

    def __init__(self, message, name, paths_tried):
        super().__init__(message)
        self.name = name
        self.paths_tried = tuple(paths_tried)


_INFOS = {
    "mnist": DatasetInfo(
        name="mnist",
        input_shape=(28, 28, 1),
        num_classes=10,
        num_train_examples=60000,
        num_test_examples=10000,
        max_pixel_value=255,
        tfds_name="mnist",
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        input_shape=(28, 28, 1),
        num_classes=10,
        num_train_examples=60000,
        num_test_examples=10000,
        max_pixel_value=255,
        tfds_name="fashion_mnist",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
    "cifar10": DatasetInfo(
        name="cifar10",
        input_shape=(32, 32, 3),
        num_classes=10,
        num_train_examples=50000,
        num_test_examples=10000,
        max_pixel_value=255,
        tfds_name="cifar10",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": DatasetInfo(
        name="cifar100",
        input_shape=(32, 32, 3),
        num_classes=100,
        num_train_examples=50000,
        num_test_examples=10000,
        max_pixel_value=255,
        tfds_name="cifar100",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "tiny_imagenet": DatasetInfo(
        name="tiny_imagenet",
        input_shape=(64, 64, 3),
        num_classes=200,
        num_train_examples=100000,
        num_test_examples=10000,
        max_pixel_value=255,
        tfds_name=None,
        homepage="http://cs231n.stanford.edu/tiny-imagenet-200.zip",
    ),
    "digits": DatasetInfo(
        name="digits",
        input_shape=(8, 8, 1),
        num_classes=10,
        num_train_examples=1438,
        num_test_examples=359,
        max_pixel_value=16,
        tfds_name=None,
        homepage=(
            "https://scikit-learn.org/stable/modules/generated/"
            "sklearn.datasets.load_digits.html"
        ),
    ),
}

# Directory names a dataset may live under inside a data root.
_ALIASES = {
    "mnist": ("mnist",),
    "fashion_mnist": ("fashion_mnist", "fashion-mnist"),
    "cifar10": ("cifar10", "cifar-10"),
    "cifar100": ("cifar100", "cifar-100"),
    "tiny_imagenet": ("tiny_imagenet", "tiny-imagenet"),
    "digits": (),
}

# Directories where operating-system packages install datasets.
_SYSTEM_DIRS = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
}

_LOOKED_FOR = {
    "mnist": (
        "the four MNIST IDX files (train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz; gzipped or not) or Keras' mnist.npz"
    ),
    "fashion_mnist": (
        "the four Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, "
        "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz; gzipped or not)"
    ),
    "cifar10": (
        "cifar-10-batches-py/ (data_batch_1 .. data_batch_5, test_batch) "
        "or cifar-10-python.tar.gz"
    ),
    "cifar100": ("cifar-100-python/ (train, test) or cifar-100-python.tar.gz"),
    "tiny_imagenet": (
        "tiny-imagenet-200/ (wnids.txt, train/, val/) or tiny-imagenet-200.zip"
    ),
}

_HOW_TO_GET = {
    "mnist": (
        "download the four IDX files from "
        "https://storage.googleapis.com/cvdf-datasets/mnist/ (or "
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
        "mnist.npz) into one of the directories above, or pass "
        "download=True to fetch it with tensorflow-datasets."
    ),
    "fashion_mnist": (
        "install the Debian/Ubuntu package dataset-fashion-mnist "
        "(apt-get install dataset-fashion-mnist), or download the four IDX "
        "files from https://github.com/zalandoresearch/fashion-mnist into "
        "one of the directories above, or pass download=True to fetch it "
        "with tensorflow-datasets."
    ),
    "cifar10": (
        "download and unpack https://www.cs.toronto.edu/~kriz/"
        "cifar-10-python.tar.gz into one of the directories above (the "
        "archive itself is read too), or pass download=True to fetch it "
        "with tensorflow-datasets."
    ),
    "cifar100": (
        "download and unpack https://www.cs.toronto.edu/~kriz/"
        "cifar-100-python.tar.gz into one of the directories above (the "
        "archive itself is read too), or pass download=True to fetch it "
        "with tensorflow-datasets."
    ),
    "tiny_imagenet": (
        "download http://cs231n.stanford.edu/tiny-imagenet-200.zip into one "
        "of the directories above (unzipped or not). tensorflow-datasets "
        "does not provide it, so download=True cannot fetch it."
    ),
    "digits": "install scikit-learn (pip install scikit-learn).",
}

_IDX_FILES = (
    ("train", "images", "idx3"),
    ("train", "labels", "idx1"),
    ("t10k", "images", "idx3"),
    ("t10k", "labels", "idx1"),
)

_CIFAR = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "archive": "cifar-10-python.tar.gz",
        "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test": ("test_batch",),
        "label_key": b"labels",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "archive": "cifar-100-python.tar.gz",
        "train": ("train",),
        "test": ("test",),
        "label_key": b"fine_labels",
    },
}

_TINY_IMAGENET_FOLDER = "tiny-imagenet-200"

# Where the decoded data of one dataset comes from. `stamp` is the key
# file's (mtime, size) so that a replaced file is not served from the cache.
_Source = collections.namedtuple("_Source", ["name", "kind", "path", "stamp"])

# The decoded data of one dataset: uint8 images [N, H, W, C], int32 labels.
_Arrays = collections.namedtuple(
    "_Arrays", ["train_images", "train_labels", "test_images", "test_labels"]
)


def info(name):
    """Describes a supported dataset without reading any data.

    Args:
        name: One of `NAMES`.

    Returns:
        A `DatasetInfo`.

    Raises:
        ValueError: If `name` is not supported.

    Example:

    >>> info("cifar10").input_shape
    (32, 32, 3)
    """
    return _INFOS[_check_name(name)]


def load(
    name,
    split="train",
    *,
    data_dir=None,
    batch_size=128,
    validation_fraction=0.1,
    seed=0,
    stratify=True,
    shuffle=None,
    download=False,
):
    """Loads one split of a dataset as a `tf.data.Dataset`.

    The dataset yields `(images, labels)`: float32 images scaled to [0, 1]
    and shaped `[batch_size, height, width, channels]`, and int32 labels
    shaped `[batch_size]`. The last batch may be smaller. Pixels are held as
    uint8 and scaled batch by batch, and the batches are prefetched.

    Args:
        name: One of `NAMES`.
        split: `"train"`, `"validation"` or `"test"`. `"validation"` is a
            `validation_fraction` of the official training set, and
            `"train"` is the rest of it.
        data_dir: Optional directory holding a local copy (see the module
            docstring for the layouts read) or a prepared
            tensorflow-datasets copy. Also where `download=True` stores it.
        batch_size: Examples per batch, or `None` for single examples.
        validation_fraction: Fraction in [0, 1) of the training set held
            out as the validation split.
        seed: Integer seeding the choice of validation examples and the
            shuffling.
            The same seed gives the same split and the same sequence of
            batches, epoch after epoch (given the same TensorFlow global
            seed, if one is set).
        stratify: Whether the validation split keeps the class proportions
            of the training set.
        shuffle: Whether to reshuffle the examples every epoch. Defaults to
            `True` for `"train"` and `False` otherwise.
        download: Whether tensorflow-datasets may download the data when
            no local copy is found. Never done unless `True`.

    Returns:
        A `tf.data.Dataset` of `(images, labels)`.

    Raises:
        ValueError: For an unknown `name` or `split`, a
            `validation_fraction` outside [0, 1), a `seed` that is not an
            integer, a `batch_size` below 1, or an empty split.
        DatasetNotFoundError: If no copy of the data is found and
            `download` is `False` (or the dataset cannot be downloaded).

    Example:

    ```python
    train = load("mnist", "train", data_dir="~/data", seed=3)
    validation = load("mnist", "validation", data_dir="~/data", seed=3)
    model.fit(train, validation_data=validation, epochs=10)
    ```
    """
    if batch_size is not None and (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int | np.integer)
        or batch_size < 1
    ):
        raise ValueError(
            "`batch_size` must be a positive integer or None. "
            f"Received: batch_size={batch_size!r}"
        )
    images, labels, spec = _select(
        name,
        split,
        data_dir=data_dir,
        validation_fraction=validation_fraction,
        seed=seed,
        stratify=stratify,
        download=download,
    )
    if shuffle is None:
        shuffle = split == "train"
    return _make_pipeline(
        images,
        labels,
        max_pixel_value=spec.max_pixel_value,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
    )


def load_arrays(
    name,
    split="train",
    *,
    data_dir=None,
    validation_fraction=0.1,
    seed=0,
    stratify=True,
    scale=True,
    download=False,
):
    """Loads one split of a dataset as NumPy arrays, in file order.

    Selects the same examples as `load` with the same arguments.

    Args:
        name: One of `NAMES`.
        split: `"train"`, `"validation"` or `"test"`.
        data_dir: Optional directory holding a local copy; see `load`.
        validation_fraction: Fraction in [0, 1) of the training set held
            out as the validation split.
        seed: Integer seeding the choice of validation examples.
        stratify: Whether the validation split keeps the class proportions
            of the training set.
        scale: If `True`, images are float32 in [0, 1]. If `False`, they
            are the stored uint8 pixels (0 .. `info(name).max_pixel_value`),
            which takes a quarter of the memory.
        download: Whether tensorflow-datasets may download the data when
            no local copy is found.

    Returns:
        A tuple `(images, labels)`: images shaped `[N, height, width,
        channels]`, int32 labels shaped `[N]`. Both are fresh arrays.

    Raises:
        ValueError: For an unknown `name` or `split`, a
            `validation_fraction` outside [0, 1), a `seed` that is not an
            integer, or an empty split.
        DatasetNotFoundError: If no copy of the data is found.

    Example:

    >>> x, y = load_arrays("digits", "test")
    >>> x.shape, x.dtype, y.shape
    ((359, 8, 8, 1), dtype('float32'), (359,))
    """
    images, labels, spec = _select(
        name,
        split,
        data_dir=data_dir,
        validation_fraction=validation_fraction,
        seed=seed,
        stratify=stratify,
        download=download,
    )
    if scale:
        images = images.astype(np.float32) / np.float32(spec.max_pixel_value)
    else:
        images = np.array(images, copy=True)
    return images, np.array(labels, copy=True)


def clear_cache():
    """Frees the decoded arrays that `load` and `load_arrays` cache."""
    _read_source.cache_clear()


def _check_name(name):
    normalised = name.lower().replace("-", "_") if isinstance(name, str) else ""
    if normalised not in NAMES:
        raise ValueError(
            f"Unknown dataset. Expected one of {NAMES}. Received: name={name!r}"
        )
    return normalised


def _select(
    name, split, *, data_dir, validation_fraction, seed, stratify, download
):
    """Returns the uint8 images and int32 labels of one split."""
    name = _check_name(name)
    if split not in SPLITS:
        raise ValueError(
            f"Unknown split. Expected one of {SPLITS}. "
            f"Received: split={split!r}"
        )
    if isinstance(validation_fraction, bool) or not (
        isinstance(validation_fraction, int | float | np.number)
        and 0 <= validation_fraction < 1
    ):
        raise ValueError(
            "`validation_fraction` must be a number in [0, 1). "
            f"Received: validation_fraction={validation_fraction!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        # A random split would differ between the train and validation
        # calls, so they would overlap.
        raise ValueError(f"`seed` must be an integer. Received: seed={seed!r}")
    spec = _INFOS[name]
    arrays = _read_source(_find_source(name, data_dir, download))
    if split == "test":
        images, labels = arrays.test_images, arrays.test_labels
    else:
        train_indices, validation_indices = _split_indices(
            arrays.train_labels, validation_fraction, seed, stratify
        )
        indices = train_indices if split == "train" else validation_indices
        images = arrays.train_images[indices]
        labels = arrays.train_labels[indices]
    if len(labels) == 0:
        raise ValueError(
            f"The {split!r} split of {name!r} is empty with "
            f"validation_fraction={validation_fraction!r} and "
            f"{len(arrays.train_labels)} training examples."
        )
    return images, labels, spec


def _split_indices(labels, validation_fraction, seed, stratify):
    """Sorted train and validation indices into `labels`, seeded."""
    num_examples = len(labels)
    num_validation = int(round(validation_fraction * num_examples))
    order = np.random.default_rng(seed).permutation(num_examples)
    if not stratify:
        validation = order[:num_validation]
    else:
        classes, counts = np.unique(labels, return_counts=True)
        quotas = counts * validation_fraction
        per_class = np.floor(quotas).astype(np.int64)
        # Hand the examples lost to flooring to the largest remainders.
        missing = num_validation - int(per_class.sum())
        by_remainder = np.argsort(-(quotas - per_class), kind="stable")
        per_class[by_remainder[:missing]] += 1
        ordered_labels = labels[order]
        validation = np.concatenate(
            [
                order[ordered_labels == label][:count]
                for label, count in zip(classes, per_class, strict=True)
            ]
            + [np.zeros(0, np.int64)]
        )
    is_validation = np.zeros(num_examples, bool)
    is_validation[validation] = True
    return np.flatnonzero(~is_validation), np.flatnonzero(is_validation)


def _make_pipeline(
    images, labels, *, max_pixel_value, batch_size, shuffle, seed
):
    # Shuffle and batch indices, then gather: the shuffle buffer holds
    # integers rather than images, and pixels stay uint8 until the map.
    images = tf.convert_to_tensor(images, dtype=tf.uint8)
    labels = tf.convert_to_tensor(labels, dtype=tf.int32)
    num_examples = int(labels.shape[0])

    def gather_and_scale(indices):
        # Divided rather than multiplied: bit-identical to load_arrays.
        batch_images = tf.cast(tf.gather(images, indices), tf.float32)
        batch_images = batch_images / tf.constant(max_pixel_value, tf.float32)
        return batch_images, tf.gather(labels, indices)

    dataset = tf.data.Dataset.range(num_examples)
    if shuffle:
        dataset = dataset.shuffle(
            num_examples, seed=seed, reshuffle_each_iteration=True
        )
    if batch_size is not None:
        dataset = dataset.batch(batch_size)
    dataset = dataset.map(
        gather_and_scale,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


# Finding the data.


def _search_dirs(name, data_dir):
    """Directories to look in, as `(path, specific)` pairs.

    `specific` is False for shared roots, where only unambiguous file names
    (archives, named folders) may be used; MNIST and Fashion-MNIST IDX files
    share their names and are only read from a directory of their own or
    from `data_dir` itself.
    """
    dirs = []
    if data_dir is not None:
        root = pathlib.Path(os.fspath(data_dir)).expanduser()
        dirs.append((root, True))
        dirs.extend((root / alias, True) for alias in _ALIASES[name])
    roots = []
    if os.environ.get(DATA_DIR_ENV):
        roots.append(pathlib.Path(os.environ[DATA_DIR_ENV]).expanduser())
    keras_home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    roots.append(pathlib.Path(keras_home).expanduser() / "datasets")
    for root in roots:
        dirs.extend((root / alias, True) for alias in _ALIASES[name])
        dirs.append((root, False))
    dirs.extend(
        (pathlib.Path(path), True) for path in _SYSTEM_DIRS.get(name, ())
    )
    return dirs


def _tfds_roots(data_dir):
    roots = []
    if data_dir is not None:
        roots.append(pathlib.Path(os.fspath(data_dir)).expanduser())
    default = os.environ.get("TFDS_DATA_DIR") or os.path.join(
        "~", "tensorflow_datasets"
    )
    roots.append(pathlib.Path(default).expanduser())
    return roots


def _stamp(path):
    status = path.stat()
    return (status.st_mtime_ns, status.st_size)


def _find_source(name, data_dir, download):
    """Locates a copy of `name` on disk, or downloads it if allowed."""
    if name == "digits":
        return _Source(name, "sklearn", None, None)
    tried = []
    for directory, specific in _search_dirs(name, data_dir):
        tried.append(str(directory))
        if not directory.is_dir():
            continue
        source = _probe_directory(name, directory, specific)
        if source is not None:
            return source
    tfds_name = _INFOS[name].tfds_name
    tfds_tried = []
    if tfds_name is not None:
        for root in _tfds_roots(data_dir):
            tfds_tried.append(str(root / tfds_name))
            source = _probe_tfds(name, root / tfds_name)
            if source is not None:
                return source
        if download:
            _download_with_tfds(tfds_name, data_dir)
            for root in _tfds_roots(data_dir):
                source = _probe_tfds(name, root / tfds_name)
                if source is not None:
                    return source
    tried_text = "\n".join(f"  {path}" for path in _unique(tried))
    message = (
        f"No local copy of {name!r} was found"
        f"{'' if download else ' (download=False)'}. Looked for "
        f"{_LOOKED_FOR[name]} in:\n{tried_text}\n"
    )
    if tfds_tried:
        tfds_text = "\n".join(f"  {path}" for path in _unique(tfds_tried))
        message += (
            f"and for a prepared tensorflow-datasets copy in:\n{tfds_text}\n"
        )
    message += f"To get it: {_HOW_TO_GET[name]}"
    if data_dir is None:
        message += (
            f" To look elsewhere, pass data_dir=... or set ${DATA_DIR_ENV}."
        )
    raise DatasetNotFoundError(message, name, _unique(tried + tfds_tried))


def _unique(items):
    return list(dict.fromkeys(items))


def _probe_directory(name, directory, specific):
    if name in ("mnist", "fashion_mnist"):
        if specific:
            paths = _idx_paths(directory)
            if paths is not None:
                return _Source(name, "idx", paths, _stamp(paths[0]))
        npz = directory / "mnist.npz"
        if name == "mnist" and npz.is_file():
            return _Source(name, "mnist_npz", npz, _stamp(npz))
        return None
    if name in _CIFAR:
        layout = _CIFAR[name]
        # Keras 3 unpacks the archive into <folder>-target/<folder>.
        for folder in (
            directory / layout["folder"],
            directory / f"{layout['folder']}-target" / layout["folder"],
            directory,
        ):
            key_files = [folder / part for part in layout["train"]]
            key_files += [folder / part for part in layout["test"]]
            if all(path.is_file() for path in key_files):
                return _Source(
                    name, "cifar_folder", folder, _stamp(key_files[0])
                )
        archive = directory / layout["archive"]
        if archive.is_file():
            return _Source(name, "cifar_archive", archive, _stamp(archive))
        return None
    # Tiny ImageNet.
    for folder in (directory / _TINY_IMAGENET_FOLDER, directory):
        wnids = folder / "wnids.txt"
        if wnids.is_file() and (folder / "train").is_dir():
            return _Source(name, "tiny_folder", folder, _stamp(wnids))
    archive = directory / f"{_TINY_IMAGENET_FOLDER}.zip"
    if archive.is_file():
        return _Source(name, "tiny_zip", archive, _stamp(archive))
    return None


def _idx_paths(directory):
    """The four IDX files in `directory` (train images first), or None."""
    paths = []
    for prefix, kind, idx in _IDX_FILES:
        candidates = [
            directory / f"{prefix}-{kind}-{idx}-ubyte{suffix}"
            for suffix in (".gz", "")
        ] + [
            directory / f"{prefix}-{kind}.{idx}-ubyte{suffix}"
            for suffix in (".gz", "")
        ]
        found = [path for path in candidates if path.is_file()]
        if not found:
            return None
        paths.append(found[0])
    return tuple(paths)


def _probe_tfds(name, dataset_dir):
    """The newest prepared version under `<tfds root>/<tfds name>`, if any."""
    if not dataset_dir.is_dir():
        return None
    versions = []
    for info_file in dataset_dir.glob("*/dataset_info.json"):
        version_text = info_file.parent.name
        # Unfinished preparations live in "<version>.incomplete..." folders.
        parts = version_text.split(".")
        if len(parts) == 3 and all(part.isdigit() for part in parts):
            versions.append((tuple(int(part) for part in parts), info_file))
    if not versions:
        return None
    _, info_file = max(versions)
    return _Source(name, "tfds", info_file.parent, _stamp(info_file))


def _import_tfds():
    # Imported lazily: only needed for tensorflow-datasets copies.
    try:
        import tensorflow_datasets
    except ImportError as error:
        raise ImportError(
            "Reading or downloading a tensorflow-datasets copy needs the "
            "tensorflow-datasets package: pip install tensorflow-datasets"
        ) from error
    return tensorflow_datasets


def _download_with_tfds(tfds_name, data_dir):
    tfds = _import_tfds()
    if data_dir is not None:
        data_dir = os.path.expanduser(os.fspath(data_dir))
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    try:
        builder.download_and_prepare()
    except ModuleNotFoundError as error:
        if error.name != "importlib_resources":
            raise
        # tensorflow-datasets 4.9.x needs it but only declares it for old
        # Pythons: https://github.com/tensorflow/datasets/issues/11212
        raise ImportError(
            "tensorflow-datasets needs the importlib_resources package to "
            "download data: pip install importlib_resources"
        ) from error


# Reading the data.


@functools.lru_cache(maxsize=4)
def _read_source(source):
    readers = {
        "idx": _read_idx_dataset,
        "mnist_npz": _read_mnist_npz,
        "cifar_folder": _read_cifar_folder,
        "cifar_archive": _read_cifar_archive,
        "tiny_folder": _read_tiny_imagenet_folder,
        "tiny_zip": _read_tiny_imagenet_zip,
        "tfds": _read_tfds,
        "sklearn": _read_digits,
    }
    arrays = readers[source.kind](source.name, source.path)
    arrays = _Arrays(
        *(
            np.asarray(array, dtype=np.uint8 if i % 2 == 0 else np.int32)
            for i, array in enumerate(arrays)
        )
    )
    _check_arrays(source, arrays)
    for array in arrays:
        # Cached and shared between calls: nobody may modify them.
        array.flags.writeable = False
    return arrays


def _check_arrays(source, arrays):
    spec = _INFOS[source.name]
    where = source.path if source.path is not None else source.kind
    for part in ("train", "test"):
        images = getattr(arrays, f"{part}_images")
        labels = getattr(arrays, f"{part}_labels")
        if images.shape[1:] != spec.input_shape:
            raise ValueError(
                f"{where}: {part} images of {source.name!r} should have shape "
                f"[N, {', '.join(map(str, spec.input_shape))}]. "
                f"Received: shape={images.shape}"
            )
        if labels.shape != images.shape[:1]:
            raise ValueError(
                f"{where}: {images.shape[0]} {part} images but labels of "
                f"shape {labels.shape}."
            )
        if labels.size and not 0 <= labels.min() <= labels.max() < (
            spec.num_classes
        ):
            raise ValueError(
                f"{where}: {part} labels of {source.name!r} should be in "
                f"[0, {spec.num_classes}). Received: min={labels.min()}, "
                f"max={labels.max()}"
            )


def _read_idx(path):
    """Decodes one unsigned-byte IDX file (optionally gzipped)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    # Magic number: two zero bytes, type 0x08 (unsigned byte), rank.
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise ValueError(
            f"{path} is not an unsigned-byte IDX file. "
            f"Received magic number: 0x{raw[:4].hex()}"
        )
    rank = raw[3]
    header_size = 4 + 4 * rank
    shape = struct.unpack(f">{rank}I", raw[4:header_size])
    data = np.frombuffer(raw, dtype=np.uint8, offset=header_size)
    if data.size != int(np.prod(shape)):
        raise ValueError(
            f"{path} is truncated or corrupt: its header announces shape "
            f"{shape} ({int(np.prod(shape))} bytes) but it holds "
            f"{data.size} bytes."
        )
    return data.reshape(shape)


def _read_idx_dataset(name, paths):
    train_images, train_labels, test_images, test_labels = (
        _read_idx(path) for path in paths
    )
    for images, path in ((train_images, paths[0]), (test_images, paths[2])):
        if images.ndim != 3:
            raise ValueError(
                f"{path} should hold images of rank 3 [N, H, W]. "
                f"Received: shape={images.shape}"
            )
    return (
        train_images[..., np.newaxis],
        train_labels,
        test_images[..., np.newaxis],
        test_labels,
    )


def _read_mnist_npz(name, path):
    with np.load(path, allow_pickle=False) as arrays:
        return (
            arrays["x_train"][..., np.newaxis],
            arrays["y_train"],
            arrays["x_test"][..., np.newaxis],
            arrays["y_test"],
        )


def _decode_cifar_batch(raw, label_key, where):
    batch = pickle.loads(raw, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{where}: b'data' should have shape [N, 3072]. "
            f"Received: shape={data.shape}"
        )
    # Rows are channel-major (1024 red, 1024 green, 1024 blue values).
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(batch[label_key])


def _assemble_cifar(name, read_part):
    layout = _CIFAR[name]
    arrays = []
    for part in ("train", "test"):
        batches = [
            _decode_cifar_batch(read_part(file), layout["label_key"], file)
            for file in layout[part]
        ]
        arrays.append(np.concatenate([images for images, _ in batches]))
        arrays.append(np.concatenate([labels for _, labels in batches]))
    return tuple(arrays)


def _read_cifar_folder(name, folder):
    return _assemble_cifar(name, lambda file: (folder / file).read_bytes())


def _read_cifar_archive(name, archive):
    with tarfile.open(archive, "r:*") as tar:
        members = {
            pathlib.PurePosixPath(member.name).name: member
            for member in tar.getmembers()
            if member.isfile()
        }

        def read_part(file):
            if file not in members:
                raise ValueError(f"{archive} has no member named {file!r}.")
            return tar.extractfile(members[file]).read()

        return _assemble_cifar(name, read_part)


def _read_tiny_imagenet(read_bytes, list_files, where):
    """Reads Tiny ImageNet through `read_bytes(relative path)` and
    `list_files(relative folder)` (file names in that folder)."""
    wnids = sorted(set(read_bytes("wnids.txt").decode().split()))
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    train_files, train_labels = [], []
    for wnid in wnids:
        folder = f"train/{wnid}/images"
        files = sorted(f for f in list_files(folder) if f.endswith(".JPEG"))
        train_files += [f"{folder}/{file}" for file in files]
        train_labels += [label_of[wnid]] * len(files)
    test_files, test_labels = [], []
    annotations = read_bytes("val/val_annotations.txt").decode()
    for line in annotations.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2 or fields[1] not in label_of:
            raise ValueError(
                f"{where}: unexpected line in val/val_annotations.txt: {line!r}"
            )
        test_files.append(f"val/images/{fields[0]}")
        test_labels.append(label_of[fields[1]])
    return (
        _decode_jpegs([read_bytes(file) for file in train_files], where),
        np.asarray(train_labels, np.int32),
        _decode_jpegs([read_bytes(file) for file in test_files], where),
        np.asarray(test_labels, np.int32),
    )


def _decode_jpegs(blobs, where, shape=(64, 64, 3)):
    images = np.empty((len(blobs), *shape), np.uint8)
    if not blobs:
        return images

    def decode(blob):
        # Some Tiny ImageNet images are greyscale: always decode to RGB.
        return tf.ensure_shape(tf.io.decode_jpeg(blob, channels=3), shape)

    decoded = (
        tf.data.Dataset.from_tensor_slices(tf.constant(blobs, tf.string))
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(1024)
    )
    start = 0
    try:
        for batch in decoded:
            images[start : start + len(batch)] = batch.numpy()
            start += len(batch)
    except tf.errors.InvalidArgumentError as error:
        raise ValueError(
            f"{where}: an image could not be decoded as a "
            f"{shape[0]}x{shape[1]} JPEG: {error.message}"
        ) from error
    return images


def _read_tiny_imagenet_folder(name, folder):
    def list_files(relative):
        path = folder / relative
        return [file.name for file in path.iterdir()] if path.is_dir() else []

    return _read_tiny_imagenet(
        lambda relative: (folder / relative).read_bytes(), list_files, folder
    )


def _read_tiny_imagenet_zip(name, archive):
    with zipfile.ZipFile(archive) as zipped:
        names = [
            member for member in zipped.namelist() if not member.endswith("/")
        ]
        wnids = [
            member
            for member in names
            if pathlib.PurePosixPath(member).name == "wnids.txt"
        ]
        if not wnids:
            raise ValueError(f"{archive} has no wnids.txt.")
        prefix = min(wnids, key=len)[: -len("wnids.txt")]
        files_in = collections.defaultdict(list)
        for member in names:
            if member.startswith(prefix):
                folder, _, file = member[len(prefix) :].rpartition("/")
                files_in[folder].append(file)
        return _read_tiny_imagenet(
            lambda relative: zipped.read(prefix + relative),
            lambda relative: files_in.get(relative, []),
            archive,
        )


def _read_tfds(name, builder_dir):
    tfds = _import_tfds()
    # A read-only builder made from the prepared files: no network access.
    builder = tfds.builder_from_directory(str(builder_dir))
    arrays = []
    for split in ("train", "test"):
        images, labels = builder.as_dataset(
            split=split, as_supervised=True, batch_size=-1
        )
        arrays += [np.asarray(images), np.asarray(labels)]
    return tuple(arrays)


def _read_digits(name, path):
    try:
        from sklearn import datasets as sklearn_datasets
    except ImportError as error:
        raise DatasetNotFoundError(
            "The 'digits' dataset comes with scikit-learn, which is not "
            f"installed. To get it: {_HOW_TO_GET['digits']}",
            name,
            [],
        ) from error
    digits = sklearn_datasets.load_digits()
    images = digits.images.astype(np.uint8)[..., np.newaxis]
    labels = digits.target.astype(np.int32)
    train, test = _split_indices(
        labels, _DIGITS_TEST_FRACTION, _DIGITS_TEST_SEED, stratify=True
    )
    return images[train], labels[train], images[test], labels[test]
