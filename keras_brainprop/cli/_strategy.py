"""The data-parallel setup `--strategy` names, per Keras backend, and
keeping a multi-worker run's written files on the chief."""

import contextlib
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from keras_brainprop.experiment._uneven_batches import replicate_uneven_batches

# What `make_strategy` creates; the `--strategy` flag takes all but "tpu".
STRATEGIES = ("default", "mirrored", "multi_worker", "data_parallel", "tpu")
# The tf.distribute strategies, which train under TensorFlow only.
TENSORFLOW_STRATEGIES = ("mirrored", "multi_worker", "tpu")
# Help of `--strategy`: which backend takes which value.
STRATEGY_HELP = (
    "How to train data-parallel (see cli.make_strategy); --batch_size stays "
    "the global batch. default: one device. TensorFlow (tf.distribute): "
    "mirrored (every local GPU, or --cpu_replicas logical CPUs), "
    "multi_worker (one process per machine, the cluster given by TF_CONFIG). "
    "JAX: data_parallel (keras.distribution.DataParallel over every JAX "
    "device, or --cpu_replicas CPU devices). PyTorch trains on one device "
    "only: Keras 3.15 has no distribution for it, so it takes default alone."
)


def make_strategy(name, cpu_replicas=0, tpu="local"):
    """Creates what `run` trains data-parallel under, for the Keras backend.

    Under TensorFlow, a `tf.distribute` strategy; under JAX, "data_parallel"
    is a `keras.distribution.DataParallel` distribution; PyTorch trains on
    one device (Keras 3.15 has no PyTorch distribution). A name the backend
    cannot train under is refused. Call it before the backend runs
    anything: splitting the CPU and joining a cluster are only possible
    then.

    Args:
        name: "default" (one device), "mirrored" (TensorFlow: every local
            GPU), "multi_worker" (TensorFlow: one process per machine, the
            cluster given by `TF_CONFIG`), "tpu" (TensorFlow) or
            "data_parallel" (JAX: every JAX device, GPUs if there are any).
        cpu_replicas: If > 0, "mirrored" splits the CPU into this many
            logical devices and "data_parallel" into this many JAX CPU
            devices, and uses them as the replicas.
        tpu: The TPU of "tpu", as `TPUClusterResolver` takes it.

    Returns:
        A `tf.distribute.Strategy` under TensorFlow; under JAX and PyTorch,
        None for "default" (one device) and a
        `keras.distribution.DataParallel` for "data_parallel".

    Raises:
        ValueError: For an unknown `name`, one the Keras backend cannot
            train under, a negative `cpu_replicas`, or CPU devices asked
            for once JAX has started.

    Example:

    ```python
    strategy = make_strategy("mirrored", cpu_replicas=2)
    experiment.run("digits", "mlp", "backprop", epochs=5,
                   strategy=strategy)
    ```
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"`name` must be one of {STRATEGIES}. Received: name={name!r}"
        )
    if cpu_replicas < 0:
        raise ValueError(
            "`cpu_replicas` must be >= 0. "
            f"Received: cpu_replicas={cpu_replicas!r}"
        )
    backend = keras.backend.backend()
    _check_backend(name, backend)
    if name == "default":
        return tf.distribute.get_strategy() if backend == "tensorflow" else None
    if name == "data_parallel":
        return _data_parallel(cpu_replicas)
    if name == "mirrored":
        devices = None
        if cpu_replicas:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas
            )
            devices = [f"/cpu:{index}" for index in range(cpu_replicas)]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _check_backend(name, backend):
    received = f"Received: name={name!r} with KERAS_BACKEND={backend!r}"
    if backend == "torch" and name != "default":
        raise ValueError(
            "PyTorch trains on one device: Keras 3.15 has no distribution "
            "for the PyTorch backend. Use name='default', or "
            "KERAS_BACKEND=jax with name='data_parallel', or "
            f"KERAS_BACKEND=tensorflow with name='mirrored'. {received}"
        )
    if name in TENSORFLOW_STRATEGIES and backend != "tensorflow":
        raise ValueError(
            f"{name!r} is a tf.distribute strategy, which trains under the "
            "TensorFlow backend only (KERAS_BACKEND=tensorflow). Under JAX, "
            f"use name='data_parallel'. {received}"
        )
    if name == "data_parallel" and backend != "jax":
        raise ValueError(
            "'data_parallel' is keras.distribution.DataParallel, which Keras "
            "3.15 trains under the JAX backend only (KERAS_BACKEND=jax). "
            "Under TensorFlow, use name='mirrored' or 'multi_worker'. "
            f"{received}"
        )


def _data_parallel(cpu_replicas):
    import jax

    if cpu_replicas:
        try:
            jax.config.update("jax_num_cpu_devices", cpu_replicas)
        except RuntimeError:
            # JAX has started: its devices are fixed.
            if len(jax.devices("cpu")) != cpu_replicas:
                raise ValueError(
                    f"JAX has already started with {len(jax.devices('cpu'))} "
                    "CPU device(s); ask for CPU devices before any JAX "
                    "operation runs, or start Python with XLA_FLAGS="
                    "--xla_force_host_platform_device_count="
                    f"{cpu_replicas}. Received: cpu_replicas={cpu_replicas}"
                ) from None
        devices = keras.distribution.list_devices("cpu")[:cpu_replicas]
    else:
        devices = keras.distribution.list_devices()
    replicate_uneven_batches()
    return keras.distribution.DataParallel(devices=devices)


def num_replicas(strategy):
    """How many replicas train in sync under `make_strategy`'s result.

    Example:

    >>> num_replicas(make_strategy("default"))
    1
    """
    if strategy is None:
        return 1
    # A keras.distribution distribution: the devices of its mesh.
    if hasattr(strategy, "device_mesh"):
        return int(strategy.device_mesh.devices.size)
    return strategy.num_replicas_in_sync


def strategy_scope(strategy):
    """`strategy.scope()`, or a context that does nothing for None.

    Example:

    ```python
    with strategy_scope(make_strategy(FLAGS.strategy)):
        model = kbp.wrap(network)
    ```
    """
    if strategy is None:
        return contextlib.nullcontext()
    return strategy.scope()


def is_chief(strategy):
    """Whether this process keeps the outputs of a run under `strategy`.

    True without a cluster; in one, for the "chief" task or, when there is
    none, worker 0 (as `TF_CONFIG` names them).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and not has_chief
    )


@contextlib.contextmanager
def chief_outputs(kwargs, strategy):
    """Yields `run` kwargs that write files on the chief only.

    Every worker runs every callback (they take part in collective ops),
    so the others write their `output_dir` and `logdir` to a temporary
    directory, deleted on exit, and train silently.

    Args:
        kwargs: Keyword arguments of `run`, e.g. from `run_kwargs`.
        strategy: What the run trains under (`make_strategy`).

    Yields:
        `kwargs` on the chief, else a copy redirected as above.

    Example:

    ```python
    with chief_outputs(run_kwargs(), strategy) as kwargs:
        result = experiment.run("digits", "mlp", strategy=strategy,
                                **kwargs)
    ```
    """
    if is_chief(strategy):
        yield kwargs
        return
    scratch = tempfile.mkdtemp(prefix="kbp_worker_")
    kwargs = dict(kwargs, verbose=0)
    for key in ("output_dir", "logdir"):
        if kwargs.get(key):
            kwargs[key] = os.path.join(scratch, key)
    try:
        yield kwargs
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
