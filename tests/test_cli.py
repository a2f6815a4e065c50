"""Tests of the shared command line: flags, run kwargs and strategies."""

import os
import types

import pytest
import tensorflow as tf
from absl import flags

from keras_brainprop import cli


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
    with pytest.raises(flags.IllegalFlagValueError):
        flag_values(["prog", "--strategy=tpu"])


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
