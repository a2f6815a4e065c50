"""The public functions, and `REGISTRY`: every family's entries by name.

A new family module is added to the families listed below."""

import numpy as np

from keras_brainprop.datasets import _cifar
from keras_brainprop.datasets import _composites
from keras_brainprop.datasets import _digits
from keras_brainprop.datasets import _idx
from keras_brainprop.datasets import _sources
from keras_brainprop.datasets import _split
from keras_brainprop.datasets import _tiny_imagenet

REGISTRY = {
    dataset.name: dataset
    for family in (_idx, _cifar, _tiny_imagenet, _digits, _composites)
    for dataset in family.DATASETS
}
NAMES = tuple(REGISTRY)
"""The dataset names `load`, `load_arrays` and `info` accept."""
_SPLITS = ("train", "validation", "test")


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
    return _lookup(name).info


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
        data_dir: Optional directory holding a local copy (see the package
            docstring for the layouts read) or a prepared
            tensorflow-datasets copy. Also where `download=True` stores it.
        batch_size: Examples per batch, or `None` for single examples.
        validation_fraction: Fraction in [0, 1) of the training set held
            out as the validation split.
        seed: Integer seeding the choice of validation examples and the
            shuffling: the same seed gives the same split and the same
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
        name, split, data_dir, validation_fraction, seed, stratify, download
    )
    shuffle = split == "train" if shuffle is None else shuffle
    return _split.make_pipeline(
        images, labels, spec.max_pixel_value, batch_size, shuffle, seed
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
        name: As for `load`.
        split: As for `load`.
        data_dir: As for `load`.
        validation_fraction: As for `load`.
        seed: As for `load`.
        stratify: As for `load`.
        scale: If `True`, images are float32 in [0, 1]. If `False`, they
            are the stored uint8 pixels (0 .. `info(name).max_pixel_value`),
            which takes a quarter of the memory.
        download: As for `load`.

    Returns:
        A tuple `(images, labels)`: images shaped `[N, height, width,
        channels]`, int32 labels shaped `[N]`. Both are fresh arrays.

    Raises:
        ValueError, DatasetNotFoundError: As for `load`.

    Example:

    >>> x, y = load_arrays("digits", "test")
    >>> x.shape, x.dtype, y.shape
    ((359, 8, 8, 1), dtype('float32'), (359,))
    """
    images, labels, spec = _select(
        name, split, data_dir, validation_fraction, seed, stratify, download
    )
    if scale:
        images = images.astype(np.float32) / np.float32(spec.max_pixel_value)
    else:
        images = np.array(images, copy=True)
    return images, np.array(labels, copy=True)


def clear_cache():
    """Frees the decoded arrays that `load` and `load_arrays` cache."""
    _sources.read_source.cache_clear()
    _composites.cached_select.cache_clear()


def _lookup(name):
    normalised = name.lower().replace("-", "_") if isinstance(name, str) else ""
    if normalised not in REGISTRY:
        raise ValueError(
            f"Unknown dataset. Expected one of {tuple(REGISTRY)}. "
            f"Received: name={name!r}"
        )
    return REGISTRY[normalised]


def _select(
    name, split, data_dir, validation_fraction, seed, stratify, download
):
    """Returns the uint8 images, int32 labels and `Dataset` of a split."""
    dataset = _lookup(name)
    if split not in _SPLITS:
        raise ValueError(
            f"Unknown split. Expected one of {_SPLITS}. "
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
    if isinstance(dataset, _composites.Composite):
        base = REGISTRY[dataset.base]
        source = _sources.find_source(base, data_dir, download)
        images, labels = _composites.cached_select(
            dataset, split, source, validation_fraction, int(seed), stratify
        )
        num_train_examples = dataset.num_train_examples
    else:
        source = _sources.find_source(dataset, data_dir, download)
        train_images, train_labels, images, labels = _sources.read_source(
            source
        )
        num_train_examples = len(train_labels)
        if split != "test":
            train, validation = _split.split_indices(
                train_labels, validation_fraction, seed, stratify
            )
            indices = train if split == "train" else validation
            images, labels = train_images[indices], train_labels[indices]
    if len(labels) == 0:
        raise ValueError(
            f"The {split!r} split of {dataset.name!r} is empty with "
            f"validation_fraction={validation_fraction!r} and "
            f"{num_train_examples} training examples."
        )
    return images, labels, dataset
