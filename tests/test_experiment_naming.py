"""experiment.naming: a run's folder name, and what its `Result` records of
the run's algorithm (rule, policy, setting and their parameters)."""

import importlib.util
import json
import warnings

import keras
import pytest
from _helpers import ROOT
from _helpers import run_benchmark

import keras_brainprop as kbp
from keras_brainprop import algorithms
from keras_brainprop import experiment
from keras_brainprop import feedback
from keras_brainprop import policies
from keras_brainprop.experiment import naming

BACKEND = keras.backend.backend()
TINY = {"epochs": 1, "max_train_examples": 64, "verbose": 0}


@pytest.mark.parametrize(
    "args, kwargs, name",
    [
        (("brainprop",), {}, "digits_mlp_brainprop"),
        (("backprop",), {}, "digits_mlp_backprop"),
        (("ebp",), {}, "digits_mlp_backprop"),
        (("brainprop",), {"feedback": "kolen_pollack"}, "kolen_pollack"),
        (("brainprop",), {"policy": "discovery"}, "brainprop_discovery"),
        (("backprop",), {"policy": "discovery"}, "digits_mlp_backprop"),
        (
            (algorithms.BrainProp(setting="recommended"),),
            {},
            "digits_mlp_brainprop_discovery_recommended",
        ),
        (
            (algorithms.BrainProp(policy=policies.EpsilonBoltzmann()),),
            {},
            "digits_mlp_brainprop",
        ),
        (
            ("backprop",),
            {"feedback": "sign_symmetry"},
            "digits_mlp_backprop_sign_symmetry",
        ),
        (
            ("brainprop",),
            {"feedback": "feedback_alignment", "policy": "greedy"},
            "digits_mlp_brainprop_feedback_alignment_greedy",
        ),
    ],
)
def test_default_parameters_keep_the_names_of_earlier_versions(
    args, kwargs, name
):
    given = experiment.run_name(
        "digits", "mlp", *args, backend="tensorflow", **kwargs
    )
    assert given.endswith(name) and given.startswith("digits_mlp_")
    assert experiment.run_name(
        "digits", "mlp", *args, backend="jax", **kwargs
    ) == (given + "_jax")


def test_the_backend_ends_the_name():
    assert experiment.run_name("digits", "mlp") == (
        "digits_mlp_brainprop"
        if BACKEND == "tensorflow"
        else f"digits_mlp_brainprop_{BACKEND}"
    )
    assert (
        experiment.run_name("digits", "mlp", "backprop", backend="torch")
        == "digits_mlp_backprop_torch"
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (
            {"policy": policies.Discovery(bonus=0.5)},
            "digits_mlp_brainprop_discovery_b9a3c29b",
        ),
        (
            {"policy": policies.EpsilonBoltzmann(epsilon=0.2)},
            "digits_mlp_brainprop_epsilon_boltzmann_b3642cb9",
        ),
        (
            {"feedback": feedback.KolenPollack(decay=0.01)},
            "digits_mlp_brainprop_kolen_pollack_4a15e2b2",
        ),
    ],
)
def test_parameters_other_than_the_defaults_add_a_stable_hash(kwargs, name):
    # The hash is the same on every machine and in every process.
    assert (
        experiment.run_name("digits", "mlp", backend="tensorflow", **kwargs)
        == name
    )
    assert experiment.run_name("digits", "mlp", backend="jax", **kwargs) == (
        name + "_jax"
    )


def test_the_hash_follows_every_parameter_of_rule_and_policy():
    def name(**kwargs):
        return experiment.run_name(
            "digits", "mlp", backend="tensorflow", **kwargs
        )

    names = {
        name(policy=policies.Discovery(bonus=0.5)),
        name(policy=policies.Discovery(bonus=0.6)),
        name(policy=policies.Discovery(bonus=0.5, epsilon=0.1)),
        name(
            policy=policies.Discovery(bonus=0.5),
            feedback=feedback.KolenPollack(decay=0.01),
        ),
        name(feedback=feedback.KolenPollack(decay=0.01)),
        name(feedback=feedback.KolenPollack(decay=0.02)),
        name(policy="discovery"),
    }
    assert len(names) == 7
    # The same parameters, given in another order, hash the same.
    assert name(policy=policies.Discovery(epsilon=0.1, bonus=0.5)) == name(
        policy=policies.Discovery(bonus=0.5, epsilon=0.1)
    )


def test_describe_gives_the_fields_a_result_records():
    algorithm = algorithms.get(
        "brainprop",
        policy=policies.Discovery(bonus=0.5),
        feedback=feedback.KolenPollack(decay=0.01),
    )
    description = naming.describe("digits", "mlp", algorithm, "jax")
    assert description.result_fields() == {
        "dataset": "digits",
        "architecture": "mlp",
        "algorithm": "brainprop",
        "feedback": "kolen_pollack",
        "policy": "discovery",
        "setting": "paper",
        "feedback_parameters": {"decay": 0.01},
        "policy_parameters": {"bonus": 0.5},
        "backend": "jax",
    }
    assert description.learning_rate is None
    backprop = naming.describe("digits", "mlp", algorithms.Backprop())
    assert (backprop.policy, backprop.policy_parameters) == (None, {})
    recommended = naming.describe(
        "digits", "mlp", algorithms.BrainProp(setting="recommended")
    )
    assert (recommended.policy, recommended.learning_rate) == (
        "discovery",
        1e-3,
    )


def test_get_builds_the_run_algorithm_once():
    brainprop = algorithms.get(
        "brainprop", run_seed=3, feedback="kolen_pollack", policy="greedy"
    )
    assert (brainprop.seed, brainprop.feedback, brainprop.policy) == (
        3,
        "kolen_pollack",
        "greedy",
    )
    # A seed of its own is kept, and nothing to change returns the object.
    seeded = algorithms.BrainProp(seed=5)
    assert algorithms.get(seeded, run_seed=3, feedback=None) is seeded
    # None keeps the algorithm's own; backprop has no policy or seed.
    kept = algorithms.get(brainprop, feedback=None, policy=None)
    assert kept is brainprop
    backprop = algorithms.get("backprop", run_seed=3, policy="discovery")
    assert isinstance(backprop, algorithms.Backprop)
    assert algorithms.feedback_name(backprop) == "symmetric"
    with pytest.raises(ValueError, match="algorithm='sgd'"):
        algorithms.get("sgd", run_seed=1)


def _seed_result(seed=1):
    return {
        "seed": seed,
        "test_accuracy": 0.9,
        "test_loss": 0.3,
        "last_epoch_test_accuracy": 0.88,
        "best_epoch": 2,
        "best_val_accuracy": 0.91,
        "epochs_run": 3,
        "seconds_per_epoch": 1.5,
        "stopped_early": False,
        "history": {"val_accuracy": [0.5, 0.91, 0.9]},
    }


def _old_result(algorithm, seed=1):
    """A result as versions before the rule's, policy's and setting's
    records wrote it (no feedback, policy, setting, parameters or backend
    keys; backprop named "ebp")."""
    return {
        "dataset": "digits",
        "architecture": "mlp",
        "algorithm": algorithm,
        "hyperparameters": {
            "batch_size": 16,
            "learning_rate": 0.1,
            "decay_every_epochs": 100,
            "decay_factor": 0.5,
            "max_epochs": 500,
            "patience": 45,
            "min_delta": 0.001,
            "initializer_stddev": 0.05,
            "l2": 0.0,
        },
        "max_epochs": 3,
        "num_train_examples": 10,
        "num_validation_examples": 5,
        "num_test_examples": 5,
        "seeds": [seed],
        "test_accuracies": [0.9],
        "mean_test_accuracy": 0.9,
        "std_test_accuracy": 0.0,
        "runs": [_seed_result(seed)],
    }


def test_result_round_trips_the_parameters_and_reads_old_files():
    old = experiment.Result.from_dict(_old_result("brainprop"))
    assert (old.feedback, old.policy, old.setting, old.backend) == (
        "symmetric",
        None,
        None,
        "tensorflow",
    )
    assert (old.feedback_parameters, old.policy_parameters) == ({}, {})
    assert experiment.Result.from_dict(_old_result("ebp")).algorithm == (
        "backprop"
    )
    new = experiment.Result.from_dict(
        {
            **old.to_dict(),
            "policy": "discovery",
            "feedback": "kolen_pollack",
            "feedback_parameters": {"decay": 0.01},
            "policy_parameters": {"bonus": 0.5},
        }
    )
    data = json.loads(json.dumps(new.to_dict()))
    assert data["feedback_parameters"] == {"decay": 0.01}
    assert data["policy_parameters"] == {"bonus": 0.5}
    restored = experiment.Result.from_dict(data)
    assert restored == new
    assert restored.summary() == old.summary()


# One epoch leaves some classes never the greedy choice: expected here.
@pytest.mark.slow
@pytest.mark.filterwarnings(
    "ignore::keras_brainprop.metrics.LowCoverageWarning"
)
def test_runs_differing_only_in_a_parameter_keep_their_own_folders(tmp_path):
    results = [
        experiment.run(
            "digits",
            "mlp",
            policy=policy,
            seeds=[1],
            output_dir=str(tmp_path / "out"),
            logdir=str(tmp_path / "logs"),
            **TINY,
        )
        for policy in (policies.Discovery(), policies.Discovery(bonus=0.5))
    ]
    names = [
        experiment.run_name("digits", "mlp", policy=policy)
        for policy in (policies.Discovery(), policies.Discovery(bonus=0.5))
    ]
    suffix = "" if BACKEND == "tensorflow" else f"_{BACKEND}"
    assert names == [
        f"digits_mlp_brainprop_discovery{suffix}",
        f"digits_mlp_brainprop_discovery_b9a3c29b{suffix}",
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(names)
    # The TensorBoard logs are in folders of the same names.
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == sorted(
        names
    )
    for result, name in zip(results, names):
        assert result.output_dir == str(tmp_path / "out" / name)
        summary = json.loads(
            (tmp_path / "out" / name / "summary.json").read_text()
        )
        assert experiment.Result.from_dict(summary).policy_parameters == (
            result.policy_parameters
        )
    assert [result.policy_parameters for result in results] == [
        {},
        {"bonus": 0.5},
    ]
    assert results[1].policy == "discovery"


def _load_pooling():
    spec = importlib.util.spec_from_file_location(
        "_pooling_of_naming_tests", ROOT / "benchmarks" / "_pooling.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmarks_pool_result_files_written_before(tmp_path):
    # exploration.py, actions.py and feedback.py files: a list of entries.
    pooling = _load_pooling()
    for seed in (1, 2):
        folder = tmp_path / f"s{seed}"
        folder.mkdir()
        entry = {"policy": "paper", "result": _old_result("brainprop", seed)}
        (folder / "results.json").write_text(json.dumps({"runs": [entry]}))
    (entry,) = pooling.load_entries(
        [tmp_path / "s1", tmp_path / "s2" / "results.json"],
        "exploration.py",
        lambda entry: (entry["result"].architecture, entry["policy"]),
    )
    assert entry["result"].seeds == [1, 2]
    assert entry["result"].policy_parameters == {}


@pytest.mark.slow
def test_compare_merges_a_folder_written_before(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    runs = {"mlp": {a: _old_result(a) for a in ("ebp", "brainprop")}}
    (old / "results.json").write_text(json.dumps({"runs": runs}))
    new = tmp_path / "new"
    new.mkdir()
    current = {
        algorithm: experiment.Result.from_dict(
            _old_result(algorithm, seed=2)
        ).to_dict()
        for algorithm in ("backprop", "brainprop")
    }
    (new / "results.json").write_text(json.dumps({"runs": {"mlp": current}}))
    completed = run_benchmark(
        "compare.py", f"--merge={old},{new}", f"--output_dir={tmp_path / 'm'}"
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| mlp | BrainProp | 2 |" in completed.stdout
    assert "| mlp | EBP | 2 |" in completed.stdout


def test_unregistered_rules_and_policies_are_named_by_their_classes():
    class MyPolicy(kbp.policies.EpsilonGreedy):
        pass

    class MyRule(kbp.feedback.Symmetric):
        pass

    name = experiment.run_name(
        "digits", "mlp", feedback=MyRule(), policy=MyPolicy()
    )
    assert name == "digits_mlp_brainprop_MyRule_MyPolicy"
    assert kbp.algorithms.feedback_name(kbp.algorithms.Backprop(MyRule())) == (
        "MyRule"
    )
    setting = kbp.settings.Setting("mine", policy=MyPolicy())
    assert setting.describe() == "mine: MyPolicy, SGD at 0.1"


def test_a_schedule_function_stands_as_its_name_in_the_hash():
    def epsilon(step):
        return 0.1

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras' warning of lambdas stays off.
        by_lambda = kbp.policies.EpsilonGreedy(epsilon=lambda step: 0.1)
        assert kbp.policies.parameters(by_lambda) == {"epsilon": "<lambda>"}
        by_function = kbp.policies.EpsilonGreedy(epsilon=epsilon)
        assert experiment.run_name("digits", "mlp", policy=by_lambda) != (
            experiment.run_name("digits", "mlp", policy=by_function)
        )


def test_a_schedule_that_cannot_be_serialized_adds_no_hash():
    class Epsilon:
        def __call__(self, step):
            return 0.1

    policy = kbp.policies.EpsilonGreedy(epsilon=Epsilon())
    assert kbp.policies.parameters(policy) == {}
    assert experiment.run_name("digits", "mlp", policy=policy) == (
        "digits_mlp_brainprop_epsilon_greedy"
    )
