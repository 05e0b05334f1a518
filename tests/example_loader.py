"""Imports a script of examples/ as a module, for tests of its behaviour."""

import importlib.util
import pathlib
from types import ModuleType

EXAMPLES = pathlib.Path(__file__).parents[1] / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None, f"no example named {name}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
