"""Many-class tasks made of real images: two or three items side by side.

A composite of `items` images of a 10-class dataset, placed left to right,
is labelled by the items' classes read as the digits of one number: with
Fashion-MNIST, "trouser, bag" (classes 1 and 8) is class 18 of 100, and
"bag, trouser, trouser" class 811 of 1,000. The number of actions grows
tenfold with each item while every pixel stays a real photograph.

Composites are drawn with a fixed seed, class by class, so that every class
has the same number of examples (give or take one): a split of `n`
composites holds `n // K` or `n // K + 1` of each of the `K` classes, and
each item is a uniformly drawn image of its class. Training composites are
made only of the base dataset's training images, test composites only of its
test images. The validation split is carved out of the base training images
first (seeded, stratified, as for any dataset), and its composites are made
of those held-out images alone, so validation never shows an image that
training shows.
"""

import dataclasses
import functools

import numpy as np

from keras_brainprop.datasets import _digits
from keras_brainprop.datasets import _idx
from keras_brainprop.datasets._sources import Dataset
from keras_brainprop.datasets._sources import read_source
from keras_brainprop.datasets._split import split_indices

# Seeds the choice of items; a constant so that a split is the same in every
# process and release.
_COMPOSE_SEED = 20201206
_SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}
_BASE_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Composite(Dataset):
    """A registry entry of composites of `items` images of `base`.

    `num_train_examples` composites are made from the base training set
    (the validation split's share of them from its held-out images) and
    `num_test_examples` from the base test set.
    """

    base: str = ""
    items: int = 2


def composite(base, items, num_train_examples, num_test_examples):
    """The `Composite` entry named `<base>_<10**items>`."""
    height, width, channels = base.input_shape
    num_classes = _BASE_CLASSES**items
    return Composite(
        name=f"{base.name}_{num_classes}",
        input_shape=(height, width * items, channels),
        num_classes=num_classes,
        num_train_examples=num_train_examples,
        num_test_examples=num_test_examples,
        max_pixel_value=base.max_pixel_value,
        tfds_name=None,
        homepage=base.homepage,
        looked_for=base.looked_for,
        how_to_get=base.how_to_get,
        base=base.name,
        items=items,
    )


def num_examples(dataset, split, validation_fraction):
    """How many composites `split` holds."""
    if split == "test":
        return dataset.num_test_examples
    num_validation = int(
        round(validation_fraction * dataset.num_train_examples)
    )
    if split == "validation":
        return num_validation
    return dataset.num_train_examples - num_validation


def select(dataset, split, base_arrays, validation_fraction, seed, stratify):
    """The uint8 composites and int32 labels of one split.

    Args:
        dataset: A `Composite`.
        split: "train", "validation" or "test".
        base_arrays: The base dataset's (train images, train labels, test
            images, test labels), as `_sources.read_source` returns them.
        validation_fraction, seed, stratify: How the base training images
            are split into training and validation images.

    Returns:
        A tuple `(images, labels)` of fresh, read-only arrays.
    """
    train_images, train_labels, test_images, test_labels = base_arrays
    if split == "test":
        images, labels, seed = test_images, test_labels, 0
    else:
        train, validation = split_indices(
            train_labels, validation_fraction, seed, stratify
        )
        indices = train if split == "train" else validation
        images, labels = train_images[indices], train_labels[indices]
    count = num_examples(dataset, split, validation_fraction)
    return _compose(
        images, labels, dataset.items, count, (_SPLIT_CODES[split], int(seed))
    )


def _compose(images, labels, items, count, key):
    missing = sorted(set(range(_BASE_CLASSES)) - set(np.unique(labels)))
    if count and missing:
        raise ValueError(
            "Composites need images of every class of the base dataset. "
            f"Received: no image of class {missing[0]} in this split."
        )
    num_classes = _BASE_CLASSES**items
    rng = np.random.default_rng([_COMPOSE_SEED, items, *key])
    composite_labels = rng.permutation(np.arange(count) % num_classes)
    # Item j (from the left) is digit j of the label, most significant first.
    place_values = _BASE_CLASSES ** np.arange(items - 1, -1, -1)
    item_classes = composite_labels[:, np.newaxis] // place_values % 10
    picks = np.empty(item_classes.shape, np.int64)
    for label in range(_BASE_CLASSES):
        members = np.flatnonzero(labels == label)
        chosen = item_classes == label
        picks[chosen] = members[rng.integers(len(members), size=chosen.sum())]
    composites = np.concatenate(
        [images[picks[:, item]] for item in range(items)], axis=2
    )
    composite_labels = composite_labels.astype(np.int32)
    for array in (composites, composite_labels):
        array.flags.writeable = False
    return composites, composite_labels


@functools.lru_cache(maxsize=4)
def cached_select(dataset, split, source, validation_fraction, seed, stratify):
    """`select` from a base `Source`, cached: a run makes each split once."""
    return select(
        dataset,
        split,
        read_source(source),
        validation_fraction,
        seed,
        stratify,
    )


_BASES = {dataset.name: dataset for dataset in _idx.DATASETS + _digits.DATASETS}

DATASETS = (
    composite(_BASES["mnist"], 2, 60000, 10000),
    composite(_BASES["mnist"], 3, 100000, 10000),
    composite(_BASES["fashion_mnist"], 2, 60000, 10000),
    composite(_BASES["fashion_mnist"], 3, 100000, 10000),
    composite(_BASES["digits"], 2, 20000, 5000),
    composite(_BASES["digits"], 3, 50000, 10000),
)
