"""Tiny ImageNet: the `tiny-imagenet-200/` folder or its `.zip`. Labels are
the positions of the sorted WordNet ids; the validation set is the test set.
"""

import collections
import zipfile

import numpy as np
import tensorflow as tf

from keras_brainprop.datasets._sources import Dataset
from keras_brainprop.datasets._sources import source

_FOLDER = "tiny-imagenet-200"


def find(dataset, directory, specific):
    for folder in (directory / _FOLDER, directory):
        wnids = folder / "wnids.txt"
        if wnids.is_file() and (folder / "train").is_dir():
            return source(dataset, _read_folder, folder, wnids)
    if (directory / f"{_FOLDER}.zip").is_file():
        return source(dataset, _read_zip, directory / f"{_FOLDER}.zip")
    return None


def _read_folder(dataset, folder):
    names = [path.relative_to(folder).as_posix() for path in folder.rglob("*")]
    return _read(lambda name: (folder / name).read_bytes(), names, folder)


def _read_zip(dataset, archive):
    with zipfile.ZipFile(archive) as zipped:
        names = zipped.namelist()
        wnids = [name for name in names if name.split("/")[-1] == "wnids.txt"]
        if not wnids:
            raise ValueError(f"{archive} has no wnids.txt.")
        prefix = min(wnids, key=len)[: -len("wnids.txt")]
        names = [
            name[len(prefix) :] for name in names if name.startswith(prefix)
        ]
        return _read(lambda name: zipped.read(prefix + name), names, archive)


def _read(read_bytes, names, where):
    """Reads the files `names`, relative to the root, with `read_bytes`."""
    wnids = sorted(set(read_bytes("wnids.txt").decode().split()))
    label_of = {wnid: label for label, wnid in enumerate(wnids)}
    images_in = collections.defaultdict(list)
    for name in names:
        if name.endswith(".JPEG"):
            images_in[name.rpartition("/")[0]].append(name)
    train_files, train_labels = [], []
    for wnid in wnids:
        files = sorted(images_in[f"train/{wnid}/images"])
        train_files += files
        train_labels += [label_of[wnid]] * len(files)
    test_files, test_labels = [], []
    for line in read_bytes("val/val_annotations.txt").decode().splitlines():
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
        train_labels,
        _decode_jpegs([read_bytes(file) for file in test_files], where),
        test_labels,
    )


def _decode_jpegs(blobs, where, shape=(64, 64, 3)):
    images = np.empty((len(blobs), *shape), np.uint8)

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


DATASETS = (
    Dataset(
        name="tiny_imagenet",
        input_shape=(64, 64, 3),
        num_classes=200,
        num_train_examples=100000,
        num_test_examples=10000,
        max_pixel_value=255,
        tfds_name=None,
        homepage="http://cs231n.stanford.edu/tiny-imagenet-200.zip",
        looked_for=(f"{_FOLDER}/ (wnids.txt, train/, val/) or {_FOLDER}.zip"),
        how_to_get=(
            "download http://cs231n.stanford.edu/tiny-imagenet-200.zip into "
            "one of the directories above (unzipped or not)"
        ),
        find=find,
        aliases=("tiny-imagenet",),
    ),
)
