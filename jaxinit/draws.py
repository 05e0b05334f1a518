"""JAX's random draws, compiled flat and shared between sizes when the call is eager.

The draws are :mod:`jaxinit.threefry`'s: JAX's numbers, bit for bit, from one
fused program. Threefry's numbers depend only on the key and each element's
row-major flat index (with ``jax_threefry_partitionable`` on or off), and
the normal, uniform and truncated normal transforms act elementwise, so the
flat draw reshaped is the same array, bit for bit. With
``jax_threefry_partitionable`` on (JAX's default), a number does not depend
on the draw's size either: an eager draw of at most :data:`SHARED_DRAW_LIMIT`
numbers is made for the next power of two, at least
:data:`SMALLEST_SHARED_DRAW`, and cut (:func:`fit`), so layers of many shapes share
one compiled draw (a program costs 0.08-0.1 s to compile on a 2-core CPU; JAX's own
draw, where a key of another kind or the flag off sends it, compiles in 0.1-0.2 s flat
and up to 1.1 s for a ``(3, 3, 4, 8)`` kernel's shape).

An eager call (a concrete key) has no caller's sharding to keep and draws
flat; a traced call draws in its shape, so that a sharding the caller puts on
the output still partitions the draw itself (a flat draw reshaped to a shape
sharded along an inner axis would be computed whole on every device).
Other key implementations (``rbg``) always draw in the shape.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import numpy as np

from jaxinit import threefry
from jaxinit.contract import scale_samples
from jaxinit.core import Array
from jaxinit.threefry import is_threefry

__all__ = ["SHARED_DRAW_LIMIT", "SMALLEST_SHARED_DRAW", "draw_shape", "fit",
           "is_eager_threefry", "normal", "power_of_two", "shares_draws", "size_class",
           "truncated_normal", "uniform"]

#: Eager draws of at most this many numbers come from programs shared by all
#: sizes up to the next power of two: below it the compile time saved
#: (0.1-0.2 s a program on CPU) outweighs drawing up to twice the numbers.
SHARED_DRAW_LIMIT = 1 << 22

#: Every eager draw of at most this many numbers comes from one program: drawing
#: 2¹⁴ numbers takes ~0.3 ms on a 2-core CPU, compiling a program for a smaller size
#: ~0.1 s, and models and tests have many small weights of distinct sizes.
SMALLEST_SHARED_DRAW = 1 << 14


def is_eager_threefry(key: Array) -> bool:
    """Whether ``key`` is concrete (an eager call) and makes threefry numbers."""
    return (not isinstance(key, jax.core.Tracer)
            and is_threefry(key))


def power_of_two(count: int) -> int:
    """The smallest power of two ``>= count`` (at least 1)."""
    return 1 << max(count - 1, 0).bit_length()


def size_class(count: int) -> int:
    """The size an eager draw of ``count`` numbers is made for: :func:`power_of_two`,
    at least :data:`SMALLEST_SHARED_DRAW`."""
    return max(power_of_two(count), SMALLEST_SHARED_DRAW)


def shares_draws(key: Array, count: int) -> bool:
    """Whether a draw of ``count`` numbers may be cut from a draw of :func:`size_class`."""
    return (count <= SHARED_DRAW_LIMIT and is_eager_threefry(key)
            and jax.config.jax_threefry_partitionable)  # type: ignore[attr-defined]


def draw_shape(key: Array, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape to draw ``shape``'s numbers in (then :func:`fit` to ``shape``).

    ``(size_class(size),)`` where :func:`shares_draws`, else ``(size,)`` for an
    eager threefry key, else ``shape``.
    """
    size = math.prod(shape)
    if shares_draws(key, size):
        return (size_class(size),)
    return (size,) if is_eager_threefry(key) else shape


def fit(draw: Array, shape: tuple[int, ...], factor: Any = None) -> Array:
    """``shape``'s numbers out of a draw made in :func:`draw_shape`, times ``factor``.

    The product is :func:`~jaxinit.contract.scale_samples`'s, taken before the
    cut so that it too is compiled once per size class.
    """
    if factor is not None:
        draw = scale_samples(draw, factor)
    return draw if draw.shape == shape else _take(draw, shape)


@functools.partial(jax.jit, static_argnums=1)
def _take(flat: Array, shape: tuple[int, ...]) -> Array:
    return flat[:math.prod(shape)].reshape(shape)


def normal(key: Array, shape: tuple[int, ...], dtype: np.dtype, factor: Any = None) -> Array:
    """``jax.random.normal(key, shape, dtype)``, times ``factor`` (:func:`scale_samples`)."""
    return fit(threefry.normal(key, draw_shape(key, shape), dtype), shape, factor)


def uniform(key: Array, shape: tuple[int, ...], dtype: np.dtype, minval: Any = 0.0,
            maxval: Any = 1.0, factor: Any = None) -> Array:
    """``jax.random.uniform(key, shape, dtype, minval, maxval)`` (scalar bounds), times
    ``factor``."""
    return fit(threefry.uniform(key, draw_shape(key, shape), dtype, minval, maxval), shape,
               factor)


def truncated_normal(key: Array, lower: Any, upper: Any, shape: tuple[int, ...],
                     dtype: np.dtype, factor: Any = None) -> Array:
    """``jax.random.truncated_normal(key, lower, upper, shape, dtype)`` (scalar bounds), times
    ``factor``."""
    return fit(threefry.truncated_normal(key, lower, upper, draw_shape(key, shape), dtype),
               shape, factor)
