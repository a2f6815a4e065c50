"""A dataset's registry entry (`Dataset`), and finding and reading its data:
decoded arrays are cached by `Source`."""

import collections
import dataclasses
import functools
import os
import pathlib
from collections.abc import Callable

import numpy as np

from keras_brainprop.datasets import _tfds


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


@dataclasses.dataclass(frozen=True)
class Dataset(DatasetInfo):
    """A registry entry: its `DatasetInfo` and how to find and read its data.

    Attributes:
        looked_for, how_to_get: The files `find` looks for and how to get
            them, for the `DatasetNotFoundError` message.
        find: `find(dataset, directory, specific)` returns the `Source` of
            a copy in `directory`, or `None`; `specific` is `False` in
            shared roots, where only unambiguous names may be used.
        aliases, system_dirs: Other folder names to look in inside the
            roots, and system directories to look in.
        layout: The family's description of the files.
        bundled: The reader, `bundled(dataset, None)`, of data shipped with
            a Python package: then no files are searched.
    """

    looked_for: str = ""
    how_to_get: str = ""
    find: Callable | None = None
    aliases: tuple = ()
    system_dirs: tuple = ()
    layout: object = None
    bundled: Callable | None = None

    @property
    def info(self):
        fields = dataclasses.fields(DatasetInfo)
        return DatasetInfo(*(getattr(self, field.name) for field in fields))


# `read(dataset, path)` returns (train images, train labels, test images,
# test labels); `stamp`, the key file's (mtime, size), keeps a replaced file
# from being served from the cache.
Source = collections.namedtuple("Source", ["dataset", "read", "path", "stamp"])


def source(dataset, read, path, key_file=None):
    status = (key_file or path).stat()
    return Source(dataset, read, path, (status.st_mtime_ns, status.st_size))


DATA_DIR_ENV = "KBP_DATA_DIR"
"""Environment variable naming an extra root directory for local copies."""


def search_dirs(dataset, data_dir):
    """Directories to look in, as `(path, specific)` pairs, in order."""
    folders = (dataset.name, *dataset.aliases)
    dirs = []
    if data_dir is not None:
        root = pathlib.Path(os.fspath(data_dir)).expanduser()
        dirs += [(root, True)] + [(root / folder, True) for folder in folders]
    roots = []
    if os.environ.get(DATA_DIR_ENV):
        roots.append(pathlib.Path(os.environ[DATA_DIR_ENV]).expanduser())
    keras_home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    roots.append(pathlib.Path(keras_home).expanduser() / "datasets")
    for root in roots:
        dirs += [(root / folder, True) for folder in folders] + [(root, False)]
    return dirs + [(pathlib.Path(path), True) for path in dataset.system_dirs]


def find_source(dataset, data_dir, download):
    """The `Source` of a copy of `dataset`, downloaded only if allowed.

    A `data_dir` that is not a folder is refused (unless `download` may
    create it) rather than passed over for the usual places.
    """
    if data_dir is not None and not download:
        path = pathlib.Path(os.fspath(data_dir)).expanduser()
        if not path.is_dir():
            problem = "is not a folder" if path.exists() else "does not exist"
            raise ValueError(
                f"`data_dir` {problem}. Give the folder holding the data "
                "(a mistyped path would else go unnoticed, with the data "
                "read from elsewhere). "
                f"Received: data_dir={os.fspath(data_dir)!r}"
            )
    if dataset.bundled is not None:
        return Source(dataset, dataset.bundled, None, None)
    tried = []
    for directory, specific in search_dirs(dataset, data_dir):
        tried.append(str(directory))
        if directory.is_dir():
            found = dataset.find(dataset, directory, specific)
            if found is not None:
                return found
    tfds_tried = []
    if dataset.tfds_name is not None:
        info_file, tfds_tried = _tfds.find(
            dataset.tfds_name, data_dir, download
        )
        if info_file is not None:
            return source(dataset, _tfds.read, info_file.parent, info_file)
    message = (
        f"No local copy of {dataset.name!r} was found"
        f"{'' if download else ' (download=False)'}. Looked for "
        f"{dataset.looked_for} in:\n{_indented(tried)}\n"
    )
    if tfds_tried:
        message += "and for a prepared tensorflow-datasets copy in:\n"
        message += f"{_indented(tfds_tried)}\n"
    message += f"To get it: {dataset.how_to_get}" + (
        ", or pass download=True to fetch it with tensorflow-datasets."
        if dataset.tfds_name is not None
        else ". tensorflow-datasets does not provide it, so download=True "
        "cannot fetch it."
    )
    if data_dir is None:
        message += (
            f" To look elsewhere, pass data_dir=... or set ${DATA_DIR_ENV}."
        )
    paths_tried = dict.fromkeys(tried + tfds_tried)
    raise DatasetNotFoundError(message, dataset.name, paths_tried)


def _indented(paths):
    return "\n".join(f"  {path}" for path in dict.fromkeys(paths))


@functools.lru_cache(maxsize=4)
def read_source(source):
    """The read-only uint8 images and int32 labels of `source`, cached."""
    arrays = tuple(
        np.asarray(array, np.int32 if i % 2 else np.uint8)
        for i, array in enumerate(source.read(source.dataset, source.path))
    )
    _check_arrays(source, *arrays)
    for array in arrays:
        # Cached and shared between calls: nobody may modify them.
        array.flags.writeable = False
    return arrays


def _check_arrays(source, *arrays):
    spec = source.dataset
    where = source.path if source.path is not None else spec.name
    for part, images, labels in (("train", *arrays[:2]), ("test", *arrays[2:])):
        if images.shape[1:] != spec.input_shape:
            raise ValueError(
                f"{where}: {part} images of {spec.name!r} should have shape "
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
                f"{where}: {part} labels of {spec.name!r} should be in "
                f"[0, {spec.num_classes}). Received: min={labels.min()}, "
                f"max={labels.max()}"
            )
