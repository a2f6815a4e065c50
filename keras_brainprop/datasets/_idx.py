"""MNIST-like datasets: the four IDX files, or a Keras `.npz` copy (an
entry's `layout`). IDX files are read only from `specific` folders: every
dataset names them alike."""

import gzip
import struct

import numpy as np

from keras_brainprop.datasets._sources import Dataset
from keras_brainprop.datasets._sources import source

# (prefix, kind, rank) of the four files, in the order they are read.
_FILES = (
    ("train", "images", "idx3"),
    ("train", "labels", "idx1"),
    ("t10k", "images", "idx3"),
    ("t10k", "labels", "idx1"),
)
_FILE_NAMES = ", ".join(f"{p}-{k}-{rank}-ubyte.gz" for p, k, rank in _FILES)


def find(dataset, directory, specific):
    if specific:
        paths = _idx_paths(directory)
        if paths is not None:
            return source(dataset, _read_idx_files, paths, paths[0])
    if dataset.layout is not None and (directory / dataset.layout).is_file():
        return source(dataset, _read_npz, directory / dataset.layout)
    return None


def _idx_paths(directory):
    """The four IDX files in `directory` (train images first), or None."""
    paths = []
    for prefix, kind, rank in _FILES:
        candidates = [
            directory / f"{prefix}-{kind}{separator}{rank}-ubyte{suffix}"
            for separator in ("-", ".")
            for suffix in (".gz", "")
        ]
        found = [path for path in candidates if path.is_file()]
        if not found:
            return None
        paths.append(found[0])
    return tuple(paths)


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


def _read_idx_files(dataset, paths):
    arrays = [_read_idx(path) for path in paths]
    for index in (0, 2):
        if arrays[index].ndim != 3:
            raise ValueError(
                f"{paths[index]} should hold images of rank 3 [N, H, W]. "
                f"Received: shape={arrays[index].shape}"
            )
        arrays[index] = arrays[index][..., np.newaxis]
    return tuple(arrays)


def _read_npz(dataset, path):
    with np.load(path, allow_pickle=False) as arrays:
        return (
            arrays["x_train"][..., np.newaxis],
            arrays["y_train"],
            arrays["x_test"][..., np.newaxis],
            arrays["y_test"],
        )


DATASETS = (
    Dataset(
        name="mnist",
        input_shape=(28, 28, 1),
        num_classes=10,
        num_train_examples=60000,
        num_test_examples=10000,
        max_pixel_value=255,
        tfds_name="mnist",
        homepage="http://yann.lecun.com/exdb/mnist/",
        looked_for=(
            f"the four MNIST IDX files ({_FILE_NAMES}; gzipped or not) or "
            "Keras' mnist.npz"
        ),
        how_to_get=(
            "download the four IDX files from "
            "https://storage.googleapis.com/cvdf-datasets/mnist/ (or "
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
            "mnist.npz) into one of the directories above"
        ),
        find=find,
        layout="mnist.npz",
    ),
    Dataset(
        name="fashion_mnist",
        input_shape=(28, 28, 1),
        num_classes=10,
        num_train_examples=60000,
        num_test_examples=10000,
        max_pixel_value=255,
        tfds_name="fashion_mnist",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        looked_for=(
            f"the four Fashion-MNIST IDX files ({_FILE_NAMES}; gzipped or not)"
        ),
        how_to_get=(
            "install the Debian/Ubuntu package dataset-fashion-mnist "
            "(apt-get install dataset-fashion-mnist), or download the four "
            "IDX files from https://github.com/zalandoresearch/fashion-mnist "
            "into one of the directories above"
        ),
        find=find,
        aliases=("fashion-mnist",),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
)
