"""Worker processes of tests/test_model_distributed.py: BrainProp data-parallel.

TensorFlow fixes its devices and its cluster when it starts, and JAX its
devices, so the tests run each distributed setup in a fresh process of this
script:

    python tests/distribute_worker.py mirrored OUTPUT.json
    python tests/distribute_worker.py multi_worker OUTPUT.npz \
        --worker_index=0 --ports=PORT0,PORT1
    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=2 \
        python tests/distribute_worker.py data_parallel OUTPUT.json

`mirrored` splits the CPU into two logical devices and compares
MirroredStrategy training with single-device training in the same process.
`multi_worker` is one worker of a MultiWorkerMirroredStrategy cluster on
127.0.0.1 (the test starts one per port and computes the single-process
reference itself); it saves the weights it ends with and its logs.
`data_parallel` trains under `keras.distribution.DataParallel` over two JAX
CPU devices and on one device in the same process, and compares them.

"Same global batches": every worker builds the identical, unshuffled
dataset of global batches of GLOBAL_BATCH examples. tf.distribute splits
each global batch into num_replicas consecutive equal shares (auto-shard
policy DATA across workers, rebatching across local devices); replica r,
counted over all workers (`replica_id_in_sync_group`), trains on share r.
One distributed step on global batch k is therefore one SGD step of
single-process training on the same global batch k: the replicas' mean
losses are averaged, which is the mean over the global batch. Exploration
differs only in where the randomness comes from: replica r draws the
actions of its share with the seed
`fold_in(fold_in(seed_state, step), r)`, which `reference_weights` replays.

The helpers (network, data, reference) are imported by the tests as well.
"""

import argparse
import contextlib
import json
import os
import sys
import time

_START = time.perf_counter()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

NUM_INPUTS = 10
NUM_HIDDEN = 16
NUM_ACTIONS = 5
GLOBAL_BATCH = 32
NUM_BATCHES = 4
LEARNING_RATE = 0.1
SEED = 7
# Evaluation batches of an odd size split unevenly over two replicas.
EVALUATION_BATCH = 45
NUM_REPLICAS = 2


def progress(message):
    """Logs a timed step to stderr, which the tests show on failure."""
    seconds = time.perf_counter() - _START
    print(f"[{seconds:6.1f} s] {message}", file=sys.stderr, flush=True)


def initial_weights():
    """The network's starting weights, the same in every process."""
    rng = np.random.default_rng(0)
    return [
        rng.normal(0.0, 0.3, (NUM_INPUTS, NUM_HIDDEN)).astype("float32"),
        rng.normal(0.0, 0.1, (NUM_HIDDEN,)).astype("float32"),
        rng.normal(0.0, 0.3, (NUM_HIDDEN, NUM_ACTIONS)).astype("float32"),
    ]


def build_network():
    import keras

    network = keras.Sequential(
        [
            keras.Input((NUM_INPUTS,)),
            keras.layers.Dense(NUM_HIDDEN, activation="relu"),
            keras.layers.Dense(NUM_ACTIONS, use_bias=False),
        ]
    )
    network.set_weights(initial_weights())
    return network


def training_data():
    """NUM_BATCHES global batches of GLOBAL_BATCH examples, in order."""
    rng = np.random.default_rng(1)
    num_examples = NUM_BATCHES * GLOBAL_BATCH
    x = rng.normal(size=(num_examples, NUM_INPUTS)).astype("float32")
    y = rng.integers(0, NUM_ACTIONS, num_examples).astype("int32")
    return x, y


def global_batches(x, y, batch_size=GLOBAL_BATCH):
    """The dataset every worker builds: the same batches in the same order.

    Auto-sharding by DATA hands each worker its replicas' shares of every
    global batch (the default, FILE, cannot shard in-memory data).
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    return dataset.with_options(options)


def brainprop_model(policy, seed=SEED):
    """A compiled BrainPropModel; build it inside the strategy's scope."""
    import keras

    import keras_brainprop as kbp

    model = kbp.wrap(build_network(), policy=policy, seed=seed)
    model.compile(
        optimizer=keras.optimizers.SGD(LEARNING_RATE), metrics=["accuracy"]
    )
    return model


def replica_seed(seed_state, step, replica):
    """The exploration seed of one replica at one step (BrainPropModel's)."""
    fold_in = tf.random.experimental.stateless_fold_in
    step_seed = fold_in(tf.cast(seed_state, "int32"), tf.constant(step))
    return fold_in(step_seed, tf.constant(replica))


def reference_weights(x, y, policy, seed=SEED, replica_ids=(0,)):
    """Single-process BrainProp on the global batches, written out by hand.

    Each global batch is cut into `len(replica_ids)` consecutive shares;
    share i draws its actions with the seed of replica `replica_ids[i]`.
    The loss is the mean of the shares' mean `0.5 * (r - Q[a])**2`, i.e.
    the mean over the global batch, and one plain SGD step follows.

    Returns:
        The network's weights after the last batch.
    """
    import keras

    network = build_network()
    seed_state = keras.random.SeedGenerator(seed).state
    share = GLOBAL_BATCH // len(replica_ids)
    for step, start in enumerate(range(0, len(x), GLOBAL_BATCH)):
        with tf.GradientTape() as tape:
            share_losses = []
            for index, replica in enumerate(replica_ids):
                rows = slice(start + index * share, start + (index + 1) * share)
                q_values = network(x[rows], training=True)
                actions = policy(
                    tf.stop_gradient(q_values),
                    tf.constant(step, "int64"),
                    replica_seed(seed_state, step, replica),
                )
                rewards = tf.cast(tf.equal(actions, y[rows]), "float32")
                chosen = tf.gather(q_values, actions, batch_dims=1)
                share_losses.append(
                    tf.reduce_mean(0.5 * tf.square(rewards - chosen))
                )
            loss = tf.add_n(share_losses) / len(share_losses)
        gradients = tape.gradient(loss, network.trainable_variables)
        for variable, gradient in zip(network.trainable_variables, gradients):
            variable.assign_sub(LEARNING_RATE * gradient)
    return network.get_weights()


def max_difference(weights, other_weights):
    return max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(weights, other_weights)
    )


def exploring_policy():
    from keras_brainprop import policies

    # Near-uniform Q-values at the start: almost every action is a draw.
    return policies.Boltzmann(temperature=1.0)


def _fit_logs(history):
    return {name: float(values[-1]) for name, values in history.items()}


def _per_replica_draws(strategy, seed, num_samples=256):
    """Actions the policy draws on each replica for the same Q-values."""
    with strategy.scope():
        model = brainprop_model(exploring_policy(), seed=seed)
    q_values = tf.zeros([num_samples, NUM_ACTIONS])

    @tf.function
    def draw():
        def replica_fn():
            return model.policy(
                q_values, model.optimizer.iterations, model._step_seed()
            )

        return strategy.run(replica_fn)

    return [
        actions.numpy().tolist()
        for actions in strategy.experimental_local_results(draw())
    ]


def _digits_network():
    import keras

    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, use_bias=False),
        ]
    )


def _digits_accuracy(strategy, epochs=10):
    """Trains on scikit-learn digits for a few epochs.

    Exploration is ten times the paper's (epsilon 0.2), so a few epochs
    get far; with the paper's 0.02 BrainProp needs about 30 here.

    Returns:
        The test logs; those of the trained weights evaluated on one
        device (the last test batch splits unevenly over two replicas);
        the training accuracy of every epoch.
    """
    import keras
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import keras_brainprop as kbp
    from keras_brainprop import policies

    images, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        (images / 16.0).astype("float32"),
        labels.astype("int32"),
        test_size=0.25,
        stratify=labels,
        random_state=0,
    )
    keras.utils.set_random_seed(3)
    train = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=3)
        .batch(32)
    )
    test = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(256)
    with strategy.scope():
        model = kbp.wrap(
            _digits_network(),
            policy=policies.EpsilonBoltzmann(epsilon=0.2),
            seed=3,
        )
        model.compile(optimizer=keras.optimizers.SGD(0.2), metrics=["accuracy"])
    history = model.fit(train, epochs=epochs, shuffle=False, verbose=0)
    logs = model.evaluate(test, verbose=0, return_dict=True)
    one_device = kbp.wrap(_digits_network(), policy="greedy")
    one_device.network.set_weights(model.network.get_weights())
    one_device.compile(metrics=["accuracy"])
    one_device_logs = one_device.evaluate(test, verbose=0, return_dict=True)
    return logs, one_device_logs, history.history["accuracy"]


def _keras_fix_cases(mirrored, single):
    """The tf.distribute cases of keras_brainprop._keras_fixes, with Keras
    3.15.1's own code as control, for tests/test_keras_fixes.py."""
    import keras

    import keras_brainprop as kbp
    from keras_brainprop import _keras_fixes

    class KerasBuild(kbp.BrainPropModel):
        _maybe_symbolic_build = keras.Model._maybe_symbolic_build

    class LastStepLogs(keras.callbacks.Callback):
        # What Keras' evaluate() returns when the step logs do not name
        # every metric: the last step's logs.
        def on_test_batch_end(self, batch, logs=None):
            self.logs = dict(logs)

    x, y = training_data()
    with mirrored.scope():
        cases = {"in_multi_worker_mode": _keras_fixes.in_multi_worker_mode()}
        model = KerasBuild(build_network())
        model.compile(metrics=["accuracy"])
    # A first batch of 31 splits 16 / 15 over the replicas; the fixed
    # model trains on it in run_mirrored ("odd_batch_logs").
    try:
        model.fit(global_batches(x, y, GLOBAL_BATCH - 1), verbose=0)
        cases["keras_build_error"] = None
    except Exception as error:  # Whatever Keras raises.
        cases["keras_build_error"] = f"{type(error).__name__}: {error}"
    # One batch of 3 splits 2 / 1 over the replicas.
    last_step = LastStepLogs()
    for name, strategy in [("single_device", single), ("fixed", mirrored)]:
        with strategy.scope():
            model = kbp.wrap(build_network(), policy="greedy")
            model.compile(metrics=["accuracy"])
        cases[f"{name}_evaluate"] = model.evaluate(
            global_batches(x[:3], y[:3], batch_size=3),
            verbose=0,
            return_dict=True,
            callbacks=[last_step],
        )
    cases["keras_evaluate"] = last_step.logs
    return cases


def _greedy_coverage(strategy):
    """greedy_coverage per epoch of a 2-epoch fit (tests/test_metrics.py).

    A constant kernel fixes the greedy actions: in epoch 1 replica 0 sees
    action 0 greedy and replica 1 action 2; in epoch 2 both see action 0.
    """
    import warnings

    import keras

    import keras_brainprop as kbp

    kernel = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], "float32")
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]], "float32")
    data = tf.data.Dataset.from_tensor_slices((x, np.zeros(4, "int32")))
    with strategy.scope():
        network = keras.Sequential(
            [
                keras.Input((2,)),
                keras.layers.Dense(
                    3,
                    use_bias=False,
                    kernel_initializer=keras.initializers.Constant(kernel),
                ),
            ]
        )
        model = kbp.wrap(network, policy="greedy")
        model.compile(optimizer=keras.optimizers.SGD(0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # The coverage warning.
        history = model.fit(
            data.batch(2), epochs=2, steps_per_epoch=1, verbose=0
        )
    return history.history["greedy_coverage"]


def run_mirrored(output_path):
    """Every MirroredStrategy check; writes the measurements as JSON."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * NUM_REPLICAS
    )
    import keras

    from keras_brainprop import policies

    progress("TensorFlow imported")
    devices = [f"/cpu:{index}" for index in range(NUM_REPLICAS)]
    mirrored = tf.distribute.MirroredStrategy(devices)
    single = tf.distribute.get_strategy()
    x, y = training_data()
    results = {"num_replicas": mirrored.num_replicas_in_sync}

    def fit(strategy, policy, seed=SEED, batch_size=GLOBAL_BATCH):
        with strategy.scope():
            model = brainprop_model(policy, seed)
        history = model.fit(
            global_batches(x, y, batch_size), epochs=1, shuffle=False, verbose=0
        )
        return model.network.get_weights(), _fit_logs(history.history)

    # Greedy: no randomness, so distribution must not change anything.
    greedy_single, logs_single = fit(single, policies.Greedy())
    greedy_mirrored, logs_mirrored = fit(mirrored, policies.Greedy())
    results["greedy_vs_single"] = max_difference(greedy_mirrored, greedy_single)
    results["greedy_vs_reference"] = max_difference(
        greedy_mirrored, reference_weights(x, y, policies.Greedy())
    )
    progress("greedy steps done")
    results["greedy_logs_single"] = logs_single
    results["greedy_logs_mirrored"] = logs_mirrored

    # Exploration: each replica draws with its own seed.
    explored, _ = fit(mirrored, exploring_policy())
    replicas = tuple(range(NUM_REPLICAS))
    results["explore_vs_per_replica_reference"] = max_difference(
        explored, reference_weights(x, y, exploring_policy(), SEED, replicas)
    )
    results["explore_vs_shared_seed_reference"] = max_difference(
        explored,
        reference_weights(x, y, exploring_policy(), SEED, (0,) * NUM_REPLICAS),
    )

    progress("exploring steps done")
    results["draws"] = _per_replica_draws(mirrored, SEED)
    results["draws_again"] = _per_replica_draws(mirrored, SEED)
    results["draws_other_seed"] = _per_replica_draws(mirrored, SEED + 1)

    # A global batch that does not split evenly (stock Keras 3.15 fails to
    # build from it) still trains.
    _, odd_logs = fit(mirrored, exploring_policy(), batch_size=GLOBAL_BATCH - 1)
    results["odd_batch_logs"] = odd_logs
    results["greedy_coverage"] = _greedy_coverage(mirrored)

    progress("draws done")
    results["keras_fixes"] = _keras_fix_cases(mirrored, single)
    progress("Keras fix cases done")
    keras.utils.clear_session()
    single_logs, _, single_curve = _digits_accuracy(single)
    mirrored_logs, same_weights_logs, mirrored_curve = _digits_accuracy(
        mirrored
    )
    progress("digits done")
    results["digits_single"] = single_logs
    results["digits_mirrored"] = mirrored_logs
    results["digits_mirrored_weights_single_device"] = same_weights_logs
    results["digits_training_accuracy"] = [single_curve, mirrored_curve]
    with open(output_path, "w") as file:
        json.dump(results, file)


def run_multi_worker(output_path, worker_index, ports):
    """One worker: greedy then exploring training; saves weights and logs."""
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": worker_index},
        }
    )
    from keras_brainprop import _keras_fixes
    from keras_brainprop import policies

    progress(f"worker {worker_index}: TensorFlow imported")
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    progress(f"worker {worker_index}: cluster connected")
    x, y = training_data()
    arrays = {}
    logs = {"num_replicas": strategy.num_replicas_in_sync}
    with strategy.scope():
        logs["in_multi_worker_mode"] = _keras_fixes.in_multi_worker_mode()
    for name, policy in [
        ("greedy", policies.Greedy()),
        ("explore", exploring_policy()),
    ]:
        with strategy.scope():
            model = brainprop_model(policy)
        history = model.fit(
            global_batches(x, y), epochs=1, shuffle=False, verbose=0
        )
        logs[f"{name}_fit"] = _fit_logs(history.history)
        logs[f"{name}_evaluate"] = model.evaluate(
            global_batches(x, y, batch_size=EVALUATION_BATCH),
            verbose=0,
            return_dict=True,
        )
        progress(f"worker {worker_index}: {name} training done")
        for index, weight in enumerate(model.network.get_weights()):
            arrays[f"{name}_{index}"] = weight
    arrays["logs"] = np.array(json.dumps(logs))
    np.savez(output_path, **arrays)


def run_data_parallel(output_path):
    """JAX `DataParallel` over two CPU devices against one device.

    Under JAX the global batch is sharded over the devices and draws its
    exploration as on one device, so every step must equal one device's.
    Writes the largest differences of weights and logs as JSON.
    """
    import jax
    import keras

    from keras_brainprop import cli
    from keras_brainprop import experiment
    from keras_brainprop import policies

    progress("JAX imported")
    results = {"devices": len(jax.devices())}
    distribution = cli.make_strategy("data_parallel")
    results["num_replicas"] = cli.num_replicas(distribution)
    x, y = training_data()

    def fit(scope, policy, feedback=None, batch_size=GLOBAL_BATCH):
        import keras_brainprop as kbp

        keras.utils.set_random_seed(SEED)
        with scope:
            model = kbp.wrap(
                build_network(), policy=policy, seed=SEED, feedback=feedback
            )
            model.compile(
                optimizer=keras.optimizers.SGD(LEARNING_RATE),
                metrics=["accuracy"],
            )
            initial = model.get_weights()
            history = model.fit(
                global_batches(x, y, batch_size),
                epochs=2,
                shuffle=False,
                verbose=0,
            )
            evaluated = model.evaluate(
                global_batches(x, y, EVALUATION_BATCH),
                verbose=0,
                return_dict=True,
            )
        logs = {
            **_fit_logs(history.history),
            **{f"evaluate_{k}": float(v) for k, v in evaluated.items()},
            "change": max_difference(model.get_weights(), initial),
        }
        return model.get_weights(), logs

    def log_difference(logs, other_logs):
        assert set(logs) == set(other_logs), (logs, other_logs)
        return max(abs(logs[name] - other_logs[name]) for name in logs)

    cases = {
        "greedy": (policies.Greedy(), None, GLOBAL_BATCH),
        "explore": (exploring_policy(), None, GLOBAL_BATCH),
        "kolen_pollack": (policies.Greedy(), "kolen_pollack", GLOBAL_BATCH),
        # 31 examples a batch: every batch goes whole to both devices.
        "uneven": (exploring_policy(), None, GLOBAL_BATCH - 1),
    }
    for name, (policy, feedback, batch_size) in cases.items():
        single, single_logs = fit(
            contextlib.nullcontext(), policy, feedback, batch_size
        )
        sharded, sharded_logs = fit(
            distribution.scope(), policy, feedback, batch_size
        )
        results[f"{name}_weights"] = max_difference(sharded, single)
        results[f"{name}_logs"] = log_difference(sharded_logs, single_logs)
        results[f"{name}_change"] = single_logs["change"]
        progress(f"{name} done")

    # The experiment driver, as `python -m keras_brainprop
    # --strategy=data_parallel` runs it (359 test digits: an odd last batch).
    runs = {}
    for name, strategy in [("single", None), ("sharded", distribution)]:
        result = experiment.run(
            "digits",
            "mlp",
            "brainprop",
            epochs=1,
            max_train_examples=100,
            verbose=0,
            strategy=strategy,
        )
        runs[name] = result.runs[0]
    results["experiment_test_loss"] = abs(
        runs["sharded"].test_loss - runs["single"].test_loss
    )
    results["experiment_test_accuracy"] = abs(
        runs["sharded"].test_accuracy - runs["single"].test_accuracy
    )
    results["experiment_history"] = max(
        abs(a - b)
        for key in runs["single"].history
        if key != "seconds"
        for a, b in zip(
            runs["sharded"].history[key], runs["single"].history[key]
        )
    )
    progress("experiment done")
    with open(output_path, "w") as file:
        json.dump(results, file)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "mode", choices=["mirrored", "multi_worker", "data_parallel"]
    )
    parser.add_argument("output")
    parser.add_argument("--worker_index", type=int, default=0)
    parser.add_argument("--ports", default="")
    args = parser.parse_args(argv)
    if args.mode == "mirrored":
        run_mirrored(args.output)
    elif args.mode == "data_parallel":
        run_data_parallel(args.output)
    else:
        ports = [int(port) for port in args.ports.split(",")]
        run_multi_worker(args.output, args.worker_index, ports)


if __name__ == "__main__":
    main(sys.argv[1:])
