"""Tests of the package's face: its public names and what it imports."""

import pathlib
import re
import subprocess
import sys

import pytest

import keras_brainprop

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_api_table_lists_exactly_all():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## API overview", 1)[1].split("\n## ", 1)[0]
    names = re.findall(r"^\| `kbp\.(\w+)", section, flags=re.MULTILINE)
    assert sorted(names) == sorted(keras_brainprop.__all__)
    for name in keras_brainprop.__all__:
        assert hasattr(keras_brainprop, name), name


@pytest.mark.slow
def test_import_defines_no_flags_and_loads_no_cli():
    code = (
        "import sys, keras_brainprop; from absl import flags; "
        "print('keras_brainprop.cli' in sys.modules, "
        "any(f.startswith(('dataset', 'epochs')) for f in flags.FLAGS))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert completed.stdout.split() == ["False", "False"]


def test_no_file_cites_a_document_outside_the_repository():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    citing = [
        path
        for path in tracked
        if path.endswith((".py", ".md", ".cfg", ".toml"))
        and "DESIGN" + ".md" in (ROOT / path).read_text(errors="ignore")
    ]
    assert citing == []
