"""Scaling any initializer: ``factor · init``, computed before the one cast."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxinit.contract import base_default_dtype, initializer, scale_samples
from jaxinit.core import Array, Initializer, check_callable, check_real

__all__ = ["scaled"]


def scaled(init: Initializer, factor: float, *, name: str = "jaxinit.scaled") -> Initializer:
    """Builds an initializer returning ``factor · init(key, shape, dtype)``.

    Multiplying by ``factor`` multiplies the std by ``|factor|`` and the
    variance by ``factor²``; the distribution's shape is unchanged. For 16-bit
    and float8 dtypes, ``init`` is called in float32 and the product is cast
    once, so the result is the correctly rounded scaled sample. Without a
    dtype the result has ``init``'s default dtype.

    Args:
      init: any initializer.
      factor: a finite real, != 0 (use :func:`jaxinit.residual_zero` for zeros).
      name: the name errors give (for factories built on this one).

    Example:
      >>> import jax, jaxinit
      >>> jaxinit.scaled(jaxinit.ones, 0.5)(jax.random.key(0), (2,)).tolist()
      [0.5, 0.5]
    """
    check_callable(name, "init", init)
    factor = check_real(name, "factor", factor)
    if factor == 0:
        raise ValueError(f"{name}: factor=0 zeroes the weights; use jaxinit.residual_zero.")
    base_bound = getattr(init, "bound", None)

    def bound(dims: tuple[int, ...]) -> tuple[Any, str]:
        if base_bound is None:  # a foreign initializer: only the factor itself is known
            return abs(factor), f"factor={factor!r}"
        base_max, options = base_bound(dims)
        return abs(factor) * base_max, f"factor={factor!r} times the base's {options}"

    @initializer(name, dtype=base_default_dtype(init), bound=bound)
    def scaled_init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        return scale_samples(init(key, shape, dtype), factor)

    return scaled_init
