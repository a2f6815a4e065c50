"""What `run` refuses before any data loads: seeds, epochs, learning rate."""

import math
import numbers


def check_arguments(seeds, epochs, learning_rate):
    """Returns the seeds as ints, or refuses bad arguments of `run`.

    Args:
        seeds: The seeds of `run`, one run each.
        epochs: None or the maximum number of epochs.
        learning_rate: None or the initial learning rate.

    Returns:
        The list of seeds, as Python ints.

    Raises:
        ValueError: For no seeds or a repeated one, `epochs` that is not an
            integer >= 1, or a learning rate that is not a finite number
            > 0.
    """
    seeds = [int(seed) for seed in seeds]
    if not seeds:
        raise ValueError(f"Give at least one seed. Received: seeds={seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(
            "Each seed is one run: a repeated seed would count one run "
            f"twice. Received: seeds={seeds!r}"
        )
    if epochs is not None and (
        isinstance(epochs, bool)
        or not isinstance(epochs, numbers.Integral)
        or epochs < 1
    ):
        raise ValueError(
            f"`epochs` must be an integer >= 1. Received: epochs={epochs!r}"
        )
    if learning_rate is not None and (
        isinstance(learning_rate, bool)
        or not isinstance(learning_rate, numbers.Real)
        or not (math.isfinite(learning_rate) and learning_rate > 0)
    ):
        raise ValueError(
            "`learning_rate` must be a finite number > 0. "
            f"Received: learning_rate={learning_rate!r}"
        )
    return seeds
