"""Test configuration: 8 fake CPU devices for sharding tests and doctests, one compilation
cache for the run's worker processes, opt-in slow tests, and ``@pytest.mark.devices(n)``
for tests that build a mesh of ``n`` devices (skipped where the default backend has fewer,
e.g. a machine with one GPU)."""

import os
import shutil
import tempfile

# Must be set before jax initializes its CPU backend.
_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

import pytest  # noqa: E402

# Where this run's processes share their compiled programs (set by the first process).
_CACHE_VARIABLE = "JAXINIT_TEST_COMPILATION_CACHE"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked slow (benchmark-sized checks)")


def pytest_configure(config):
    # Compilation is most of the suite's time, and the xdist workers compile many of the
    # same programs (JAX's draws and operations on the same shapes): JAX's persistent
    # cache, in a directory of this run only, lets a worker load what the other compiled.
    # The executables are XLA's for the same program either way.
    if not hasattr(config, "workerinput"):  # the controller, or a run without workers
        config.jaxinit_cache = tempfile.mkdtemp(prefix="jaxinit-test-compilation-cache-")
        os.environ[_CACHE_VARIABLE] = config.jaxinit_cache
    import jax

    jax.config.update("jax_compilation_cache_dir", os.environ[_CACHE_VARIABLE])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def pytest_unconfigure(config):
    cache = getattr(config, "jaxinit_cache", None)
    if cache is not None:
        shutil.rmtree(cache, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    import jax

    available = jax.device_count()
    if jax.default_backend() == "cpu" and available < 8:
        # On CPU the flag above gives 8 devices: fewer would silently skip the sharding tests.
        raise pytest.UsageError(f"expected 8 CPU devices from XLA_FLAGS={_flag!r}, got "
                                f"{available}; XLA_FLAGS is {os.environ.get('XLA_FLAGS')!r}")
    for item in items:
        needed = item.get_closest_marker("devices")
        if needed is not None and needed.args[0] > available:
            item.add_marker(pytest.mark.skip(
                reason=f"builds a mesh of {needed.args[0]} devices; the default backend has "
                       f"{available}"))
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
