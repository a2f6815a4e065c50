"""InvalidInputError: what a failed input check raises, on every backend."""

import re

import tensorflow as tf


class InvalidInputError(ValueError, tf.errors.InvalidArgumentError):
    """A failed input check: a `ValueError` whose message is the check's.

    Also a `tf.errors.InvalidArgumentError`, which TensorFlow raises for a
    check that fails inside a traced step, so that code catching either
    catches it.
    """

    def __init__(self, message):
        tf.errors.InvalidArgumentError.__init__(self, None, None, message)
        self.args = (message,)

    def __reduce__(self):
        return type(self), (self.message,)


def failed_check(message):
    """Returns a failed check's own message from a backend's error, or None.

    Every check's message ends with "Received: ...". A compiled step
    reports a failed check inside the backend's own error: TensorFlow's
    `tf.debugging.Assert` ("assertion failed: [text] [value]") or
    `check_numerics` ("text : Tensor had NaN values") with node and op
    names; JAX's runtime error with the host callback's traceback, whose
    last line is "InvalidInputError: text".
    """
    for line in reversed(message.splitlines()):
        line = re.sub(r"^\s*\{\{function_node [^}]*\}\}\s*", "", line)
        line = re.sub(r"\s*\[Op:[^\]]*\].*$", "", line).strip()
        line = re.sub(r"^[\w.]*InvalidInputError: ", "", line)
        prefix = "assertion failed: ["
        if line.startswith(prefix) and line.endswith("]"):
            line = " ".join(line[len(prefix) : -1].split("] ["))
            line = line.replace("\\'", "'").replace('\\"', '"')
        if "Received" in line:
            return line
    return None
