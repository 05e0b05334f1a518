"""Initialize a transformer's parameters sharded over a device mesh, one shard per device.

Three parts, all on CPU (8 fake devices, ``--xla_force_host_platform_device_count``):

1. A 6.9-billion-parameter decoder in abstract shape (``jax.eval_shape``): the
   sharded init is compiled, never run, and the compiled program's memory
   analysis gives the bytes each device needs -- one eighth of the model,
   where the unsharded program needs all of it on one device.
2. A small model of the same layout, actually initialized on a 2 x 4 mesh:
   its values equal the unsharded ones bit for bit.
3. The same over two processes on this machine (``jax.distributed`` with a
   coordinator on 127.0.0.1, gloo CPU collectives), 4 devices each: every
   process computes its own shards only; gathered, they equal part 2's values.

Run: ``python examples/sharded_init.py`` (about half a minute).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER_FLAG = "--worker"
_devices = 4 if WORKER_FLAG in sys.argv else 8
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={_devices}"
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from jaxinit.constant import ones, zeros  # noqa: E402
from jaxinit.distributions import normal  # noqa: E402
from jaxinit.variance_scaling import he_normal, lecun_normal  # noqa: E402

BIG = {"vocab": 32000, "d_model": 4096, "d_ff": 16384, "layers": 32}
SMALL = {"vocab": 1024, "d_model": 128, "d_ff": 512, "layers": 4}
MESH_AXES = ("data", "model")


def layout(cfg: dict[str, int]) -> dict[str, tuple[tuple[int, ...], object, P]]:
    """Each parameter: shape, initializer and partition spec (layers stacked on axis 0)."""
    v, d, f, n = cfg["vocab"], cfg["d_model"], cfg["d_ff"], cfg["layers"]
    stacked = {"in_axis": 1, "out_axis": 2, "batch_axis": 0}  # fans per layer
    return {
        "embed": ((v, d), normal(0.02), P("model", "data")),
        "qkv": ((n, d, 3 * d), lecun_normal(**stacked), P(None, "data", "model")),
        "attn_out": ((n, d, d), lecun_normal(**stacked), P(None, "model", "data")),
        "mlp_in": ((n, d, f), he_normal(**stacked), P(None, "data", "model")),
        "mlp_bias": ((n, f), zeros, P(None, "model")),
        "mlp_out": ((n, f, d), lecun_normal(**stacked), P(None, "model", "data")),
        "norm_scale": ((n, 2, d), ones, P(None, None, "data")),
        "unembed": ((d, v), lecun_normal(), P("data", "model")),
    }


def init_params(key: jax.Array, cfg: dict[str, int]) -> dict[str, jax.Array]:
    params = layout(cfg)
    keys = jax.random.split(key, len(params))
    return {name: init(k, shape) for k, (name, (shape, init, _)) in zip(keys, params.items(),
                                                                       strict=True)}


def shardings(cfg: dict[str, int], mesh: jax.sharding.Mesh) -> dict[str, NamedSharding]:
    return {name: NamedSharding(mesh, spec) for name, (_, _, spec) in layout(cfg).items()}


def sharded_initializer(cfg: dict[str, int], mesh: jax.sharding.Mesh):
    return jax.jit(lambda key: init_params(key, cfg), out_shardings=shardings(cfg, mesh))


def per_device_bytes(compiled) -> int:
    stats = compiled.memory_analysis()
    return stats.output_size_in_bytes + stats.temp_size_in_bytes


def part1_abstract_big_model(mesh: jax.sharding.Mesh) -> None:
    key = jax.random.key(0)
    abstract = jax.eval_shape(lambda k: init_params(k, BIG), key)
    count = sum(int(np.prod(a.shape)) for a in abstract.values())
    total = sum(a.size * a.dtype.itemsize for a in abstract.values())
    sharded = sharded_initializer(BIG, mesh).lower(key).compile()
    whole = jax.jit(lambda k: init_params(k, BIG)).lower(key).compile()
    print(f"1. {count / 1e9:.2f}B parameters, {total / 2**30:.1f} GiB in float32 (abstract)")
    print(f"   per-device bytes, sharded over {mesh.size} devices: "
          f"{per_device_bytes(sharded) / 2**30:.2f} GiB "
          f"(output {sharded.memory_analysis().output_size_in_bytes / 2**30:.2f} GiB)")
    print(f"   per-device bytes, unsharded on one device:   "
          f"{per_device_bytes(whole) / 2**30:.2f} GiB")


def part2_small_model(mesh: jax.sharding.Mesh) -> None:
    key = jax.random.key(0)
    start = time.perf_counter()
    params = jax.block_until_ready(sharded_initializer(SMALL, mesh)(key))
    elapsed = time.perf_counter() - start
    reference = jax.jit(lambda k: init_params(k, SMALL))(key)
    equal = all(np.array_equal(params[n], reference[n]) for n in params)
    device0 = jax.devices()[0]
    on_device0 = sum(s.data.nbytes for p in params.values() for s in p.addressable_shards
                     if s.device == device0)
    total = sum(p.nbytes for p in params.values())
    print(f"2. small model: {total / 2**20:.1f} MiB in {elapsed:.2f} s (with compile); "
          f"device 0 holds {on_device0 / 2**20:.2f} MiB; equal to unsharded: {equal}")


def worker(process_id: int, port: int, out_file: str) -> None:
    """One of two processes: initialize the local shards, gather, save.

    Besides the tree made under ``jax.jit``, one parameter (``eager_arg``) is
    made eagerly through the initializer's own ``out_sharding`` argument.
    """
    from jax.experimental import multihost_utils

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                               process_id=process_id, initialization_timeout=60)
    mesh = jax.make_mesh((2, 4), MESH_AXES)
    params = sharded_initializer(SMALL, mesh)(jax.random.key(0))
    shape, init, spec = layout(SMALL)["unembed"]
    params["eager_arg"] = init(jax.random.key(1), shape, out_sharding=NamedSharding(mesh, spec))
    for name, value in params.items():  # this process holds (and computed) only its shards
        if len(value.addressable_shards) != jax.local_device_count() or \
                value.is_fully_addressable:
            raise SystemExit(f"process {process_id}: {name} is not split over the processes")
    print(f"   process {process_id}: {jax.local_device_count()} of {jax.device_count()} "
          f"devices, {jax.local_device_count()} shards per parameter computed here", flush=True)
    gathered = multihost_utils.process_allgather(params, tiled=True)
    np.savez(out_file, **gathered)
    jax.distributed.shutdown()


def reference_params() -> dict[str, np.ndarray]:
    """What the two processes must gather: the unsharded values, under ``jax.jit``."""
    values = jax.jit(lambda k: init_params(k, SMALL))(jax.random.key(0))
    shape, init, _ = layout(SMALL)["unembed"]
    values["eager_arg"] = jax.jit(lambda k: init(k, shape))(jax.random.key(1))
    return {name: np.asarray(value) for name, value in values.items()}


def run_two_processes(out_dir: str, timeout: float = 300) -> list[str]:
    """Starts two worker processes over loopback; returns the files they saved."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    files = [str(Path(out_dir) / f"process{i}.npz") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, __file__, WORKER_FLAG, str(i), str(port),
                               files[i]]) for i in range(2)]
    try:
        codes = [p.wait(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if codes != [0, 0]:
        raise RuntimeError(f"worker processes failed with exit codes {codes}")
    return files


def part3_two_processes() -> None:
    print("3. two processes over loopback:", flush=True)
    reference = reference_params()
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate(run_two_processes(tmp)):
            gathered = np.load(path)
            equal = all(np.array_equal(gathered[n], reference[n]) for n in reference)
            print(f"   process {i}: gathered parameters equal the single-process ones: {equal}")


def main() -> None:
    mesh = jax.make_mesh((2, 4), MESH_AXES)
    print(f"mesh {dict(mesh.shape)} over {jax.device_count()} CPU devices; "
          f"jax_threefry_partitionable={jax.config.jax_threefry_partitionable}")
    part1_abstract_big_model(mesh)
    part2_small_model(mesh)
    part3_two_processes()


if __name__ == "__main__":
    if WORKER_FLAG in sys.argv:
        args = sys.argv[sys.argv.index(WORKER_FLAG) + 1:]
        worker(int(args[0]), int(args[1]), args[2])
    else:
        main()
