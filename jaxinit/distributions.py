"""Fixed-scale random initializers: small Gaussian and uniform weights.

"Small random numbers" (``0.01 * randn``) and the RBM recipe (zero-mean
Gaussian, std 0.1 or 0.01; Hinton 2010) are ``normal(stddev)``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr

from jaxinit import draws, threefry
from jaxinit.contract import initializer, runtime_value
from jaxinit.core import (
    Array,
    DTypeLike,
    Initializer,
    check_real,
    is_traced,
    largest_finite,
    normal_max_abs,
    runtime_check,
)

__all__ = [
    "normal",
    "normal_named",
    "symmetric_uniform",
    "truncated_normal",
    "truncated_standard_normal",
    "uniform",
    "uniform_range",
]


def _key(*options: Any) -> tuple[Any, ...] | None:
    """A cache key of the options, or ``None`` when one of them is traced."""
    return None if any(is_traced(o) for o in options) else options


def normal(stddev: float = 1e-2, dtype: DTypeLike | None = None, *, mean: float = 0.0
           ) -> Initializer:
    """Builds an initializer drawing from N(mean, stddev²).

    With the default ``mean=0`` the values equal ``jax.nn.initializers.normal``'s
    for the same key (float32/float64). For complex dtypes the real and
    imaginary parts each have variance ``stddev²/2`` (so ``E|w|² = stddev²``).
    ``stddev`` and ``mean`` may be traced (arguments of your ``jax.jit``).

    Args:
      stddev: standard deviation, > 0: 0.01 for "small random numbers";
        RBMs use 0.1 or 0.01 (Hinton 2010).
      dtype: the initializer's default dtype.
      mean: the mean (real).

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.normal(0.1)(jax.random.key(0), (256, 256))
      >>> bool(abs(w.std() - 0.1) < 0.002)
      True
    """
    return normal_named("jaxinit.normal", stddev, mean, dtype)


def normal_named(name: str, stddev: Any, mean: Any, dtype: DTypeLike | None) -> Initializer:
    """:func:`normal` with errors naming ``name`` (the factory the user called)."""
    stddev = check_real(name, "stddev", stddev, positive=True, traced=True)
    mean = check_real(name, "mean", mean, traced=True)

    def bound(dims: tuple[int, ...]) -> tuple[Any, str]:
        # The largest |z| depends on the dtype; take float64's (the wider) as the bound.
        return abs(mean) + stddev * normal_max_abs(np.dtype(np.float64)), \
            f"stddev={stddev!r}, mean={mean!r}"

    @initializer(name, dtype=dtype, bound=bound, cache_key=_key("normal", stddev, mean))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        w = draws.normal(key, shape, dtype, factor=stddev)
        if is_traced(mean) or mean != 0:
            w = w + jnp.asarray(mean, dtype)
        return w

    return init


def uniform(scale: float = 1e-2, dtype: DTypeLike | None = None) -> Initializer:
    """Builds an initializer drawing from U[0, scale) -- JAX's convention.

    Values equal ``jax.nn.initializers.uniform``'s for the same key. For the
    zero-mean U(-limit, limit), see :func:`symmetric_uniform`.

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.uniform(2.0)(jax.random.key(0), (1000,))
      >>> bool(w.min() >= 0 and w.max() < 2)
      True
    """
    name = "jaxinit.uniform"
    scale = check_real(name, "scale", scale, positive=True, traced=True)

    @initializer(name, dtype=dtype, allow_complex=False,
                 bound=lambda _: (scale, f"scale={scale!r}"), cache_key=_key("uniform", scale))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        return draws.uniform(key, shape, dtype, factor=scale)

    return init


def _uniform_range(name: str, low: Any, high: Any, dtype: DTypeLike | None) -> Initializer:
    if is_traced(low) or is_traced(high):
        runtime_check(jnp.asarray(low) < jnp.asarray(high),
                      f"{name}: low={{}} must be < high={{}}.", low, high)
    elif not low < high:
        raise ValueError(f"{name}: low={low!r} must be < high={high!r}.")

    def bound(dims: tuple[int, ...]) -> tuple[Any, str]:
        return jnp.maximum(abs(low), abs(high)) if is_traced(low) or is_traced(high) \
            else max(abs(low), abs(high)), f"low={low!r}, high={high!r}"

    traced = is_traced(low) or is_traced(high)

    @initializer(name, dtype=dtype, allow_complex=False, bound=bound,
                 cache_key=_key("uniform_range", low, high))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        if not traced and high - low <= largest_finite(dtype):
            return draws.uniform(key, shape, dtype, low, high)
        # high - low may overflow the dtype: interpolate instead of scaling U[0, 1) by it.
        u = draws.uniform(key, shape, dtype)
        return jnp.asarray(low, dtype) * (1 - u) + jnp.asarray(high, dtype) * u

    return init


def uniform_range(low: float, high: float, dtype: DTypeLike | None = None) -> Initializer:
    """Builds an initializer drawing from U[low, high).

    Mean ``(low + high) / 2``, variance ``(high - low)² / 12``. The bounds may
    be traced (arguments of your ``jax.jit``).

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.uniform_range(-0.5, 0.25)(jax.random.key(0), (1000,))
      >>> bool(w.min() >= -0.5 and w.max() < 0.25)
      True
    """
    name = "jaxinit.uniform_range"
    low = check_real(name, "low", low, traced=True)
    high = check_real(name, "high", high, traced=True)
    return _uniform_range(name, low, high, dtype)


def symmetric_uniform(limit: float = 1e-2, dtype: DTypeLike | None = None) -> Initializer:
    """Builds an initializer drawing from U(-limit, limit): std ``limit / sqrt(3)``.

    Glorot's tanh init is of this form with ``limit = sqrt(6 / (fan_in + fan_out))``
    (see :func:`glorot_uniform`, which computes the limit from the shape).

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.symmetric_uniform(0.05)(jax.random.key(0), (1000,))
      >>> bool(abs(w).max() < 0.05)
      True
    """
    name = "jaxinit.symmetric_uniform"
    limit = check_real(name, "limit", limit, positive=True, traced=True)
    return _uniform_range(name, -limit, limit, dtype)


def truncated_normal(
    stddev: float = 1e-2,
    dtype: DTypeLike | None = None,
    lower: float = -2.0,
    upper: float = 2.0,
) -> Initializer:
    """Builds an initializer drawing ``stddev * z``, z ~ N(0, 1) truncated to (lower, upper).

    As in JAX, ``stddev`` is the std of the distribution *before* truncation
    (the result's std is smaller: 0.8796 * stddev for the default (-2, 2));
    values equal ``jax.nn.initializers.truncated_normal``'s for the same key.
    Intervals in a far tail (``lower >= 3`` or ``upper <= -3``), where JAX's
    inversion of ``erf`` rounds to a few values (``(10, 11)`` gives the
    constant 10.999999), are sampled by inverting the tail probability in log
    space instead (:func:`truncated_standard_normal`), exact to rounding.

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.truncated_normal(1.0)(jax.random.key(0), (1000,))
      >>> bool(abs(w).max() < 2)
      True
    """
    name = "jaxinit.truncated_normal"
    stddev = check_real(name, "stddev", stddev, positive=True, traced=True)
    lower = check_real(name, "lower", lower)
    upper = check_real(name, "upper", upper)
    if not lower < upper:
        raise ValueError(f"{name}: lower={lower!r} must be < upper={upper!r}.")

    def bound(dims: tuple[int, ...]) -> tuple[Any, str]:
        return stddev * max(abs(lower), abs(upper)), \
            f"stddev={stddev!r}, lower={lower!r}, upper={upper!r}"

    @initializer(name, dtype=dtype, allow_complex=False, bound=bound,
                 cache_key=_key("truncated_normal", stddev, lower, upper))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        return truncated_standard_normal(key, lower, upper, shape, dtype, factor=stddev)

    return init


#: Beyond this many standard deviations from 0, JAX's erf inversion loses resolution.
FAR_TAIL = 3.0
_NEWTON_STEPS = 6


def truncated_standard_normal(key: Array, lower: float, upper: float, shape: tuple[int, ...],
                              dtype: np.dtype, factor: Any = None) -> Array:
    """N(0, 1) truncated to ``(lower, upper)``, exact in far tails too; times ``factor``.

    Intervals that reach within :data:`FAR_TAIL` of 0 use
    ``jax.random.truncated_normal`` (the same bits as JAX). A far-tail interval
    ``a < x < b`` (mirrored when ``upper <= -FAR_TAIL``) inverts the survival
    function ``Q(x) = Q(a) - u·(Q(a) - Q(b))``, ``u ~ U[0, 1)``, in log space:
    ``log Q`` comes from ``log_ndtr`` (accurate at any depth, e.g. ``log Q(40) ≈ -804``),
    and ``x`` from Newton's method on ``log Q(x) = t`` started at the asymptote
    ``x² ≈ -2t - log(-4πt)``; six steps reach float64 rounding.
    """
    # Elementwise, so drawn flat and cut from a shared size when eager (see jaxinit.draws).
    return draws.fit(_truncated_standard_normal(key, lower, upper, draws.draw_shape(key, shape),
                                                dtype), shape, factor)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _truncated_standard_normal(key: Array, lower: float, upper: float,
                               shape: tuple[int, ...], dtype: np.dtype) -> Array:
    if lower < FAR_TAIL and upper > -FAR_TAIL:
        return threefry.truncated_normal(key, runtime_value(lower, dtype),
                                         runtime_value(upper, dtype), shape, dtype)
    sign = 1.0 if lower >= FAR_TAIL else -1.0
    a, b = (lower, upper) if sign > 0 else (-upper, -lower)
    log_qa = log_ndtr(-runtime_value(a, dtype))
    log_qb = log_ndtr(-runtime_value(b, dtype))
    u = threefry.uniform(key, shape, dtype)
    target = log_qa + jnp.log1p(u * jnp.expm1(log_qb - log_qa))
    x = jnp.sqrt(jnp.maximum(-2 * target - jnp.log(jnp.maximum(-4 * math.pi * target, 1.0)), 0))
    x = jnp.clip(x, a, b)
    for _ in range(_NEWTON_STEPS):
        log_q = log_ndtr(-x)
        slope = -jnp.exp(-0.5 * x * x - 0.5 * math.log(2 * math.pi) - log_q)  # d log Q / dx
        x = jnp.clip(x - (log_q - target) / slope, a, b)
    return sign * x
