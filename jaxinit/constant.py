"""Constant initializers: biases and fixed "extra parameters" (e.g. a conditional variance)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxinit.core import (
    Array,
    ArrayLike,
    DTypeLike,
    Initializer,
    OutSharding,
    Shape,
    check_key,
    check_shape,
    resolve_dtype,
)
from jaxinit.sharding import shardable

__all__ = ["constant", "ones", "zeros"]


def _full(name: str, key: Array, shape: Shape, dtype: DTypeLike | None, value: ArrayLike
          ) -> Array:
    # out_sharding never reaches here: @shardable lays the result out.
    check_key(name, key)
    dims = check_shape(name, shape)
    return jnp.full(dims, value, resolve_dtype(name, dtype))


@shardable("jaxinit.zeros", random=False)
def zeros(
    key: Array, shape: Shape, dtype: DTypeLike | None = None, out_sharding: OutSharding = None
) -> Array:
    """An initializer of zeros; ``key`` is ignored. The usual bias init.

    Example:
      >>> import jax, jaxinit
      >>> jaxinit.zeros(jax.random.key(0), (2,))
      Array([0., 0.], dtype=float32)
    """
    return _full("jaxinit.zeros", key, shape, dtype, 0)


@shardable("jaxinit.ones", random=False)
def ones(
    key: Array, shape: Shape, dtype: DTypeLike | None = None, out_sharding: OutSharding = None
) -> Array:
    """An initializer of ones; ``key`` is ignored. The usual scale init of a norm layer.

    Example:
      >>> import jax, jaxinit
      >>> jaxinit.ones(jax.random.key(0), (2,))
      Array([1., 1.], dtype=float32)
    """
    return _full("jaxinit.ones", key, shape, dtype, 1)


def constant(value: ArrayLike, dtype: DTypeLike | None = None) -> Initializer:
    """Builds an initializer that fills every entry with ``value``.

    Biases and extra parameters are "set to heuristically chosen constants"
    (Goodfellow et al. 2016, ch. 8.4), e.g. 0.01 for ReLU biases so every unit
    fires at the start. ``value`` may be a scalar or an array that broadcasts
    to the shape; it must be finite.

    Args:
      value: the fill value.
      dtype: the initializer's default dtype.

    Example:
      >>> import jax, jaxinit
      >>> jaxinit.constant(0.01)(jax.random.key(0), (3,))
      Array([0.01, 0.01, 0.01], dtype=float32)
    """
    as_array = np.asarray(value)
    if not np.issubdtype(as_array.dtype, np.number) or as_array.dtype == np.bool_:
        raise TypeError(f"jaxinit.constant: value={value!r} must be a number or numeric array.")
    if not np.all(np.isfinite(as_array)):
        raise ValueError(f"jaxinit.constant: value={value!r} must be finite (no NaN or inf).")
    default_dtype = dtype

    @shardable("jaxinit.constant", random=False)
    def init(
        key: Array,
        shape: Shape,
        dtype: DTypeLike | None = default_dtype,
        out_sharding: OutSharding = None,
    ) -> Array:
        return _full("jaxinit.constant", key, shape, dtype, value)

    return init
