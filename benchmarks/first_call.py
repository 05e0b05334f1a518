"""Time to first weights: the first orthogonal init of a shape in a fresh process.

Each measurement runs in a new Python process (so nothing is compiled yet):
after importing jax and the library and making a key, it times the first
call -- tracing, compilation and run -- of ``jaxinit.orthogonal()`` and of
``jax.nn.initializers.orthogonal()`` (vmapped over per-slice keys for stacks
and gate blocks), on whatever device JAX uses. The two run alternately,
``--repeats`` times each; the table gives the medians of wall time and of the
process's CPU time (less disturbed by other load on a shared machine) and
``JAX/jaxinit`` ratios (> 1: jaxinit is faster).

``sequence`` times a list of shapes in one process (the first call of each),
``nnx`` builds an ``nnx`` MLP of many distinct layer shapes eagerly, every
kernel orthogonal, and ``cnn`` an ``nnx`` CNN of 3 × 3 convolutions of distinct
channel counts, every kernel ``he_normal`` (the random schemes' first call);
``cnn_delta`` is the same CNN with ``delta_orthogonal`` kernels.
For repeated runs JAX's persistent compilation cache removes most of this time
(``--cache-dir`` shows it: a second process reads the compiled programs)::

    python benchmarks/first_call.py                         # all cases
    python benchmarks/first_call.py --cases 96 1024 stack64 --repeats 5
    python benchmarks/first_call.py --cases nnx --cache-dir /tmp/jax-cache
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# name -> shape, or a list of shapes for a sequence in one process, or "nnx"
CASES: dict[str, object] = {
    **{str(n): (n, n) for n in (8, 32, 96, 128, 256, 384, 512, 768, 1000, 1024, 1536,
                                2048, 4096, 8192)},
    "tall": (4096, 512),
    "tall8192": (8192, 1024),
    "stack64": (64, 256, 256),
    "stack16": (16, 1024, 1024),
    "stack8x512": (8, 512, 512),
    "stack32x512": (32, 512, 512),
    "stack4x1024": (4, 1024, 1024),
    "lstm256": (256, 1024),
    "lstm1024": (1024, 4096),
    "sequence": [(96, 96), (384, 384), (1536, 1536), (64, 256, 256)],
    "nnx": "nnx",
    "cnn": "cnn",
    "cnn_delta": "cnn_delta",
}
QUICK = ["8", "96", "256", "512", "1024", "2048", "stack64", "lstm256", "sequence", "nnx",
         "cnn", "cnn_delta"]


def _child(impl: str, case: str) -> dict[str, float]:
    start = time.perf_counter()
    import jax
    import jax.numpy as jnp
    if impl.startswith("jaxinit"):
        import jaxinit
    imported = time.perf_counter()
    key = jax.random.key(0)
    jax.block_until_ready(key)

    def make(shape: tuple[int, ...], k: jax.Array) -> jax.Array:
        stacked, blocks = len(shape) == 3, shape[-1] == 4 * shape[-2] and len(shape) == 2
        if impl.startswith("jaxinit"):
            method = impl.partition(":")[2] or "auto"
            init = jaxinit.orthogonal(method=method, batch_axis=0 if stacked else (),
                                      num_blocks=4 if blocks else None)
            return init(k, shape)
        ref = jax.nn.initializers.orthogonal()
        if stacked:
            keys = jax.random.split(k, shape[0])
            return jax.vmap(lambda kk: ref(kk, shape[1:]))(keys)
        if blocks:
            keys = jax.random.split(k, 4)
            q = jax.vmap(lambda kk: ref(kk, (shape[0], shape[0])))(keys)
            return jnp.moveaxis(q, 0, 1).reshape(shape)
        return ref(k, shape)

    cpu, wall = time.process_time(), time.perf_counter()
    spec = CASES[case]
    if spec == "nnx":
        _build_nnx(impl, key)
    elif spec in ("cnn", "cnn_delta"):
        _build_cnn(impl, "delta_orthogonal" if spec == "cnn_delta" else "he_normal")
    else:
        shapes = spec if isinstance(spec, list) else [spec]
        for i, shape in enumerate(shapes):
            jax.block_until_ready(make(tuple(shape), jax.random.fold_in(key, i)))
    return {"import_s": imported - start, "wall_s": time.perf_counter() - wall,
            "cpu_s": time.process_time() - cpu}


def _build_nnx(impl: str, key: object) -> None:
    """An eager nnx MLP of 48 Linear layers of distinct shapes, orthogonal kernels."""
    import jax
    from flax import nnx
    if impl.startswith("jaxinit"):
        import jaxinit
        kernel_init = jaxinit.orthogonal()
    else:
        kernel_init = jax.nn.initializers.orthogonal()
    widths = [48 + 20 * i for i in range(49)]  # 48 .. 1008: every (in, out) distinct
    rngs = nnx.Rngs(0)
    layers = [nnx.Linear(a, b, kernel_init=kernel_init, rngs=rngs)
              for a, b in zip(widths[:-1], widths[1:], strict=True)]
    jax.block_until_ready([layer.kernel[...] for layer in layers])


def _build_cnn(impl: str, scheme: str) -> None:
    """An eager nnx CNN of 24 3 × 3 convolutions of distinct channel counts."""
    import jax
    from flax import nnx
    if impl.startswith("jaxinit"):
        import jaxinit
        kernel_init = getattr(jaxinit, scheme)()
    else:
        kernel_init = getattr(jax.nn.initializers, scheme)()
    channels = [3] + [8 + 8 * i for i in range(24)]  # 3 .. 192: every kernel shape distinct
    rngs = nnx.Rngs(0)
    layers = [nnx.Conv(a, b, (3, 3), kernel_init=kernel_init, rngs=rngs)
              for a, b in zip(channels[:-1], channels[1:], strict=True)]
    jax.block_until_ready([layer.kernel[...] for layer in layers])


def _measure(impl: str, case: str, cache_dir: str | None) -> dict[str, float]:
    env = dict(os.environ)
    if cache_dir:
        env["JAX_COMPILATION_CACHE_DIR"] = cache_dir
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    out = subprocess.run([sys.executable, __file__, "--child", impl, case], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=QUICK, choices=list(CASES) + ["all"])
    parser.add_argument("--impls", nargs="+", default=["jaxinit", "jax"],
                        help="jaxinit, jaxinit:<method>, jax")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-dir", default=None,
                        help="use JAX's persistent compilation cache in this folder "
                             "(filled by a first, untimed process)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(*args.child)))
        return
    cases = list(CASES) if "all" in args.cases else args.cases
    import jax
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, "
          f"{jax.devices()[0].device_kind}, float32; fresh process per call, "
          f"median of {args.repeats}" + (f", persistent cache {args.cache_dir}"
                                          if args.cache_dir else ""))
    print(f"{'case':>9} {'impl':>20} {'wall s':>8} {'cpu s':>8} {'JAX/this wall':>13} "
          f"{'JAX/this cpu':>12}")
    for case in cases:
        if args.cache_dir:
            for impl in args.impls:
                _measure(impl, case, args.cache_dir)  # fills the cache
        runs: dict[str, list[dict[str, float]]] = {impl: [] for impl in args.impls}
        for _ in range(args.repeats):
            for impl in args.impls:  # interleaved, so that load affects all alike
                runs[impl].append(_measure(impl, case, args.cache_dir))
        wall = {i: statistics.median(r["wall_s"] for r in runs[i]) for i in runs}
        cpu = {i: statistics.median(r["cpu_s"] for r in runs[i]) for i in runs}
        for impl in args.impls:
            ratio_wall = f"{wall['jax'] / wall[impl]:13.2f}" if "jax" in wall else ""
            ratio_cpu = f"{cpu['jax'] / cpu[impl]:12.2f}" if "jax" in cpu else ""
            print(f"{case:>9} {impl:>20} {wall[impl]:8.3f} {cpu[impl]:8.3f} {ratio_wall} "
                  f"{ratio_cpu}", flush=True)


if __name__ == "__main__":
    main()
