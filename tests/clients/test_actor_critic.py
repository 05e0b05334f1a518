"""The RL actor-critic: JAX's values (with orthogonal(method="qr")), orthogonal kernels with
their scales (default method), jitted = eager, training; and the way RL code initializes it,
``jax.jit(jax.vmap(net.init, in_axes=(0, None)))`` over 16 seeds."""

import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

import jaxinit

from . import actor_critic
from .common import assert_client, linen_inits

pytestmark = pytest.mark.timeout(180)
# A hang in the subprocess must fail the test well before pytest's own timeout.
SUBPROCESS_TIMEOUT_S = 90


@pytest.fixture(scope="module", autouse=True)
def vmapped_inits_process():
    """``python -m clients.actor_critic 30``, started with the module: it compiles on the
    second core while this process runs the other tests."""
    tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(jaxinit.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [repo, tests_dir, os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-m", "clients.actor_critic", "30"],
                               cwd=tests_dir, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    yield process
    if process.poll() is None:
        process.kill()
        process.communicate()


def test_same_variables_and_trains():
    assert_client(linen_inits(actor_critic), actor_critic.ORTHOGONAL)


def batched_lapack_calls(lowered_text: str) -> list[str]:
    """The LAPACK custom calls that work on a batch of matrices, which can deadlock on CPU
    when a program has several of them."""
    return [m.group(1) for m in re.finditer(
        r'custom_call @(lapack_\w+)[^\n]*num_batch_dims = "([1-9]\d*)"', lowered_text)]


def test_vmapped_init_has_no_batched_lapack_call():
    net = actor_critic.model(jaxinit)
    keys = jax.random.split(jax.random.key(0), actor_critic.SEEDS)
    text = jax.jit(jax.vmap(net.init, in_axes=(0, None))).lower(
        keys, jnp.zeros((1, actor_critic.OBS))).as_text()
    assert batched_lapack_calls(text) == []


def test_thirty_vmapped_inits_finish_and_equal_per_seed_inits(vmapped_inits_process):
    """In a subprocess, so that a deadlock fails this test instead of hanging the run."""
    try:
        out, err = vmapped_inits_process.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"30 jitted, vmapped inits did not finish in {SUBPROCESS_TIMEOUT_S} s "
                    "of this test (started with the module)")
    assert vmapped_inits_process.returncode == 0 and out.strip() == "ok", err[-3000:]
