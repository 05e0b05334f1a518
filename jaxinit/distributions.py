"""Fixed-scale random initializers: small Gaussian and uniform weights.

"Small random numbers" (``0.01 * randn``) and the RBM recipe (zero-mean
Gaussian, std 0.1 or 0.01; Hinton 2010) are ``normal(stddev)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxinit.core import (
    Array,
    DTypeLike,
    Initializer,
    OutSharding,
    Shape,
    check_key,
    check_real_scalar,
    check_shape,
    compute_dtype,
    empty,
    resolve_dtype,
)
from jaxinit.sharding import shardable

__all__ = ["normal", "symmetric_uniform", "truncated_normal", "uniform", "uniform_range"]


def _prepare(
    name: str, key: Array, shape: Shape, dtype: DTypeLike | None, *, allow_complex: bool
) -> tuple[tuple[int, ...], np.dtype, np.dtype]:
    check_key(name, key)
    dims = check_shape(name, shape)
    out_dtype = resolve_dtype(name, dtype, allow_complex=allow_complex)
    return dims, out_dtype, compute_dtype(out_dtype)


def normal(stddev: float = 1e-2, dtype: DTypeLike | None = None, *, mean: float = 0.0
           ) -> Initializer:
    """Builds an initializer drawing from N(mean, stddev²).

    With the default ``mean=0`` the values equal ``jax.nn.initializers.normal``'s
    for the same key (float32/float64). For complex dtypes the real and
    imaginary parts each have variance ``stddev²/2`` (so ``E|w|² = stddev²``).

    Args:
      stddev: standard deviation, > 0. The seeds' "small random numbers" use
        0.01; RBMs use 0.1 or 0.01 (Hinton 2010).
      dtype: the initializer's default dtype.
      mean: the mean (real).

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.normal(0.1)(jax.random.key(0), (256, 256))
      >>> bool(abs(w.std() - 0.1) < 0.002)
      True
    """
    stddev = check_real_scalar("jaxinit.normal", "stddev", stddev, positive=True)
    mean = check_real_scalar("jaxinit.normal", "mean", mean)
    default_dtype = dtype

    @shardable("jaxinit.normal")
    def init(key: Array, shape: Shape, dtype: DTypeLike | None = default_dtype,
             out_sharding: OutSharding = None) -> Array:  # handled by @shardable
        dims, out_dtype, cdt = _prepare("jaxinit.normal", key, shape, dtype, allow_complex=True)
        if 0 in dims:
            return empty(dims, out_dtype, None)
        w = jax.random.normal(key, dims, cdt) * jnp.array(stddev, cdt)
        if mean != 0:
            w = w + jnp.array(mean, cdt)
        return w.astype(out_dtype)

    return init


def uniform(scale: float = 1e-2, dtype: DTypeLike | None = None) -> Initializer:
    """Builds an initializer drawing from U[0, scale) -- JAX's convention.

    Values equal ``jax.nn.initializers.uniform``'s for the same key. For the
    zero-mean U(-limit, limit) the seeds use, see :func:`symmetric_uniform`.

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.uniform(2.0)(jax.random.key(0), (1000,))
      >>> bool(w.min() >= 0 and w.max() < 2)
      True
    """
    scale = check_real_scalar("jaxinit.uniform", "scale", scale, positive=True)
    default_dtype = dtype

    @shardable("jaxinit.uniform")
    def init(key: Array, shape: Shape, dtype: DTypeLike | None = default_dtype,
             out_sharding: OutSharding = None) -> Array:  # handled by @shardable
        dims, out_dtype, cdt = _prepare("jaxinit.uniform", key, shape, dtype, allow_complex=False)
        if 0 in dims:
            return empty(dims, out_dtype, None)
        w = jax.random.uniform(key, dims, cdt) * jnp.array(scale, cdt)
        return w.astype(out_dtype)

    return init


def uniform_range(low: float, high: float, dtype: DTypeLike | None = None) -> Initializer:
    """Builds an initializer drawing from U[low, high).

    Mean ``(low + high) / 2``, variance ``(high - low)² / 12``.

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.uniform_range(-0.5, 0.25)(jax.random.key(0), (1000,))
      >>> bool(w.min() >= -0.5 and w.max() < 0.25)
      True
    """
    name = "jaxinit.uniform_range"
    low = check_real_scalar(name, "low", low)
    high = check_real_scalar(name, "high", high)
    if not low < high:
        raise ValueError(f"{name}: low={low!r} must be < high={high!r}.")
    default_dtype = dtype

    @shardable(name)
    def init(key: Array, shape: Shape, dtype: DTypeLike | None = default_dtype,
             out_sharding: OutSharding = None) -> Array:  # handled by @shardable
        dims, out_dtype, cdt = _prepare(name, key, shape, dtype, allow_complex=False)
        if 0 in dims:
            return empty(dims, out_dtype, None)
        w = jax.random.uniform(key, dims, cdt, low, high)
        return w.astype(out_dtype)

    return init


def symmetric_uniform(limit: float = 1e-2, dtype: DTypeLike | None = None) -> Initializer:
    """Builds an initializer drawing from U(-limit, limit): std ``limit / sqrt(3)``.

    The seeds' uniform schemes are of this form, e.g. Glorot's tanh init with
    ``limit = sqrt(6 / (fan_in + fan_out))`` (see :func:`glorot_uniform`, which
    computes the limit from the shape).

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.symmetric_uniform(0.05)(jax.random.key(0), (1000,))
      >>> bool(abs(w).max() < 0.05)
      True
    """
    limit = check_real_scalar("jaxinit.symmetric_uniform", "limit", limit, positive=True)
    return uniform_range(-limit, limit, dtype)


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

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.truncated_normal(1.0)(jax.random.key(0), (1000,))
      >>> bool(abs(w).max() < 2)
      True
    """
    name = "jaxinit.truncated_normal"
    stddev = check_real_scalar(name, "stddev", stddev, positive=True)
    lower = check_real_scalar(name, "lower", lower)
    upper = check_real_scalar(name, "upper", upper)
    if not lower < upper:
        raise ValueError(f"{name}: lower={lower!r} must be < upper={upper!r}.")
    default_dtype = dtype

    @shardable(name)
    def init(key: Array, shape: Shape, dtype: DTypeLike | None = default_dtype,
             out_sharding: OutSharding = None) -> Array:  # handled by @shardable
        dims, out_dtype, cdt = _prepare(name, key, shape, dtype, allow_complex=False)
        if 0 in dims:
            return empty(dims, out_dtype, None)
        z = jax.random.truncated_normal(key, lower, upper, dims, cdt)
        return (z * jnp.array(stddev, cdt)).astype(out_dtype)

    return init
