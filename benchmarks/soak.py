"""Soak test: training that is killed again and again ends exactly right.

Trains a small conv net with BrainProp for many steps (benchmarks/
_soak_worker.py, our loader's reshuffled digits as one seeded stream, op
determinism on), backing up every `--save_freq` steps, and SIGKILLs the
training process at random times, up to `--max_kills` times within
`--time_budget` seconds, restarting it after each kill. Every few kills is
aimed at a backup being written. After each kill it checks that the backup
reads back whole; at the end it compares the final state with that of an
uninterrupted run, and counts the training steps done.

It does this for `keras_brainprop.callbacks.BackupAndRestore` and, for
comparison, Keras' own `keras.callbacks.BackupAndRestore` (also with
`double_checkpoint=True`, which falls back to the previous backup when the
latest cannot be read), and prints:
kills survived, kills during a backup write, kills that left a damaged
backup, steps lost (trained, then redone after a kill), steps the optimizer
counted against the expected number, the largest deviation of any float
variable (weights, batch-norm statistics, momentum) from the uninterrupted
run, whether the step counter and random-number states are equal, whether
the history is the same, and the wall time as a multiple of the
uninterrupted run's. A random kill falls at a random step of the first half
of what is left to train, a random moment (up to 50 ms) after it; an aimed
one as soon as a backup write is seen.

Command:

    python benchmarks/soak.py --epochs=30 --save_freq=25 --max_kills=8 \
        --time_budget=300 --seed=0

It soaks the Keras backend `KERAS_BACKEND` names (TensorFlow by default;
the training processes inherit it), and the table's title names it.
"""

import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from keras_brainprop import datasets  # noqa: E402
from keras_brainprop.callbacks import backup_and_restore  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("epochs", 30, "Training epochs of each run.")
flags.DEFINE_integer("save_freq", 25, "Training steps between backups.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("max_kills", 8, "Most SIGKILLs per callback.")
flags.DEFINE_float(
    "time_budget", 300.0, "Seconds per callback during which kills happen."
)
flags.DEFINE_integer(
    "write_kill_every", 3, "Every n-th kill waits for a backup write."
)
flags.DEFINE_float("worker_timeout", 1800.0, "Seconds before a run fails.")
flags.DEFINE_list(
    "callbacks",
    ["kbp", "keras", "keras_double"],
    "Backup callbacks to soak: kbp, keras, keras_double (Keras' with "
    "double_checkpoint=True).",
)
flags.DEFINE_integer("seed", 0, "Seed of the training runs and the kills.")
flags.DEFINE_string("workdir", None, "Scratch directory (default: a temp).")

WORKER = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "_soak_worker.py"
)


def start_worker(callback, workdir, backup_dir, output):
    command = [
        sys.executable,
        WORKER,
        f"--callback={callback}",
        f"--backup_dir={backup_dir}",
        f"--progress={os.path.join(workdir, 'progress.txt')}",
        f"--output={output}",
        f"--epochs={FLAGS.epochs}",
        f"--save_freq={FLAGS.save_freq}",
        f"--batch_size={FLAGS.batch_size}",
        f"--seed={FLAGS.seed}",
    ]
    log = open(os.path.join(workdir, "worker.log"), "a")
    return subprocess.Popen(command, stdout=log, stderr=log), log


def kill(process):
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()


def backup_being_written(callback, backup_dir, last_mtime):
    """Whether a backup write is under way (or has just happened)."""
    if callback == "kbp":
        return bool(glob.glob(os.path.join(backup_dir, ".backup-*.npz.tmp")))
    # Keras writes its file in place: watch it change.
    path = os.path.join(backup_dir, "latest.weights.h5")
    try:
        return os.stat(path).st_mtime_ns != last_mtime
    except OSError:
        return False


def modification_time(callback, backup_dir):
    try:
        return os.stat(
            os.path.join(backup_dir, "latest.weights.h5")
        ).st_mtime_ns
    except OSError:
        return None


def read_dataset(name, item):
    if isinstance(item, h5py.Dataset):
        item[()]  # Reads the values; raises if the file is damaged.


def check_backup(callback, backup_dir):
    """True if the backup (if any) reads back whole, False if damaged."""
    if callback == "kbp":
        path = os.path.join(backup_dir, "backup.npz")
        if not os.path.exists(path):
            return True
        try:
            manifest, _ = backup_and_restore.read_backup(path)
        except ValueError:
            return False
        return manifest["iterations"] == manifest["steps"]
    weights = os.path.join(backup_dir, "latest.weights.h5")
    metadata = os.path.join(backup_dir, "training_metadata.json")
    try:
        if os.path.exists(weights):
            with h5py.File(weights, "r") as file:
                file.visititems(read_dataset)
        if os.path.exists(metadata):
            with open(metadata) as file:
                json.load(file)
    except (OSError, ValueError, KeyError):
        return False
    return True


def steps_done(progress_path):
    """Steps trained over all runs, counting those done twice."""
    total = 0
    start = last = None
    with open(progress_path) as file:
        for line in file:
            fields = line.split()
            if len(fields) == 2 and fields[0] == "start":
                if start is not None:
                    total += last - start
                start = last = int(fields[1])
            elif len(fields) == 1 and fields[0].isdigit():
                last = int(fields[0])
    if start is not None:
        total += last - start
    return total


def read_progress(progress_path):
    """(runs that started training, the last run's start, its last step)."""
    starts, start, last = 0, None, None
    try:
        with open(progress_path) as file:
            for line in file:
                fields = line.split()
                if len(fields) == 2 and fields[0] == "start":
                    starts += 1
                    start = last = int(fields[1])
                elif len(fields) == 1 and fields[0].isdigit():
                    last = int(fields[0])
    except OSError:
        pass
    return starts, start, last


def soak(callback, workdir, rng, expected_steps):
    """Kills and restarts one training run; returns its row of results."""
    backup_dir = os.path.join(workdir, "backup")
    output = os.path.join(workdir, "final.npz")
    progress = os.path.join(workdir, "progress.txt")
    row = {"kills": 0, "write_kills": 0, "damaged": 0, "failed": None}
    backup_whole = True
    begin = time.monotonic()
    while True:
        may_kill = (
            row["kills"] < FLAGS.max_kills
            and time.monotonic() - begin < FLAGS.time_budget
        )
        aim_at_write = (
            may_kill
            and FLAGS.write_kill_every > 0
            and row["kills"] % FLAGS.write_kill_every
            == FLAGS.write_kill_every - 1
        )
        starts_before = read_progress(progress)[0]
        last_mtime = modification_time(callback, backup_dir)
        process, log = start_worker(callback, workdir, backup_dir, output)
        started = time.monotonic()
        kill_at_step = None
        killed = False
        try:
            while process.poll() is None:
                if time.monotonic() - started > FLAGS.worker_timeout:
                    row["failed"] = "timeout"
                    break
                if may_kill and aim_at_write:
                    if backup_being_written(callback, backup_dir, last_mtime):
                        killed = True
                        break
                    time.sleep(0.001)
                    continue
                if may_kill:
                    starts, start, last = read_progress(progress)
                    if kill_at_step is None and starts > starts_before:
                        # A random step of what is left to train (the
                        # replay of a resumed epoch included), then a random
                        # moment within the steps, writes and epoch ends.
                        remaining = max(1, expected_steps - start)
                        kill_at_step = start + rng.randint(
                            0, max(1, remaining // 2)
                        )
                    if kill_at_step is not None and last >= kill_at_step:
                        time.sleep(rng.uniform(0.0, 0.05))
                        killed = True
                        break
                time.sleep(0.005)
        finally:
            kill(process)
            log.close()
        if row["failed"]:
            break
        if killed:
            row["kills"] += 1
            row["write_kills"] += aim_at_write
            whole = check_backup(callback, backup_dir)
            row["damaged"] += backup_whole and not whole
            backup_whole = whole
            continue
        if process.returncode != 0:
            row["failed"] = f"exit code {process.returncode}"
        break
    row["seconds"] = time.monotonic() - begin
    row["steps_done"] = steps_done(progress)
    return row


def run_reference(workdir):
    """Runs the uninterrupted training; returns where its final state is
    and its wall time."""
    os.makedirs(workdir, exist_ok=True)
    output = os.path.join(workdir, "final.npz")
    begin = time.monotonic()
    process, log = start_worker("none", workdir, "", output)
    try:
        process.wait(timeout=FLAGS.worker_timeout)
    finally:
        kill(process)
        log.close()
    if process.returncode != 0:
        raise RuntimeError(
            f"The uninterrupted run failed; see {workdir}/worker.log"
        )
    return output, time.monotonic() - begin


def load_state(path):
    with np.load(path, allow_pickle=False) as data:
        history = json.loads(str(data["history"]))
        count = len([k for k in data.files if k.startswith("state_")])
        state = [data[f"state_{i}"] for i in range(count)]
        return state, history, int(data["iterations"])


def main(argv):
    del argv
    rng = random.Random(FLAGS.seed)
    workdir = FLAGS.workdir or tempfile.mkdtemp(prefix="kbp_soak_")
    train = datasets.load("digits", "train", batch_size=FLAGS.batch_size)
    expected_steps = FLAGS.epochs * len(train)
    print(
        f"Soak: {FLAGS.epochs} epochs x {len(train)} steps = {expected_steps}"
        f" steps, backup every {FLAGS.save_freq} steps, at most "
        f"{FLAGS.max_kills} SIGKILLs in {FLAGS.time_budget:.0f} s per "
        f"callback, every kill number n x {FLAGS.write_kill_every} aimed at a "
        f"backup write. Scratch: {workdir}",
        flush=True,
    )
    reference_path, reference_seconds = run_reference(
        os.path.join(workdir, "reference")
    )
    reference_state, reference_history, _ = load_state(reference_path)
    rows = []
    try:
        for callback in FLAGS.callbacks:
            callback_dir = os.path.join(workdir, callback)
            shutil.rmtree(callback_dir, ignore_errors=True)
            os.makedirs(callback_dir)
            row = soak(callback, callback_dir, rng, expected_steps)
            row["callback"] = callback
            final = os.path.join(callback_dir, "final.npz")
            if row["failed"] is None and os.path.exists(final):
                state, history, row["iterations"] = load_state(final)
                pairs = list(zip(reference_state, state))
                row["deviation"] = max(
                    float(np.max(np.abs(a - b)))
                    for a, b in pairs
                    if np.issubdtype(a.dtype, np.floating)
                )
                # Step counter and random-number states.
                row["counters_equal"] = all(
                    np.array_equal(a, b)
                    for a, b in pairs
                    if not np.issubdtype(a.dtype, np.floating)
                )
                row["history_equal"] = history == reference_history
            rows.append(row)
            print(f"  {callback}: {row}", flush=True)
    finally:
        if FLAGS.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(rows, expected_steps, reference_seconds)


def print_table(rows, expected_steps, reference_seconds):
    names = {
        "kbp": "keras_brainprop.callbacks.BackupAndRestore",
        "keras": "keras.callbacks.BackupAndRestore",
        "keras_double": "keras.callbacks.BackupAndRestore(double_checkpoint)",
    }
    header = (
        "| callback | kills survived | of them during a backup write | "
        "kills that damaged the backup | steps lost (redone) | "
        "optimizer steps / expected | "
        "max abs deviation of float variables | step counter and random "
        "states equal | history equal | "
        "time / uninterrupted |"
    )
    print(f"\nKeras backend: {os.environ['KERAS_BACKEND']}\n")
    print(header)
    print("|" + " --- |" * header.count(" | ") + " --- |")
    for row in rows:
        if row["failed"]:
            outcome = [f"FAILED ({row['failed']})", "-", "-", "-", "-"]
        else:
            outcome = [
                str(row["steps_done"] - row["iterations"]),
                f"{row['iterations']} / {expected_steps}",
                f"{row['deviation']:.3g}",
                "yes" if row["counters_equal"] else "no",
                "yes" if row["history_equal"] else "no",
            ]
        print(
            f"| {names.get(row['callback'], row['callback'])} "
            f"| {row['kills']} | {row['write_kills']} | {row['damaged']} | "
            + " | ".join(outcome)
            + f" | {row['seconds'] / reference_seconds:.2f} |"
        )


if __name__ == "__main__":
    app.run(main)
