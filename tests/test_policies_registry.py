"""keras_brainprop.policies' registry: register, get, name, names and
parameters, "paper", and a user's policy by name in wrap and saved models."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_brainprop as kbp
from keras_brainprop import policies


class LastAction(policies.Policy):
    """A user's policy: always the last action (or `offset` before it)."""

    def __init__(self, offset=0):
        self.offset = offset

    def select(self, q_values, step, seed):
        actions = ops.shape(q_values)[-1]
        return ops.full(ops.shape(q_values)[:1], actions - 1 - self.offset)

    def get_config(self):
        return {"offset": self.offset}


@pytest.fixture(autouse=True)
def _restore_registry(monkeypatch):
    # Names a test registers are gone after it.
    registry = policies._REGISTRY
    monkeypatch.setattr(registry, "_classes", dict(registry._classes))


def _net():
    return keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(
                3, kernel_initializer=keras.initializers.GlorotUniform(3)
            ),
        ]
    )


def _batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 5)).astype("float32")
    y = rng.integers(0, 3, size=8)
    return x, y


def _trained(policy):
    model = kbp.wrap(_net(), policy=policy, seed=1)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.train_on_batch(*_batch())
    return model


@pytest.mark.parametrize("name", policies.NAMES)
def test_every_built_in_name_round_trips(name):
    policy = policies.get(name)
    assert type(policies.get(policies.name(policy))) is type(policy)
    assert policies.parameters(policy) == {}
    if name != "epsilon_boltzmann":
        assert policies.name(policy) == name


def test_paper_round_trips_to_the_papers_default():
    assert policies.NAMES == (
        "greedy",
        "epsilon_greedy",
        "boltzmann",
        "epsilon_boltzmann",
        "discovery",
        "square_cb",
    )
    paper = policies.get("paper")
    assert type(paper) is policies.EpsilonBoltzmann
    assert paper.get_config() == policies.EpsilonBoltzmann().get_config()
    assert policies.get("Paper").get_config() == paper.get_config()
    assert policies.name(paper) == policies.name(None) == "paper"
    assert policies.name("epsilon_boltzmann") == "paper"
    assert policies.parameters("paper") == {}
    tuned = policies.EpsilonBoltzmann(epsilon=0.2)
    assert policies.name(tuned) == "epsilon_boltzmann"
    assert type(policies.get(policies.name(tuned))) is type(tuned)
    assert "paper" not in policies.names()
    with pytest.raises(ValueError, match="'paper' is reserved"):
        policies.register("paper")(LastAction)


def test_names_lists_the_built_in_policies_first():
    policies.register("test_last_action")(LastAction)
    assert policies.names()[:6] == policies.NAMES
    assert policies.names()[-1] == "test_last_action"
    for public in ("register", "name", "names", "parameters", "get"):
        assert public in policies.__all__


def test_class_names_are_still_accepted():
    assert type(policies.get("EpsilonBoltzmann")) is policies.EpsilonBoltzmann
    assert type(policies.get("squarecb")) is policies.SquareCB
    assert policies.name("Discovery") == "discovery"


def test_parameters_are_the_ones_that_differ_from_the_defaults():
    assert policies.parameters(policies.Discovery()) == {}
    assert policies.parameters(policies.Discovery(bonus=0.5)) == {"bonus": 0.5}
    assert policies.parameters(
        policies.EpsilonBoltzmann(epsilon=0.2, temperature=1.0)
    ) == {"epsilon": 0.2}
    assert policies.parameters(policies.SquareCB(gamma=np.float32(50))) == {
        "gamma": 50.0
    }
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    parameters = policies.parameters(policies.EpsilonGreedy(schedule))
    assert parameters["epsilon"]["class_name"] == "ExponentialDecay"
    assert policies.parameters(LastAction(offset=1)) == {"offset": 1}


@pytest.mark.slow
def test_a_users_policy_by_name_trains_as_the_instance():
    policies.register("test_last_action")(LastAction)
    assert type(policies.get("test_last_action")) is LastAction
    assert policies.name(LastAction(offset=1)) == "test_last_action"
    by_name = _trained("test_last_action")
    by_instance = _trained(LastAction())
    assert type(by_name.policy) is LastAction
    for ours, theirs in zip(by_name.get_weights(), by_instance.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    greedy = _trained("greedy")
    assert any(
        not np.allclose(ours, theirs)
        for ours, theirs in zip(by_name.get_weights(), greedy.get_weights())
    )


def test_a_users_policy_saves_and_loads_by_name(tmp_path):
    policies.register("test_last_action")(LastAction)
    model = _trained("test_last_action")
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert type(reloaded.policy) is LastAction
    assert policies.name(reloaded.policy) == "test_last_action"


def test_a_taken_name_is_refused_for_another_class():
    class Other(policies.Greedy):
        pass

    with pytest.raises(ValueError, match="'discovery' is already regis"):
        policies.register("discovery")(Other)
    policies.register("test_taken")(LastAction)
    with pytest.raises(ValueError, match="'test_taken' is already regis"):
        policies.register("test_taken")(Other)
    assert policies.register("test_taken")(LastAction) is LastAction


def test_only_policy_classes_register():
    with pytest.raises(TypeError, match="Policy.*Received"):
        policies.register("test_rule")(kbp.feedback.SignSymmetry)
    with pytest.raises(ValueError, match="lower-case identifier"):
        policies.register("Last-Action")(LastAction)
    assert "test_rule" not in policies.names()


def test_an_unknown_name_lists_the_registered_ones():
    policies.register("test_last_action")(LastAction)
    with pytest.raises(
        ValueError,
        match="'greedy', .*'square_cb', .*'test_last_action'.*'paper'.*"
        "Received: policy='softmax'",
    ):
        policies.get("softmax")


def test_an_unregistered_class_has_no_name():
    class Unregistered(policies.Greedy):
        pass

    with pytest.raises(
        ValueError,
        match="Unregistered is not a registered policy.*"
        "keras_brainprop.policies.register",
    ):
        policies.name(Unregistered())
