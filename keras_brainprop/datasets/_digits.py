"""scikit-learn's digits; a fixed, stratified 20% of them is the test split."""

import numpy as np

from keras_brainprop.datasets._sources import Dataset
from keras_brainprop.datasets._sources import DatasetNotFoundError
from keras_brainprop.datasets._split import split_indices


def _read(dataset, path):
    try:
        from sklearn import datasets as sklearn_datasets
    except ImportError as error:
        raise DatasetNotFoundError(
            "The 'digits' dataset comes with scikit-learn, which is not "
            f"installed. To get it: {dataset.how_to_get}",
            dataset.name,
            [],
        ) from error
    digits = sklearn_datasets.load_digits()
    images = digits.images.astype(np.uint8)[..., np.newaxis]
    labels = digits.target.astype(np.int32)
    # The fixed test split: a stratified 20%, seed 0 whatever the `seed`.
    train, test = split_indices(labels, 0.2, 0, stratify=True)
    return images[train], labels[train], images[test], labels[test]


DATASETS = (
    Dataset(
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
        how_to_get="install scikit-learn (pip install scikit-learn).",
        bundled=_read,
    ),
)
