"""BrainProp's named settings: what each chooses, overrides, saving, pace."""

import keras
import numpy as np
import pytest

import keras_brainprop as kbp
from keras_brainprop import algorithms
from keras_brainprop import architectures
from keras_brainprop import experiment
from keras_brainprop import settings


@pytest.mark.backends
@pytest.mark.parametrize("architecture", ["dense", "conv"])
@pytest.mark.parametrize("actions", [10, 100])
def test_what_each_setting_chooses(architecture, actions):
    network = architectures.build(architecture, (28, 28, 1), actions)
    assert settings.has_batch_norm(network) == (architecture == "conv")
    assert settings.num_actions(network) == actions
    paper = algorithms.BrainProp().resolve(network)
    assert paper == settings.PAPER
    assert (paper.optimizer, paper.learning_rate) == ("sgd", 0.1)
    recommended = algorithms.BrainProp(setting="recommended").resolve(network)
    assert recommended.name == "recommended"
    assert type(recommended.policy) is kbp.policies.Discovery
    assert (recommended.optimizer, recommended.learning_rate) == (
        "adam",
        1e-3,
    )


@pytest.mark.backends
def test_compile_uses_the_setting_unless_told_otherwise():
    network = architectures.build("mlp", (8, 8, 1), 10)
    algorithm = algorithms.get("brainprop", setting="Recommended")
    model = algorithm.wrap(network)
    algorithm.compile(model)
    assert isinstance(model.policy, kbp.policies.Discovery)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    # An explicit rate keeps the setting's optimizer; an explicit policy
    # replaces the setting's.
    algorithm = algorithms.BrainProp(policy="square_cb", setting="recommended")
    model = algorithm.wrap(architectures.build("mlp", (8, 8, 1), 10))
    algorithm.compile(model, learning_rate=0.02)
    assert isinstance(model.policy, kbp.policies.SquareCB)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.02)
    # The paper's stays the default.
    model = algorithms.BrainProp().wrap(architectures.build("mlp", (8, 8), 10))
    algorithms.BrainProp().compile(model)
    assert isinstance(model.policy, kbp.policies.EpsilonBoltzmann)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.1)


@pytest.mark.slow
@pytest.mark.backends
def test_a_saved_model_keeps_its_setting(tmp_path):
    algorithm = algorithms.BrainProp(setting="recommended", seed=2)
    model = algorithm.wrap(architectures.build("mlp", (8, 8, 1), 10))
    algorithm.compile(model)
    x = np.random.default_rng(0).uniform(size=(32, 8, 8, 1)).astype("float32")
    model.fit(x, np.arange(32) % 10, batch_size=16, epochs=1, verbose=0)
    model.save(tmp_path / "recommended.keras")
    loaded = keras.saving.load_model(tmp_path / "recommended.keras")
    assert repr(loaded.policy) == repr(model.policy)
    assert isinstance(loaded.optimizer, keras.optimizers.Adam)
    assert float(loaded.optimizer.learning_rate) == pytest.approx(1e-3)
    assert int(loaded.optimizer.iterations) == 2


@pytest.mark.backends
@pytest.mark.parametrize(
    "kwargs, received",
    [
        ({"setting": "fast"}, "setting='fast'"),
        ({"setting": 3}, "setting=3"),
    ],
)
def test_unknown_settings_are_refused(kwargs, received):
    with pytest.raises(ValueError, match=f"Received: {received}"):
        algorithms.BrainProp(**kwargs)


@pytest.mark.backends
@pytest.mark.parametrize(
    "kwargs, received",
    [
        ({"optimizer": "rmsprop"}, "optimizer='rmsprop'"),
        ({"learning_rate": float("inf")}, "learning_rate=inf"),
        ({"learning_rate": 0.0}, "learning_rate=0.0"),
        ({"policy": "softmax"}, "policy='softmax'"),
    ],
)
def test_bad_settings_are_refused_when_made(kwargs, received):
    with pytest.raises(ValueError, match=f"Received: {received}"):
        settings.Setting("mine", **kwargs)


def clusters(actions, per_class, seed):
    """A many-class task: Gaussian clusters around random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(actions, 16))
    labels = np.repeat(np.arange(actions), per_class)
    x = centres[labels] + 0.3 * rng.normal(size=(len(labels), 16))
    order = rng.permutation(len(labels))
    return x[order].astype("float32"), labels[order].astype("int32")


def epochs_to_accuracy(setting, x, y, target, max_epochs):
    keras.utils.set_random_seed(0)
    network = keras.Sequential(
        [
            keras.Input((16,)),
            keras.layers.Dense(
                64,
                "relu",
                use_bias=False,
                kernel_initializer=keras.initializers.RandomNormal(0, 0.01),
            ),
            keras.layers.Dense(
                int(y.max()) + 1,
                use_bias=False,
                kernel_initializer=keras.initializers.RandomNormal(0, 0.01),
            ),
        ]
    )
    algorithm = algorithms.BrainProp(setting=setting, seed=0)
    model = algorithm.wrap(network)
    algorithm.compile(model)
    for epoch in range(1, max_epochs + 1):
        model.fit(x, y, batch_size=32, epochs=1, verbose=0)
        q_values = keras.ops.convert_to_numpy(network(x))
        accuracy = np.mean(np.argmax(q_values, axis=1) == y)
        if accuracy >= target:
            return epoch
    return None


@pytest.mark.slow
def test_recommended_reaches_the_target_sooner_on_many_actions():
    x, y = clusters(actions=40, per_class=40, seed=1)
    recommended = epochs_to_accuracy("recommended", x, y, 0.6, max_epochs=8)
    assert recommended is not None and recommended <= 6, recommended
    # The paper's setting has not reached it after twice the epochs.
    paper = epochs_to_accuracy("paper", x, y, 0.6, max_epochs=2 * recommended)
    assert paper is None, paper


@pytest.mark.slow
def test_experiment_run_trains_with_a_setting_and_names_it(tmp_path):
    result = experiment.run(
        "digits",
        "mlp",
        algorithms.BrainProp(setting="recommended"),
        epochs=1,
        seeds=[1],
        max_train_examples=64,
        verbose=0,
        output_dir=tmp_path,
    )
    assert (result.setting, result.policy) == ("recommended", "discovery")
    assert result.hyperparameters.learning_rate == 1e-3
    assert [path.name for path in tmp_path.iterdir()] == [
        "digits_mlp_brainprop_discovery_recommended"
    ]
    # An explicit rate replaces the setting's; backprop keeps the paper's.
    explicit = experiment.run(
        "digits",
        "mlp",
        algorithms.BrainProp(setting="recommended"),
        epochs=1,
        seeds=[1],
        max_train_examples=64,
        learning_rate=0.01,
        verbose=0,
    )
    assert explicit.hyperparameters.learning_rate == 0.01
    backprop = experiment.run(
        "digits", "mlp", "backprop", epochs=1, seeds=[1], max_train_examples=64
    )
    assert backprop.hyperparameters.learning_rate == 0.1
    assert backprop.setting == "paper"
