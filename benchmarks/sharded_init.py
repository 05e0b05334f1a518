"""Sharded vs unsharded init of a transformer parameter tree, jaxinit vs jax.nn.initializers.

For each library, the same tree (embedding, stacked attention and MLP
weights, biases, norm scales) is initialized under ``jax.jit``:

* sharded: ``out_shardings`` over a 2 x 4 mesh of 8 CPU devices (FSDP x tensor
  parallel layout), each device computing its own shards;
* unsharded: on one device.

Reported: per-device peak bytes from the compiled program's memory analysis
(outputs + temporaries; arguments are one key), and the best wall time of
``--repeats`` runs after compilation. On a CPU the 8 devices are fake and share
the host's cores, so the sharded time measures overhead, not speed-up; the
memory column is what sharding buys.

Run: ``python benchmarks/sharded_init.py [--d-model 512] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import os
import time
from types import SimpleNamespace

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from jaxinit.constant import ones, zeros  # noqa: E402
from jaxinit.distributions import normal  # noqa: E402
from jaxinit.variance_scaling import he_normal, lecun_normal  # noqa: E402

JAXINIT = SimpleNamespace(normal=normal, lecun_normal=lecun_normal, he_normal=he_normal,
                          zeros=zeros, ones=ones)
JAX = jax.nn.initializers


def layout(lib, d: int, layers: int, vocab: int):
    """name -> (shape, initializer, spec); the same layout as examples/sharded_init.py."""
    f = 4 * d
    stacked = {"in_axis": 1, "out_axis": 2, "batch_axis": 0}
    return {
        "embed": ((vocab, d), lib.normal(0.02), P("model", "data")),
        "qkv": ((layers, d, 3 * d), lib.lecun_normal(**stacked), P(None, "data", "model")),
        "attn_out": ((layers, d, d), lib.lecun_normal(**stacked), P(None, "model", "data")),
        "mlp_in": ((layers, d, f), lib.he_normal(**stacked), P(None, "data", "model")),
        "mlp_bias": ((layers, f), lib.zeros, P(None, "model")),
        "mlp_out": ((layers, f, d), lib.lecun_normal(**stacked), P(None, "model", "data")),
        "norm_scale": ((layers, 2, d), lib.ones, P(None, None, "data")),
    }


def programs(lib, mesh, d, layers, vocab):
    params = layout(lib, d, layers, vocab)

    def init_all(key):
        keys = jax.random.split(key, len(params))
        return {n: init(k, shape) for k, (n, (shape, init, _)) in zip(keys, params.items(),
                                                                     strict=True)}

    shardings = {n: NamedSharding(mesh, spec) for n, (_, _, spec) in params.items()}
    return jax.jit(init_all, out_shardings=shardings), jax.jit(init_all)


def measure(program, key, repeats):
    compiled = program.lower(key).compile()
    stats = compiled.memory_analysis()
    jax.block_until_ready(compiled(key))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(key))
        times.append(time.perf_counter() - start)
    return min(times), stats.output_size_in_bytes + stats.temp_size_in_bytes, compiled(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    mesh = jax.make_mesh((2, 4), ("data", "model"))
    key = jax.random.key(0)
    print(f"jax {jax.__version__}, {jax.device_count()} CPU devices, mesh {dict(mesh.shape)}, "
          f"{os.cpu_count()} host cores")

    results = {}
    for lib_name, lib in (("jaxinit", JAXINIT), ("jax.nn", JAX)):
        sharded, whole = programs(lib, mesh, args.d_model, args.layers, args.vocab)
        for mode, program in (("sharded", sharded), ("unsharded", whole)):
            results[lib_name, mode] = measure(program, key, args.repeats)
    values = results["jaxinit", "unsharded"][2]
    total = sum(v.nbytes for v in values.values())
    count = sum(v.size for v in values.values())
    print(f"tree: {count / 1e6:.1f}M parameters, {total / 2**20:.0f} MiB (float32)")
    print(f"{'library':<9} {'mode':<10} {'time (ms)':>10} {'per-device peak (MiB)':>22}")
    for (lib_name, mode), (seconds, peak, _) in results.items():
        print(f"{lib_name:<9} {mode:<10} {seconds * 1e3:>10.1f} {peak / 2**20:>22.1f}")

    def ratio(a, b, index):
        return results[a][index] / results[b][index]

    for lib_name in ("jaxinit", "jax.nn"):
        print(f"{lib_name}: sharded / unsharded: time "
              f"{ratio((lib_name, 'sharded'), (lib_name, 'unsharded'), 0):.2f}x, per-device "
              f"memory {ratio((lib_name, 'sharded'), (lib_name, 'unsharded'), 1):.3f}x")
    for mode in ("sharded", "unsharded"):
        print(f"{mode}: jaxinit / jax.nn: time {ratio(('jaxinit', mode), ('jax.nn', mode), 0):.2f}x"
              f", per-device memory {ratio(('jaxinit', mode), ('jax.nn', mode), 1):.3f}x")
    same = all(np.array_equal(results["jaxinit", "sharded"][2][n], values[n]) for n in values)
    print(f"jaxinit sharded values equal unsharded: {same}")


if __name__ == "__main__":
    main()
