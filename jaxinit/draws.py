"""JAX's random draws, compiled as a flat vector when the call is eager.

XLA's CPU compile time of a threefry draw depends on the shape it is
compiled for, not only on its size: measured with jax 0.10 (2-core AMD EPYC),
``jax.random.bits`` compiles in 1.1 s for a ``(3, 3, 4, 8)`` conv kernel,
0.33 s for ``(3, 3, 64, 64)``, 0.2 s for ``(6, 8)`` and 0.1 s for any flat
vector. Threefry's numbers depend only on the key and each element's
row-major flat index (with ``jax_threefry_partitionable`` on or off), and
the normal, uniform and truncated normal transforms act elementwise, so the
flat draw reshaped is the same array, bit for bit.

An eager call (a concrete key) has no caller's sharding to keep and draws
flat; a traced call draws in its shape, so that a sharding the caller puts on
the output still partitions the draw itself (a flat draw reshaped to a shape
sharded along an inner axis would be computed whole on every device).
Other key implementations (``rbg``) always draw in the shape.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from jaxinit.core import Array

__all__ = ["draw_shape", "is_eager_threefry", "normal", "truncated_normal", "typed_keys",
           "uniform"]


def typed_keys(key: Array) -> Array:
    """``key`` as a typed key array (a legacy ``uint32`` key wrapped as JAX wraps it)."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)


def is_eager_threefry(key: Array) -> bool:
    """Whether ``key`` is concrete (an eager call) and makes threefry numbers."""
    return (not isinstance(key, jax.core.Tracer)
            and str(jax.random.key_impl(typed_keys(key))) == "threefry2x32")


def draw_shape(key: Array, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape to draw ``shape``'s numbers in: ``(size,)`` for an eager threefry key."""
    return (math.prod(shape),) if len(shape) > 1 and is_eager_threefry(key) else shape


def normal(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
    """``jax.random.normal(key, shape, dtype)``."""
    return jax.random.normal(key, draw_shape(key, shape), dtype).reshape(shape)


def uniform(key: Array, shape: tuple[int, ...], dtype: np.dtype, minval: Any = 0.0,
            maxval: Any = 1.0) -> Array:
    """``jax.random.uniform(key, shape, dtype, minval, maxval)`` (scalar bounds)."""
    return jax.random.uniform(key, draw_shape(key, shape), dtype, minval, maxval).reshape(shape)


def truncated_normal(key: Array, lower: Any, upper: Any, shape: tuple[int, ...],
                     dtype: np.dtype) -> Array:
    """``jax.random.truncated_normal(key, lower, upper, shape, dtype)`` (scalar bounds)."""
    return jax.random.truncated_normal(key, lower, upper, draw_shape(key, shape),
                                       dtype).reshape(shape)
