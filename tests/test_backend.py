"""BrainPropModel on every Keras backend (TensorFlow, JAX, PyTorch).

Every test here is marked `backends`: CI runs them under each backend, in a
process of its own (`KERAS_BACKEND=jax python -m pytest -m backends`).
Their bodies use keras.ops and NumPy only.
"""

import keras
import numpy as np
import pytest
from _helpers import RULE_NAMES
from _helpers import relu_net
from _references import numpy_brainprop_step
from keras import ops

import keras_brainprop as kbp
from keras_brainprop import backend
from keras_brainprop import feedback
from keras_brainprop import policies

pytestmark = pytest.mark.backends

LEARNING_RATE = 0.1
# Where the backend compiles the step: TensorFlow with XLA or not, JAX
# always; PyTorch runs it eagerly.
JIT_COMPILE = {"tensorflow": [False, True], "jax": [True], "torch": [False]}[
    backend.NAME
]


def batch_norm_net(num_actions=3):
    return keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(6),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Dense(num_actions),
        ]
    )


def random_batch(num_inputs, num_actions, batch_size=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch_size, num_inputs)).astype("float32")
    y = rng.integers(0, num_actions, size=(batch_size,)).astype("int32")
    return x, y


def numpy_of(value):
    return ops.convert_to_numpy(ops.stop_gradient(ops.convert_to_tensor(value)))


def weights_of(model):
    return [numpy_of(v) for v in model.variables]


def _feedbacks(rule_name, network, converted, kernels):
    if rule_name == "symmetric":
        return kernels
    if rule_name == "sign_symmetry":
        return [np.sign(w) * np.sqrt(np.mean(w**2)) for w in kernels]
    return [numpy_of(layer.feedback_kernel) for layer in converted.layers]


@pytest.mark.slow
@pytest.mark.parametrize("rule_name", RULE_NAMES)
@pytest.mark.parametrize("jit_compile", JIT_COMPILE)
def test_one_step_equals_the_papers_equations(rule_name, jit_compile):
    rule = feedback.get(rule_name)
    if isinstance(rule, feedback.KolenPollack):
        rule = feedback.KolenPollack(decay=0.3, seed=5)
    network = relu_net()
    x, y = random_batch(6, 4)
    model = kbp.wrap(network, policy="greedy", feedback=rule)
    model.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE), jit_compile=jit_compile
    )
    kernels = [numpy_of(layer.kernel) for layer in network.layers]
    biases = [numpy_of(layer.bias) for layer in network.layers]
    feedbacks = _feedbacks(rule_name, network, model.network, kernels)
    expected = numpy_brainprop_step(
        kernels,
        biases,
        feedbacks,
        x,
        y,
        LEARNING_RATE,
        decay=getattr(rule, "decay", 0.0),
    )
    model.train_on_batch(x, y)
    for index, layer in enumerate(network.layers):
        np.testing.assert_allclose(
            numpy_of(layer.kernel), expected[0][index], atol=1e-6
        )
        np.testing.assert_allclose(
            numpy_of(layer.bias), expected[1][index], atol=1e-6
        )
    if rule_name == "kolen_pollack":
        for layer, expected_feedback in zip(model.network.layers, expected[2]):
            np.testing.assert_allclose(
                numpy_of(layer.feedback_kernel), expected_feedback, atol=1e-6
            )


def test_an_exploring_step_learns_from_the_actions_the_policy_drew():
    policy = policies.EpsilonBoltzmann(epsilon=1.0, temperature=0.5)
    network = relu_net()
    x, y = random_batch(6, 4, batch_size=32)
    model = kbp.wrap(network, policy=policy, seed=7)
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    kernels = [numpy_of(layer.kernel) for layer in network.layers]
    biases = [numpy_of(layer.bias) for layer in network.layers]
    # The seed of the first step: the base seed folded with step 0 and
    # replica 0 (see BrainPropModel._step_seed).
    seed = backend.fold_in(
        backend.fold_in(model.seed_generator.state.value, 0), 0
    )
    q_values = network(x)
    actions = numpy_of(policy(q_values, ops.convert_to_tensor(0), seed))
    assert np.any(actions != np.argmax(numpy_of(q_values), axis=-1))
    expected = numpy_brainprop_step(
        kernels, biases, kernels, x, y, LEARNING_RATE, actions=actions
    )
    logs = model.train_on_batch(x, y, return_dict=True)
    for index, layer in enumerate(network.layers):
        np.testing.assert_allclose(
            numpy_of(layer.kernel), expected[0][index], atol=1e-6
        )
    np.testing.assert_allclose(
        logs["explore_rate"],
        np.mean(actions != np.argmax(numpy_of(q_values), axis=-1)),
    )


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", JIT_COMPILE)
def test_fit_evaluate_predict_and_their_logs(jit_compile):
    x, y = random_batch(6, 4, batch_size=64)
    model = kbp.wrap(relu_net(), seed=1)
    model.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    history = model.fit(
        x, y, batch_size=16, epochs=2, verbose=0, validation_data=(x, y)
    ).history
    training = ["loss", "reward", "rpe", "accuracy", "explore_rate"]
    for name in training + ["greedy_coverage"]:
        assert len(history[name]) == 2 and np.isfinite(history[name]).all()
    for name in ["val_loss", "val_reward", "val_rpe", "val_accuracy"]:
        assert name in history
    assert "val_explore_rate" not in history
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "reward", "rpe", "accuracy"}
    q_values = model.predict(x, verbose=0)
    assert q_values.shape == (64, 4)
    greedy = np.argmax(q_values, axis=-1)
    reward = (greedy == y).astype("float64")
    delta = reward - q_values[np.arange(64), greedy]
    np.testing.assert_allclose(logs["accuracy"], reward.mean(), atol=1e-6)
    np.testing.assert_allclose(logs["reward"], reward.mean(), atol=1e-6)
    np.testing.assert_allclose(logs["rpe"], delta.mean(), atol=1e-5)
    np.testing.assert_allclose(logs["loss"], np.mean(0.5 * delta**2), rtol=1e-5)
    assert model.metrics_names == ["loss", "reward", "rpe", "accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "make_policy",
    [
        lambda: policies.Greedy(),
        lambda: policies.EpsilonGreedy(0.2),
        lambda: policies.Boltzmann(0.5),
        lambda: policies.EpsilonBoltzmann(),
        lambda: policies.Discovery(),
        lambda: policies.EpsilonGreedy(
            keras.optimizers.schedules.ExponentialDecay(0.5, 10, 0.5)
        ),
    ],
)
def test_same_seed_gives_bit_identical_runs(make_policy):
    def run():
        keras.utils.set_random_seed(3)
        x, y = random_batch(5, 3, batch_size=48, seed=2)
        model = kbp.wrap(batch_norm_net(), policy=make_policy(), seed=4)
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = model.fit(
            x, y, batch_size=16, epochs=2, shuffle=False, verbose=0
        ).history
        return weights_of(model), history

    (first, first_logs), (second, second_logs) = run(), run()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert first_logs == second_logs


def _bad_input_cases():
    x, y = random_batch(5, 3, batch_size=8)
    nan_x = x.copy()
    nan_x[3, 1] = np.nan
    return {
        "label out of range": (x, np.where(y == y[2], 3, y), "Labels must be"),
        "negative label": (x, -np.ones_like(y), "Labels must be >= 0"),
        "table of the wrong width": (
            x,
            np.ones((8, 4), "float32"),
            "reward table",
        ),
        "non-finite table": (
            x,
            np.full((8, 3), np.inf, "float32"),
            "finite",
        ),
        "NaN input": (nan_x, y, "inputs must be finite"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(_bad_input_cases()))
@pytest.mark.parametrize("jit_compile", JIT_COMPILE)
def test_bad_input_is_refused_before_any_weight_moves(case, jit_compile):
    if jit_compile and backend.NAME == "tensorflow":
        pytest.skip(
            "XLA compiles TensorFlow's assertions away (docs/guarantees.md)"
        )
    x, y, message = _bad_input_cases()[case]
    model = kbp.wrap(batch_norm_net(), seed=0)
    model.compile(
        optimizer=keras.optimizers.Adam(0.01), jit_compile=jit_compile
    )
    good_x, good_y = random_batch(5, 3, batch_size=8, seed=1)
    model.fit(good_x, good_y, batch_size=8, verbose=0)
    before = weights_of(model) + [
        numpy_of(v) for v in model.optimizer.variables
    ]
    with pytest.raises(ValueError, match=message) as raised:
        model.fit(x, y, batch_size=8, verbose=0)
    assert "Received" in str(raised.value)
    after = weights_of(model) + [numpy_of(v) for v in model.optimizer.variables]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=message):
        model.evaluate(x, y, verbose=0)


def test_a_reward_function_returning_nan_is_refused():
    def nan_for_action_one(y, actions):
        correct = ops.cast(ops.equal(ops.cast(y, "int32"), actions), "float32")
        return ops.where(ops.equal(actions, 1), np.nan, correct)

    x, y = random_batch(6, 4, batch_size=8)
    model = kbp.wrap(
        relu_net(), policy="epsilon_greedy", reward=nan_for_action_one
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    with pytest.raises(ValueError, match="NaN or Inf. Received: reward nan"):
        for _ in range(20):  # Until action 1 is drawn.
            model.train_on_batch(x, y)


@pytest.mark.slow
def test_digits_are_learned_from_reward_alone():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    y = digits.target.astype("int32")
    keras.utils.set_random_seed(0)
    network = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model = kbp.wrap(network, policy="discovery", seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(x[:1400], y[:1400], batch_size=32, epochs=8, verbose=0)
    logs = model.evaluate(x[1400:], y[1400:], verbose=0, return_dict=True)
    assert logs["accuracy"] > 0.6  # Chance is 0.1.
