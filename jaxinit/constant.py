"""Constant initializers: biases and fixed "extra parameters" (e.g. a conditional variance)."""

from __future__ import annotations

import numbers
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxinit.contract import initializer
from jaxinit.core import (
    Array,
    ArrayLike,
    DTypeLike,
    Initializer,
    is_traced,
    runtime_check,
    show,
)

__all__ = ["constant", "filled", "ones", "ones_init", "zeros", "zeros_init"]


def filled(name: str, value: ArrayLike, dtype: DTypeLike | None) -> Initializer:
    """The initializer filling every entry with ``value``; errors name ``name``."""
    array: Any = _check_value(name, value)
    concrete = not is_traced(array)
    value_shape = np.shape(array)

    def check(dims: tuple[int, ...]) -> None:
        try:
            np.broadcast_shapes(value_shape, dims)
            if np.broadcast_shapes(value_shape, dims) != dims:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{name}: value of shape {value_shape} does not broadcast to shape={dims}; "
                "accepted: a scalar or an array that broadcasts to the shape."
            ) from None

    def bound(dims: tuple[int, ...]) -> tuple[object, str]:
        if concrete:
            return float(np.max(np.abs(array), initial=0.0)), f"value={show(value)}"
        return jnp.max(jnp.abs(array)), "value"

    is_complex_value = np.iscomplexobj(array) if concrete else jnp.iscomplexobj(array)

    # The value is rounded to the output dtype once (no float32 step for 16-bit dtypes).
    @initializer(name, dtype=dtype, random=False, check=check, bound=bound, in_output_dtype=True,
                 cache_key=(array.tobytes(), value_shape, array.dtype.str) if concrete else None)
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        del key
        if is_complex_value and not jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(
                f"{name}: value={value!r} is complex but dtype={np.dtype(dtype).name} is real; "
                "accepted: a complex dtype for a complex value."
            )
        return jnp.broadcast_to(jnp.asarray(array, dtype), shape)

    return init


def _check_value(name: str, value: Any) -> Any:
    """``value`` as a numpy array, or the tracer itself; raises for non-numeric or non-finite."""
    if is_traced(value):
        if not (jnp.issubdtype(value.dtype, jnp.number)):
            raise TypeError(f"{name}: value of dtype {value.dtype} must be numeric.")
        if jnp.issubdtype(value.dtype, jnp.inexact):
            runtime_check(jnp.all(jnp.isfinite(value)),
                          f"{name}: value must be finite (no NaN or inf); got {{}}.", value)
        return value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
        try:
            float(value)
        except OverflowError:
            raise ValueError(f"{name}: value={show(value)} must be finite and fit a "
                             "float64.") from None
    try:
        as_array = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: value={value!r} must be a number or a numeric array.") from err
    if not np.issubdtype(as_array.dtype, np.number) or as_array.dtype == np.bool_:
        raise TypeError(f"{name}: value={value!r} must be a number or a numeric array.")
    if not np.all(np.isfinite(as_array)):
        raise ValueError(f"{name}: value={value!r} must be finite (no NaN or inf).")
    return as_array


def constant(value: ArrayLike, dtype: DTypeLike | None = None) -> Initializer:
    """Builds an initializer that fills every entry with ``value``.

    Biases and extra parameters are "set to heuristically chosen constants"
    (Goodfellow et al. 2016, ch. 8.4), e.g. 0.01 for ReLU biases so every unit
    fires at the start. ``value`` may be a scalar or an array that broadcasts
    to the shape; it must be finite and fit the dtype. A traced ``value`` (an
    argument of your ``jax.jit``) is accepted, as in JAX, and checked when the
    program runs.

    Args:
      value: the fill value.
      dtype: the initializer's default dtype.

    Example:
      >>> import jax, jaxinit
      >>> jaxinit.constant(0.01)(jax.random.key(0), (3,))
      Array([0.01, 0.01, 0.01], dtype=float32)
    """
    return filled("jaxinit.constant", value, dtype)


def zeros_init() -> Initializer:
    """Builds the zeros initializer (Flax's ``nn.initializers.zeros_init``); same as :data:`zeros`.

    Example:
      >>> import jax, jaxinit
      >>> jaxinit.zeros_init()(jax.random.key(0), 2)
      Array([0., 0.], dtype=float32)
    """
    return zeros


def ones_init() -> Initializer:
    """Builds the ones initializer (Flax's ``nn.initializers.ones_init``); same as :data:`ones`.

    Example:
      >>> import jax, jaxinit
      >>> jaxinit.ones_init()(jax.random.key(0), 2)
      Array([1., 1.], dtype=float32)
    """
    return ones


#: An initializer of zeros; ``key`` is ignored. The usual bias init.
#:
#: >>> import jax, jaxinit
#: >>> jaxinit.zeros(jax.random.key(0), (2,))
#: Array([0., 0.], dtype=float32)
zeros: Initializer = filled("jaxinit.zeros", 0.0, None)

#: An initializer of ones; ``key`` is ignored. The usual scale init of a norm layer.
#:
#: >>> import jax, jaxinit
#: >>> jaxinit.ones(jax.random.key(0), (2,))
#: Array([1., 1.], dtype=float32)
ones: Initializer = filled("jaxinit.ones", 1.0, None)
