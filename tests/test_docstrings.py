"""The `>>>` examples of keras_brainprop's docstrings, run as tests.

One test per docstring, named by its qualified name, with a fresh Keras
state (conftest.py). An example sees its module's globals and what a user
has after `import keras`, `import numpy as np`, `import keras_brainprop as
kbp` and `from keras_brainprop import *`. Examples that need data, files
or long training are ```python blocks instead, which doctest skips.
"""

import ast
import doctest
import importlib
import inspect
import pathlib
import pkgutil
import sys
import types

import keras
import numpy as np
import pytest
from absl import flags

import keras_brainprop
from keras_brainprop._registry import Registry

# The examples hold on every backend; .ci/run runs them under each.
pytestmark = pytest.mark.backends

_OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
_BACKEND = keras.backend.backend()


def _modules():
    """keras_brainprop's modules, the other backends' ones left out."""
    names = [keras_brainprop.__name__]
    names += [
        info.name
        for info in pkgutil.walk_packages(
            keras_brainprop.__path__, prefix="keras_brainprop."
        )
    ]
    for name in names:
        package, _, leaf = name.rpartition(".")
        if package == "keras_brainprop.backend" and leaf != _BACKEND:
            continue
        if name == "keras_brainprop.__main__":
            yield _main_module()
        else:
            yield importlib.import_module(name)


def _main_module():
    """`python -m keras_brainprop`'s module, without its absl flags.

    It defines its flags when imported, and scripts that other tests load
    define the same names: the flags and the module are removed again.
    """
    name = "keras_brainprop.__main__"
    if name in sys.modules:
        return sys.modules[name]
    before = set(flags.FLAGS)
    module = importlib.import_module(name)
    del sys.modules[name]
    for flag in set(flags.FLAGS) - before:
        delattr(flags.FLAGS, flag)
    return module


def _docstring_tests():
    finder = doctest.DocTestFinder(exclude_empty=True)
    # A module's tests are those of its own objects, not of the ones it
    # imports: every docstring is found once.
    tests = [
        test
        for module in _modules()
        for test in finder.find(module)
        if test.examples
    ]
    return sorted(tests, key=lambda test: test.name)


def _registries():
    from keras_brainprop import policies
    from keras_brainprop.feedback import registry

    for module in (registry, policies):
        for value in vars(module).values():
            if isinstance(value, Registry):
                yield value


_TESTS = _docstring_tests()


def test_every_example_is_a_session_or_an_illustration():
    # An `Example:` section is a `>>>` session (run here) or a ```python
    # block (shown, not run): nothing in between that would rot unseen.
    loose = []
    for name, docstring in _docstrings():
        lines = [line.strip() for line in docstring.splitlines()]
        for i, line in enumerate(lines):
            if line in ("Example:", "Examples:"):
                first = next((text for text in lines[i + 1 :] if text), "")
                if not first.startswith((">>>", "```python")):
                    loose.append(f"{name}: {first!r}")
    assert not loose


def test_every_subpackage_has_an_api_page():
    # The API reference shows each subpackage's `__all__` (mkdocs.yml's
    # `filters: public`), so every one needs an `__all__` and a page.
    pages = pathlib.Path(__file__).parents[1] / "docs" / "api"
    for name in keras_brainprop.__all__:
        module = getattr(keras_brainprop, name)
        if isinstance(module, types.ModuleType):
            assert hasattr(module, "__all__"), name
            page = (pages / f"{name}.md").read_text()
            assert f"::: keras_brainprop.{name}\n" in page


def _docstrings():
    """(qualified name, docstring) of every module, class and function."""
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for module in _modules():
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(node, kinds) and ast.get_docstring(node):
                name = getattr(node, "name", "")
                yield f"{module.__name__}.{name}", ast.get_docstring(node)


@pytest.mark.parametrize("test", _TESTS, ids=[test.name for test in _TESTS])
def test_docstring_example(test, tmp_path, monkeypatch):
    # Examples that write files write them here.
    monkeypatch.chdir(tmp_path)
    # Names an example registers (`feedback.register`, ...) go with it.
    for registry in _registries():
        monkeypatch.setattr(registry, "_classes", dict(registry._classes))
    runner = doctest.DocTestRunner(optionflags=_OPTIONS)
    report = []
    result = runner.run(_copy(test), out=report.append)
    assert not result.failed, "".join(report)


def _user_namespace():
    namespace = {
        name: getattr(keras_brainprop, name) for name in keras_brainprop.__all__
    }
    namespace.update(
        keras=keras, np=np, kbp=keras_brainprop, keras_brainprop=keras_brainprop
    )
    return namespace


def _copy(test):
    """The test with fresh globals: examples must not see each other's."""
    return doctest.DocTest(
        test.examples,
        {**_user_namespace(), **test.globs},
        test.name,
        test.filename,
        test.lineno,
        test.docstring,
    )
