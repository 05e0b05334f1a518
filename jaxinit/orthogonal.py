"""Haar-distributed (semi-)orthogonal initializers, batched, blocked and shardable.

:func:`orthogonal` forms matrices from a weight shape, asks a sampler
(:data:`jaxinit.haar.Sampler`) for Haar matrices with orthonormal columns, one
per key, and puts them back in place. :data:`SAMPLERS` maps each ``method``
name to its sampler; the samplers live in the kernel modules
(:mod:`jaxinit.haar`, :mod:`jaxinit.householder`,
:mod:`jaxinit.orthogonal_recipes`).

Keys: a single matrix is drawn from the key itself (so ``method="qr"`` gives
the bits of ``jax.nn.initializers.orthogonal``); matrix ``i`` of a stack (the
``batch_axis`` slices and ``num_blocks`` blocks, in row-major order) from
``jax.random.fold_in(key, i)`` (:func:`jaxinit.haar.slice_keys`), so it does
not depend on the size of the stack. Under a user's ``jax.vmap`` the call
becomes one batched sampler call on the stacked keys
(:func:`jaxinit.haar.haar_matrices`), and no program issues a batched LAPACK
call, which can deadlock on CPU (jaxlib 0.10).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from jaxinit import orthogonal_recipes
from jaxinit.contract import initializer, scale_samples
from jaxinit.core import (
    Array,
    AxisLike,
    DTypeLike,
    Initializer,
    check_axes,
    check_choice,
    check_disjoint,
    check_int,
    check_real,
    is_traced,
    normalize_axes,
)
from jaxinit.haar import Sampler, haar_matrices, qr_sampler, slice_keys, typed_keys
from jaxinit.householder import householder_sampler
from jaxinit.sharding import constrain

__all__ = ["SAMPLERS", "auto_method", "orthogonal"]

#: Method name -> sampler. Every entry is exact (Haar); one line adds a method.
SAMPLERS: dict[str, Sampler] = {
    "qr": qr_sampler,
    "householder": householder_sampler,
    "gram_schmidt": orthogonal_recipes.gram_schmidt_sampler,
    "svd": orthogonal_recipes.svd_sampler,
    "cholesky_qr2": orthogonal_recipes.cholesky_qr2_sampler,
    "polar": orthogonal_recipes.polar_sampler,
}

#: On CPU, matrices with at most this many columns (their smaller side) are
#: made by LAPACK's QR: for one call, compile plus run, it is cheaper than the
#: Householder accumulation there (benchmarks/first_call.py).
CPU_QR_MAX_COLUMNS = 64


def auto_method(n: int, m: int, backend: str | None = None) -> str:
    """The method ``method="auto"`` picks for ``n × m`` matrices (``n >= m``).

    ``"qr"`` on CPU for at most :data:`CPU_QR_MAX_COLUMNS` columns, where one
    small LAPACK call is cheapest; ``"householder"`` otherwise and on every
    other backend (there its matrix products are what accelerators run
    fastest). The rule does not look at the number of matrices, so a slice of
    a stack, a vmapped call and a single call use the same method.
    """
    del n
    backend = backend or jax.default_backend()
    if backend == "cpu" and m <= CPU_QR_MAX_COLUMNS:
        return "qr"
    return "householder"


@functools.partial(
    jax.jit,
    static_argnames=("dims", "column_axis", "batch_axes", "num_blocks", "method", "dtype",
                     "sharding"),
)
def _orthogonal_array(key: Array, scale: Array, *, dims: tuple[int, ...], column_axis: int,
                      batch_axes: tuple[int, ...], num_blocks: int, method: str,
                      dtype: np.dtype, sharding: NamedSharding | None) -> Array:
    """Scaled Haar matrices laid out in ``dims``, computed in ``dtype``."""
    row_axes = tuple(a for a in range(len(dims)) if a != column_axis and a not in batch_axes)
    batch_dims = tuple(dims[a] for a in batch_axes)
    row_dims = tuple(dims[a] for a in row_axes)
    rows, cols = math.prod(row_dims), dims[column_axis] // num_blocks
    # With blocks, the block index is one more batch axis (kept out otherwise,
    # so that a plain matrix is drawn exactly as JAX draws it).
    batch_shape = batch_dims + ((num_blocks,) if num_blocks > 1 else ())
    tall, short = max(rows, cols), min(rows, cols)
    if method == "auto":
        method = auto_method(tall, short)
    keys = typed_keys(key)
    if batch_shape:
        keys = slice_keys(keys, batch_shape)
    q = haar_matrices(SAMPLERS[method], keys, tall, short, dtype)
    if rows < cols:
        q = jnp.swapaxes(q, -1, -2)  # a wide matrix: orthonormal rows
    if sharding is not None:
        # Shard the samples along the batch axes as the output will be: the
        # partitioner then gives each device only its own slices to compute.
        entries = tuple(sharding.spec) + (None,) * (len(dims) - len(sharding.spec))
        inner = tuple(entries[a] for a in batch_axes) + (None,) * (q.ndim - len(batch_axes))
        q = constrain(q, sharding, inner)
    if num_blocks > 1:
        q = jnp.moveaxis(q, -3, -2)  # (*batch, rows, block, cols)
    q = q.reshape(*batch_dims, *row_dims, dims[column_axis])
    q = jnp.transpose(q, tuple(int(a) for a in np.argsort((*batch_axes, *row_axes, column_axis))))
    return scale_samples(q, scale)


def orthogonal(
    scale: float = 1.0,
    column_axis: int = -1,
    dtype: DTypeLike | None = None,
    *,
    batch_axis: AxisLike = (),
    method: str = "auto",
    num_blocks: int | None = None,
) -> Initializer:
    r"""Builds an initializer of Haar-distributed (semi-)orthogonal matrices times ``scale``.

    The weight is read as matrices ``W`` of shape ``rows × cols``: ``column_axis``
    holds the columns, every other axis except ``batch_axis`` is flattened into
    the rows (a conv kernel ``(kh, kw, c_in, c_out)`` is ``kh·kw·c_in × c_out``).
    Square and tall matrices get orthonormal columns, ``WᵀW = scale²·I``; wide
    ones orthonormal rows, ``WWᵀ = scale²·I`` (the transpose of a tall draw).
    ``W`` is distributed as ``scale·Q`` with ``Q`` Haar on the orthogonal group
    (unitary for complex dtypes), or its first columns: the ``Q`` of the QR of
    a Gaussian matrix after Mezzadri's correction (columns multiplied by the
    sign, or phase, of ``diag(R)``); orthogonal initialization after Saxe et
    al. 2014, "Exact solutions to the nonlinear dynamics of learning in deep
    linear neural networks"; Mezzadri 2007, Notices AMS 54(5).

    * ``batch_axis``: every slice along these axes is an independent matrix
      (a stack of recurrent kernels ``(layers, h, h)``).
    * ``num_blocks=k``: the column axis is cut into ``k`` equal contiguous
      blocks, each an independent orthogonal matrix: fused gate kernels. Flax
      ``nnx.OptimizedLSTMCell`` holds its recurrent kernel as one ``(h, 4h)``
      array with gates ``i, f, g, o`` in that column order (``num_blocks=4``)
      and ``nnx.GRUCell`` one ``(h, 3h)`` array with ``r, z, n``
      (``num_blocks=3``); ``nnx.LSTMCell`` and all linen cells (``LSTMCell``,
      ``OptimizedLSTMCell``, ``GRUCell``) keep one ``(h, h)`` kernel per gate,
      each initialized separately, which needs no ``num_blocks``.

    Methods (all exact, all Haar):

    * ``"qr"``: QR of a Gaussian matrix; for every shape and float32/float64/
      complex dtype that ``jax.nn.initializers.orthogonal(scale, column_axis)``
      accepts, the same bits for the same key. Slices of a batch are mapped
      one QR at a time (one batched LAPACK QR could deadlock with others).
    * ``"householder"``: draws the Householder reflectors of a Gaussian matrix
      directly and only accumulates them, in compact-WY blocks, so almost all
      work is large matrix products (:mod:`jaxinit.householder`): several
      times faster than ``"qr"`` for large or batched matrices, and no LAPACK.
    * ``"gram_schmidt"``, ``"svd"`` (the classic recipes), ``"cholesky_qr2"``
      and ``"polar"`` (matrix-product methods for accelerators, with a checked
      orthogonality bound): see :mod:`jaxinit.orthogonal_recipes`.
    * ``"auto"`` (default): :func:`auto_method`: on CPU, ``"qr"`` for at most
      8 matrices of at most 64 columns (their smaller side), else
      ``"householder"``; ``"householder"`` on GPU/TPU.

    16-bit dtypes are computed in float32 and cast once. With ``out_sharding``
    the result is sharded as asked with the values of the unsharded call; with
    ``"householder"`` a sharding along ``batch_axis`` splits the work, each
    device computing only its own slices.

    Args:
      scale: multiplies the matrices.
      column_axis: the axis holding the columns.
      dtype: the initializer's default dtype.
      batch_axis: axis or axes indexing independent matrices.
      method: ``"auto"`` or a key of :data:`SAMPLERS`.
      num_blocks: split the column axis into this many independent blocks.

    Example:
      >>> import jax, jax.numpy as jnp, jaxinit
      >>> init = jaxinit.orthogonal(batch_axis=0)
      >>> w = init(jax.random.key(0), (4, 256, 256))
      >>> bool(jnp.allclose(w[2].T @ w[2], jnp.eye(256), atol=1e-5))
      True
    """
    name = "jaxinit.orthogonal"
    scale = check_real(name, "scale", scale, traced=True)
    column_axis = check_int(name, "column_axis", column_axis)
    batch_axes = check_axes(name, "batch_axis", batch_axis)  # kept as written for messages
    check_choice(name, "method", method, ("auto", *SAMPLERS))
    blocks = 1 if num_blocks is None else check_int(name, "num_blocks", num_blocks, minimum=1)

    def layout(dims: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
        col = normalize_axes(name, "column_axis", column_axis, len(dims))[0]
        batch = tuple(sorted(normalize_axes(name, "batch_axis", batch_axis, len(dims))))
        check_disjoint(name, column_axis=(col,), batch_axis=batch)
        if len(dims) - len(batch) < 2:
            raise ValueError(
                f"{name}: batch_axis={batch_axis!r} leaves no row axis in shape={dims}; "
                "accepted: at most rank - 2 batch axes."
            )
        if dims[col] % blocks:
            raise ValueError(
                f"{name}: num_blocks={num_blocks} does not divide the column axis "
                f"(size {dims[col]}) of shape={dims}."
            )
        return col, batch

    def bound(dims: tuple[int, ...]) -> tuple[Any, str]:
        return abs(scale), f"scale={scale!r}"  # entries of an orthogonal matrix are <= 1

    @initializer(name, dtype=dtype, min_rank=2, check=layout, bound=bound, structured=True,
                 cache_key=None if is_traced(scale) else (
                     "orthogonal", scale, column_axis, batch_axes, method, blocks))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype,
             sharding: NamedSharding | None) -> Array:
        col, batch = layout(shape)
        return _orthogonal_array(key, scale, dims=shape, column_axis=col, batch_axes=batch,
                                 num_blocks=blocks, method=method, dtype=dtype,
                                 sharding=sharding)

    return init
