"""Griffe extension: shows the docstrings' `>>>` sessions as code.

The docstrings follow Keras: an `Example:` line, a blank line, then the
`>>>` session at the docstring's own indentation. Google-style parsers only
read indented sections, so Markdown would render `>>>` as nested quotes.
This extension puts every session (from its first `>>>` line to the next
blank line) in a ```` ```pycon ```` fence and drops `# doctest:` directives,
which only matter to the tests. The docstrings themselves stay unchanged.
"""

import re

import griffe

_DIRECTIVE = re.compile(r"\s*#\s*doctest:.*$")


def fence_doctests(text):
    """Returns `text` with each `>>>` session inside a pycon code fence."""
    lines = []
    in_fence = in_session = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        elif not in_fence and not in_session and line.startswith(">>>"):
            lines.append("```pycon")
            in_session = True
        elif in_session and not line.strip():
            lines.append("```")
            in_session = False
        if in_session:
            line = _DIRECTIVE.sub("", line)
        lines.append(line)
    if in_session:
        lines.append("```")
    return "\n".join(lines)


class FenceDoctests(griffe.Extension):
    """Fences the `>>>` sessions of every docstring Griffe loads."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)
