"""Benchmark of jaxinit.orthogonal against jax.nn.initializers, torch and the floor.

For each case (float32), the median wall time of each jaxinit method, of
``jax.nn.initializers.orthogonal`` (vmapped over per-slice keys for stacks and
gate blocks), of ``torch.nn.init.orthogonal_`` (looped per slice; when torch
imports) and of the floor: a ``jax.random.normal`` draw of the same shape plus
the matrix products the accumulation needs at the measured GEMM rate
(``(1 - m/3n)`` times an ``(m × n)·(n × m)`` product per matrix, i.e. 2/3 of an
``n × n × n`` product when square). Also the compile time of each jaxinit
method and the peak memory (compiler's estimate: arguments + outputs + temps)
relative to the output for the largest square case.

Usage::

    python benchmarks/orthogonal.py                       # everything (minutes)
    python benchmarks/orthogonal.py --cases 1024 stack64 --repeats 3
    python benchmarks/orthogonal.py --cases 2048 --block-sizes 64 128 256
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

from jaxinit.householder import householder_sampler
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


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        jax.block_until_ready(out)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compiled(fn: Callable[..., jax.Array], *args: object) -> tuple[Callable[[], object], float]:
    start = time.perf_counter()
    exe = jax.jit(fn).lower(*args).compile()
    seconds = time.perf_counter() - start
    return (lambda: exe(*args)), seconds


def jax_reference(shape: tuple[int, ...], kwargs: dict[str, object], batch: int):
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


def torch_time(shape: tuple[int, ...], kwargs: dict[str, object], repeats: int) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    if "batch_axis" in kwargs:
        w = torch.empty(shape)
        return median_time(lambda: [torch.nn.init.orthogonal_(s) for s in w], repeats)
    if "num_blocks" in kwargs:
        w = torch.empty(shape[1], shape[0])  # torch's (out, in) layout, blocks of rows
        parts = w.chunk(int(kwargs["num_blocks"]))  # type: ignore[call-overload]
        return median_time(lambda: [torch.nn.init.orthogonal_(p) for p in parts], repeats)
    w = torch.empty(shape)
    return median_time(lambda: torch.nn.init.orthogonal_(w), repeats)


def floor_time(shape: tuple[int, ...], mats: tuple[int, int, int], repeats: int) -> float:
    batch, n, m = mats
    key = jax.random.key(0)
    draw, _ = compiled(lambda k: jax.random.normal(k, shape), key)
    a = jax.random.normal(key, (batch, n, m))
    product, _ = compiled(lambda a: jnp.matmul(jnp.swapaxes(a, 1, 2), a,
                                               precision=jax.lax.Precision.HIGHEST), a)
    return median_time(draw, repeats) + (1 - m / (3 * n)) * median_time(product, repeats)


def peak_ratio(fn: Callable[..., jax.Array], shape: tuple[int, ...]) -> float:
    stats = jax.jit(fn).lower(jax.random.key(0)).compile().memory_analysis()
    peak = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
    return peak / (4 * np.prod(shape))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--no-jax", action="store_true", help="skip jax.nn.initializers")
    parser.add_argument("--no-torch", action="store_true", help="skip torch")
    parser.add_argument("--block-sizes", nargs="*", type=int, default=[],
                        help="also time the householder sampler with these block sizes")
    args = parser.parse_args()
    key = jax.random.key(0)
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, "
          f"{jax.devices()[0].device_kind}, float32, median of {args.repeats}")
    header = f"{'case':>8} {'impl':>14} {'time s':>9} {'compile s':>9} {'vs floor':>8}"
    print(header + f" {'JAX/this':>8} {'torch/this':>10}")
    for name in args.cases:
        shape, kwargs, mats = CASES[name]
        rows: list[tuple[str, float, float | None]] = []
        for method in args.methods:
            init = orthogonal(method=method, **kwargs)  # type: ignore[arg-type]
            run, compile_s = compiled(lambda k, init=init, shape=shape: init(k, shape), key)
            rows.append((method, median_time(run, args.repeats), compile_s))
        for b in args.block_sizes:
            batch, n, m = mats
            fn = functools.partial(householder_sampler, batch_shape=(batch,), n=n, m=m,
                                   dtype=np.dtype(np.float32), block_size=b)
            run, compile_s = compiled(fn, key)
            rows.append((f"householder b={b}", median_time(run, args.repeats), compile_s))
        floor = floor_time(shape, mats, args.repeats)
        reference = None
        if not args.no_jax:
            run, compile_s = compiled(jax_reference(shape, kwargs, mats[0]), key)
            reference = median_time(run, args.repeats)
            rows.append(("jax.nn", reference, compile_s))
        torch_s = None if args.no_torch else torch_time(shape, kwargs, args.repeats)
        if torch_s is not None:
            rows.append(("torch", torch_s, None))
        rows.append(("floor", floor, None))
        for impl, seconds, compile_s in rows:
            compile_txt = f"{compile_s:9.2f}" if compile_s is not None else f"{'':>9}"
            jax_ratio = f"{reference / seconds:8.2f}" if reference else f"{'':>8}"
            torch_ratio = f"{torch_s / seconds:10.2f}" if torch_s else f"{'':>10}"
            print(f"{name:>8} {impl:>14} {seconds:9.3f} {compile_txt} {seconds / floor:8.2f} "
                  f"{jax_ratio} {torch_ratio}", flush=True)
        if name == "8192" or name == max(
                (c for c in args.cases if CASES[c][2][0] == 1 and CASES[c][2][1] == CASES[c][2][2]),
                key=lambda c: CASES[c][2][1], default=None):
            init = orthogonal(**kwargs)  # type: ignore[arg-type]
            print(f"{name:>8} peak memory of the default method: "
                  f"{peak_ratio(functools.partial(init, shape=shape), shape):.2f} x output")


if __name__ == "__main__":
    main()
