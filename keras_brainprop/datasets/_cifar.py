"""CIFAR-10 and CIFAR-100: the python pickles, unpacked or in their archive.
Pickles can run code when read: only use archives from the official site."""

import collections
import pickle
import tarfile

import numpy as np

from keras_brainprop.datasets._sources import Dataset
from keras_brainprop.datasets._sources import source

# An entry's `layout`: the unpacked folder, the archive, the pickles of
# the training and test sets, and the key of the labels in each pickle.
_Layout = collections.namedtuple(
    "_Layout", "folder archive train test label_key"
)


def find(dataset, directory, specific):
    layout = dataset.layout
    # Keras 3 unpacks the archive into <folder>-target/<folder>.
    for folder in (
        directory / layout.folder,
        directory / f"{layout.folder}-target" / layout.folder,
        directory,
    ):
        key_files = [folder / part for part in layout.train + layout.test]
        if all(path.is_file() for path in key_files):
            return source(dataset, _read_folder, folder, key_files[0])
    if (directory / layout.archive).is_file():
        return source(dataset, _read_archive, directory / layout.archive)
    return None


def _read_folder(dataset, folder):
    return _assemble(dataset.layout, lambda part: (folder / part).read_bytes())


def _read_archive(dataset, archive):
    with tarfile.open(archive, "r:*") as tar:
        members = {
            member.name.rpartition("/")[2]: member
            for member in tar.getmembers()
            if member.isfile()
        }

        def read_part(part):
            if part not in members:
                raise ValueError(f"{archive} has no member named {part!r}.")
            return tar.extractfile(members[part]).read()

        return _assemble(dataset.layout, read_part)


def _assemble(layout, read_part):
    arrays = []
    for parts in (layout.train, layout.test):
        batches = [_decode(read_part(part), layout, part) for part in parts]
        arrays.append(np.concatenate([images for images, _ in batches]))
        arrays.append(np.concatenate([labels for _, labels in batches]))
    return tuple(arrays)


def _decode(raw, layout, where):
    batch = pickle.loads(raw, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{where}: b'data' should have shape [N, 3072]. "
            f"Received: shape={data.shape}"
        )
    # Rows are channel-major (1024 red, 1024 green, 1024 blue values).
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(batch[layout.label_key])


DATASETS = (
    Dataset(
        name="cifar10",
        input_shape=(32, 32, 3),
        num_classes=10,
        num_train_examples=50000,
        num_test_examples=10000,
        max_pixel_value=255,
        tfds_name="cifar10",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        looked_for=(
            "cifar-10-batches-py/ (data_batch_1 .. data_batch_5, test_batch) "
            "or cifar-10-python.tar.gz"
        ),
        how_to_get=(
            "download and unpack https://www.cs.toronto.edu/~kriz/"
            "cifar-10-python.tar.gz into one of the directories above (the "
            "archive itself is read too)"
        ),
        find=find,
        aliases=("cifar-10",),
        layout=_Layout(
            folder="cifar-10-batches-py",
            archive="cifar-10-python.tar.gz",
            train=tuple(f"data_batch_{i}" for i in range(1, 6)),
            test=("test_batch",),
            label_key=b"labels",
        ),
    ),
    Dataset(
        name="cifar100",
        input_shape=(32, 32, 3),
        num_classes=100,
        num_train_examples=50000,
        num_test_examples=10000,
        max_pixel_value=255,
        tfds_name="cifar100",
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
        looked_for="cifar-100-python/ (train, test) or cifar-100-python.tar.gz",
        how_to_get=(
            "download and unpack https://www.cs.toronto.edu/~kriz/"
            "cifar-100-python.tar.gz into one of the directories above (the "
            "archive itself is read too)"
        ),
        find=find,
        aliases=("cifar-100",),
        layout=_Layout(
            folder="cifar-100-python",
            archive="cifar-100-python.tar.gz",
            train=("train",),
            test=("test",),
            label_key=b"fine_labels",
        ),
    ),
)
