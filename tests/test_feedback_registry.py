"""keras_brainprop.feedback's registry: register, get, name, names and
parameters, and a user's rule by name in wrap, apply and saved models."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_brainprop as kbp
from keras_brainprop import feedback


class ScaledSignSymmetry(feedback.FeedbackRule):
    """A user's rule: `scale * sign(W) * rms(W)`, computed at each step."""

    def __init__(self, scale=0.5):
        self.scale = scale

    def feedback_kernel(self, feedback_layer):
        kernel = ops.convert_to_tensor(feedback_layer.kernel)
        magnitude = ops.sqrt(ops.mean(ops.square(kernel)))
        return ops.stop_gradient(self.scale * ops.sign(kernel) * magnitude)

    def get_config(self):
        return {"scale": self.scale}


@pytest.fixture(autouse=True)
def _restore_registry(monkeypatch):
    # Names a test registers are gone after it.
    registry = feedback.registry._REGISTRY
    monkeypatch.setattr(registry, "_classes", dict(registry._classes))


def _net(seed=3):
    return keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(
                7,
                activation="relu",
                kernel_initializer=keras.initializers.GlorotUniform(seed),
            ),
            keras.layers.Dense(
                3, kernel_initializer=keras.initializers.GlorotUniform(seed)
            ),
        ]
    )


def _batch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 5)).astype("float32")
    y = rng.integers(0, 3, size=8)
    return x, y


def _trained(rule):
    model = kbp.wrap(_net(), policy="greedy", seed=1, feedback=rule)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.train_on_batch(*_batch())
    return model


@pytest.mark.parametrize("name", feedback.NAMES)
def test_every_built_in_name_round_trips(name):
    rule = feedback.get(name)
    assert feedback.name(rule) == name
    assert type(feedback.get(feedback.name(rule))) is type(rule)
    assert feedback.parameters(rule) == {}


def test_names_lists_the_built_in_rules_first():
    assert feedback.NAMES == (
        "symmetric",
        "feedback_alignment",
        "sign_symmetry",
        "kolen_pollack",
    )
    feedback.register("test_scaled_sign")(ScaledSignSymmetry)
    assert feedback.names()[:4] == feedback.NAMES
    assert feedback.names()[-1] == "test_scaled_sign"
    for public in ("register", "name", "names", "parameters"):
        assert public in feedback.__all__


def test_name_of_none_and_of_class_names():
    assert feedback.name(None) == "symmetric"
    assert feedback.name("KolenPollack") == "kolen_pollack"
    assert feedback.name(feedback.KolenPollack(decay=0.5)) == "kolen_pollack"


def test_parameters_are_the_arguments_that_differ_from_the_defaults():
    assert feedback.parameters(feedback.KolenPollack()) == {}
    assert feedback.parameters(feedback.KolenPollack(decay=1e-3)) == {}
    assert feedback.parameters(feedback.KolenPollack(decay=0.01)) == {
        "decay": 0.01
    }
    assert feedback.parameters(feedback.FeedbackAlignment(seed=4)) == {
        "seed": 4
    }
    parameters = feedback.parameters(
        feedback.FeedbackAlignment(initializer="he_normal")
    )
    assert list(parameters) == ["initializer"]
    assert parameters["initializer"]["class_name"] == "HeNormal"
    assert feedback.parameters(None) == {}
    assert feedback.parameters(ScaledSignSymmetry(scale=2.0)) == {"scale": 2.0}


@pytest.mark.slow
def test_a_users_rule_by_name_trains_as_the_instance():
    feedback.register("test_scaled_sign")(ScaledSignSymmetry)
    assert type(feedback.get("test_scaled_sign")) is ScaledSignSymmetry
    assert type(feedback.get("ScaledSignSymmetry")) is ScaledSignSymmetry
    assert feedback.name(ScaledSignSymmetry(scale=3.0)) == "test_scaled_sign"
    by_name = _trained("test_scaled_sign")
    by_instance = _trained(ScaledSignSymmetry())
    assert type(by_name.feedback) is ScaledSignSymmetry
    for ours, theirs in zip(by_name.get_weights(), by_instance.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    # The rule does change the step: it differs from backprop's.
    backprop = _trained(None)
    assert any(
        not np.allclose(ours, theirs)
        for ours, theirs in zip(by_name.get_weights(), backprop.get_weights())
    )


def test_a_users_rule_by_name_in_apply():
    feedback.register("test_scaled_sign")(ScaledSignSymmetry)
    converted = feedback.apply(_net(), "test_scaled_sign")
    assert type(feedback.rule_of(converted)) is ScaledSignSymmetry
    assert len(feedback.feedback_layers(converted)) == 2
    assert feedback.apply(converted, "test_scaled_sign") is converted


def test_a_users_rule_saves_and_loads_by_name(tmp_path):
    feedback.register("test_scaled_sign")(ScaledSignSymmetry)
    model = _trained(feedback.get("test_scaled_sign"))
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert type(reloaded.feedback) is ScaledSignSymmetry
    assert reloaded.feedback.get_config() == {"scale": 0.5}
    x, _ = _batch()
    np.testing.assert_array_equal(
        reloaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )


def test_register_returns_the_class_and_keeps_a_keras_registration():
    @keras.saving.register_keras_serializable(package="my_package")
    class OwnPackage(feedback.SignSymmetry):
        pass

    assert feedback.register("test_own_package")(OwnPackage) is OwnPackage
    assert keras.saving.get_registered_name(OwnPackage) == (
        "my_package>OwnPackage"
    )

    class NoPackage(feedback.SignSymmetry):
        pass

    feedback.register("test_no_package")(NoPackage)
    assert keras.saving.get_registered_name(NoPackage) == (
        "keras_brainprop.feedback>test_no_package"
    )
    config = keras.saving.serialize_keras_object(NoPackage())
    assert type(feedback.get(config)) is NoPackage


def test_a_taken_name_is_refused_for_another_class():
    class Other(feedback.SignSymmetry):
        pass

    with pytest.raises(ValueError, match="'kolen_pollack' is already .*"):
        feedback.register("kolen_pollack")(Other)
    feedback.register("test_taken")(ScaledSignSymmetry)
    with pytest.raises(ValueError, match="'test_taken' is already regis"):
        feedback.register("test_taken")(Other)
    # The same class again is no conflict.
    assert feedback.register("test_taken")(ScaledSignSymmetry)
    with pytest.raises(ValueError, match="has one name"):
        feedback.register("test_second_name")(ScaledSignSymmetry)
    assert feedback.names()[-1] == "test_taken"


def test_only_rule_classes_with_identifier_names_register():
    with pytest.raises(TypeError, match="FeedbackRule.*Received"):
        feedback.register("test_policy")(kbp.policies.Greedy)
    with pytest.raises(TypeError, match="FeedbackRule.*Received"):
        feedback.register("test_instance")(ScaledSignSymmetry())
    for bad in ("My_Rule", "my rule", "", "1rule", None):
        with pytest.raises(ValueError, match="lower-case identifier"):
            feedback.register(bad)(ScaledSignSymmetry)
    assert "test_policy" not in feedback.names()


def test_an_unknown_name_lists_the_registered_ones():
    feedback.register("test_scaled_sign")(ScaledSignSymmetry)
    with pytest.raises(
        ValueError,
        match="'symmetric', .*'kolen_pollack', .*'test_scaled_sign'.*"
        "Received: feedback='direct'",
    ):
        feedback.get("direct")


def test_an_unregistered_class_has_no_name():
    class Unregistered(feedback.KolenPollack):
        pass

    with pytest.raises(
        ValueError,
        match="Unregistered is not a registered feedback rule.*"
        "keras_brainprop.feedback.register",
    ):
        feedback.name(Unregistered())
    # Its parameters are still known.
    assert feedback.parameters(Unregistered(decay=0.2)) == {"decay": 0.2}
