"""Statistical and serialization tests of the action-selection policies."""

import json
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops
from scipy import stats

import keras_brainprop as kbp
from keras_brainprop import backend
from keras_brainprop import policies

NUM_DRAWS = 20_000


def draw(policy, q_row, step=0, seed=(1, 2)):
    q_values = tf.tile(tf.constant([q_row], "float32"), [NUM_DRAWS, 1])
    return policy(q_values, tf.constant(step), tf.constant(seed)).numpy()


def softmax(values):
    exp = np.exp(values - np.max(values))
    return exp / exp.sum()


def assert_binomial(count, probability, n=NUM_DRAWS):
    # Two-sided 99.99% interval: a false alarm every 10,000 runs.
    low, high = stats.binom.interval(0.9999, n, probability)
    assert low <= count <= high, (count, probability * n)


def test_greedy_takes_the_argmax():
    q_values = tf.constant([[0.1, 0.9, 0.3], [2.0, -1.0, 0.0]])
    actions = policies.Greedy()(q_values, 0, tf.constant([0, 0]))
    np.testing.assert_array_equal(actions.numpy(), [1, 0])
    assert actions.dtype == tf.int32


def test_epsilon_boltzmann_explore_rate_within_binomial_bound():
    q_row = np.array([0.2, 0.5, 0.1, 0.4], "float32")
    epsilon, temperature = 0.1, 0.5
    policy = policies.EpsilonBoltzmann(epsilon, temperature)
    actions = draw(policy, q_row)
    # An exploratory draw differs from the greedy action with probability
    # 1 - softmax(Q / T)[greedy].
    p_differ = epsilon * (1.0 - softmax(q_row / temperature)[1])
    assert_binomial(np.sum(actions != 1), p_differ)


def test_epsilon_greedy_explores_uniformly():
    q_row = np.array([0.0, 1.0, 0.0, 0.0, 0.0], "float32")
    actions = draw(policies.EpsilonGreedy(0.2), q_row)
    assert_binomial(np.sum(actions != 1), 0.2 * 4 / 5)
    counts = np.bincount(actions[actions != 1], minlength=5)[[0, 2, 3, 4]]
    assert stats.chisquare(counts).pvalue > 1e-4


@pytest.mark.parametrize("temperature", [0.3, 1.0, 3.0])
def test_boltzmann_matches_softmax(temperature):
    q_row = np.array([0.1, 0.7, -0.2, 0.4], "float32")
    actions = draw(policies.Boltzmann(temperature), q_row)
    observed = np.bincount(actions, minlength=4)
    expected = softmax(q_row.astype("float64") / temperature) * NUM_DRAWS
    assert stats.chisquare(observed, expected).pvalue > 1e-4


def test_schedules_take_effect():
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [100], [1.0, 0.0]
    )
    policy = policies.EpsilonGreedy(schedule)
    q_row = np.array([0.0, 1.0, 0.0, 0.0], "float32")
    assert np.mean(draw(policy, q_row, step=0) != 1) > 0.7
    assert np.all(draw(policy, q_row, step=200) == 1)

    def cooling(step):
        return 10.0 / (1.0 + tf.cast(step, "float32"))

    policy = policies.Boltzmann(cooling)
    hot = np.bincount(draw(policy, q_row, step=0), minlength=4)
    cold = np.bincount(draw(policy, q_row, step=999), minlength=4)
    assert hot[1] < 0.4 * NUM_DRAWS and cold[1] > 0.99 * NUM_DRAWS


def test_draws_depend_only_on_the_seed():
    policy = policies.EpsilonBoltzmann(0.5)
    q_row = np.array([0.3, 0.2, 0.1], "float32")
    first = draw(policy, q_row, seed=(4, 5))
    np.testing.assert_array_equal(first, draw(policy, q_row, seed=(4, 5)))
    assert np.any(first != draw(policy, q_row, seed=(4, 6)))


@pytest.mark.slow
def test_policies_run_under_xla():
    policy = policies.EpsilonBoltzmann(0.5)

    @tf.function(jit_compile=True)
    def select(q_values, step, seed):
        return policy(q_values, step, seed)

    actions = select(tf.ones((64, 5)), tf.constant(0), tf.constant([1, 1]))
    assert actions.shape == (64,)


def _draw_in(mode, policy, q_values, seed):
    def select(q_values, seed):
        return policy(q_values, tf.constant(0), seed)

    if mode != "eager":
        select = tf.function(select, jit_compile=mode == "jit")
    return select(q_values, tf.constant(seed)).numpy()


@pytest.mark.slow
@pytest.mark.parametrize(
    "policy",
    [
        policies.EpsilonGreedy(0.5),
        policies.Boltzmann(1.0),
        policies.EpsilonBoltzmann(0.5),
        policies.Discovery(bonus=0.5),
    ],
    ids=repr,
)
def test_seeded_draws_repeat_within_each_mode(policy):
    # As documented: a seed fixes the draws of each mode, eager mode's are
    # graph mode's, and XLA's are others (it makes floats and categorical
    # draws from the same random bits by other methods).
    q_values = tf.random.stateless_normal((NUM_DRAWS, 5), [1, 2])
    draws = {
        mode: [
            _draw_in(mode, policy, q_values, seed)
            for seed in ([4, 5], [4, 5], [4, 6])
        ]
        for mode in ("eager", "graph", "jit")
    }
    for first, again, other in draws.values():
        np.testing.assert_array_equal(first, again)
        assert np.any(first != other)
    np.testing.assert_array_equal(draws["eager"][0], draws["graph"][0])
    assert np.any(draws["graph"][0] != draws["jit"][0])
    # XLA's draws are as random as the others: the same share explores.
    greedy = np.argmax(q_values.numpy(), axis=-1)
    explored = {mode: np.mean(d[0] != greedy) for mode, d in draws.items()}
    assert explored["jit"] == pytest.approx(explored["graph"], abs=0.02)


@pytest.mark.parametrize(
    "policy",
    [
        policies.Greedy(),
        policies.EpsilonGreedy(0.3),
        policies.Boltzmann(0.7),
        policies.EpsilonBoltzmann(0.05, 2.0),
        policies.EpsilonGreedy(
            keras.optimizers.schedules.ExponentialDecay(0.5, 100, 0.9)
        ),
        policies.Discovery(),
        policies.Discovery(
            keras.optimizers.schedules.ExponentialDecay(0.2, 100, 0.5),
            min_share=0.5,
            epsilon=0.05,
            temperature=0.5,
        ),
    ],
    ids=repr,
)
def test_serialization_round_trip(policy):
    config = keras.saving.serialize_keras_object(policy)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(policy)
    assert keras.saving.serialize_keras_object(restored) == config


def test_get_by_name_and_default():
    assert isinstance(policies.get(None), policies.EpsilonBoltzmann)
    assert policies.get(None).get_config() == {
        "epsilon": 0.02,
        "temperature": 1.0,
    }
    assert isinstance(policies.get("greedy"), policies.Greedy)
    assert isinstance(policies.get("EpsilonGreedy"), policies.EpsilonGreedy)
    with pytest.raises(ValueError, match="Received: policy='softmax'"):
        policies.get("softmax")


def test_every_name_gets_its_class_and_names_it_back():
    for name in policies.NAMES:
        assert policies.name(policies.get(name)) in (name, "paper")
    assert policies.name(None) == policies.name("epsilon_boltzmann") == "paper"
    assert policies.name(policies.EpsilonBoltzmann(epsilon=0.2)) == (
        "epsilon_boltzmann"
    )
    assert policies.name(policies.Discovery(bonus=0.03)) == "discovery"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: policies.EpsilonGreedy(1.5), "epsilon=1.5"),
        (lambda: policies.EpsilonBoltzmann(-0.1), "epsilon=-0.1"),
        (lambda: policies.Boltzmann(0.0), "temperature=0.0"),
        (lambda: policies.Boltzmann("hot"), "temperature='hot'"),
        (lambda: policies.Boltzmann(1e-40), "temperature=1e-40"),
        (lambda: policies.EpsilonGreedy(True), "epsilon=True"),
        (lambda: policies.EpsilonGreedy(np.bool_(False)), "epsilon=np.False_"),
        (lambda: policies.EpsilonGreedy(np.array([0.1])), "=array([0.1])"),
        (lambda: policies.EpsilonGreedy(tf.constant([0.1])), "shape=(1,)"),
        (lambda: policies.EpsilonGreedy(np.float32(2.0)), "epsilon=2.0"),
        (lambda: policies.EpsilonGreedy(0.5j), "epsilon=0.5j"),
    ],
)
def test_bad_parameters(make, message):
    with pytest.raises(ValueError, match="Received: .*" + re.escape(message)):
        make()


@pytest.mark.parametrize(
    "value",
    [
        np.float32(0.1),
        np.float64(0.1),
        np.array(0.1, "float16"),
        tf.constant(0.1),
        tf.constant(0.1, "float64"),
        tf.Variable(0.1),
    ],
    ids=repr,
)
def test_real_scalars_are_accepted_as_json_floats(value):
    policy = policies.EpsilonBoltzmann(value, np.int64(2))
    config = policy.get_config()
    # Stored as the shortest decimal of the value's own precision.
    assert config == {"epsilon": 0.1, "temperature": 2.0}
    assert all(type(v) is float for v in config.values())
    assert json.loads(json.dumps(config)) == config


def _select_in(mode, policy, q_values, step):
    def select(q_values, step):
        return policy(q_values, step, tf.constant([3, 4]))

    if mode != "eager":
        select = tf.function(select, jit_compile=mode == "jit")
    return select(q_values, tf.constant(step, "int64"))


BAD_SCHEDULES = [
    (lambda: policies.EpsilonGreedy(lambda step: 1.5), "epsilon=", "1.5"),
    (
        lambda: policies.EpsilonBoltzmann(
            keras.optimizers.schedules.PiecewiseConstantDecay([10], [0.1, -0.5])
        ),
        "epsilon=",
        "-0.5",
    ),
    (lambda: policies.Boltzmann(lambda step: 0.0), "temperature=", "0"),
    (lambda: policies.Boltzmann(lambda step: 1e-45), "temperature=", "1e-45"),
    (
        lambda: policies.EpsilonBoltzmann(0.5, lambda step: float("nan")),
        "temperature=",
        "nan",
    ),
]


@pytest.mark.parametrize("mode", ["eager", "graph"])
@pytest.mark.parametrize("make, name, value", BAD_SCHEDULES)
def test_bad_schedule_values_fail_at_run_time(make, name, value, mode):
    policy = make()
    q_values = tf.constant([[0.1, 0.5, 0.2]] * 8)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        _select_in(mode, policy, q_values, step=20)
    text = str(error.value)
    assert f"`{name[:-1]}` must be in" in text
    assert "step" in text and "20" in text
    assert f"Received: {name}" in text
    if value not in ("0", "nan", "1e-45"):
        assert value in text


@pytest.mark.parametrize("make, name, value", BAD_SCHEDULES)
def test_bad_schedule_values_are_clipped_under_xla(make, name, value):
    # XLA drops assertions: the values are clipped into range instead, so
    # the actions are always valid.
    q_values = tf.random.stateless_normal((512, 3), [1, 1])
    actions = _select_in("jit", make(), q_values, step=20).numpy()
    assert actions.min() >= 0 and actions.max() <= 2
    if name == "temperature=":  # Clipped to the smallest temperature.
        np.testing.assert_array_equal(actions, np.argmax(q_values, -1))


def test_good_schedule_values_pass_the_checks():
    policy = policies.EpsilonBoltzmann(lambda step: 1.0, lambda step: 1e-30)
    q_values = tf.random.stateless_normal((64, 4), [2, 2])
    for mode in ("eager", "graph"):
        actions = _select_in(mode, policy, q_values, step=0).numpy()
        # A Boltzmann draw at a tiny temperature is the greedy action.
        np.testing.assert_array_equal(actions, np.argmax(q_values, -1))


def discovery_reference(q_values, bonus, min_share):
    """Discovery's bonused Q-values, recomputed in NumPy."""
    batch, actions = q_values.shape
    counts = np.bincount(q_values.argmax(1), minlength=actions)
    quota = min_share * batch / actions
    return q_values + bonus * np.maximum(0.0, 1.0 - counts / quota)


def test_discovery_matches_its_definition():
    # Three kinds of rows, 4 actions: action 0 is greedy for 70 % of the
    # batch, action 1 for 10 % (below its quota of 0.8 * 25 %: a partial
    # bonus), actions 2 and 3 for none (the full bonus).
    kinds = np.array(
        [[0.5, 0.2, 0.45, 0.1], [0.3, 0.35, 0.32, 0.0], [0.6, 0.1, 0.0, 0.55]],
        "float32",
    )
    shares = np.array([0.45, 0.1, 0.45])
    rows = np.repeat(np.arange(3), (shares * NUM_DRAWS).astype(int))
    q_values = kinds[rows]
    bonus, min_share, epsilon, temperature = 0.1, 0.8, 0.3, 0.2
    bonused = discovery_reference(q_values, bonus, min_share)
    neglect = (bonused - q_values)[0] / bonus
    np.testing.assert_allclose(neglect, [0.0, 0.5, 1.0, 1.0], atol=1e-6)
    policy = policies.Discovery(bonus, min_share, epsilon, temperature)
    actions = policy(
        tf.constant(q_values), tf.constant(0), tf.constant([5, 6])
    ).numpy()
    for kind in range(3):
        taken = actions[rows == kind]
        row = bonused[rows == kind][0].astype("float64")
        expected = epsilon * softmax(row / temperature)
        expected[np.argmax(row)] += 1.0 - epsilon
        observed = np.bincount(taken, minlength=4)
        assert stats.chisquare(observed, expected * len(taken)).pvalue > 1e-4
    # The bonus changes the choice: the first kind's greedy action is 0,
    # but Discovery mostly takes the neglected action 2 instead.
    assert np.mean(actions[rows == 0] == 2) > 0.7


def test_discovery_is_the_papers_policy_once_every_action_has_its_share():
    # Each action is the greedy choice of a quarter of the batch: no bonus,
    # so the draws equal EpsilonBoltzmann's from the same seed.
    q_values = tf.constant(
        np.tile(np.eye(4, dtype="float32") * 0.5, (NUM_DRAWS // 4, 1))
    )
    paper = policies.EpsilonBoltzmann(0.3, 0.5)
    seed = tf.constant([7, 8])
    expected = paper(q_values, tf.constant(0), seed).numpy()
    discovery = policies.Discovery(0.1, 1.0, 0.3, 0.5)
    actions = discovery(q_values, tf.constant(0), seed).numpy()
    np.testing.assert_array_equal(actions, expected)
    # So is a bonus annealed to 0, whatever the greedy shares.
    q_row = np.array([0.1, 0.5, 0.2, 0.4], "float32")
    annealed = policies.Discovery(
        keras.optimizers.schedules.PiecewiseConstantDecay([100], [0.2, 0.0]),
        epsilon=0.1,
    )
    reference = policies.EpsilonBoltzmann(0.1)
    explored = draw(annealed, q_row, step=0)
    # At step 0 the neglected actions 0, 2 and 3 are raised by 0.2 above
    # the greedy action 1's 0.5 for action 3 (0.6): it is taken instead.
    assert_binomial(
        np.sum(explored == 3),
        0.9 + 0.1 * softmax(q_row + [0.2, 0.0, 0.2, 0.2])[3],
    )
    np.testing.assert_array_equal(
        draw(annealed, q_row, step=200), draw(reference, q_row, step=200)
    )


def test_discovery_runs_in_graph_mode_and_under_xla():
    policy = policies.Discovery(lambda step: 0.5, epsilon=0.0)
    q_values = tf.random.stateless_uniform((256, 6), [3, 3])
    expected = np.argmax(discovery_reference(q_values.numpy(), 0.5, 0.25), 1)
    for mode in ("eager", "graph", "jit"):
        actions = _select_in(mode, policy, q_values, step=0).numpy()
        np.testing.assert_array_equal(actions, expected)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: policies.Discovery(bonus=-0.1), "bonus=-0.1"),
        (lambda: policies.Discovery(min_share=0.0), "min_share=0.0"),
        (lambda: policies.Discovery(min_share=1.5), "min_share=1.5"),
        (lambda: policies.Discovery(min_share="half"), "min_share='half'"),
        (lambda: policies.Discovery(epsilon=2), "epsilon=2.0"),
    ],
)
def test_bad_discovery_parameters(make, message):
    with pytest.raises(ValueError, match="Received: .*" + re.escape(message)):
        make()


def test_discovery_by_name_and_its_defaults():
    policy = policies.get("discovery")
    assert type(policy) is policies.Discovery
    assert policy.get_config() == {
        "bonus": 0.1,
        "min_share": 0.25,
        "epsilon": 0.02,
        "temperature": 1.0,
    }
    assert type(policies.get("Discovery")) is policies.Discovery


def small_dense_net(hidden=64, actions=10):
    # The dense networks' start: small normal weights, no biases.
    init = keras.initializers.RandomNormal(stddev=0.01)
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(
                hidden, "relu", use_bias=False, kernel_initializer=init
            ),
            keras.layers.Dense(
                actions, use_bias=False, kernel_initializer=init
            ),
        ]
    )


@pytest.mark.slow
def test_saved_model_keeps_the_discovery_policy_and_its_schedule(tmp_path):
    schedule = keras.optimizers.schedules.ExponentialDecay(0.3, 10, 0.5)
    policy = policies.Discovery(schedule, min_share=0.5, epsilon=0.1)
    model = kbp.wrap(small_dense_net(8, 3), policy=policy, seed=3)
    model.compile(metrics=["accuracy"])
    x = np.random.default_rng(0).uniform(size=(64, 64)).astype("float32")
    model.fit(x, np.arange(64) % 3, batch_size=16, epochs=1, verbose=0)
    path = str(tmp_path / "discovery.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.policy) is policies.Discovery
    assert loaded.policy.get_config() == policy.get_config()
    assert isinstance(
        loaded.policy.bonus, keras.optimizers.schedules.ExponentialDecay
    )
    q_values = tf.constant(loaded.predict(x, verbose=0))
    for step in (0, 40):
        np.testing.assert_array_equal(
            loaded.policy(q_values, tf.constant(step), tf.constant([1, 2])),
            policy(q_values, tf.constant(step), tf.constant([1, 2])),
        )


class _FullCoverage(keras.callbacks.Callback):
    """Stops training at the first epoch after which every action is the
    greedy choice of some training sample."""

    def __init__(self, network, x, actions):
        super().__init__()
        self.network, self.x, self.actions = network, x, actions
        self.epoch = None

    def on_epoch_end(self, epoch, logs=None):
        greedy = np.argmax(self.network(self.x), axis=1)
        if np.unique(greedy).size == self.actions:
            self.epoch = epoch + 1
            self.model.stop_training = True


def epochs_to_full_coverage(policy, x, y, max_epochs, seed=0):
    keras.utils.set_random_seed(seed)
    network = small_dense_net()
    model = kbp.wrap(network, policy=policy, seed=seed)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    coverage = _FullCoverage(network, x, actions=10)
    model.fit(
        x,
        y,
        batch_size=32,
        epochs=max_epochs,
        verbose=0,
        callbacks=[coverage],
    )
    return coverage.epoch


@pytest.mark.slow
def test_discovery_finds_every_class_sooner_than_the_papers_policy():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x, y = (x / 16.0).astype("float32"), y.astype("int32")
    found = epochs_to_full_coverage("discovery", x, y, max_epochs=6)
    assert found is not None and found <= 3, found
    # The paper's policy has not made every action greedy by then (nor,
    # measured, within 15 epochs).
    paper = epochs_to_full_coverage(None, x, y, max_epochs=found + 3)
    assert paper is None, paper


# Every backend (`KERAS_BACKEND=jax python -m pytest -m backends`): the
# bodies use keras.ops and NumPy only.

# What a failed check raises: `tf.errors.InvalidArgumentError` eagerly on
# TensorFlow, `InvalidInputError` (a `ValueError` and also an
# `InvalidArgumentError`) on JAX and PyTorch.
FAILED_CHECK = tf.errors.InvalidArgumentError


def compiled(function):
    """`function` compiled as the backend compiles a training step.

    A TensorFlow graph (whose draws are eager mode's), `jax.jit`; PyTorch
    runs eagerly. Failed checks raise `InvalidInputError`, as in fit().
    """
    if keras.backend.backend() == "jax":
        import jax

        function = jax.jit(function)
    elif keras.backend.backend() == "tensorflow":
        function = tf.function(function)
    return backend.clear_errors(function)


def select(policy, q_values, step=0, seed=(1, 2)):
    """The policy's actions as a NumPy array, checked to be int32."""
    actions = policy(
        ops.convert_to_tensor(q_values),
        ops.convert_to_tensor(step, "int32"),
        ops.convert_to_tensor(seed, "int32"),
    )
    assert keras.backend.standardize_dtype(actions.dtype) == "int32"
    return ops.convert_to_numpy(actions)


def select_row(policy, q_row, step=0, seed=(1, 2)):
    q_values = np.tile(np.asarray([q_row], "float32"), [NUM_DRAWS, 1])
    return select(policy, q_values, step, seed)


EVERY_POLICY = [
    policies.Greedy(),
    policies.EpsilonGreedy(0.3),
    policies.Boltzmann(0.7),
    policies.EpsilonBoltzmann(0.5, 2.0),
    policies.EpsilonGreedy(
        keras.optimizers.schedules.ExponentialDecay(0.5, 100, 0.9)
    ),
    policies.Discovery(),
    policies.Discovery(
        keras.optimizers.schedules.ExponentialDecay(0.2, 100, 0.5),
        min_share=0.5,
        epsilon=keras.optimizers.schedules.InverseTimeDecay(0.5, 1, 1.0),
    ),
    policies.SquareCB(30.0),
]


@pytest.mark.backends
@pytest.mark.parametrize("policy", EVERY_POLICY, ids=repr)
def test_every_backend_actions_are_int32_in_range(policy):
    q_values = np.random.default_rng(0).normal(size=(512, 7))
    q_values[:8] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30]
    for step in (0, 50):
        actions = select(policy, q_values.astype("float32"), step)
        assert actions.shape == (512,)
        assert actions.min() >= 0 and actions.max() < 7


@pytest.mark.backends
@pytest.mark.parametrize(
    "policy",
    [
        policies.Greedy(),
        policies.EpsilonGreedy(0.0),
        policies.EpsilonBoltzmann(0.0),
        policies.Discovery(bonus=0.0, epsilon=0.0),
    ],
    ids=repr,
)
def test_every_backend_no_exploration_is_greedy(policy):
    q_values = np.random.default_rng(1).normal(size=(256, 5)).astype("float32")
    # Ties go to the first of them, signed zeros included.
    q_values[:4] = [
        [0.0, -0.0, 0.0, -3.0, -3.0],
        [-0.0, 0.0, -0.0, -3.0, -3.0],
        [1.0, 1.0, 1.0, -3.0, -3.0],
        [-0.0, -0.0, 2.0, -3.0, 2.0],
    ]
    expected = np.argmax(q_values, axis=-1)
    np.testing.assert_array_equal(expected[:4], [0, 0, 0, 2])
    np.testing.assert_array_equal(select(policy, q_values), expected)


@pytest.mark.backends
def test_every_backend_epsilon_greedy_explores_uniformly():
    actions = select_row(policies.EpsilonGreedy(1.0), [0.0, 1.0, 0.0, 0.0])
    assert stats.chisquare(np.bincount(actions, minlength=4)).pvalue > 1e-4
    q_row = np.array([0.0, 1.0, 0.0, 0.0, 0.0], "float32")
    actions = select_row(policies.EpsilonGreedy(0.2), q_row)
    assert_binomial(np.sum(actions != 1), 0.2 * 4 / 5)


@pytest.mark.backends
@pytest.mark.parametrize("temperature", [0.3, 1.0, 3.0])
def test_every_backend_boltzmann_matches_softmax(temperature):
    q_row = np.array([0.1, 0.7, -0.2, 0.4], "float32")
    actions = select_row(policies.Boltzmann(temperature), q_row)
    observed = np.bincount(actions, minlength=4)
    expected = softmax(q_row.astype("float64") / temperature) * NUM_DRAWS
    assert stats.chisquare(observed, expected).pvalue > 1e-4


@pytest.mark.backends
def test_every_backend_epsilon_boltzmann_explore_rate():
    q_row = np.array([0.2, 0.5, 0.1, 0.4], "float32")
    actions = select_row(policies.EpsilonBoltzmann(0.1, 0.5), q_row)
    p_differ = 0.1 * (1.0 - softmax(q_row / 0.5)[1])
    assert_binomial(np.sum(actions != 1), p_differ)


@pytest.mark.backends
@pytest.mark.parametrize(
    "policy",
    [
        policies.EpsilonGreedy(0.3),
        policies.EpsilonBoltzmann(0.5),
        policies.Discovery(),
        policies.SquareCB(30.0),
    ],
    ids=repr,
)
def test_every_backend_draws_depend_only_on_the_seed(policy):
    q_values = np.random.default_rng(2).normal(size=(4096, 5))
    q_values = q_values.astype("float32")
    first = select(policy, q_values, seed=(4, 5))
    np.testing.assert_array_equal(first, select(policy, q_values, seed=(4, 5)))
    assert np.any(first != select(policy, q_values, seed=(4, 6)))


@pytest.mark.backends
@pytest.mark.parametrize("policy", EVERY_POLICY, ids=repr)
def test_every_backend_compiled_draws_equal_eager_ones(policy):
    q_values = np.random.default_rng(3).normal(size=(1024, 5))
    q_values = ops.convert_to_tensor(q_values.astype("float32"))
    step = ops.convert_to_tensor(7, "int32")
    seed = ops.convert_to_tensor([8, 9], "int32")
    run = compiled(lambda q, step, seed: policy(q, step, seed))
    np.testing.assert_array_equal(
        ops.convert_to_numpy(run(q_values, step, seed)),
        ops.convert_to_numpy(policy(q_values, step, seed)),
    )


@pytest.mark.backends
def test_every_backend_schedules_take_effect():
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [100], [1.0, 0.0]
    )
    policy = policies.EpsilonGreedy(schedule)
    q_row = np.array([0.0, 1.0, 0.0, 0.0], "float32")
    assert np.mean(select_row(policy, q_row, step=0) != 1) > 0.7
    assert np.all(select_row(policy, q_row, step=200) == 1)

    def cooling(step):
        return 10.0 / (1.0 + ops.cast(step, "float32"))

    policy = policies.Boltzmann(cooling)
    hot = np.bincount(select_row(policy, q_row, step=0), minlength=4)
    cold = np.bincount(select_row(policy, q_row, step=999), minlength=4)
    assert hot[1] < 0.4 * NUM_DRAWS and cold[1] > 0.99 * NUM_DRAWS


@pytest.mark.backends
@pytest.mark.parametrize("make, name, value", BAD_SCHEDULES)
def test_every_backend_bad_schedule_values_fail(make, name, value):
    policy = make()
    q_values = np.array([[0.1, 0.5, 0.2]] * 8, "float32")
    with pytest.raises(FAILED_CHECK) as error:
        select(policy, q_values, step=20)
    text = str(error.value)
    assert f"`{name[:-1]}` must be in" in text
    assert "at step 20." in text and f"Received: {name}" in text
    if value not in ("0", "1e-45"):
        assert value in text
    # Compiled (JAX's step has no value to name).
    run = compiled(lambda q, step, seed: policy(q, step, seed))
    with pytest.raises(ValueError, match=f"Received: {name}"):
        run(
            ops.convert_to_tensor(q_values),
            ops.convert_to_tensor(20, "int32"),
            ops.convert_to_tensor([3, 4], "int32"),
        )


@pytest.mark.backends
@pytest.mark.parametrize("bonus, min_share", [(0.5, 0.25), (0.1, 0.8)])
def test_every_backend_discovery_matches_its_definition(bonus, min_share):
    # Without exploration the action is the greedy one of the bonused
    # values. Rows of 6 kinds in unequal shares: actions greedy for few
    # rows have a partial bonus, those greedy for none the full one.
    rng = np.random.default_rng(4)
    kinds = rng.uniform(size=(6, 6)).astype("float32")
    q_values = kinds[rng.choice(6, size=256, p=[0.3, 0.3, 0.2, 0.1, 0.1, 0])]
    policy = policies.Discovery(bonus, min_share, epsilon=0.0)
    bonused = discovery_reference(q_values, bonus, min_share)
    assert np.any(np.argmax(bonused, 1) != np.argmax(q_values, 1))
    np.testing.assert_array_equal(
        select(policy, q_values), np.argmax(bonused, 1)
    )
    # With exploration, each kind's draws follow EpsilonBoltzmann's on the
    # bonused values.
    rows = np.repeat(np.arange(3), NUM_DRAWS // 3)
    q_values = kinds[rows]
    epsilon, temperature = 0.3, 0.2
    policy = policies.Discovery(bonus, min_share, epsilon, temperature)
    bonused = discovery_reference(q_values, bonus, min_share)
    actions = select(policy, q_values, seed=(5, 6))
    for kind in range(3):
        row = bonused[rows == kind][0].astype("float64")
        expected = epsilon * softmax(row / temperature)
        expected[np.argmax(row)] += 1.0 - epsilon
        observed = np.bincount(actions[rows == kind], minlength=6)
        expected = expected * np.sum(rows == kind)
        assert stats.chisquare(observed, expected).pvalue > 1e-4
