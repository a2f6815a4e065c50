"""The seeded validation split and the tf.data pipeline over one split."""

import numpy as np
import tensorflow as tf


def split_indices(labels, validation_fraction, seed, stratify):
    """Sorted train and validation indices into `labels`, seeded."""
    num_examples = len(labels)
    num_validation = int(round(validation_fraction * num_examples))
    order = np.random.default_rng(seed).permutation(num_examples)
    if not stratify:
        validation = order[:num_validation]
    else:
        classes, counts = np.unique(labels, return_counts=True)
        quotas = counts * validation_fraction
        per_class = np.floor(quotas).astype(np.int64)
        # Hand the examples lost to flooring to the largest remainders.
        missing = num_validation - int(per_class.sum())
        by_remainder = np.argsort(-(quotas - per_class), kind="stable")
        per_class[by_remainder[:missing]] += 1
        ordered_labels = labels[order]
        validation = np.concatenate(
            [
                order[ordered_labels == label][:count]
                for label, count in zip(classes, per_class, strict=True)
            ]
            + [np.zeros(0, np.int64)]
        )
    is_validation = np.zeros(num_examples, bool)
    is_validation[validation] = True
    return np.flatnonzero(~is_validation), np.flatnonzero(is_validation)


def make_pipeline(images, labels, max_pixel_value, batch_size, shuffle, seed):
    """A prefetched `tf.data.Dataset` of float32 images in [0, 1], labels."""
    # Shuffle and batch indices, then gather: the shuffle buffer holds
    # integers rather than images, and pixels stay uint8 until the map.
    images = tf.convert_to_tensor(images, dtype=tf.uint8)
    labels = tf.convert_to_tensor(labels, dtype=tf.int32)
    num_examples = int(labels.shape[0])

    def gather_and_scale(indices):
        # Divided rather than multiplied: bit-identical to load_arrays.
        batch_images = tf.cast(tf.gather(images, indices), tf.float32)
        batch_images = batch_images / tf.constant(max_pixel_value, tf.float32)
        return batch_images, tf.gather(labels, indices)

    dataset = tf.data.Dataset.range(num_examples)
    if shuffle:
        dataset = dataset.shuffle(
            num_examples, seed=seed, reshuffle_each_iteration=True
        )
    if batch_size is not None:
        dataset = dataset.batch(batch_size)
    dataset = dataset.map(
        gather_and_scale,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)
