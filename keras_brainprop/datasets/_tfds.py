"""tensorflow-datasets copies, prepared on disk or downloaded when asked; the
package is imported only to read or download one."""

import os
import pathlib

import numpy as np


def find(tfds_name, data_dir, download):
    """`(newest prepared dataset_info.json or None, directories tried)`."""
    roots = [] if data_dir is None else [os.fspath(data_dir)]
    roots.append(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")
    dirs = [pathlib.Path(root).expanduser() / tfds_name for root in roots]
    found = _newest_prepared(dirs)
    if found is None and download:
        _download(tfds_name, data_dir)
        found = _newest_prepared(dirs)
    return found, [str(directory) for directory in dirs]


def _newest_prepared(directories):
    """The newest version prepared in the first directory holding one."""
    for directory in directories:
        versions = []
        for info_file in directory.glob("*/dataset_info.json"):
            # Unfinished preparations are in "<version>.incomplete..." folders.
            parts = info_file.parent.name.split(".")
            if len(parts) == 3 and all(part.isdigit() for part in parts):
                versions.append((tuple(map(int, parts)), info_file))
        if versions:
            return max(versions)[1]
    return None


def _import_tfds():
    try:
        import tensorflow_datasets
    except ImportError as error:
        raise ImportError(
            "Reading or downloading a tensorflow-datasets copy needs the "
            "tensorflow-datasets package: pip install tensorflow-datasets"
        ) from error
    return tensorflow_datasets


def _download(tfds_name, data_dir):
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


def read(dataset, builder_dir):
    # A read-only builder made from the prepared files: no network access.
    builder = _import_tfds().builder_from_directory(str(builder_dir))
    arrays = []
    for split in ("train", "test"):
        images, labels = builder.as_dataset(
            split=split, as_supervised=True, batch_size=-1
        )
        arrays += [np.asarray(images), np.asarray(labels)]
    return tuple(arrays)
