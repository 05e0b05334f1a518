"""Residual-depth helpers: start residual branches at (or near) the identity map.

In a residual network ``x ← x + F(x)`` stacked L times, the variance of x grows
with every branch it adds. Two remedies: make each branch start at zero, so
every block is the identity at initialization (zero-init of the branch's last
layer or norm scale: Goyal et al. 2017; Zhang et al. 2019, "Fixup"), or shrink
the branch outputs by ``1/sqrt(2·L)`` when each of L layers adds two residual
branches (attention and MLP; Radford et al. 2019, GPT-2), so the summed
variance stays O(1) in depth.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from jaxinit.core import (
    Array,
    DTypeLike,
    Initializer,
    OutSharding,
    Shape,
    check_key,
    check_real_scalar,
    check_shape,
    resolve_dtype,
)
from jaxinit.sharding import shardable
from jaxinit.variance_scaling import lecun_normal

__all__ = ["residual_projection", "residual_zero", "scaled"]


def scaled(init: Initializer, factor: float) -> Initializer:
    """Builds an initializer returning ``factor · init(key, shape, dtype)``.

    Multiplying by ``factor`` multiplies the std by ``|factor|`` and the
    variance by ``factor²``; the distribution's shape is unchanged.

    Args:
      init: any initializer.
      factor: a finite real, != 0 (use :func:`residual_zero` for zeros).

    Example:
      >>> import jax, jaxinit
      >>> from jaxinit.residual import scaled
      >>> scaled(jaxinit.ones, 0.5)(jax.random.key(0), (2,)).tolist()
      [0.5, 0.5]
    """
    name = "jaxinit.scaled"
    if not callable(init):
        raise TypeError(f"{name}: init={init!r} must be an initializer (a callable).")
    factor = check_real_scalar(name, "factor", factor)
    if factor == 0:
        raise ValueError(f"{name}: factor=0 zeroes the weights; use jaxinit.residual_zero.")

    @shardable(name)
    def scaled_init(key: Array, shape: Shape, dtype: DTypeLike | None = None,
                    out_sharding: OutSharding = None) -> Array:
        # Without a dtype, the base keeps its own default dtype.
        w = init(key, shape) if dtype is None else init(key, shape, dtype)
        return w * jnp.array(factor, w.dtype)

    return scaled_init


def residual_projection(num_layers: int, base: Initializer | None = None, *,
                        branches_per_layer: int = 2) -> Initializer:
    """Builds an init for residual output projections: ``base`` scaled by ``1/sqrt(b·L)``.

    With ``L = num_layers`` blocks of ``b = branches_per_layer`` residual
    branches each (2 for a transformer: attention and MLP), the residual
    stream receives ``b·L`` independent additions; scaling each branch's
    output projection by ``1/sqrt(b·L)`` keeps their summed variance equal to
    that of one unscaled branch (Radford et al. 2019, GPT-2).

    Args:
      num_layers: L, an int >= 1.
      base: the unscaled initializer (default ``jaxinit.lecun_normal()``).
      branches_per_layer: b, an int >= 1.

    Example:
      >>> import jax, jaxinit
      >>> from jaxinit.residual import residual_projection
      >>> w = residual_projection(8, jaxinit.normal(0.02))(jax.random.key(0), (512, 512))
      >>> round(float(w.std()), 4)  # 0.02 / sqrt(16)
      0.005
    """
    name = "jaxinit.residual_projection"
    for arg_name, value in (("num_layers", num_layers), ("branches_per_layer", branches_per_layer)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {arg_name}={value!r} must be an int >= 1.")
    return scaled(lecun_normal() if base is None else base,
                  1.0 / math.sqrt(branches_per_layer * num_layers))


def residual_zero(dtype: DTypeLike | None = None) -> Initializer:
    """Builds the zero initializer for the last layer of a residual branch.

    With the branch's last kernel (or the scale of its last norm) at zero,
    every block ``x + F(x)`` is the identity at initialization; gradients
    still reach it, since the layer's input is non-zero (Goyal et al. 2017;
    Zhang et al. 2019). Only for the *last* layer of a branch: a zero kernel
    earlier in the branch would give zero gradients to the layers before it.

    Example:
      >>> import jax
      >>> from jaxinit.residual import residual_zero
      >>> residual_zero()(jax.random.key(0), (2, 2)).tolist()
      [[0.0, 0.0], [0.0, 0.0]]
    """
    name = "jaxinit.residual_zero"
    default_dtype = dtype

    @shardable(name, random=False)
    def init(key: Array, shape: Shape, dtype: DTypeLike | None = default_dtype,
             out_sharding: OutSharding = None) -> Array:
        check_key(name, key)
        dims = check_shape(name, shape)
        return jnp.zeros(dims, resolve_dtype(name, dtype))

    return init
