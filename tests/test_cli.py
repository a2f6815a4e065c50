"""Tests of the command line: shared flags, strategies, the demo
(`python -m keras_brainprop`) and the benchmark scripts."""

import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from keras_brainprop import algorithms
from keras_brainprop import architectures
from keras_brainprop import cli
from keras_brainprop import datasets
from keras_brainprop import experiment

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


def _subprocess_env(backend="tensorflow"):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND=backend)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    return env


def _run_python(*args, backend="tensorflow"):
    """Runs `python *args` in a fresh process under `backend`; returns the
    completed run."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=_subprocess_env(backend),
        timeout=300,
        check=False,
    )


def _run_benchmark(script, *args):
    """Runs `benchmarks/<script>` with `args` in a fresh Python process."""
    return _run_python(str(ROOT / "benchmarks" / script), *args)


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
    completed = _run_python(
        "-m", "keras_brainprop", "--epochs=1", *args, f"--output_dir={tmp_path}"
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    for text in expected:
        assert text in completed.stdout
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == sorted(f"digits_mlp_{folder}" for folder in folders)
    for folder in folders:
        assert (tmp_path / f"digits_mlp_{folder}" / "summary.json").is_file()


@pytest.mark.backends
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_demo_cli_on_another_backend(tmp_path, backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"needs the [{backend}] extra (.ci/run's backend legs)")
    completed = _run_python(
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
    refused = _run_python(
        "-m", "keras_brainprop", "--strategy=mirrored", backend=backend
    )
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert "Error: " in refused.stderr
    assert f"name='mirrored' with KERAS_BACKEND='{backend}'" in refused.stderr
    assert "Training" not in refused.stdout


def test_compare_benchmark_smoke(tmp_path):
    completed = _run_benchmark(
        "compare.py",
        "--dataset=digits",
        "--architectures=mlp",
        "--seeds=1",
        "--epochs=1",
        "--max_train_examples=64",
        "--verbose=0",
        f"--output_dir={tmp_path}",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| mlp | ratio BrainProp/EBP |" in completed.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    comparison = results["comparisons"]["mlp"]
    assert set(comparison["ratios"]) == {
        "test_accuracy",
        "epochs_to_target",
        "seconds_per_epoch",
    }
    for algorithm in algorithms.NAMES:
        row = comparison[algorithm]
        assert len(row["epochs_to_target"]) == 1
        assert len(results["runs"]["mlp"][algorithm]["test_accuracies"]) == 1
    assert (tmp_path / "curves_mlp.png").stat().st_size > 0
    assert (
        (tmp_path / "results.md")
        .read_text()
        .startswith("Keras backend: tensorflow\n\n| network |")
    )
    assert results["runs"]["mlp"]["brainprop"]["backend"] == "tensorflow"


def _result_file(path, seed, curves, max_epochs=3, backend=None):
    """Writes a compare.py `results.json` with hand-made runs of one seed.

    `curves` maps an algorithm to (validation curve, test accuracy,
    seconds per epoch). Without `backend`, the file does not record one,
    as files of versions that ran on TensorFlow only.
    """
    runs = {}
    for algorithm, (curve, test_accuracy, seconds) in curves.items():
        best = int(np.argmax(curve))
        run = experiment.SeedResult(
            seed=seed,
            test_accuracy=test_accuracy,
            test_loss=0.5,
            last_epoch_test_accuracy=test_accuracy,
            best_epoch=best + 1,
            best_val_accuracy=curve[best],
            epochs_run=len(curve),
            seconds_per_epoch=seconds,
            stopped_early=False,
            history={"val_accuracy": curve},
        )
        result = experiment.Result(
            dataset="digits",
            architecture="mlp",
            algorithm=algorithm,
            hyperparameters=architectures.hyperparameters("mlp"),
            max_epochs=max_epochs,
            runs=[run],
            num_train_examples=10,
            num_validation_examples=5,
            num_test_examples=5,
            backend=backend or "tensorflow",
        )
        runs[algorithm] = result.to_dict()
        if backend is None:
            del runs[algorithm]["backend"]
    path.mkdir()
    (path / "results.json").write_text(json.dumps({"runs": {"mlp": runs}}))
    return path


def test_compare_merges_runs_of_separate_processes(tmp_path):
    # The first file is of an earlier version, which named backprop "ebp".
    first = _result_file(
        tmp_path / "s1",
        seed=1,
        curves={
            "ebp": ([0.5, 0.8, 0.9], 0.88, 2.0),
            "brainprop": ([0.3, 0.6, 0.9], 0.87, 1.0),
        },
    )
    second = _result_file(
        tmp_path / "s2",
        seed=2,
        curves={
            "backprop": ([0.6, 0.7, 0.7], 0.70, 4.0),
            "brainprop": ([0.2, 0.7, 0.8], 0.80, 3.0),
        },
        backend="tensorflow",
    )
    merged = tmp_path / "merged"
    completed = _run_benchmark(
        "compare.py",
        f"--merge={first},{second / 'results.json'}",
        f"--output_dir={merged}",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| mlp | BrainProp | 2 |" in completed.stdout
    # The file that records no backend was written under TensorFlow.
    assert "Keras backend: tensorflow" in completed.stdout
    results = json.loads((merged / "results.json").read_text())
    assert results["runs"]["mlp"]["backprop"]["seeds"] == [1, 2]
    assert results["runs"]["mlp"]["backprop"]["backend"] == "tensorflow"
    assert results["runs"]["mlp"]["backprop"]["algorithm"] == "backprop"
    comparison = results["comparisons"]["mlp"]
    # The target is 99% of EBP's mean best validation accuracy, 0.8.
    assert comparison["target_val_accuracy"] == pytest.approx(0.792)
    ebp, brainprop = comparison["backprop"], comparison["brainprop"]
    assert ebp["epochs_to_target"] == [2, None]
    assert brainprop["epochs_to_target"] == [3, 3]
    assert ebp["mean_test_accuracy"] == pytest.approx(0.79)
    assert ebp["std_test_accuracy"] == pytest.approx(0.18 / np.sqrt(2))
    assert brainprop["mean_val_accuracy_curve"] == pytest.approx(
        [0.25, 0.65, 0.85]
    )
    assert comparison["ratios"] == pytest.approx(
        {
            "test_accuracy": 0.835 / 0.79,
            "epochs_to_target": 1.5,
            "seconds_per_epoch": 2.0 / 3.0,
        }
    )
    assert (merged / "curves_mlp.png").stat().st_size > 0


def test_compare_merge_rejects_repeated_seeds_and_other_protocols(tmp_path):
    curves = {"ebp": ([0.5], 0.5, 1.0), "brainprop": ([0.5], 0.5, 1.0)}
    first = _result_file(tmp_path / "a", seed=1, curves=curves)
    completed = _run_benchmark("compare.py", f"--merge={first},{first}")
    assert completed.returncode != 0
    assert "Seeds [1] of mlp" in completed.stderr
    other = _result_file(tmp_path / "b", seed=2, curves=curves, max_epochs=9)
    completed = _run_benchmark("compare.py", f"--merge={first},{other}")
    assert completed.returncode != 0
    assert "another dataset or protocol" in completed.stderr
    on_jax = _result_file(tmp_path / "c", seed=3, curves=curves, backend="jax")
    completed = _run_benchmark("compare.py", f"--merge={first},{on_jax}")
    assert completed.returncode != 0
    assert "trained on the jax backend" in completed.stderr
    completed = _run_benchmark("compare.py", f"--merge={tmp_path / 'missing'}")
    assert completed.returncode != 0
    assert "Received: " in completed.stderr
    assert "Traceback" not in completed.stderr


def _assert_merging_a_run_twice_fails(script, run_dir):
    """`--merge` of one results folder twice repeats its seeds: an error."""
    merged = _run_benchmark(
        script,
        f"--merge={run_dir},{run_dir}",
        f"--output_dir={run_dir.parent / 'merged'}",
    )
    assert merged.returncode != 0
    assert "appear in more than one file" in merged.stderr


# Two epochs on 128 digits, seed 1: what the exploration benchmark tests run.
_EXPLORATION_TINY = (
    "--dataset=digits",
    "--architecture=mlp",
    "--seeds=1",
    "--epochs=2",
    "--max_train_examples=128",
    "--verbose=0",
)


def test_exploration_benchmark_reports_each_policy_beside_backprop(tmp_path):
    completed = _run_benchmark(
        "exploration.py",
        *_EXPLORATION_TINY,
        "--policies=paper,epsilon_boltzmann:epsilon=1@0.3",
        f"--output_dir={tmp_path / 'run'}",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    for row in (
        "| mlp | backprop | 1 |",
        "| mlp | paper | 1 |",
        "| mlp | epsilon_boltzmann:epsilon=1@0.3 | 1 |",
    ):
        assert row in completed.stdout
    runs = json.loads((tmp_path / "run" / "results.json").read_text())["runs"]
    assert [run["policy"] for run in runs] == [
        "backprop",
        "paper",
        "epsilon_boltzmann:epsilon=1@0.3",
    ]
    # "@0.3" is that run's learning rate; the others keep the paper's.
    rates = [run["result"]["hyperparameters"]["learning_rate"] for run in runs]
    assert rates == [0.1, 0.1, 0.3]
    _, labels = datasets.load_arrays("digits", split="test")
    counts = np.bincount(labels, minlength=10)
    for run in runs:
        report = run["reports"]["1"]
        recall = np.array(report["recall"])
        # The class report uses the kept weights, the evaluated ones.
        assert np.sum(recall * counts) / counts.sum() == pytest.approx(
            run["result"]["runs"][0]["test_accuracy"], abs=1e-6
        )
        assert len(report["mean_q"]) == 10
    history = runs[2]["result"]["runs"][0]["history"]
    # Exploring on every sample: the greedy choices are still counted.
    assert len(history["greedy_coverage"]) == 2
    assert (tmp_path / "run" / "curves_mlp.png").stat().st_size > 0
    _assert_merging_a_run_twice_fails("exploration.py", tmp_path / "run")
    # A policy trained later, without backprop, merges with the first run.
    alone = _run_benchmark(
        "exploration.py",
        *_EXPLORATION_TINY,
        "--policies=discovery",
        "--notrain_backprop",
        f"--output_dir={tmp_path / 'alone'}",
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert "No backprop run of mlp" in alone.stdout
    merged = _run_benchmark(
        "exploration.py",
        f"--merge={tmp_path / 'run'},{tmp_path / 'alone'}",
        f"--output_dir={tmp_path / 'merged'}",
    )
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert "| mlp | discovery | 1 |" in merged.stdout
    assert "| mlp | backprop | 1 |" in merged.stdout
    for spec in ("greedy:speed=2", "greedy@fast", "paper@-1"):
        bad = _run_benchmark("exploration.py", f"--policies=paper,{spec}")
        assert bad.returncode != 0
        assert spec in bad.stderr
        assert "Traceback" not in bad.stderr


def test_actions_benchmark_tables_each_number_of_actions(tmp_path):
    tiny = ("--architecture=mlp", "--epochs=2", "--max_train_examples=128")
    settings = "--settings=paper,recommended,square_cb:gamma=100@adam=0.002"
    for task in ("digits", "digits_100"):
        completed = _run_benchmark(
            "actions.py",
            *tiny,
            f"--dataset={task}",
            "--seeds=1",
            "--verbose=0",
            settings,
            f"--output_dir={tmp_path / task}",
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
    merged = _run_benchmark(
        "actions.py",
        f"--merge={tmp_path / 'digits*'}",
        f"--output_dir={tmp_path / 'merged'}",
    )
    assert merged.returncode == 0, merged.stderr[-3000:]
    for row in (
        "| mlp | 10 | backprop | 1 |",
        "| mlp | 10 | recommended | 1 |",
        "| mlp | 100 | paper | 1 |",
        "| mlp | 100 | square_cb:gamma=100@adam=0.002 | 1 |",
    ):
        assert row in merged.stdout
    runs = json.loads((tmp_path / "merged" / "results.json").read_text())
    rates = {
        (run["actions"], run["setting"]): run["result"]["hyperparameters"][
            "learning_rate"
        ]
        for run in runs["runs"]
    }
    # Each setting trains at its own rate, backprop at the paper's.
    assert rates[(100, "backprop")] == rates[(100, "paper")] == 0.1
    assert rates[(100, "recommended")] == 0.001
    assert rates[(10, "square_cb:gamma=100@adam=0.002")] == 0.002
    assert (tmp_path / "merged" / "actions_mlp.png").stat().st_size > 0
    _assert_merging_a_run_twice_fails("actions.py", tmp_path / "digits")
    for spec in ("square_cb@rmsprop=0.1", "recommended@-1", "backprop"):
        bad = _run_benchmark("actions.py", f"--settings=paper,{spec}")
        assert bad.returncode != 0
        assert "--settings" in bad.stderr
        assert "Traceback" not in bad.stderr


def test_feedback_benchmark_reports_each_rule(tmp_path):
    completed = _run_benchmark(
        "feedback.py",
        "--dataset=digits",
        "--architectures=mlp",
        "--rules=symmetric,feedback_alignment",
        "--seeds=1",
        "--epochs=1",
        "--max_train_examples=64",
        "--verbose=0",
        f"--output_dir={tmp_path / 'run'}",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    for row in (
        "| mlp | backprop | symmetric | 1 |",
        "| mlp | BrainProp | symmetric | 1 |",
        "| mlp | BrainProp | feedback_alignment | 1 |",
        "| mlp | backprop | feedback_alignment | 1 |",
    ):
        assert row in completed.stdout
    runs = json.loads((tmp_path / "run" / "results.json").read_text())["runs"]
    angles = {
        (run["result"]["algorithm"], run["result"]["feedback"]): run["angles"]
        for run in runs
    }
    assert angles[("backprop", "symmetric")] == {"1": []}
    # Two converted Dense layers; random feedback is far from the kernel.
    fa_angles = angles[("brainprop", "feedback_alignment")]["1"]
    assert len(fa_angles) == 2 and all(60 < a < 120 for a in fa_angles)
    _assert_merging_a_run_twice_fails("feedback.py", tmp_path / "run")


@pytest.mark.backends
@pytest.mark.skipif(
    importlib.util.find_spec("jax") is None,
    reason="needs the [jax] extra (.ci/run's backend legs)",
)
def test_step_overhead_times_each_backend_in_its_own_process(tmp_path):
    tiny = (
        "--networks=dense",
        "--steps=2",
        "--rounds=2",
        "--warmup_steps=1",
        "--batch_size=8",
        "--rules=kolen_pollack",
    )
    completed = _run_benchmark(
        "step_overhead.py",
        "--backends=tensorflow,jax",
        *tiny,
        f"--output_dir={tmp_path}",
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    for text in (
        "| dense | tensorflow | XLA |",
        "| dense | jax | XLA |",
        "| dense | jax | kolen_pollack |",
        "| network | variant | tensorflow wall ms | tensorflow CPU ms | "
        "jax wall ms | jax CPU ms |",
    ):
        assert text in completed.stdout
    pieces = json.loads((tmp_path / "results.json").read_text())["pieces"]
    assert [piece["backend"] for piece in pieces] == ["tensorflow", "jax"]
    for piece in pieces:
        times = piece["networks"]["dense"]
        assert set(times) == {"backprop", "brainprop", "kolen_pollack"}
        for variant in times.values():
            assert len(variant["wall_ms"]) == len(variant["cpu_ms"]) == 2
            assert all(value > 0 for value in variant["cpu_ms"])
    # Pieces of separate runs combine, in the order given.
    merged = _run_benchmark(
        "step_overhead.py",
        f"--merge={tmp_path / 'step_overhead_jax.json'},"
        f"{tmp_path / 'step_overhead_tensorflow.json'}",
    )
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert "| jax wall ms | jax CPU ms | tensorflow wall ms |" in merged.stdout
    repeated = _run_benchmark(
        "step_overhead.py", f"--merge={tmp_path},{tmp_path}"
    )
    assert repeated.returncode == 1
    assert "appear more than once" in repeated.stderr
    assert "Traceback" not in repeated.stderr


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


def test_help_lists_every_flag_with_its_default():
    completed = _run_python("-m", "keras_brainprop", "--help")
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


def test_missing_dataset_ends_in_one_message(tmp_path):
    completed = _run_python(
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


def test_demo_refuses_a_policy_for_backprop_before_loading_data():
    completed = _run_python(
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


def test_demo_that_diverges_reports_no_accuracy_and_exits_1(tmp_path):
    completed = _run_python(
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
