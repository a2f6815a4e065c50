"""Image classification data for BrainProp experiments, offline first.

`load` returns a batched, prefetched `tf.data.Dataset` of
`(images, labels)`: float32 pixels scaled to [0, 1], shaped
`[batch, height, width, channels]` (channels_last), and int32 class labels.
`load_arrays` returns the same examples as NumPy arrays, and `info` describes
a dataset (input shape, number of classes) without reading any data, so an
experiment can build its network first.

Supported names (`NAMES`): `"mnist"`, `"fashion_mnist"`, `"cifar10"`,
`"cifar100"`, `"tiny_imagenet"` and `"digits"`, and many-class tasks made
of their real images: `"<base>_100"` and `"<base>_1000"` for the bases
`"mnist"`, `"fashion_mnist"` and `"digits"`, two or three images side by
side whose classes, read as digits, are the label (`"fashion_mnist_100"`:
28x56 pixels, 100 classes; `"fashion_mnist_1000"`: 28x84, 1,000 classes).

| name | classes | image | train + validation | test |
| --- | --- | --- | --- | --- |
| `mnist_100`, `fashion_mnist_100` | 100 | 28x56 | 60,000 | 10,000 |
| `mnist_1000`, `fashion_mnist_1000` | 1,000 | 28x84 | 100,000 | 10,000 |
| `digits_100` | 100 | 8x16 | 20,000 | 5,000 |
| `digits_1000` | 1,000 | 8x24 | 50,000 | 10,000 |

Every class of a composite task has the same number of examples (give or
take one); training and validation composites are made of the base
training and validation images only, test composites of the base test
images only, and the same seed gives the same composites (`_composites.py`
says how they are drawn). With `K` classes one per number of items, pick
the name of the K you need: 10 is the base dataset itself.

Splits: `"train"`, `"validation"` and `"test"`. The validation split is a
seeded, by default stratified, `validation_fraction` of the official
training set, which `"train"` excludes, so early stopping never sees the
test set. Tiny ImageNet's test labels are not public: its official
validation set is the test split. scikit-learn's 1,797 digits come as one
set: a fixed, stratified 20% of it (359 images, whatever the `seed`) is the
test split.

Where the data comes from, in this order:

1. Local files in the original distribution formats, looked for in
   `data_dir`, `data_dir/<name>`, `$KBP_DATA_DIR/<name>`, the Keras cache
   (`~/.keras/datasets`) and system directories: MNIST's and
   Fashion-MNIST's four IDX files (`train-images-idx3-ubyte.gz`, ...;
   gzipped or not; the Debian package `dataset-fashion-mnist` installs them
   in `/usr/share/datasets/fashion-mnist`) or Keras' `mnist.npz`; the CIFAR
   python pickles (`cifar-10-batches-py/`, `cifar-100-python/`) or their
   `.tar.gz` (pickles can run code when read: only use the official
   archives); the `tiny-imagenet-200/` folder or its `.zip` (labels are the
   positions of the WordNet ids in sorted order). The digits come with
   scikit-learn.
2. A tensorflow-datasets copy that is already prepared on disk (in
   `data_dir` or the default tensorflow-datasets directory, `$TFDS_DATA_DIR`
   or `~/tensorflow_datasets`); read without any network access.
3. Only when `download=True`, never otherwise: a tensorflow-datasets
   download (MNIST, Fashion-MNIST, CIFAR-10/100).

Missing data raises `DatasetNotFoundError` naming every place looked in and
how to get the data. Decoded arrays are cached in-process (as uint8), so
loading the train, validation and test splits decodes the files once.

Example:

```python
from keras_brainprop import datasets

train = datasets.load("fashion_mnist", "train", batch_size=128, seed=1)
validation = datasets.load("fashion_mnist", "validation", seed=1)
test = datasets.load("fashion_mnist", "test")
spec = datasets.info("fashion_mnist")
spec.input_shape, spec.num_classes  # ((28, 28, 1), 10)
```

To add a dataset, add its `Dataset` entry (`_sources.py`) to the `DATASETS`
of its family's module (`_idx.py`, `_cifar.py`, `_tiny_imagenet.py`, ...).
"""

from keras_brainprop.datasets._load import NAMES
from keras_brainprop.datasets._load import clear_cache
from keras_brainprop.datasets._load import info
from keras_brainprop.datasets._load import load
from keras_brainprop.datasets._load import load_arrays
from keras_brainprop.datasets._sources import DATA_DIR_ENV
from keras_brainprop.datasets._sources import DatasetInfo
from keras_brainprop.datasets._sources import DatasetNotFoundError

__all__ = [
    "DATA_DIR_ENV",
    "NAMES",
    "DatasetInfo",
    "DatasetNotFoundError",
    "clear_cache",
    "info",
    "load",
    "load_arrays",
]
