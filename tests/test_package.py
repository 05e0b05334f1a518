"""The package's surface: a light import, lazily loaded names that stay what they are."""

import subprocess
import sys

import jaxinit


def run_python(code: str) -> str:
    """Runs ``code`` in a fresh interpreter (import state is per process)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_import_loads_neither_flax_nor_optax():
    loaded = run_python(
        "import sys, jaxinit; print(sorted(m for m in ('flax', 'optax', 'scipy', 'torch') "
        "if m in sys.modules))")
    assert loaded == "[]", f"import jaxinit loaded {loaded}"


def test_lazy_names_resolve_to_the_objects_of_their_modules():
    from jaxinit import diagnostics, unit_variance
    assert jaxinit.lsuv is unit_variance.lsuv
    assert jaxinit.layer_statistics is diagnostics.layer_statistics
    assert jaxinit.testing.assert_std is not None
    for name in jaxinit.__all__:
        assert getattr(jaxinit, name) is not None, name


def test_lsuv_stays_the_function_whatever_was_imported_first():
    # Importing a submodule binds its name on the package; a module named like
    # the function would replace the function.
    kind = run_python(
        "import jaxinit.unit_variance, jaxinit.diagnostics, jaxinit.testing\n"
        "from jaxinit import lsuv, layer_statistics\n"
        "print(callable(lsuv) and callable(layer_statistics) "
        "and type(lsuv).__name__ == 'function')")
    assert kind == "True"
