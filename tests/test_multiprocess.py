"""Two processes on one machine over loopback initialize one sharded parameter tree.

Each process owns 4 of the 8 devices of a global 2 x 4 mesh and computes only
its addressable shards; the shards, gathered over gloo CPU collectives, equal
the single-process values. Run as a script, this file is one such process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

LOCAL_DEVICES = 4
SHAPES = {"embed": (64, 32), "kernel": (32, 48), "conv": (8, 8, 3, 4), "bias": (48,)}
SPECS = {"embed": ("x", "y"), "kernel": (None, ("x", "y")), "conv": ("y", "x"), "bias": ("y",)}
SEED = 7


def initializers():
    from jaxinit.constant import constant
    from jaxinit.distributions import normal
    from jaxinit.variance_scaling import glorot_uniform, he_normal

    return {"embed": normal(0.02), "kernel": he_normal(), "conv": glorot_uniform(),
            "bias": constant(0.1)}


def init_tree(key):
    import jax

    keys = dict(zip(SHAPES, jax.random.split(key, len(SHAPES)), strict=True))
    return {name: init(keys[name], SHAPES[name]) for name, init in initializers().items()}


def run_process(process_id: int, port: int, out_dir: str) -> None:
    import jax
    from jax.experimental import multihost_utils
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=process_id, initialization_timeout=60)
    assert jax.device_count() == 2 * LOCAL_DEVICES
    mesh = jax.make_mesh((2, 4), ("x", "y"))
    shardings = {name: NamedSharding(mesh, P(*spec)) for name, spec in SPECS.items()}
    params = jax.jit(init_tree, out_shardings=shardings)(jax.random.key(SEED))
    # The same through the initializer's own out_sharding argument, called eagerly.
    params["kernel_arg"] = initializers()["kernel"](
        jax.random.key(SEED + 1), SHAPES["kernel"], out_sharding=shardings["kernel"])
    for value in params.values():  # this process holds (and computed) only its shards
        assert len(value.addressable_shards) == LOCAL_DEVICES
        assert not value.is_fully_addressable
    gathered = multihost_utils.process_allgather(params, tiled=True)
    np.savez(Path(out_dir) / f"process{process_id}.npz", **gathered)
    jax.distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(240)
def test_two_processes_over_loopback_agree_with_single_process(tmp_path):
    import jax

    port = _free_port()
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={LOCAL_DEVICES}",
               JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join(
                   [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    workers = [subprocess.Popen([sys.executable, __file__, str(i), str(port), str(tmp_path)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for i in range(2)]
    logs = []
    try:
        for worker in workers:
            logs.append(worker.communicate(timeout=200)[0])
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, log in zip(workers, logs, strict=True):
        assert worker.returncode == 0, log[-3000:]

    expected = jax.jit(init_tree)(jax.random.key(SEED))
    expected["kernel_arg"] = jax.jit(lambda k: initializers()["kernel"](k, SHAPES["kernel"]))(
        jax.random.key(SEED + 1))
    for process_id in range(2):
        gathered = np.load(tmp_path / f"process{process_id}.npz")
        for name, value in expected.items():
            np.testing.assert_array_equal(gathered[name], np.asarray(value),
                                          err_msg=f"{name} gathered in process {process_id}")


if __name__ == "__main__":
    run_process(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
