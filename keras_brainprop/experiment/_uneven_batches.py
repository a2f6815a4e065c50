"""Batches that do not split over the devices of a JAX `DataParallel` run.

Keras 3.15.1 shards every batch over the devices of a
`keras.distribution.DataParallel` distribution and fails with JAX's
`IndivisibleError` when a batch does not divide evenly, such as the last
batch of an epoch (359 test digits over 2 devices); it also keeps the
layout of an epoch's first batch for all the others
(keras-team/keras#21167). `replicate_uneven_batches` makes such a batch go
whole to every device instead: each computes the same full batch, so the
step equals one device's, and only that batch runs without a speed-up.
"""

import functools

import keras

_installed = False


def replicate_uneven_batches():
    """Lets JAX `DataParallel` runs take batches that do not divide evenly.

    Does nothing on other backends, and leaves runs of several JAX
    processes as Keras has them (each process holds only its own share of
    a batch there). Safe to call more than once.

    Example:

    ```python
    replicate_uneven_batches()
    with keras.distribution.DataParallel().scope():
        model.evaluate(test_data)  # 359 examples over 2 devices.
    ```
    """
    global _installed
    if _installed or keras.backend.backend() != "jax":
        return
    import jax
    from keras.src import tree
    from keras.src.backend.jax import trainer
    from keras.src.distribution import distribution_lib

    distribute_data = trainer._distribute_data

    def _distribute_data(data, layouts=None):
        distribution = distribution_lib.distribution()
        if distribution is None or jax.process_count() > 1:
            return distribute_data(data, layouts)
        # A layout per batch shape, not the first batch's for all.
        layouts = tree.map_structure(
            lambda value: (
                None
                if value is None
                else _data_layout(distribution, tuple(value.shape))
            ),
            data,
        )
        return distribute_data(data, layouts)

    trainer._distribute_data = _distribute_data
    _installed = True


@functools.lru_cache(maxsize=64)
def _data_layout(distribution, shape):
    layout = distribution.get_data_layout(shape)
    batch_axis = layout.axes[0] if layout.axes else None
    if batch_axis is None:
        return layout
    mesh = distribution.device_mesh
    shards = mesh.shape[list(mesh.axis_names).index(batch_axis)]
    if shape[0] % shards == 0:
        return layout
    return keras.distribution.TensorLayout([None, *layout.axes[1:]], mesh)
