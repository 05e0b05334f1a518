"""Benchmark of jaxinit.orthogonal against jax.nn.initializers, torch and the floor.

For each case (float32), the median warm wall time (compiled program, second
and later calls) of each jaxinit method, of ``jax.nn.initializers.orthogonal``
(vmapped over per-slice keys for stacks and gate blocks), of
``torch.nn.init.orthogonal_`` (looped per slice; when torch imports, on CPU, or
on CUDA when JAX runs on a GPU and torch has CUDA) and of the floor: a
``jax.random.normal`` draw of the same shape plus the matrix products the
accumulation needs at the measured GEMM rate (``(1 - m/3n)`` times an
``(m × n)·(n × m)`` product per matrix, i.e. 2/3 of an ``n × n × n`` product
when square). Timings of the implementations alternate within each repeat, so
that other load on the machine affects them alike. Also the compile time of
each jaxinit method and the peak memory (compiler's estimate: arguments +
outputs + temps) relative to the output for the largest square case.
``--block-sizes`` also times ``orthogonal(method="householder", block_size=b)``:
the fastest ``b`` depends on the CPU, so measure it on the machine at hand.

Usage::

    python benchmarks/orthogonal.py                       # everything (minutes)
    python benchmarks/orthogonal.py --cases 1024 stack64 --repeats 3
    python benchmarks/orthogonal.py --cases 2048 --block-sizes 32 64 128 256
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxinit.orthogonal import orthogonal

# name -> (shape, factory kwargs, (batch, n, m) of the matrices)
CASES: dict[str, tuple[tuple[int, ...], dict[str, object], tuple[int, int, int]]] = {
    "256": ((256, 256), {}, (1, 256, 256)),
    "1024": ((1024, 1024), {}, (1, 1024, 1024)),
    "2048": ((2048, 2048), {}, (1, 2048, 2048)),
    "4096": ((4096, 4096), {}, (1, 4096, 4096)),
    "8192": ((8192, 8192), {}, (1, 8192, 8192)),
    "tall": ((8192, 1024), {}, (1, 8192, 1024)),
    "stack64": ((64, 256, 256), {"batch_axis": 0}, (64, 256, 256)),
    "stack16": ((16, 1024, 1024), {"batch_axis": 0}, (16, 1024, 1024)),
    "lstm": ((1024, 4096), {"num_blocks": 4}, (4, 1024, 1024)),
}
METHODS = ("auto", "householder", "qr")


def interleaved_medians(thunks: dict[str, Callable[[], object]], repeats: int
                        ) -> dict[str, float]:
    """Median wall time of each thunk, the thunks taking turns within each repeat."""
    times: dict[str, list[float]] = {name: [] for name in thunks}
    for _ in range(repeats):
        for name, thunk in thunks.items():
            start = time.perf_counter()
            out = thunk()
            jax.block_until_ready(out)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def compiled(fn: Callable[..., jax.Array], *args: object) -> tuple[Callable[[], object], float]:
    start = time.perf_counter()
    exe = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - start
    jax.block_until_ready(exe(*args))  # a first run, untimed
    return (lambda: exe(*args)), seconds


def jax_reference(shape: tuple[int, ...], kwargs: dict[str, object], batch: int
                  ) -> Callable[[jax.Array], jax.Array]:
    init = jax.nn.initializers.orthogonal()
    if "batch_axis" in kwargs:
        return lambda key: jax.vmap(lambda k: init(k, shape[1:]))(jax.random.split(key, batch))
    if "num_blocks" in kwargs:
        rows, cols = shape[0], shape[1] // batch
        def blocks(key: jax.Array) -> jax.Array:
            q = jax.vmap(lambda k: init(k, (rows, cols)))(jax.random.split(key, batch))
            return jnp.moveaxis(q, 0, 1).reshape(shape)
        return blocks
    return lambda key: init(key, shape)


def torch_thunk(shape: tuple[int, ...], kwargs: dict[str, object]
                ) -> Callable[[], object] | None:
    """``torch.nn.init.orthogonal_`` on the same shape, on the device JAX uses (or None)."""
    try:
        import torch
    except ImportError:
        return None
    backend = jax.default_backend()
    if backend == "gpu" and torch.cuda.is_available():
        device, sync = "cuda", torch.cuda.synchronize
    elif backend == "cpu":
        device, sync = "cpu", lambda: None
    else:
        return None
    torch.manual_seed(0)

    def run(parts: list[object]) -> Callable[[], object]:
        def thunk() -> object:
            for p in parts:
                torch.nn.init.orthogonal_(p)  # type: ignore[arg-type]
            sync()
            return None
        return thunk

    if "batch_axis" in kwargs:
        return run(list(torch.empty(shape, device=device)))
    if "num_blocks" in kwargs:
        w = torch.empty(shape[1], shape[0], device=device)  # (out, in): blocks of rows
        return run(list(w.chunk(int(kwargs["num_blocks"]))))  # type: ignore[call-overload]
    return run([torch.empty(shape, device=device)])


def floor_thunks(shape: tuple[int, ...], mats: tuple[int, int, int]
                 ) -> tuple[Callable[[], object], Callable[[], object], float]:
    """The floor's two parts (a normal draw of the shape, the product) and the product's
    weight ``1 - m/3n``."""
    batch, n, m = mats
    key = jax.random.key(0)
    draw, _ = compiled(lambda k: jax.random.normal(k, shape), key)
    a = jax.random.normal(key, (batch, n, m))
    product, _ = compiled(lambda a: jnp.matmul(jnp.swapaxes(a, 1, 2), a,
                                               precision=jax.lax.Precision.HIGHEST), a)
    return draw, product, 1 - m / (3 * n)


def peak_ratio(fn: Callable[..., jax.Array], shape: tuple[int, ...]) -> float:
    stats = jax.jit(fn).lower(jax.random.key(0)).compile().memory_analysis()
    peak = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
    return peak / (4 * np.prod(shape))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--no-jax", action="store_true", help="skip jax.nn.initializers")
    parser.add_argument("--no-torch", action="store_true", help="skip torch")
    parser.add_argument("--block-sizes", nargs="*", type=int, default=[],
                        help="also time the householder sampler with these block sizes")
    args = parser.parse_args()
    key = jax.random.key(0)
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, "
          f"{jax.devices()[0].device_kind}, float32, median of {args.repeats} (interleaved)")
    header = f"{'case':>8} {'impl':>16} {'time s':>9} {'compile s':>9} {'vs floor':>8}"
    print(header + f" {'JAX/this':>8} {'torch/this':>10}")
    for name in args.cases:
        shape, kwargs, mats = CASES[name]
        thunks: dict[str, Callable[[], object]] = {}
        compile_s: dict[str, float] = {}
        for method in args.methods:
            init = orthogonal(method=method, **kwargs)  # type: ignore[arg-type]
            thunks[method], compile_s[method] = compiled(
                lambda k, init=init, shape=shape: init(k, shape), key)
        for b in args.block_sizes:
            init = orthogonal(method="householder", block_size=b, **kwargs)  # type: ignore[arg-type]
            thunks[f"householder b={b}"], compile_s[f"householder b={b}"] = compiled(
                lambda k, init=init, shape=shape: init(k, shape), key)
        if not args.no_jax:
            thunks["jax.nn"], compile_s["jax.nn"] = compiled(
                jax_reference(shape, kwargs, mats[0]), key)
        torch_run = None if args.no_torch else torch_thunk(shape, kwargs)
        if torch_run is not None:
            torch_run()  # warm-up
            thunks["torch"] = torch_run
        draw, product, weight = floor_thunks(shape, mats)
        thunks["_draw"], thunks["_product"] = draw, product
        medians = interleaved_medians(thunks, args.repeats)
        floor = medians.pop("_draw") + weight * medians.pop("_product")
        medians["floor"] = floor
        reference, torch_s = medians.get("jax.nn"), medians.get("torch")
        for impl, seconds in medians.items():
            compile_txt = f"{compile_s[impl]:9.2f}" if impl in compile_s else f"{'':>9}"
            jax_ratio = f"{reference / seconds:8.2f}" if reference else f"{'':>8}"
            torch_ratio = f"{torch_s / seconds:10.2f}" if torch_s else f"{'':>10}"
            print(f"{name:>8} {impl:>16} {seconds:9.4f} {compile_txt} {seconds / floor:8.2f} "
                  f"{jax_ratio} {torch_ratio}", flush=True)
        if name == "8192" or name == max(
                (c for c in args.cases if CASES[c][2][0] == 1 and CASES[c][2][1] == CASES[c][2][2]),
                key=lambda c: CASES[c][2][1], default=None):
            init = orthogonal(**kwargs)  # type: ignore[arg-type]
            print(f"{name:>8} peak memory of the default method: "
                  f"{peak_ratio(functools.partial(init, shape=shape), shape):.2f} x output")


if __name__ == "__main__":
    main()
