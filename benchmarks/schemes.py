"""Times every scheme jaxinit shares with jax.nn.initializers, side by side in one process.

    python benchmarks/schemes.py [--shape 4096 4096] [--repeats 15]

Both give the same values. Each is jitted with the shape static: ``compile s`` is
``jax.jit(f).lower(key).compile()`` (the first call's extra time), ``ms`` the median warm
call, timed interleaved (A, B, A, B, ...) so that load on a shared machine hits both
alike. The ratios are jax / jaxinit (above 1: jaxinit is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

import jaxinit

SHARED = [
    ("zeros", lambda m: m.zeros),
    ("ones", lambda m: m.ones),
    ("constant", lambda m: m.constant(0.1)),
    ("normal", lambda m: m.normal(0.02)),
    ("uniform", lambda m: m.uniform(0.02)),
    ("truncated_normal", lambda m: m.truncated_normal(0.02)),
    ("variance_scaling", lambda m: m.variance_scaling(1.0, "fan_avg", "normal")),
    ("glorot_uniform", lambda m: m.glorot_uniform()),
    ("glorot_normal", lambda m: m.glorot_normal()),
    ("he_uniform", lambda m: m.he_uniform()),
    ("he_normal", lambda m: m.he_normal()),
    ("lecun_uniform", lambda m: m.lecun_uniform()),
    ("lecun_normal", lambda m: m.lecun_normal()),
]


def _compiled(init, shape, key):
    """The compiled program and the seconds it took to compile."""
    start = time.perf_counter()
    program = jax.jit(lambda key: init(key, shape, jnp.float32)).lower(key).compile()
    return program, time.perf_counter() - start


def _time(fn, key) -> float:
    start = time.perf_counter()
    fn(key).block_until_ready()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[4096, 4096])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    shape = tuple(args.shape)
    key = jax.random.key(0)
    print(f"shape {shape} float32, {args.repeats} interleaved repeats, "
          f"backend {jax.default_backend()}, jax {jax.__version__}")
    print(f"{'scheme':18} {'compile s':>9} {'jax':>6} {'ratio':>6} {'jaxinit ms':>11} "
          f"{'jax ms':>9} {'ratio':>6}")
    for name, make in SHARED:
        ours, c_ours = _compiled(make(jaxinit), shape, key)
        theirs, c_theirs = _compiled(make(jax.nn.initializers), shape, key)
        ours(key).block_until_ready()
        theirs(key).block_until_ready()
        t_ours, t_theirs = [], []
        for _ in range(args.repeats):
            t_ours.append(_time(ours, key))
            t_theirs.append(_time(theirs, key))
        a, b = statistics.median(t_ours), statistics.median(t_theirs)
        print(f"{name:18} {c_ours:9.3f} {c_theirs:6.3f} {c_theirs / c_ours:6.2f} "
              f"{1e3 * a:11.2f} {1e3 * b:9.2f} {b / a:6.2f}")


if __name__ == "__main__":
    main()
