"""The command line shared by `python -m keras_brainprop`, examples/ and
benchmarks/: absl flags, the data-parallel setup they choose, and the
tables and error messages they print.

`define_flags` defines the flags, `run_kwargs` reads them back as keyword
arguments of `experiment.run`, and `make_strategy` creates what
`--strategy` names for the Keras backend: a `tf.distribute` strategy under
TensorFlow, a `keras.distribution.DataParallel` under JAX ("data_parallel"),
one device under PyTorch; `num_replicas` and `strategy_scope` read it
whatever it is. In a multi-worker cluster `chief_outputs` keeps the
written files on the chief. `run_script` runs a script's `main` so that a
missing dataset, a bad value or a bad flag ends it with one message, not a
traceback, and a run that diverged with a non-zero exit status
(`check_finite`); `markdown_table` and `format_number` format the tables
scripts print. `is_learning_rate` and `only_with` are the flag checks
scripts share; `define_setting_flags` defines BrainProp's `--setting` and
`--policy`, and `setting_overrides` says which parts of a setting explicit
flags replace. `--feedback` and `--policy` take any name registered with
`kbp.feedback.register` or `kbp.policies.register` by the time the flags
are parsed (`define_registered`). The dataset examples (examples/mnist.py,
cifar10.py, ...) are one call of `example_main` each.

The package itself never imports this module: only scripts do.

Example:

```python
from absl import flags
from keras_brainprop import algorithms, cli, experiment

cli.define_flags(dataset="digits", architecture="mlp", strategy="default")
FLAGS = flags.FLAGS

def main(argv):
    strategy = cli.make_strategy(FLAGS.strategy, FLAGS.cpu_replicas)
    with cli.chief_outputs(cli.run_kwargs(), strategy) as kwargs:
        result = experiment.run(
            FLAGS.dataset, FLAGS.architecture,
            algorithms.get(FLAGS.algorithm), strategy=strategy, **kwargs,
        )
    print(result.summary())

cli.run_script(main)
```
"""

from keras_brainprop.cli._examples import define_network_flags
from keras_brainprop.cli._examples import example_main
from keras_brainprop.cli._flag_parts import LEARNING_RATE_MESSAGE
from keras_brainprop.cli._flag_parts import brainprop_options
from keras_brainprop.cli._flag_parts import define_feedback_flag
from keras_brainprop.cli._flag_parts import define_learning_rate_flag
from keras_brainprop.cli._flag_parts import define_registered
from keras_brainprop.cli._flag_parts import define_setting_flags
from keras_brainprop.cli._flag_parts import define_strategy_flags
from keras_brainprop.cli._flag_parts import is_learning_rate
from keras_brainprop.cli._flag_parts import only_with
from keras_brainprop.cli._flags import define_flags
from keras_brainprop.cli._flags import run_kwargs
from keras_brainprop.cli._scripts import format_number
from keras_brainprop.cli._scripts import initial_learning_rate
from keras_brainprop.cli._scripts import markdown_table
from keras_brainprop.cli._scripts import raise_if_diverged
from keras_brainprop.cli._scripts import run_script
from keras_brainprop.cli._scripts import setting_overrides
from keras_brainprop.cli._strategy import STRATEGIES
from keras_brainprop.cli._strategy import STRATEGY_HELP
from keras_brainprop.cli._strategy import TENSORFLOW_STRATEGIES
from keras_brainprop.cli._strategy import chief_outputs
from keras_brainprop.cli._strategy import is_chief
from keras_brainprop.cli._strategy import make_strategy
from keras_brainprop.cli._strategy import num_replicas
from keras_brainprop.cli._strategy import strategy_scope

__all__ = [
    "LEARNING_RATE_MESSAGE",
    "STRATEGIES",
    "STRATEGY_HELP",
    "TENSORFLOW_STRATEGIES",
    "brainprop_options",
    "chief_outputs",
    "define_feedback_flag",
    "define_flags",
    "define_learning_rate_flag",
    "define_network_flags",
    "define_registered",
    "define_setting_flags",
    "define_strategy_flags",
    "example_main",
    "format_number",
    "initial_learning_rate",
    "is_chief",
    "is_learning_rate",
    "make_strategy",
    "markdown_table",
    "num_replicas",
    "only_with",
    "raise_if_diverged",
    "run_kwargs",
    "run_script",
    "setting_overrides",
    "strategy_scope",
]
