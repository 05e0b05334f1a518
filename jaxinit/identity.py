"""Identity-like initializers: the identity matrix, the identity convolution and delta-orthogonal.

* :func:`identity` (alias :func:`eye`): ``scale · I`` -- the IRNN recurrent
  kernel (Le, Jaitly & Hinton 2015), or ``0.01 · I``.
* :func:`dirac`: a convolution kernel that copies each input channel to the
  matching output channel (per group).
* :func:`delta_orthogonal`: a convolution kernel that is zero except its
  centre tap, an orthogonal matrix (Xiao et al. 2018).

Convolution kernels use Flax's layout ``(*spatial, in_features // groups,
out_features)`` (HWIO in 2D). The centre tap is at index ``(k - 1) // 2`` of
each spatial axis, the tap that XLA's ``"SAME"`` padding aligns with the
output position for stride 1 (it pads ``(k - 1) // 2`` before, ``k // 2``
after), so with ``padding="SAME"`` (stride 1, no dilation) these kernels act
as the per-position matrix for odd *and* even kernel sizes. With a dilation d
and an even k the padding is ``d(k - 1) // 2`` before, which no tap matches:
the output is then a shifted copy.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxinit.core import (
    Array,
    AxisLike,
    DTypeLike,
    Initializer,
    OutSharding,
    Shape,
    check_key,
    check_real_scalar,
    check_shape,
    compute_dtype,
    empty,
    normalize_axes,
    resolve_dtype,
)
from jaxinit.sharding import shardable

__all__ = ["delta_orthogonal", "dirac", "eye", "identity"]

_CONV_RANKS = (3, 4, 5)
_ANY_RANK = 1 << 30


def _iota(shape: tuple[int, ...], axis: int) -> Array:
    return lax.broadcasted_iota(jnp.int32, shape, axis)


def _centre_mask(shape: tuple[int, ...]) -> Array:
    """True at the centre tap ``(k - 1) // 2`` of every spatial axis (all but the last two)."""
    mask = jnp.ones(shape, bool)
    for axis, k in enumerate(shape[:-2]):
        mask = mask & (_iota(shape, axis) == (k - 1) // 2)
    return mask


def _check_conv_shape(name: str, shape: Shape) -> tuple[int, ...]:
    dims = check_shape(name, shape)
    if len(dims) not in _CONV_RANKS:
        raise ValueError(
            f"{name}: shape={dims} has rank {len(dims)}; accepted: a 1D, 2D or 3D convolution "
            "kernel of rank 3, 4 or 5, laid out (*spatial, in_features, out_features)."
        )
    return dims


def identity(
    scale: float = 1.0, dtype: DTypeLike | None = None, *, batch_axis: AxisLike = ()
) -> Initializer:
    """Builds an initializer returning ``scale`` times the identity matrix.

    ``W[i, j] = scale`` if ``i == j`` else 0. The IRNN recurrent kernel is
    ``identity()`` (with ReLU units and zero biases; Le, Jaitly & Hinton
    2015); its small variant is ``identity(0.01)``. A rectangular shape gets
    ones on its main diagonal ``i == j < min(rows, cols)`` and zeros
    elsewhere (``jnp.eye(rows, cols)``): a tall matrix has orthonormal
    columns, a wide one orthonormal rows.

    Args:
      scale: the diagonal value (real, finite).
      dtype: the initializer's default dtype.
      batch_axis: axes indexing a stack of matrices, each the identity, e.g.
        ``batch_axis=0`` for a ``(layers, h, h)`` stack. The shape must have
        exactly two axes besides these; other ranks raise ``ValueError``.

    Example:
      >>> import jax, jaxinit
      >>> jaxinit.identity(0.5)(jax.random.key(0), (2, 3))
      Array([[0.5, 0. , 0. ],
             [0. , 0.5, 0. ]], dtype=float32)
    """
    name = "jaxinit.identity"
    scale = check_real_scalar(name, "scale", scale)
    # Types and repeats are checked now; the range once the rank is known.
    normalize_axes(name, "batch_axis", batch_axis, _ANY_RANK)
    if not isinstance(batch_axis, int):
        batch_axis = tuple(batch_axis)
    resolve_dtype(name, dtype)
    default_dtype = dtype

    @shardable(name, random=False)
    def init(
        key: Array,
        shape: Shape,
        dtype: DTypeLike | None = default_dtype,
        out_sharding: OutSharding = None,  # handled by @shardable
    ) -> Array:
        check_key(name, key)
        dims = check_shape(name, shape)
        out_dtype = resolve_dtype(name, dtype)
        batch = normalize_axes(name, "batch_axis", batch_axis, len(dims))
        matrix_axes = [a for a in range(len(dims)) if a not in batch]
        if len(matrix_axes) != 2:
            raise ValueError(
                f"{name}: shape={dims} with batch_axis={batch_axis!r} leaves "
                f"{len(matrix_axes)} matrix axes; accepted: exactly 2 (a matrix, or a stack "
                "of matrices with the stacking axes in batch_axis). For a convolution "
                "kernel use jaxinit.dirac."
            )
        if math.prod(dims) == 0:
            return empty(dims, out_dtype, None)
        rows, cols = (_iota(dims, a) for a in matrix_axes)
        cdt = compute_dtype(out_dtype)
        return jnp.where(rows == cols, jnp.asarray(scale, cdt), 0).astype(out_dtype)

    return init


#: Alias of :func:`identity`.
eye = identity


def dirac(groups: int = 1, scale: float = 1.0, dtype: DTypeLike | None = None) -> Initializer:
    """Builds an initializer of identity convolution kernels (per group).

    For a kernel of shape ``(*spatial, c, out)`` -- the kernel of a Flax
    ``nn.Conv(features=out, feature_group_count=groups)`` with
    ``in_features = groups · c`` -- output channels form ``groups`` blocks of
    ``p = out // groups``, block g reading input channels ``g·c .. g·c + c - 1``.
    The kernel is zero except at the centre tap, where
    ``W[centre, j, g·p + j] = scale`` for every group g and ``j < min(c, p)``:
    output channel ``g·p + j`` copies input channel ``g·c + j``. With
    ``c == p`` (``out == in_features``) the convolution with ``padding="SAME"``
    and stride 1 is exactly ``scale`` times the identity; with ``p > c`` the
    extra outputs of each group are zero, with ``p < c`` inputs ``j >= p`` of
    each group are dropped. Centre tap and even kernel sizes: see the module
    docstring.

    Args:
      groups: the ``feature_group_count`` of the convolution, >= 1; the
        kernel's last axis (out) must be a multiple of it.
      scale: the value of the copied taps.
      dtype: the initializer's default dtype.

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.dirac()(jax.random.key(0), (3, 3, 2, 2))
      >>> w[1, 1]
      Array([[1., 0.],
             [0., 1.]], dtype=float32)
    """
    name = "jaxinit.dirac"
    if isinstance(groups, bool) or not isinstance(groups, int | np.integer):
        raise TypeError(f"{name}: groups={groups!r} must be an int >= 1.")
    if groups < 1:
        raise ValueError(f"{name}: groups={groups!r} must be an int >= 1.")
    groups = int(groups)
    scale = check_real_scalar(name, "scale", scale)
    resolve_dtype(name, dtype)
    default_dtype = dtype

    @shardable(name, random=False)
    def init(
        key: Array,
        shape: Shape,
        dtype: DTypeLike | None = default_dtype,
        out_sharding: OutSharding = None,  # handled by @shardable
    ) -> Array:
        check_key(name, key)
        dims = _check_conv_shape(name, shape)
        out_dtype = resolve_dtype(name, dtype)
        out = dims[-1]
        if out % groups:
            raise ValueError(
                f"{name}: shape={dims} has {out} output channels (last axis), not a multiple "
                f"of groups={groups}; accepted: out_features divisible by groups."
            )
        if math.prod(dims) == 0:
            return empty(dims, out_dtype, None)
        per_group_out = out // groups
        rank = len(dims)
        j_in = _iota(dims, rank - 2)
        j_out = _iota(dims, rank - 1) % per_group_out
        taps = _centre_mask(dims) & (j_in == j_out)
        cdt = compute_dtype(out_dtype)
        return jnp.where(taps, jnp.asarray(scale, cdt), 0).astype(out_dtype)

    return init


def delta_orthogonal(
    scale: float = 1.0, column_axis: int = -1, dtype: DTypeLike | None = None
) -> Initializer:
    """Builds an initializer of delta-orthogonal convolution kernels (Xiao et al. 2018).

    For a kernel of shape ``(*spatial, in, out)`` with ``in <= out``: zero
    except the centre tap, which is ``scale · H`` with H an ``(in, out)``
    Haar-distributed matrix with orthonormal rows. The convolution with
    ``padding="SAME"`` and stride 1 then maps each position's input vector x
    to ``scale · x H``, so ``‖conv(x)‖ = scale·‖x‖`` at every position -- the
    dynamical-isometry initialization that lets Xiao et al. train 10 000-layer
    plain CNNs. Centre tap and even kernel sizes: see the module docstring.

    Same values as ``jax.nn.initializers.delta_orthogonal(scale, column_axis,
    dtype)`` for the same key, shape and dtype (float32, float64, complex):
    H is ``jax.random.orthogonal`` drawn as JAX's ``orthogonal`` initializer
    draws it for the ``(in, out)`` matrix. Beyond JAX: ``out_sharding`` is
    accepted, and 16-bit dtypes are computed in float32 then cast.

    Args:
      scale: multiplies the orthogonal tap (real, finite).
      column_axis: the axis of the kernel holding the columns of the
        orthogonal matrix: ``-1`` (out, the default) or ``-2`` (in). As in
        JAX both give orthonormal rows when ``in <= out``.
      dtype: the initializer's default dtype.

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.delta_orthogonal()(jax.random.key(0), (3, 3, 4, 4))
      >>> bool(abs(w[1, 1] @ w[1, 1].T - jax.numpy.eye(4)).max() < 1e-5)
      True
    """
    name = "jaxinit.delta_orthogonal"
    scale = check_real_scalar(name, "scale", scale)
    if isinstance(column_axis, bool) or not isinstance(column_axis, int | np.integer):
        raise TypeError(f"{name}: column_axis={column_axis!r} must be an int (-1 or -2).")
    # A non-negative axis is checked against the kernel's rank when called.
    if column_axis < 0 and column_axis not in (-1, -2):
        raise ValueError(
            f"{name}: column_axis={column_axis!r} is not supported; accepted: -1 (out) or "
            "-2 (in), or the same axes counted from the front."
        )
    resolve_dtype(name, dtype)
    default_dtype = dtype

    @shardable(name)
    def init(
        key: Array,
        shape: Shape,
        dtype: DTypeLike | None = default_dtype,
        out_sharding: OutSharding = None,  # handled by @shardable
    ) -> Array:
        check_key(name, key)
        dims = _check_conv_shape(name, shape)
        out_dtype = resolve_dtype(name, dtype)
        rank = len(dims)
        axis = normalize_axes(name, "column_axis", int(column_axis), rank)[0]
        if axis < rank - 2:
            raise ValueError(
                f"{name}: column_axis={column_axis!r} is a spatial axis of shape={dims}; "
                "accepted: one of the last two axes (-2: in, -1: out)."
            )
        fan_in, fan_out = dims[-2], dims[-1]
        if fan_in > fan_out:
            raise ValueError(
                f"{name}: shape={dims} has in_features={fan_in} > out_features={fan_out}; "
                "accepted: in <= out (the centre tap must have orthonormal rows)."
            )
        if math.prod(dims) == 0:
            return empty(dims, out_dtype, None)
        cdt = compute_dtype(out_dtype)
        # JAX's orthogonal initializer on the 2D shape (in, out): the Q of an
        # (out, in) Gaussian, transposed when the columns are the out axis.
        if axis == rank - 1:
            tap = jax.random.orthogonal(key, fan_in, (), cdt, fan_out)
        else:
            tap = jax.random.orthogonal(key, fan_out, (), cdt, fan_in).T
        tap = jnp.asarray(scale, cdt) * tap
        centre = _centre_mask(dims)
        return jnp.where(centre, tap, jnp.zeros((), cdt)).astype(out_dtype)

    return init
