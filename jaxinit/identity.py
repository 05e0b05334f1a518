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

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxinit.contract import initializer
from jaxinit.core import (
    Array,
    AxisLike,
    DTypeLike,
    Initializer,
    check_axes,
    check_int,
    check_real,
    is_traced,
    normalize_axes,
)
from jaxinit.orthogonal import orthogonal

__all__ = ["delta_orthogonal", "dirac", "eye", "identity"]

_CONV_RANKS = (3, 4, 5)


def _iota(shape: tuple[int, ...], axis: int) -> Array:
    return lax.broadcasted_iota(jnp.int32, shape, axis)


def _centre_mask(shape: tuple[int, ...]) -> Array:
    """True at the centre tap ``(k - 1) // 2`` of every spatial axis (all but the last two)."""
    mask = jnp.ones(shape, bool)
    for axis, k in enumerate(shape[:-2]):
        mask = mask & (_iota(shape, axis) == (k - 1) // 2)
    return mask


# One program per kernel shape: eager, the mask's ops would each compile on their own.
@functools.partial(jax.jit, static_argnums=1)
def _at_centre(tap: Array, shape: tuple[int, ...]) -> Array:
    """A ``shape`` kernel holding ``tap`` (in, out) at the centre tap, zero elsewhere."""
    return jnp.where(_centre_mask(shape), tap, jnp.zeros((), tap.dtype))


def _check_conv_rank(name: str, dims: tuple[int, ...]) -> None:
    if len(dims) not in _CONV_RANKS:
        raise ValueError(
            f"{name}: shape={dims} has rank {len(dims)}; accepted: a 1D, 2D or 3D convolution "
            "kernel of rank 3, 4 or 5, laid out (*spatial, in_features, out_features)."
        )


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
    scale = check_real(name, "scale", scale, traced=True)
    batch_axes = check_axes(name, "batch_axis", batch_axis)

    def matrix_axes(dims: tuple[int, ...]) -> list[int]:
        batch = normalize_axes(name, "batch_axis", batch_axes, len(dims))
        axes = [a for a in range(len(dims)) if a not in batch]
        if len(axes) != 2:
            raise ValueError(
                f"{name}: shape={dims} with batch_axis={batch_axis!r} leaves "
                f"{len(axes)} matrix axes; accepted: exactly 2 (a matrix, or a stack "
                "of matrices with the stacking axes in batch_axis). For a convolution "
                "kernel use jaxinit.dirac."
            )
        return axes

    @initializer(name, dtype=dtype, random=False, check=matrix_axes, in_output_dtype=True,
                 bound=lambda _: (abs(scale), f"scale={scale!r}"),
                 cache_key=None if is_traced(scale) else ("identity", scale, batch_axes))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        rows, cols = (_iota(shape, a) for a in matrix_axes(shape))
        return jnp.where(rows == cols, jnp.asarray(scale, dtype), jnp.zeros((), dtype))

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
    groups = check_int(name, "groups", groups, minimum=1)
    scale = check_real(name, "scale", scale, traced=True)

    def check(dims: tuple[int, ...]) -> None:
        _check_conv_rank(name, dims)
        if dims[-1] % groups:
            raise ValueError(
                f"{name}: shape={dims} has {dims[-1]} output channels (last axis), not a "
                f"multiple of groups={groups}; accepted: out_features divisible by groups."
            )

    @initializer(name, dtype=dtype, random=False, check=check, in_output_dtype=True,
                 bound=lambda _: (abs(scale), f"scale={scale!r}"),
                 cache_key=None if is_traced(scale) else ("dirac", groups, scale))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        rank = len(shape)
        j_in = _iota(shape, rank - 2)
        j_out = _iota(shape, rank - 1) % (shape[-1] // groups)
        taps = _centre_mask(shape) & (j_in == j_out)
        return jnp.where(taps, jnp.asarray(scale, dtype), jnp.zeros((), dtype))

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
    scale = check_real(name, "scale", scale, traced=True)
    column_axis = check_int(name, "column_axis", column_axis)
    # A non-negative axis is checked against the kernel's rank when called.
    if column_axis < 0 and column_axis not in (-1, -2):
        raise ValueError(
            f"{name}: column_axis={column_axis!r} is not supported; accepted: -1 (out) or "
            "-2 (in), or the same axes counted from the front."
        )

    def check(dims: tuple[int, ...]) -> None:
        _check_conv_rank(name, dims)
        rank = len(dims)
        axis = normalize_axes(name, "column_axis", column_axis, rank)[0]
        if axis < rank - 2:
            raise ValueError(
                f"{name}: column_axis={column_axis!r} is a spatial axis of shape={dims}; "
                "accepted: one of the last two axes (-2: in, -1: out)."
            )
        if dims[-2] > dims[-1]:
            raise ValueError(
                f"{name}: shape={dims} has in_features={dims[-2]} > out_features={dims[-1]}; "
                "accepted: in <= out (the centre tap must have orthonormal rows)."
            )

    @initializer(name, dtype=dtype, check=check,
                 bound=lambda _: (abs(scale), f"scale={scale!r}"),
                 cache_key=None if is_traced(scale) else ("delta_orthogonal", scale, column_axis))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        # JAX's delta_orthogonal is its orthogonal on the (in, out) matrix: "qr" gives its bits.
        axis = normalize_axes(name, "column_axis", column_axis, len(shape))[0] - len(shape)
        tap = orthogonal(scale, axis, method="qr")(key, shape[-2:], dtype)
        return _at_centre(tap, shape)

    return init
