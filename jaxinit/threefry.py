"""JAX's threefry draws, bit for bit, as one elementwise program that XLA fuses.

``jax.random`` hashes a counter per element with Threefry-2x32 (Salmon et al.
2011, "Parallel random numbers: as easy as 1, 2, 3", SC'11). On CPU, JAX lowers
the hash's 20 rounds as a loop of five steps over whole arrays, which keeps its
programs small but writes and reads the arrays back at every step, and XLA
compiles that loop more slowly than the written-out rounds. Here the rounds are
written out as elementwise operations, so XLA fuses the counters, the hash and
the float transform into one pass. Measured with jax 0.10.2 on a 2-core AMD EPYC
(Zen 3), float32 normal draws: 3.3-4.8x faster warm from 1024² numbers up,
and 0.08-0.1 s to compile for any shape, against 0.16-0.19 s for flat draws
and up to 1.3 s for a ``(3, 3, 4, 8)`` kernel (``benchmarks/schemes.py``, and
``benchmarks/RESULTS.md``).

:func:`normal`, :func:`uniform` and :func:`truncated_normal` return what
``jax.random.normal``, ``uniform`` and ``truncated_normal`` return, bit for bit,
for a threefry key with ``jax_threefry_partitionable`` on (JAX's default): element
``i`` (row-major) of a draw hashes the counter ``(0, i)`` and keeps the xor of the
two output words (both words, for 64-bit numbers), then JAX's own arithmetic maps
the bits to floats. For any other key kind, with the flag off, for draws of
``2³²`` numbers or more, and for arguments JAX refuses, they call ``jax.random``
(which raises its own errors). :func:`fold_in` derives ``jax.random.fold_in``'s keys
the same way, for any number of indices at once.
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxinit.core import Array

__all__ = ["fold_in", "is_threefry", "normal", "threefry2x32", "truncated_normal", "typed_keys",
           "uniform"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_Draw = tuple[Array, tuple[int, ...], np.dtype]  # a draw's key, shape and dtype


def threefry2x32(k0: Array, k1: Array, x0: Array, x1: Array) -> tuple[Array, Array]:
    """The Threefry-2x32 block function, 20 rounds, as elementwise uint32 operations:
    the two output words for the key ``(k0, k1)`` and the counter ``(x0, x1)``, the
    same bits as JAX's ``threefry2x32``."""
    k2 = k0 ^ k1 ^ np.uint32(0x1BD11BDA)
    schedule = (k0, k1, k2)
    x0, x1 = x0 + k0, x1 + k1
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = ((x1 << np.uint32(r)) | (x1 >> np.uint32(32 - r))) ^ x0
        x0 = x0 + schedule[(i + 1) % 3]
        x1 = x1 + schedule[(i + 2) % 3] + np.uint32(i + 1)
    return x0, x1


def typed_keys(key: Array) -> Array:
    """``key`` as a typed key array (a legacy ``uint32`` key wrapped as JAX wraps it)."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)


def is_threefry(key: Array) -> bool:
    """Whether ``key`` (typed, or a legacy ``uint32`` key) is a threefry key."""
    return str(jax.random.key_impl(typed_keys(key))) == "threefry2x32"


def _fused(key: Any, shape: Any, dtype: Any, kind: Any) -> _Draw | None:
    """``(key, shape, dtype)`` canonicalized where this module computes the draw (one
    threefry key, ``dtype`` of ``kind``), else None: ``jax.random`` draws, and raises its own
    error for bad input."""
    try:
        key = typed_keys(key)
        shape = tuple(operator.index(d) for d in shape)
        dtype = np.dtype(jax.dtypes.canonicalize_dtype(dtype))  # 32-bit unless x64 is on
    except (AttributeError, TypeError, ValueError):
        return None
    if (key.shape != () or not jnp.issubdtype(dtype, kind) or min(shape, default=0) < 0
            or math.prod(shape) >= 1 << 32
            or not is_threefry(key)
            or not jax.config.jax_threefry_partitionable):  # type: ignore[attr-defined]
        return None
    return key, shape, dtype


def fold_in(key: Array, data: Any) -> Array:
    """``jax.random.fold_in(key, d)`` for each ``d`` of ``data`` (an int or an array of
    non-negative ints below 2³²), as keys of ``data``'s shape: for a threefry key, both
    output words of the hash of the counter ``(0, d)``, in one elementwise program."""
    key = typed_keys(key)
    data = jnp.asarray(data, jnp.uint32)
    if key.shape != () or not is_threefry(key):
        fold = jax.random.fold_in
        for _ in range(data.ndim):
            fold = jax.vmap(fold, (None, 0))
        return fold(key, data)
    return _fold_in(key, data)


def _hash(key: Array, counter: Array) -> tuple[Array, Array]:
    """The two words of the hash of ``(0, counter)`` under a threefry key."""
    words = jax.random.key_data(key)
    return threefry2x32(words[0], words[1], jnp.zeros_like(counter), counter)


@jax.jit
def _fold_in(key: Array, data: Array) -> Array:
    high, low = _hash(key, data)
    return jax.random.wrap_key_data(jnp.stack([high, low], axis=-1), impl="threefry2x32")


def _bits(key: Array, shape: tuple[int, ...], width: int) -> Array:
    """JAX's partitionable threefry bits of ``width`` (8, 16, 32 or 64) per element."""
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):  # row-major flat index, a sum of iotas
        index = index + lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride)
        stride *= shape[axis]
    high, low = _hash(key, index)
    if width == 64:
        return (high.astype(jnp.uint64) << np.uint64(32)) | low.astype(jnp.uint64)
    return (high ^ low).astype(f"uint{width}")


def _uniform_real(key: Array, shape: tuple[int, ...], dtype: np.dtype, minval: Any,
                  maxval: Any) -> Array:
    """JAX's uniform transform: the top mantissa bits under the exponent of 1.0, minus 1,
    scaled to ``[minval, maxval)`` and clamped below at ``minval``."""
    minval = lax.broadcast_to_rank(lax.convert_element_type(minval, dtype), len(shape))
    maxval = lax.broadcast_to_rank(lax.convert_element_type(maxval, dtype), len(shape))
    info = jnp.finfo(dtype)
    width = 8 if info.nmant < 8 else info.bits
    unsigned = np.dtype(f"uint{info.bits}")
    bits = _bits(key, shape, width).astype(unsigned)
    mantissa = lax.shift_right_logical(bits, jnp.array(width - info.nmant, unsigned))
    one = jnp.asarray(np.array(1.0, dtype).view(unsigned), dtype=unsigned)
    floats = lax.bitcast_convert_type(lax.bitwise_or(mantissa, one), dtype) - jnp.array(1.0, dtype)
    return lax.max(minval, floats * (maxval - minval) + minval)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _uniform(key: Array, minval: Array, maxval: Array, shape: tuple[int, ...],
             dtype: np.dtype) -> Array:
    return _uniform_real(key, shape, dtype, minval, maxval)


def _normal_real(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
    low = np.nextafter(np.array(-1.0, dtype), np.array(0.0, dtype), dtype=dtype)
    u = _uniform_real(key, shape, dtype, low, np.array(1.0, dtype))
    return lax.mul(np.array(np.sqrt(2), dtype), lax.erf_inv(u))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _normal(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
    if not jnp.issubdtype(dtype, jnp.complexfloating):
        return _normal_real(key, shape, dtype)
    # As JAX: real and imaginary parts from the two keys of a split, over sqrt(2). With
    # partitionable threefry, split(key)[i] is fold_in(key, i).
    real_key, imag_key = _fold_in(key, np.arange(2, dtype=np.uint32))
    part = np.dtype(np.array(0, dtype).real.dtype)
    real = _normal_real(real_key, shape, part).astype(dtype)
    imag = _normal_real(imag_key, shape, part).astype(dtype)
    return (real + 1j * imag) / np.array(np.sqrt(2), dtype)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _truncated_normal(key: Array, lower: Array, upper: Array, shape: tuple[int, ...],
                      dtype: np.dtype) -> Array:
    sqrt2 = np.array(np.sqrt(2), dtype)
    lower = lax.convert_element_type(lower, dtype)
    upper = lax.convert_element_type(upper, dtype)
    u = _uniform_real(key, shape, dtype, lax.erf(lower / sqrt2), lax.erf(upper / sqrt2))
    # Clamped to the open interval, as JAX does: rounding may reach a bound.
    return jnp.clip(sqrt2 * lax.erf_inv(u),
                    lax.nextafter(lax.stop_gradient(lower), np.array(np.inf, dtype)),
                    lax.nextafter(lax.stop_gradient(upper), np.array(-np.inf, dtype)))


def normal(key: Array, shape: tuple[int, ...], dtype: Any) -> Array:
    """``jax.random.normal(key, shape, dtype)`` (float or complex ``dtype``), bit for bit.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxinit import threefry
      >>> key = jax.random.key(0)
      >>> z = threefry.normal(key, (3, 4), jnp.float32)
      >>> bool((z == jax.random.normal(key, (3, 4), jnp.float32)).all())
      True
    """
    fused = _fused(key, shape, dtype, jnp.inexact)
    return jax.random.normal(key, shape, dtype) if fused is None else _normal(*fused)


def uniform(key: Array, shape: tuple[int, ...], dtype: Any, minval: Any = 0.0,
            maxval: Any = 1.0) -> Array:
    """``jax.random.uniform(key, shape, dtype, minval, maxval)`` (float ``dtype``)."""
    fused = _fused(key, shape, dtype, jnp.floating)
    if fused is None:
        return jax.random.uniform(key, shape, dtype, minval, maxval)
    key, shape, dtype = fused
    return _uniform(key, minval, maxval, shape, dtype)


def truncated_normal(key: Array, lower: Any, upper: Any, shape: tuple[int, ...],
                     dtype: Any) -> Array:
    """``jax.random.truncated_normal(key, lower, upper, shape, dtype)`` (float ``dtype``)."""
    fused = _fused(key, shape, dtype, jnp.floating)
    if fused is None:
        return jax.random.truncated_normal(key, lower, upper, shape, dtype)
    key, shape, dtype = fused
    return _truncated_normal(key, lower, upper, shape, dtype)
