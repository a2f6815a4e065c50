"""Feedback rules (keras_brainprop/feedback/rules.py): names, configs,
seeds, and what each rule's feedback weights are and how they change.
"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from _helpers import LEARNING_RATE
from _helpers import RULE_NAMES
from _helpers import angle_degrees
from _helpers import brainprop_model
from _helpers import loccon_net
from _helpers import random_batch
from _helpers import relu_net
from _helpers import to_numpy
from sklearn.datasets import load_digits

import keras_brainprop as kbp
from keras_brainprop import feedback

# The rules over training -----------------------------------------------------


class _KernelRecorder(keras.callbacks.Callback):
    """Records every FeedbackLayer's kernel and feedback weights per step."""

    def __init__(self, network):
        super().__init__()
        self.layers = feedback.feedback_layers(network)
        self.steps = []

    def record(self):
        self.steps.append(
            [
                (layer.kernel.numpy(), to_numpy(layer.feedback_kernel))
                for layer in self.layers
            ]
        )

    def on_train_begin(self, logs=None):
        self.record()

    def on_train_batch_end(self, batch, logs=None):
        self.record()


@pytest.mark.slow
def test_feedback_alignment_weights_do_not_change_during_fit():
    x, y = random_batch((6, 6, 2), 3, batch_size=32)
    model = brainprop_model(loccon_net(), feedback.FeedbackAlignment(seed=1))
    recorder = _KernelRecorder(model.network)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[recorder])
    assert len(recorder.steps) == 9
    for (kernel, fixed), (trained, after) in zip(
        recorder.steps[0], recorder.steps[-1]
    ):
        np.testing.assert_array_equal(after, fixed)
        assert not np.allclose(kernel, trained)
    assert not any(
        layer.feedback_kernel.trainable
        for layer in feedback.feedback_layers(model.network)
    )


def test_sign_symmetry_feedback_has_the_kernels_signs_and_norm():
    network = feedback.apply(loccon_net(), "sign_symmetry")
    for layer in feedback.feedback_layers(network):
        kernel = layer.kernel.numpy()
        feedback_kernel = layer.feedback_kernel.numpy()
        np.testing.assert_array_equal(np.sign(feedback_kernel), np.sign(kernel))
        assert len(np.unique(np.abs(feedback_kernel))) == 1
        np.testing.assert_allclose(
            np.linalg.norm(feedback_kernel), np.linalg.norm(kernel), rtol=1e-5
        )
        assert layer.weights[0] is not layer.feedback_kernel


@pytest.mark.slow
def test_kolen_pollack_shrinks_the_difference_exactly_every_step():
    decay, l2 = 0.4, 0.05
    network = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(
                8,
                activation="relu",
                kernel_regularizer=keras.regularizers.L2(l2),
            ),
            keras.layers.Dense(7, activation="relu"),
            keras.layers.Dense(4),
        ]
    )
    x, y = random_batch((6,), 4, batch_size=40)
    model = brainprop_model(network, feedback.KolenPollack(decay, seed=1))
    recorder = _KernelRecorder(model.network)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[recorder])
    assert len(recorder.steps) == 11
    # The kernel's L2 regularizer acts on the feedback weights too.
    factors = [1 - LEARNING_RATE * (decay + 2 * l2)] + [
        1 - LEARNING_RATE * decay
    ] * 2
    for before, after in zip(recorder.steps, recorder.steps[1:]):
        for factor, (kernel, feedback_kernel), (
            new_kernel,
            new_feedback,
        ) in zip(factors, before, after):
            np.testing.assert_allclose(
                new_kernel - new_feedback,
                factor * (kernel - feedback_kernel),
                atol=1e-6,
            )
            assert not np.allclose(new_kernel, kernel, atol=1e-4)


@pytest.mark.slow
def test_kolen_pollack_feedback_aligns_with_the_kernels_on_digits():
    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    initializer = keras.initializers.RandomNormal(stddev=0.05)
    network = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(
                32, activation="relu", kernel_initializer=initializer
            ),
            keras.layers.Dense(10, kernel_initializer=initializer),
        ]
    )
    # A large decay (W - B shrinks by 2.5 % per step) keeps the test short.
    rule = feedback.KolenPollack(decay=0.05, seed=1)
    model = kbp.wrap(network, seed=1, feedback=rule)
    model.compile(optimizer=keras.optimizers.SGD(0.5), metrics=["accuracy"])
    layers = feedback.feedback_layers(model.network)
    angles_before = [
        angle_degrees(layer.kernel, layer.feedback_kernel) for layer in layers
    ]
    history = model.fit(x, digits.target, batch_size=16, epochs=2, verbose=0)
    angles = [
        angle_degrees(layer.kernel, layer.feedback_kernel) for layer in layers
    ]
    assert min(angles_before) > 80
    assert max(angles) < 5, angles
    assert history.history["accuracy"][-1] > 0.15  # Chance: 0.1.


# Rules and conversion --------------------------------------------------------


def test_get_maps_names_objects_and_configs():
    assert isinstance(feedback.get(None), feedback.Symmetric)
    assert isinstance(feedback.get("kolen_pollack"), feedback.KolenPollack)
    assert isinstance(feedback.get("SignSymmetry"), feedback.SignSymmetry)
    rule = feedback.FeedbackAlignment(seed=3)
    assert feedback.get(rule) is rule
    config = keras.saving.serialize_keras_object(rule)
    assert feedback.get(config).get_config() == rule.get_config()
    assert feedback.NAMES == tuple(RULE_NAMES)


@pytest.mark.parametrize(
    "rule",
    [
        feedback.Symmetric(),
        feedback.FeedbackAlignment(initializer="he_normal", seed=4),
        feedback.SignSymmetry(),
        feedback.KolenPollack(decay=0.01, seed=2),
    ],
    ids=RULE_NAMES,
)
def test_rule_config_round_trip(rule):
    config = keras.saving.serialize_keras_object(rule)
    restored = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(config))
    )
    assert type(restored) is type(rule)
    assert restored.get_config() == rule.get_config()


def test_feedback_alignment_seeds():
    def feedback_kernels(rule):
        converted = feedback.apply(relu_net(), rule)
        return [layer.feedback_kernel.numpy() for layer in converted.layers]

    keras.utils.set_random_seed(5)
    first = feedback_kernels(feedback.FeedbackAlignment(seed=1))
    same = feedback_kernels(feedback.FeedbackAlignment(seed=1))
    other = feedback_kernels(feedback.FeedbackAlignment(seed=2))
    keras.utils.set_random_seed(5)
    global_a = feedback_kernels(feedback.FeedbackAlignment())
    keras.utils.set_random_seed(5)
    global_b = feedback_kernels(feedback.FeedbackAlignment())
    for a, b, c, d, e in zip(first, same, other, global_a, global_b):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(d, e)
        assert not np.allclose(a, c)
    # Layers of one shape still draw different weights.
    network = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(5), keras.layers.Dense(5)]
    )
    converted = feedback.apply(network, feedback.FeedbackAlignment(seed=1))
    a, b = [layer.feedback_kernel.numpy() for layer in converted.layers]
    assert not np.allclose(a, b)


def test_feedback_weights_have_the_kernel_initializers_scale():
    network = keras.Sequential(
        [
            keras.Input((400,)),
            keras.layers.Dense(
                300,
                kernel_initializer=keras.initializers.RandomNormal(stddev=0.3),
            ),
            keras.layers.Dense(200),  # glorot_uniform: std sqrt(2 / 500).
        ]
    )
    converted = feedback.apply(network, "feedback_alignment")
    first, second = [
        layer.feedback_kernel.numpy() for layer in converted.layers
    ]
    assert abs(first.std() - 0.3) < 0.01
    assert abs(second.std() - np.sqrt(2 / 500)) < 0.002
    explicit = feedback.apply(
        network,
        feedback.FeedbackAlignment(
            initializer=keras.initializers.RandomUniform(0.0, 1.0)
        ),
    )
    assert explicit.layers[1].feedback_kernel.numpy().min() >= 0.0


# Errors ----------------------------------------------------------------------


def test_unknown_rule_is_rejected():
    with pytest.raises(ValueError, match="'feedback_alignment'.*Received: "):
        feedback.get("direct_feedback_alignment")
    with pytest.raises(ValueError, match="Received: feedback=3"):
        feedback.apply(relu_net(), 3)


@pytest.mark.slow
def test_mixed_precision_keeps_the_kolen_pollack_contraction_exact():
    keras.config.set_dtype_policy("mixed_float16")
    decay = 0.2
    network = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    x, y = random_batch((6, 6, 2), 3, batch_size=32)
    model = brainprop_model(network, feedback.KolenPollack(decay, seed=1))
    recorder = _KernelRecorder(model.network)
    model.fit(x, y, batch_size=8, verbose=0, callbacks=[recorder])
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    for layer in feedback.feedback_layers(model.network):
        assert layer.compute_dtype == "float16"
        assert layer.feedback_kernel.dtype == "float32"
    # The scaled loss carries the decay: unscaled, W - B still shrinks by
    # exactly 1 - lr * decay, and the weights learn.
    for before, after in zip(recorder.steps, recorder.steps[1:]):
        for (kernel, feedback_kernel), (new_kernel, new_feedback) in zip(
            before, after
        ):
            np.testing.assert_allclose(
                new_kernel - new_feedback,
                (1 - LEARNING_RATE * decay) * (kernel - feedback_kernel),
                atol=1e-6,
            )
            assert not np.allclose(new_kernel, kernel, atol=1e-4)
    assert model.network(x).dtype == "float16"


@pytest.mark.slow
@pytest.mark.parametrize("run_eagerly", [False, True])
def test_freezing_a_layer_freezes_its_kolen_pollack_feedback(run_eagerly):
    network = relu_net()
    model = brainprop_model(
        network,
        feedback.KolenPollack(decay=0.1, seed=1),
        run_eagerly=run_eagerly,
    )
    network.layers[0].trainable = False  # After wrapping.
    frozen, free = feedback.feedback_layers(model.network)[:2]
    before = [to_numpy(v) for v in (*frozen.weights, *free.weights)]
    x, y = random_batch((6,), 4, batch_size=32)
    model.fit(x, y, batch_size=8, verbose=0)
    after = [to_numpy(v) for v in (*frozen.weights, *free.weights)]
    count = len(frozen.weights)
    for old, new in zip(before[:count], after[:count]):
        np.testing.assert_array_equal(new, old)
    assert not np.allclose(before[count], after[count])

    def learns(variable):
        return any(v is variable for v in model.trainable_variables)

    assert not learns(frozen.feedback_weights)
    assert learns(free.feedback_weights)
    network.layers[0].trainable = True
    assert learns(frozen.feedback_weights)


# Rule arguments --------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: feedback.FeedbackAlignment(seed=-1),
        lambda: feedback.KolenPollack(seed=-1),
        lambda: feedback.FeedbackAlignment(seed=np.int64(-3)),
    ],
    ids=["feedback_alignment", "kolen_pollack", "numpy"],
)
def test_negative_seeds_are_refused(make):
    with pytest.raises(ValueError, match=r"non-negative int.*Received: seed="):
        make()


@pytest.mark.parametrize("decay", [np.inf, -np.inf, np.nan, "0.1", True])
def test_kolen_pollack_refuses_a_decay_that_is_not_finite(decay):
    with pytest.raises(ValueError, match="finite non-negative.*Received: dec"):
        feedback.KolenPollack(decay=decay)


@pytest.mark.parametrize(
    "initializer",
    ["zeros", "ones", keras.initializers.Constant(0.5)],
    ids=["zeros", "ones", "constant"],
)
def test_feedback_alignment_refuses_constant_feedback(initializer):
    with pytest.raises(ValueError, match="never learn.*Received: initial"):
        feedback.FeedbackAlignment(initializer=initializer)


def test_rules_take_numpy_scalars():
    rule = feedback.KolenPollack(decay=np.float32(1e-3), seed=np.int64(3))
    assert rule.decay == 0.001 and type(rule.decay) is float
    assert rule.seed == 3 and type(rule.seed) is int
    assert feedback.FeedbackAlignment(seed=np.int32(2)).seed == 2
    json.dumps(rule.get_config())  # Plain Python numbers.


def test_a_seeded_initializer_sets_the_draw():
    def first_feedback_kernel(rule):
        converted = feedback.apply(relu_net(), rule)
        return to_numpy(feedback.feedback_layers(converted)[0].feedback_kernel)

    def seeded(seed):
        initializer = keras.initializers.RandomNormal(stddev=0.05, seed=seed)
        return feedback.FeedbackAlignment(initializer=initializer)

    np.testing.assert_array_equal(
        first_feedback_kernel(seeded(5)), first_feedback_kernel(seeded(5))
    )
    assert not np.allclose(
        first_feedback_kernel(seeded(5)), first_feedback_kernel(seeded(6))
    )
    # Layers of one shape still draw different weights.
    network = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(5), keras.layers.Dense(5)]
    )
    converted = feedback.apply(network, seeded(5))
    a, b = [to_numpy(layer.feedback_kernel) for layer in converted.layers]
    assert not np.allclose(a, b)


def test_a_seedless_callable_kernel_initializer_is_named_as_such():
    def random_init(shape, dtype=None):
        return tf.random.normal(shape) * 0.05

    network = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(3, kernel_initializer=random_init),
        ]
    )
    with pytest.raises(ValueError, match="takes no seed") as error:
        feedback.apply(network, "feedback_alignment")
    assert "not random" not in str(error.value)
    assert "Received: kernel_initializer='random_init'" in str(error.value)
    # Given as the rule's initializer, the callable is used as it is.
    converted = feedback.apply(
        network, feedback.FeedbackAlignment(initializer=random_init)
    )
    assert to_numpy(converted.layers[0].feedback_kernel).std() > 0


@pytest.mark.backends
def test_seeded_feedback_weights_are_reproducible_on_every_backend():
    # Keras draws a seed's numbers with the backend's own generator, so the
    # same seed gives other feedback weights on another backend (as it does
    # for the forward kernels); within a backend it gives the same ones.
    def feedback_kernels(rule):
        network = keras.Sequential(
            [
                keras.Input((300,)),
                keras.layers.Dense(300),
                keras.layers.Dense(300),
            ]
        )
        converted = feedback.apply(network, rule)
        return [
            keras.ops.convert_to_numpy(layer.feedback_kernel)
            for layer in converted.layers
        ]

    first = feedback_kernels(feedback.FeedbackAlignment(seed=1))
    again = feedback_kernels(feedback.KolenPollack(seed=1))
    other = feedback_kernels(feedback.FeedbackAlignment(seed=2))
    for a, b, c in zip(first, again, other, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)
        # glorot_uniform: standard deviation sqrt(2 / (fan_in + fan_out)).
        assert abs(a.std() - np.sqrt(2 / sum(a.shape))) < 0.002
    assert not np.allclose(first[0], first[1])
