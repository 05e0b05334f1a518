"""Every script in benchmarks/ runs, on the smallest case, and prints its table.

The full runs are long and opt-in (their commands are in benchmarks/RESULTS.md); these
runs only show that each script still works with the library as it is, so that a run on
a lent machine (``benchmarks/gpu.sh``) does not find it broken.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).parents[1]
BENCHMARKS = REPO / "benchmarks"
NUMBER = r"\d+\.\d+"

pytestmark = pytest.mark.timeout(120)


def run(*command: str, env: dict[str, str] | None = None) -> str:
    """``command`` from the repository root with the checkout on PYTHONPATH; its stdout."""
    environ = {**os.environ, **(env or {})}
    # The suite's 8 fake devices are for its own sharding tests, not for the scripts.
    environ.pop("XLA_FLAGS", None)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environ.get("PYTHONPATH")]))
    done = subprocess.run(command, cwd=REPO, env=environ, capture_output=True, text=True,
                          timeout=100)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


def assert_rows(output: str, *patterns: str) -> None:
    for pattern in patterns:
        assert re.search(pattern, output, re.MULTILINE), \
            f"expected a line matching {pattern!r} in:\n{output}"


def test_orthogonal_warm():
    out = run(sys.executable, "benchmarks/orthogonal.py", "--cases", "256", "--methods", "qr",
              "--no-torch", "--repeats", "1")
    assert_rows(out, rf"^\s+256\s+qr\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}",
                rf"^\s+256\s+jax\.nn\s+{NUMBER}", rf"^\s+256\s+floor\s+{NUMBER}")


def test_first_call():
    out = run(sys.executable, "benchmarks/first_call.py", "--cases", "8", "--repeats", "1")
    assert_rows(out, rf"^\s+8\s+jaxinit\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}",
                rf"^\s+8\s+jax\s+{NUMBER}")


def test_client_init():
    out = run(sys.executable, "benchmarks/client_init.py", "--clients", "actor_critic",
              "--modes", "jit", "--repeats", "1")
    for impl in ("flax", "jaxinit"):
        assert_rows(out, rf"^\s+actor_critic\s+jit\s+{impl}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}")


def test_schemes():
    out = run(sys.executable, "benchmarks/schemes.py", "--shape", "8", "8", "--repeats", "1")
    assert_rows(out, rf"^\s*he_normal\b.*{NUMBER}", rf"^\s*glorot_uniform\b.*{NUMBER}")


def test_sparse():
    out = run(sys.executable, "benchmarks/sparse.py", "--size", "64", "--fractions", "0.5",
              "--repeats", "1", "--no-first-call")
    assert_rows(out, rf"^\s+0\.5\s+32\s+\|\s+{NUMBER}\s+{NUMBER}")


def test_sharded_init():
    out = run(sys.executable, "benchmarks/sharded_init.py", "--d-model", "16", "--layers", "1",
              "--vocab", "64", "--repeats", "1")
    assert_rows(out, r"^jaxinit sharded values equal unsharded: True$")


def test_gpu_script_prepares_its_run(tmp_path):
    # No step chosen: only the machine description, whose Python part needs the library.
    run("bash", "benchmarks/gpu.sh", env={"STEPS": "none", "OUT": str(tmp_path),
                                           "PYTHON": sys.executable})
    machine = (tmp_path / "machine.txt").read_text()
    assert re.search(r"auto 4096x4096: \w+", machine), machine
