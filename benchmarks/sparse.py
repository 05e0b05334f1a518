"""Benchmark of jaxinit.sparse against a normal draw of the same shape and torch's ``sparse_``.

For each ``zero_fraction`` the script times, side by side in one process,

* ``jaxinit.sparse(zero_fraction=f)`` on a ``(fan_in, units)`` kernel (Flax layout),
* ``jax.random.normal`` of the same shape (the cost of the values alone),
  both called eagerly as a user would (each compiles on its first call), and
* ``torch.nn.init.sparse_(w, f)`` on a ``(fan_in, units)`` tensor: torch zeroes
  ``ceil(f·rows)`` entries of each *column*, so its columns are the units and
  both libraries do the same work (same number of units, same fan-in);

as the median of interleaved repeats taking turns in the order (warm: compiled
beforehand), and the first call of each (compile included) in a fresh
subprocess, since a model is usually initialized once. Ratios: ``sparse /
normal`` (target <= 2) and ``torch / sparse`` (target >= 1).

Usage (``PYTHONPATH`` selects the jaxinit checkout measured, here and in the
subprocesses)::

    PYTHONPATH=. python benchmarks/sparse.py             # 4096 x 4096, five fractions
    python benchmarks/sparse.py --size 1024 --fractions 0.5 --repeats 5
    python benchmarks/sparse.py --no-first-call          # warm times only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import jax
import numpy as np

from jaxinit.sparse import sparse

FRACTIONS = (0.01, 0.1, 0.5, 0.9, 0.99)
IMPLS = ("jaxinit", "normal", "torch")


def _maker(impl: str, size: int, fraction: float) -> Callable[[int], Callable[[], object]] | None:
    """``make(seed) -> call``: the call that builds one ``(size, size)`` weight."""
    shape = (size, size)
    if impl in ("jaxinit", "normal"):
        draw = sparse(zero_fraction=fraction) if impl == "jaxinit" else jax.random.normal

        def make(seed: int) -> Callable[[], object]:
            key = jax.block_until_ready(jax.random.key(seed))  # outside the timed call
            return lambda: jax.block_until_ready(draw(key, shape))

        return make
    try:
        import torch
    except ImportError:
        return None
    weight = torch.empty(shape)
    return lambda seed: lambda: torch.nn.init.sparse_(weight, fraction)


def seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def warm_medians(size: int, fraction: float, repeats: int) -> dict[str, float]:
    makers = {impl: m for impl in IMPLS if (m := _maker(impl, size, fraction)) is not None}
    for make in makers.values():
        make(0)()  # compile / warm up
    times: dict[str, list[float]] = {impl: [] for impl in makers}
    order = list(makers)
    for r in range(repeats):  # interleaved, so a noisy neighbour hits all alike, and
        for impl in order[r % len(order):] + order[:r % len(order)]:  # in turn after torch,
            times[impl].append(seconds(makers[impl](r + 1)))  # whose threads spin a while
    return {impl: statistics.median(ts) for impl, ts in times.items()}


def first_call(impl: str, size: int, fraction: float) -> float | None:
    """The first call (compile included) in a fresh interpreter."""
    code = (f"import sys, json; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
            f"import sparse as b; m = b._maker({impl!r}, {size}, {fraction}); "
            "print(json.dumps(None if m is None else b.seconds(m(0))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            return next(line.split(":", 1)[1].strip() for line in info
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="fan_in = units = size")
    parser.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-first-call", action="store_true")
    args = parser.parse_args()
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = "not installed"
    print(f"jax {jax.__version__}, numpy {np.__version__}, torch {torch_version}, "
          f"backend {jax.default_backend()}, {cpu_model()}, {os.cpu_count()} CPUs")
    print(f"({args.size}, {args.size}) float32; warm: median of {args.repeats} interleaved "
          "calls; first: the first call in a fresh process (compile included)")
    header = (f"{'zero_frac':>9} {'k':>5} | {'jaxinit s':>9} {'normal s':>9} {'torch s':>9} | "
              f"{'jaxinit/normal':>14} {'torch/jaxinit':>13}")
    print(header)
    for fraction in args.fractions:
        warm = warm_medians(args.size, fraction, args.repeats)
        rows = [("warm", warm)]
        if not args.no_first_call:
            rows.append(("first", {impl: t for impl in IMPLS
                                   if (t := first_call(impl, args.size, fraction)) is not None}))
        k = args.size - int(np.ceil(fraction * args.size))
        for label, t in rows:
            torch_txt = f"{t['torch']:9.3f}" if "torch" in t else f"{'-':>9}"
            ratio_txt = f"{t['torch'] / t['jaxinit']:13.2f}" if "torch" in t else f"{'-':>13}"
            print(f"{fraction:>9} {k:>5} | {t['jaxinit']:9.3f} {t['normal']:9.3f} {torch_txt} | "
                  f"{t['jaxinit'] / t['normal']:14.2f} {ratio_txt}  ({label})", flush=True)


if __name__ == "__main__":
    main()
