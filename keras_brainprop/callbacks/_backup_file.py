"""The backup file of `BackupAndRestore`: written atomically, read and
checked."""

import contextlib
import json
import os
import tempfile
import zipfile

import numpy as np

# The class once lived in keras_brainprop.resilience: the name stays, so
# that backups written then still resume.
FORMAT = "keras_brainprop.resilience.BackupAndRestore/1"
BACKUP_FILE = "backup.npz"
TEMP_PREFIX = ".backup-"
TEMP_SUFFIX = ".npz.tmp"


def _fsync_directory(path):
    # Makes the rename itself durable (POSIX); not possible everywhere.
    with contextlib.suppress(OSError, AttributeError):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_atomically(path, arrays):
    """Writes the dict `arrays` (as `np.savez`) to `path` all at once or not.

    The data go to a temporary file in the same directory, flushed to disk,
    renamed over `path` (`os.replace`, atomic on POSIX and Windows): a
    process killed at any moment leaves the old file or the new one, at
    worst a stray temporary file, which `BackupAndRestore` removes.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    descriptor, temp_path = tempfile.mkstemp(
        prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=directory
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temp_path)
        raise
    _fsync_directory(directory)


def read_backup(path):
    """Reads and checks `<backup_dir>/backup.npz` from `BackupAndRestore`.

    Returns `(manifest, arrays)`: the manifest dict (epoch, batch, steps,
    history, ...) and the saved variable values. Every array is read in
    full, so zip's CRC-32 check covers all of it. Raises `ValueError` if the
    file is damaged or not such a backup.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            manifest = json.loads(str(data["manifest"]))
            arrays = {k: data[k] for k in data.files if k != "manifest"}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"The training backup {path} cannot be read: it is damaged or "
            "was not written by keras_brainprop.callbacks.BackupAndRestore. "
            f"Delete it to train from the start. Received: {error!r}"
        ) from error
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found != FORMAT:
        raise ValueError(
            f"{path} is not a keras_brainprop training backup. Received: "
            f"format={found!r}"
        )
    return manifest, arrays
