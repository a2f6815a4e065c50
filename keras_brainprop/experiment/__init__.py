"""One experiment of the paper: build, train, evaluate and report a network.

`run(dataset, architecture, algorithm)` trains one of the paper's networks
(`keras_brainprop.architectures`) on one dataset
(`keras_brainprop.datasets`) with an algorithm of
`keras_brainprop.algorithms`: from reward with BrainProp, or with the
paper's baseline, error backpropagation (the same network with a softmax
output, trained on the cross-entropy). It follows the paper's protocol
(`protocol`): SGD with the learning rate halved every 100 epochs, early
stopping on validation accuracy (patience 45, min_delta 0.001) with the
best epoch's weights restored, at most 500 epochs. The validation data are
held out from the training set; the test set is only used once training has
ended.

Each seed calls `keras.utils.set_random_seed(seed)` and also seeds the
validation split, the shuffling and BrainProp's exploration, so a seed
gives the same run, and the same data to both algorithms. Several seeds
give the mean and standard deviation of the results (`results`), as
reported in the paper.

It runs on the Keras backend `KERAS_BACKEND` names (TensorFlow, JAX or
PyTorch), data-parallel with a `strategy` the backend supports
(`run`), and every `Result` and summary records the backend.

With `output_dir`, `run` writes into `<output_dir>/<dataset>_<architecture>_
<algorithm>/`, a name that grows by the feedback rule, policy and setting
when they are not the paper's, a hash of their parameters when not the
defaults, and the backend under JAX and PyTorch (`run_name`, `naming`;
`reporting`):
`summary.json` (all results and settings, `Result.to_dict`), `accuracy.png`
(validation accuracy of every seed) and per seed, in `seed_<seed>/`,
`history.json` (the per-epoch logs and epoch durations), `model.weights.h5`
(the network's weights of the best epoch, loadable into
`architectures.build(...)`) and `accuracy.png` (training and validation
accuracy per epoch). Plots need matplotlib and are skipped
without it.

A script that wants to show its own `wrap` / `compile` / `fit` passes
`run(..., train_fn=fn)`: `fn` gets a `SeedRun` (data, algorithm, callbacks,
epochs, hyper-parameters of one seed) and returns `fit`'s `History`; `run`
does the rest (`runner`). The command line of `python -m keras_brainprop`,
`examples/` and `benchmarks/` (flags, strategy, tables) is
`keras_brainprop.cli`.

Example:

```python
from keras_brainprop import experiment

result = experiment.run("digits", "mlp", "brainprop", epochs=30, seeds=[1, 2])
print(result.summary())
result.mean_test_accuracy, result.std_test_accuracy
```
"""

from keras_brainprop.experiment.naming import run_name
from keras_brainprop.experiment.protocol import Splits
from keras_brainprop.experiment.protocol import TrainingCallbacks
from keras_brainprop.experiment.protocol import load_splits
from keras_brainprop.experiment.protocol import make_callbacks
from keras_brainprop.experiment.reporting import plot_curves
from keras_brainprop.experiment.reporting import summarize
from keras_brainprop.experiment.results import Result
from keras_brainprop.experiment.results import SeedResult
from keras_brainprop.experiment.runner import SeedRun
from keras_brainprop.experiment.runner import finish_seed
from keras_brainprop.experiment.runner import run
from keras_brainprop.experiment.runner import train

__all__ = [
    "Result",
    "SeedResult",
    "SeedRun",
    "Splits",
    "TrainingCallbacks",
    "finish_seed",
    "load_splits",
    "make_callbacks",
    "plot_curves",
    "run",
    "run_name",
    "summarize",
    "train",
]
