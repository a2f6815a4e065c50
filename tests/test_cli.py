"""keras_brainprop.cli and the demo (`python -m keras_brainprop`): shared
flags, strategies, flag errors and tables."""

import importlib.util
import json
import os
import pathlib
import re
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from _helpers import run_python
from absl import flags

from keras_brainprop import algorithms
from keras_brainprop import cli
from keras_brainprop import feedback
from keras_brainprop import policies
from keras_brainprop.feedback import registry as feedback_registry

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_make_strategy_and_strategy_flags():
    strategy = cli.make_strategy("default")
    assert strategy is tf.distribute.get_strategy()
    assert cli.is_chief(strategy)
    with pytest.raises(ValueError, match="name='parameter_server'"):
        cli.make_strategy("parameter_server")
    with pytest.raises(ValueError, match="cpu_replicas=-1"):
        cli.make_strategy("mirrored", cpu_replicas=-1)
    flag_values = flags.FlagValues()
    cli.define_flags(strategy="default", flag_values=flag_values)
    flag_values(["prog", "--strategy=mirrored", "--cpu_replicas=2"])
    assert (flag_values.strategy, flag_values.cpu_replicas) == ("mirrored", 2)
    flag_values(["prog", "--strategy=data_parallel", "--cpu_replicas=2"])
    assert flag_values.strategy == "data_parallel"
    with pytest.raises(flags.IllegalFlagValueError):
        flag_values(["prog", "--strategy=tpu"])
    # Which backend takes which value, and that PyTorch takes none.
    help_text = flag_values["strategy"].help
    for text in ("TensorFlow", "JAX: data_parallel", "PyTorch trains on one"):
        assert text in help_text


@pytest.mark.backends
def test_make_strategy_refuses_what_the_backend_cannot_train_under():
    backend = keras.backend.backend()
    default = cli.make_strategy("default")
    assert cli.num_replicas(default) == 1
    assert cli.is_chief(default)
    with cli.strategy_scope(default):
        pass
    if backend != "tensorflow":
        assert default is None
        for name in cli.TENSORFLOW_STRATEGIES:
            with pytest.raises(ValueError, match="KERAS_BACKEND="):
                cli.make_strategy(name)
    if backend != "jax":
        with pytest.raises(ValueError, match="name='data_parallel'"):
            cli.make_strategy("data_parallel")
    if backend == "torch":
        with pytest.raises(ValueError, match="PyTorch trains on one device"):
            cli.make_strategy("data_parallel")
    if backend == "jax":
        # Every JAX device: here, one CPU.
        data_parallel = cli.make_strategy("data_parallel")
        assert cli.num_replicas(data_parallel) == len(
            keras.distribution.list_devices()
        )


def test_flags_and_run_kwargs():
    flag_values = flags.FlagValues()
    cli.define_flags(
        dataset="digits", architecture="mlp", flag_values=flag_values
    )
    flag_values(
        ["prog", "--seeds=1,2", "--algorithm=ebp", "--epochs=3", "--logdir=x"]
    )
    kwargs = cli.run_kwargs(flag_values)
    assert kwargs["seeds"] == [1, 2]
    assert (kwargs["epochs"], kwargs["logdir"]) == (3, "x")
    assert flag_values.algorithm == "ebp"
    assert algorithms.get(flag_values.algorithm).name == "backprop"
    assert flag_values.dataset == "digits"
    bad = flags.FlagValues()
    cli.define_flags(flag_values=bad)
    with pytest.raises(flags.IllegalFlagValueError):
        bad(["prog", "--seeds=1,two"])


def _fake_strategy(task_type, task_id, cluster):
    resolver = types.SimpleNamespace(
        task_type=task_type,
        task_id=task_id,
        cluster_spec=lambda: tf.train.ClusterSpec(cluster),
    )
    return types.SimpleNamespace(cluster_resolver=resolver)


def test_is_chief_follows_tf_config_roles():
    workers = {"worker": ["a:1", "b:2"]}
    assert cli.is_chief(_fake_strategy("worker", 0, workers))
    assert not cli.is_chief(_fake_strategy("worker", 1, workers))
    with_chief = {"chief": ["c:3"], **workers}
    assert cli.is_chief(_fake_strategy("chief", 0, with_chief))
    assert not cli.is_chief(_fake_strategy("worker", 0, with_chief))


def test_chief_outputs_redirects_other_workers(tmp_path):
    kwargs = {"output_dir": str(tmp_path / "out"), "logdir": None, "verbose": 2}
    chief = _fake_strategy("worker", 0, {"worker": ["a:1", "b:2"]})
    with cli.chief_outputs(kwargs, chief) as chief_kwargs:
        assert chief_kwargs is kwargs
    other = _fake_strategy("worker", 1, {"worker": ["a:1", "b:2"]})
    with cli.chief_outputs(kwargs, other) as other_kwargs:
        scratch = other_kwargs["output_dir"]
        assert scratch != kwargs["output_dir"]
        assert other_kwargs["verbose"] == 0
        assert other_kwargs["logdir"] is None
        os.makedirs(scratch)
    assert not os.path.exists(os.path.dirname(scratch))
    assert kwargs["verbose"] == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, expected, folders",
    [
        # Both algorithms by default, then a table and the wall time.
        (
            ["--max_train_examples=64"],
            [
                "| algorithm | feedback | policy | setting | test accuracy |",
                "| BrainProp | symmetric | paper | paper |",
                "| backprop (EBP) | symmetric | – | paper |",
                "Wall time",
            ],
            ["brainprop", "backprop"],
        ),
        # A policy other than the paper's is BrainProp's and in its name.
        (
            [
                "--strategy=mirrored",
                "--cpu_replicas=2",
                "--max_train_examples=128",
                "--algorithm=both",
                "--policy=discovery",
            ],
            ["2 replica(s)", "| backprop (EBP) |"],
            ["brainprop_discovery", "backprop"],
        ),
        # The recommended setting: its policy and optimizer, with the
        # explicit learning rate named as replacing the setting's.
        (
            [
                "--max_train_examples=64",
                "--setting=Recommended",
                "--learning_rate=0.002",
            ],
            [
                "--learning_rate=0.002 replaces the recommended setting's "
                "learning rate (Adam at 0.001; the optimizer stays Adam).",
                "| BrainProp | symmetric | discovery | recommended |",
                "| backprop (EBP) | symmetric | – | paper |",
            ],
            ["brainprop_discovery_recommended", "backprop"],
        ),
    ],
    ids=[
        "end_to_end",
        "mirrored_on_cpu_replicas_with_a_policy",
        "recommended_setting",
    ],
)
def test_demo_cli(tmp_path, args, expected, folders):
    completed = run_python(
        "-m", "keras_brainprop", "--epochs=1", *args, f"--output_dir={tmp_path}"
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    for text in expected:
        assert text in completed.stdout
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == sorted(f"digits_mlp_{folder}" for folder in folders)
    for folder in folders:
        assert (tmp_path / f"digits_mlp_{folder}" / "summary.json").is_file()


@pytest.mark.slow
@pytest.mark.backends
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_demo_cli_on_another_backend(tmp_path, backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"needs the [{backend}] extra (.ci/run's backend legs)")
    completed = run_python(
        "-m",
        "keras_brainprop",
        "--epochs=1",
        "--max_train_examples=64",
        f"--output_dir={tmp_path}",
        backend=backend,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"Keras backend '{backend}'" in completed.stdout
    assert "| s/epoch | backend |" in completed.stdout
    for row in ("| BrainProp | symmetric | paper | paper |", "| backprop"):
        (line,) = [x for x in completed.stdout.splitlines() if row in x]
        assert line.endswith(f"| {backend} |"), line
    # Its own folders, beside TensorFlow's, recording the backend.
    for algorithm in algorithms.NAMES:
        summary = (
            tmp_path / f"digits_mlp_{algorithm}_{backend}" / "summary.json"
        )
        data = json.loads(summary.read_text())
        assert data["backend"] == backend
        assert backend in data["versions"]
    # tf.distribute is TensorFlow's: refused before any data loads.
    refused = run_python(
        "-m", "keras_brainprop", "--strategy=mirrored", backend=backend
    )
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert "Error: " in refused.stderr
    assert f"name='mirrored' with KERAS_BACKEND='{backend}'" in refused.stderr
    assert "Training" not in refused.stdout


def _flag_help(text):
    """Maps each flag of absl's `--help` output to its help, on one line."""
    entries = {}
    for line in text.splitlines():
        # A long list of choices starts on the next line.
        match = re.match(r"  --(?:\[no\])?(\w+):(.*)", line)
        if match:
            name, entries[match[1]] = match[1], match[2].strip()
        elif entries and line.startswith("    "):
            entries[name] = f"{entries[name]} {line.strip()}".strip()
    return entries


@pytest.mark.slow
def test_help_lists_every_flag_with_its_default():
    completed = run_python("-m", "keras_brainprop", "--help")
    # Asking for help is no error (absl alone exits with status 1).
    assert completed.returncode == 0, completed.stderr[-3000:]
    entries = _flag_help(completed.stdout)
    defaults = {
        "algorithm": "'both'",
        "architecture": "'mlp'",
        "cpu_replicas": "'0'",
        "dataset": "'digits'",
        "epochs": "'40'",
        "feedback": "'symmetric'",
        "precise_batch_norm": "'false'",
        "seeds": "'0'",
        "setting": "'paper'",
        "strategy": "'default'",
        "verbose": "'0'",
    }
    for flag, default in defaults.items():
        assert f"(default: {default})" in entries[flag], flag
    unset = {
        "batch_size",
        "data_dir",
        "learning_rate",
        "logdir",
        "max_train_examples",
        "output_dir",
        "patience",
        "policy",
    }
    assert set(entries) == set(defaults) | unset
    for flag in unset:
        assert "(default:" not in entries[flag], flag
        assert "unset" in entries[flag].lower() or "If set" in entries[flag]
    # The demo's epoch limit is 40, not the paper's 500.
    assert "500" not in entries["epochs"]
    assert entries["algorithm"].startswith("<both|brainprop|backprop|ebp>")


@pytest.mark.slow
def test_missing_dataset_ends_in_one_message(tmp_path):
    completed = run_python(
        "-m",
        "keras_brainprop",
        "--dataset=cifar100",
        f"--data_dir={tmp_path}",
        "--epochs=1",
    )
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    errors = [
        line
        for line in completed.stderr.splitlines()
        if line.startswith("Error: ")
    ]
    assert len(errors) == 1, completed.stderr[-3000:]
    assert "cifar100" in errors[0]
    assert str(tmp_path) in completed.stderr


def test_learning_rate_must_be_positive():
    for rate in ("0", "-0.1"):
        flag_values = flags.FlagValues()
        cli.define_flags(flag_values=flag_values)
        with pytest.raises(flags.IllegalFlagValueError, match="> 0"):
            flag_values(["prog", f"--learning_rate={rate}"])
    flag_values = flags.FlagValues()
    cli.define_flags(flag_values=flag_values)
    flag_values(["prog", "--learning_rate=0.05"])
    assert cli.run_kwargs(flag_values)["learning_rate"] == 0.05


def test_learning_rate_flag_refuses_a_rate_that_is_not_finite():
    # --learning_rate=inf passed the "> 0" check; training went to NaN.
    for rate in ("inf", "nan"):
        flag_values = flags.FlagValues()
        cli.define_flags(flag_values=flag_values)
        with pytest.raises(flags.IllegalFlagValueError, match="finite"):
            flag_values(["prog", f"--learning_rate={rate}"])
    assert cli.is_learning_rate(None) and cli.is_learning_rate(0.3)
    assert not cli.is_learning_rate(float("inf"))


def test_cpu_replicas_flag_needs_the_mirrored_strategy():
    flag_values = flags.FlagValues()
    cli.define_flags(strategy="default", flag_values=flag_values)
    with pytest.raises(
        flags.IllegalFlagValueError, match="--strategy=mirrored"
    ):
        flag_values(["prog", "--cpu_replicas=2"])
    flag_values(["prog", "--strategy=mirrored", "--cpu_replicas=2"])
    assert flag_values.cpu_replicas == 2


def test_seeds_flag_refuses_a_repeated_seed():
    flag_values = flags.FlagValues()
    cli.define_flags(flag_values=flag_values)
    with pytest.raises(flags.IllegalFlagValueError, match="repeat"):
        flag_values(["prog", "--seeds=1,1"])
    flag_values(["prog", "--seeds=1,2"])
    assert cli.run_kwargs(flag_values)["seeds"] == [1, 2]


def test_name_flags_are_case_insensitive_as_the_python_api():
    flag_values = flags.FlagValues()
    cli.define_flags(
        dataset="digits",
        architecture="mlp",
        strategy="default",
        flag_values=flag_values,
    )
    flag_values(
        [
            "prog",
            "--dataset=Fashion_MNIST",
            "--architecture=MLP",
            "--algorithm=BrainProp",
            "--strategy=Mirrored",
            "--feedback=Kolen_Pollack",
        ]
    )
    values = [
        flag_values[name].value
        for name in ("dataset", "architecture", "algorithm", "strategy")
    ]
    assert values == ["fashion_mnist", "mlp", "brainprop", "mirrored"]
    assert cli.run_kwargs(flag_values)["feedback"] == "kolen_pollack"


def test_feedback_and_policy_flags_take_registered_names(monkeypatch):
    for registry in (policies._REGISTRY, feedback_registry._REGISTRY):
        monkeypatch.setattr(registry, "_classes", dict(registry._classes))
    flag_values = flags.FlagValues()
    cli.define_flags(flag_values=flag_values)
    cli.define_setting_flags(flag_values=flag_values)
    # --help lists the names registered when the flags were defined.
    assert flag_values["policy"].help.startswith(
        f"<{'|'.join(policies.NAMES)}>: "
    )
    assert flag_values["feedback"].help.startswith(
        f"<{'|'.join(feedback.NAMES)}>: "
    )

    # Registered after the flags were defined, before they are parsed.
    @policies.register("cli_test_policy")
    class _Policy(policies.EpsilonGreedy):
        pass

    @feedback.register("cli_test_rule")
    class _Rule(feedback.FeedbackAlignment):
        pass

    flag_values(
        ["prog", "--policy=CLI_Test_Policy", "--feedback=cli_test_rule"]
    )
    assert cli.brainprop_options(flag_values)["policy"] == "cli_test_policy"
    assert cli.run_kwargs(flag_values)["feedback"] == "cli_test_rule"
    assert isinstance(policies.get(flag_values.policy), _Policy)
    # A bad name is refused as absl refuses an enum, naming every name.
    for flag in ("policy", "feedback"):
        with pytest.raises(
            flags.IllegalFlagValueError,
            match=rf"flag --{flag}=nope: value should be one of <.*"
            rf"\|cli_test_(policy|rule)>",
        ):
            flag_values(["prog", f"--{flag}=nope"])


def test_only_with_refuses_a_flag_the_run_would_ignore():
    flag_values = flags.FlagValues()
    flags.DEFINE_enum(
        "algorithm",
        "both",
        ["both", "brainprop", "backprop"],
        "",
        flag_values=flag_values,
    )
    flags.DEFINE_string("policy", "paper", "", flag_values=flag_values)
    cli.only_with("policy", "algorithm", ("both", "brainprop"), flag_values)
    flag_values(["prog", "--algorithm=brainprop", "--policy=discovery"])
    flag_values(["prog", "--algorithm=backprop", "--policy=paper"])
    with pytest.raises(flags.IllegalFlagValueError, match="algorithm=backprop"):
        flag_values(["prog", "--algorithm=backprop", "--policy=discovery"])


@pytest.mark.slow
def test_demo_refuses_a_policy_for_backprop_before_loading_data():
    completed = run_python(
        "-m", "keras_brainprop", "--algorithm=backprop", "--policy=discovery"
    )
    assert completed.returncode == 1
    assert "Traceback" not in completed.stderr
    errors = [
        line
        for line in completed.stderr.splitlines()
        if line.startswith("Error: ")
    ]
    assert len(errors) == 1, completed.stderr[-3000:]
    assert "--policy" in errors[0] and "algorithm=backprop" in errors[0]
    assert "Training" not in completed.stdout


@pytest.mark.slow
def test_demo_that_diverges_reports_no_accuracy_and_exits_1(tmp_path):
    completed = run_python(
        "-m",
        "keras_brainprop",
        "--algorithm=brainprop",
        "--learning_rate=1e30",
        "--epochs=2",
        "--max_train_examples=64",
        f"--output_dir={tmp_path}",
    )
    assert completed.returncode == 1, completed.stderr[-3000:]
    row = "| BrainProp | symmetric | paper | paper | – ± – |"
    assert row in completed.stdout
    errors = [
        line
        for line in completed.stderr.splitlines()
        if line.startswith("Error: ")
    ]
    assert len(errors) == 1, completed.stderr[-3000:]
    assert "diverged" in errors[0]
    assert "learning_rate=1e+30" in errors[0]
    summary = tmp_path / "digits_mlp_brainprop" / "summary.json"
    assert json.loads(summary.read_text())["diverged_seeds"] == [0]


def test_raise_if_diverged_names_the_epoch_and_the_rate():
    history = types.SimpleNamespace(history={"loss": [0.5, float("nan")]})
    with pytest.raises(ValueError, match="epoch 2.*learning_rate=0.5"):
        cli.raise_if_diverged(history, learning_rate=0.5)
    with pytest.raises(ValueError, match="loss=inf"):
        cli.raise_if_diverged(types.SimpleNamespace(history={"loss": [np.inf]}))
    cli.raise_if_diverged(types.SimpleNamespace(history={"loss": [0.5, 0.4]}))


def test_epochs_help_names_the_paper_default_only_when_unset():
    unset = flags.FlagValues()
    cli.define_flags(flag_values=unset)
    assert "the paper's 500" in unset["epochs"].help
    assert unset["epochs"].default is None
    demo = flags.FlagValues()
    cli.define_flags(epochs=40, flag_values=demo)
    assert "500" not in demo["epochs"].help
    assert demo["epochs"].default == 40


def test_algorithm_flag_takes_every_name_and_former_name():
    flag_values = flags.FlagValues()
    cli.define_flags(flag_values=flag_values)
    for name in (*algorithms.NAMES, *algorithms.ALIASES):
        flag_values(["prog", f"--algorithm={name}"])
        assert algorithms.get(flag_values.algorithm).name in algorithms.NAMES
    with pytest.raises(flags.IllegalFlagValueError):
        flag_values(["prog", "--algorithm=sgd"])


def test_table_formatting():
    assert cli.format_number(0.98765) == "0.9877"
    assert cli.format_number(2.5, 1) == "2.5"
    assert cli.format_number(None) == cli.format_number(float("nan")) == "–"
    table = cli.markdown_table(["a", "b"], [["1", ""], ["x", "y"]])
    assert table.splitlines() == [
        "| a | b |",
        "| --- | --- |",
        "| 1 | |",
        "| x | y |",
    ]
