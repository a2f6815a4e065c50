"""The `tf.distribute` strategy `--strategy` names, and keeping a
multi-worker run's written files on the chief."""

import contextlib
import os
import shutil
import tempfile

import tensorflow as tf

# What `make_strategy` creates; the `--strategy` flag takes the first three.
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def make_strategy(name, cpu_replicas=0, tpu="local"):
    """Creates a `tf.distribute` strategy to pass to `run`.

    Call it before TensorFlow runs anything: splitting the CPU and
    joining a cluster are only possible then.

    Args:
        name: "default" (one device), "mirrored" (every local GPU),
            "multi_worker" (one process per machine, the cluster given by
            `TF_CONFIG`) or "tpu".
        cpu_replicas: If > 0, "mirrored" splits the CPU into this many
            logical devices and uses them as the replicas.
        tpu: The TPU of "tpu", as `TPUClusterResolver` takes it.

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ValueError: For an unknown `name` or a negative `cpu_replicas`.

    Example:

    >>> strategy = make_strategy("mirrored", cpu_replicas=2)
    >>> experiment.run("digits", "mlp", "backprop", epochs=5,
    ...                strategy=strategy)
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
    if name == "default":
        return tf.distribute.get_strategy()
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
        strategy: The `tf.distribute.Strategy` of the run.

    Yields:
        `kwargs` on the chief, else a copy redirected as above.

    Example:

    >>> with chief_outputs(run_kwargs(), strategy) as kwargs:
    ...     result = experiment.run("digits", "mlp", strategy=strategy,
    ...                             **kwargs)
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
