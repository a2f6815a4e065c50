"""Boilerplate shared by the benchmark examples: flags and the seed loop.

Each example script defines `train(run)`, which builds, wraps, compiles and
fits its network for one seed, and hands it to `main`. The rest, the same
for every script, lives here and in `keras_brainprop.experiment`: the absl
flags, seeding, the data splits, the paper's callbacks (learning-rate
halving, early stopping, TensorBoard with `--logdir`), the test evaluation,
the mean and std over `--seeds` and the files written to `--output_dir`.
"""

from absl import flags

from keras_brainprop import cli
from keras_brainprop import experiment

FLAGS = flags.FLAGS


def define_flags():
    """Defines `--algorithm=brainprop|ebp`, `--epochs`, `--seeds`,
    `--data_dir`, `--logdir`, `--output_dir` and `kbp.cli`'s other
    shared flags."""
    cli.define_flags(algorithm="brainprop")


def main(dataset, architecture, train):
    """Returns an absl `main(argv)` that runs `train` for every seed.

    Args:
        dataset: Dataset name (`keras_brainprop.datasets.NAMES`).
        architecture: Network name (`architectures.ARCHITECTURES`).
        train: A function of an `experiment.SeedRun` returning the
            `History` of `fit`.

    Returns:
        The function to pass to `absl.app.run`.
    """

    def run_all_seeds(argv):
        del argv  # Unused.
        result = experiment.run(
            dataset,
            architecture,
            FLAGS.algorithm,
            train_fn=train,
            **cli.run_kwargs(),
        )
        print(result.summary())
        for seed_result in result.runs:
            print(
                f"  seed {seed_result.seed}: test accuracy "
                f"{seed_result.test_accuracy:.4f} (epoch "
                f"{seed_result.best_epoch} of {seed_result.epochs_run})"
            )
        if result.output_dir:
            print(f"Results written to {result.output_dir}")

    return run_all_seeds
