"""The results of an experiment: per seed and over seeds, to and from JSON."""

import dataclasses
import importlib

import keras
import numpy as np
import tensorflow as tf

from keras_brainprop import algorithms
from keras_brainprop import architectures


def _mean_std(values):
    """Mean and sample standard deviation (0 for a single value).

    Both are NaN without values or with a NaN (a seed that diverged).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or np.isnan(values).any():
        return float("nan"), float("nan")
    std = values.std(ddof=1) if values.size > 1 else 0.0
    return float(values.mean()), float(std)


@dataclasses.dataclass
class SeedResult:
    """The outcome of training with one seed.

    Attributes:
        seed: The seed.
        test_accuracy: Test accuracy with the weights of the best
            validation epoch (the ones kept); NaN if training diverged.
        test_loss: Test loss with those weights (NaN if diverged).
        last_epoch_test_accuracy: Test accuracy with the last epoch's
            weights (NaN if diverged).
        best_epoch: The (1-based) epoch whose weights were kept.
        best_val_accuracy: Validation accuracy of that epoch.
        epochs_run: Number of epochs trained.
        seconds_per_epoch: Mean wall time of an epoch (validation included),
            leaving out the first, which also traces the graphs.
        stopped_early: Whether early stopping or a NaN ended training.
        history: Per-epoch logs (`history.history` plus "seconds").
        diverged: Whether training diverged: the loss became NaN or Inf,
            or the weights kept are no longer finite.
    """

    seed: int
    test_accuracy: float
    test_loss: float
    last_epoch_test_accuracy: float
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    seconds_per_epoch: float
    stopped_early: bool
    history: dict
    diverged: bool = False


def _per_seed(field):
    return property(
        lambda self: [getattr(run, field) for run in self.runs],
        doc=f"The `{field}` of every seed, in order.",
    )


def _statistic(values, index):
    return property(lambda self: _mean_std(getattr(self, values))[index])


# What `to_dict` adds to the fields, in order.
_SUMMARY_KEYS = (
    "seeds",
    "test_accuracies",
    "mean_test_accuracy",
    "std_test_accuracy",
    "best_epochs",
    "mean_best_epoch",
    "std_best_epoch",
    "epochs_run",
    "seconds_per_epoch",
    "mean_seconds_per_epoch",
    "diverged_seeds",
)


@dataclasses.dataclass
class Result:
    """The outcome of one experiment over one or more seeds.

    Besides its fields, a `Result` has per-seed lists (`seeds`,
    `test_accuracies`, `best_epochs`, `epochs_run`, `seconds_per_epoch`,
    `histories`) and their statistics over seeds (`mean_test_accuracy`,
    `std_test_accuracy`, `mean_best_epoch`, `std_best_epoch`,
    `mean_seconds_per_epoch`); standard deviations are sample ones, 0 for
    one seed. `diverged_seeds` lists the seeds whose training diverged:
    their test accuracy is NaN, and so are the statistics over seeds.

    Attributes:
        dataset: Dataset name.
        architecture: Network name.
        algorithm: The algorithm's name, "brainprop" or "backprop".
        feedback: The name of the feedback rule, e.g. "symmetric".
        policy: The name of BrainProp's policy (`policies.name`), e.g.
            "paper" or "discovery"; None for an algorithm without one
            (backprop) or a file that does not record it.
        setting: The name of the algorithm's setting (`settings`), e.g.
            "paper" or "recommended"; None for a file that does not
            record it.
        feedback_parameters: The feedback rule's parameters that differ
            from its class's defaults (`feedback.parameters`), e.g.
            `{"decay": 0.01}`; `{}` for the defaults and for files that
            do not record them.
        policy_parameters: The same of the policy (`policies.
            parameters`), e.g. `{"bonus": 0.5}`; `{}` for the defaults,
            for an algorithm without a policy and for files that do not
            record them.
        backend: The Keras backend the runs trained on, "tensorflow",
            "jax" or "torch"; by default this process's. Files that do not
            record it were written when keras_brainprop ran on TensorFlow
            only, so they read back as "tensorflow".
        hyperparameters: The `architectures.Hyperparameters` used.
        max_epochs: The epoch limit of the run.
        runs: One `SeedResult` per seed, in order.
        num_train_examples: Training examples per epoch.
        num_validation_examples: Validation examples.
        num_test_examples: Test examples.
        output_dir: Folder of the written files, or None.
    """

    dataset: str
    architecture: str
    algorithm: str
    hyperparameters: architectures.Hyperparameters
    max_epochs: int
    runs: list
    num_train_examples: int
    num_validation_examples: int
    num_test_examples: int
    output_dir: str | None = None
    feedback: str = "symmetric"
    policy: str | None = None
    setting: str | None = None
    feedback_parameters: dict = dataclasses.field(default_factory=dict)
    policy_parameters: dict = dataclasses.field(default_factory=dict)
    backend: str = dataclasses.field(default_factory=keras.backend.backend)

    seeds = _per_seed("seed")
    test_accuracies = _per_seed("test_accuracy")
    best_epochs = _per_seed("best_epoch")
    epochs_run = _per_seed("epochs_run")
    seconds_per_epoch = _per_seed("seconds_per_epoch")
    histories = _per_seed("history")
    mean_test_accuracy = _statistic("test_accuracies", 0)
    std_test_accuracy = _statistic("test_accuracies", 1)
    mean_best_epoch = _statistic("best_epochs", 0)
    std_best_epoch = _statistic("best_epochs", 1)
    mean_seconds_per_epoch = _statistic("seconds_per_epoch", 0)

    @property
    def diverged_seeds(self):
        """The seeds whose training diverged (NaN test accuracy), in order."""
        return [run.seed for run in self.runs if run.diverged]

    def summary(self):
        """Returns a one-line, human-readable summary of the results."""
        name = (
            f"{self.dataset} {self.architecture} {self.algorithm} on "
            f"{self.backend}"
        )
        if self.diverged_seeds:
            seeds = ", ".join(map(str, self.diverged_seeds))
            return (
                f"{name}: training diverged (the loss became NaN or Inf) "
                f"with seed(s) {seeds} of {len(self.runs)}: no test accuracy"
            )
        return (
            f"{name}: test accuracy {self.mean_test_accuracy:.4f} ± "
            f"{self.std_test_accuracy:.4f} over {len(self.runs)} seed(s), "
            f"best epoch {self.mean_best_epoch:.1f} ± "
            f"{self.std_best_epoch:.1f}, "
            f"{self.mean_seconds_per_epoch:.2f} s/epoch"
        )

    @classmethod
    def from_dict(cls, data):
        """Rebuilds a `Result` from the output of `to_dict`.

        Args:
            data: A dict written by `to_dict`, e.g. read back from a
                `summary.json` or from `benchmarks/compare.py`'s
                `results.json`. An algorithm stored under a former name
                ("ebp") gets its current one ("backprop"); files written
                before feedback rules existed are "symmetric", those
                that do not record the policy or setting have None, those
                that do not record the parameters have `{}` (the
                defaults), and those that do not record the backend (all
                written under TensorFlow) are "tensorflow".

        Returns:
            The `Result`; `output_dir` is None.

        Raises:
            ValueError: If `data` lacks a field of `to_dict`'s output.
        """
        try:
            data = {
                "feedback": "symmetric",
                "policy": None,
                "setting": None,
                "feedback_parameters": {},
                "policy_parameters": {},
                "backend": "tensorflow",
                **data,
            }
            fields = {
                field.name: data[field.name]
                for field in dataclasses.fields(cls)
                if field.name != "output_dir"
            }
            fields["algorithm"] = algorithms.get(fields["algorithm"]).name
            fields["hyperparameters"] = architectures.Hyperparameters(
                **fields["hyperparameters"]
            )
            fields["runs"] = [SeedResult(**run) for run in fields["runs"]]
            return cls(**fields)
        except (KeyError, TypeError) as error:
            raise ValueError(
                "Expected a dict written by `Result.to_dict`. Received one "
                f"with keys {sorted(data)}, which fails with: {error!r}"
            ) from error

    def to_dict(self):
        """Returns all results as JSON-serializable Python objects."""
        data = {
            "dataset": self.dataset,
            "architecture": self.architecture,
            "algorithm": self.algorithm,
            "feedback": self.feedback,
            "policy": self.policy,
            "setting": self.setting,
            "feedback_parameters": self.feedback_parameters,
            "policy_parameters": self.policy_parameters,
            "backend": self.backend,
            "hyperparameters": dataclasses.asdict(self.hyperparameters),
            "max_epochs": self.max_epochs,
            "num_train_examples": self.num_train_examples,
            "num_validation_examples": self.num_validation_examples,
            "num_test_examples": self.num_test_examples,
        }
        data.update({key: getattr(self, key) for key in _SUMMARY_KEYS})
        data["runs"] = [dataclasses.asdict(run) for run in self.runs]
        data["versions"] = _versions(self.backend)
        return data


def _versions(backend):
    """The versions of Keras, TensorFlow and the backend's library."""
    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    if backend in ("jax", "torch"):
        try:
            module = importlib.import_module(backend)
        except ImportError:
            # A file of another machine's backend, rewritten here.
            return versions
        versions[backend] = module.__version__
    return versions
