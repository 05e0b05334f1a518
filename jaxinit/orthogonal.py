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
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxinit import householder, orthogonal_recipes
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
from jaxinit.gates import follow_cell
from jaxinit.haar import (
    DrawSampler,
    Sampler,
    eager_gaussians,
    haar_matrices,
    matrix_shape,
    qr_sampler,
    slice_keys,
    take_gaussians,
)
from jaxinit.sharding import auto_mesh, constrain
from jaxinit.threefry import typed_keys

__all__ = ["SAMPLERS", "auto_method", "orthogonal"]

#: Method name -> sampler. Every entry is exact (Haar); one line adds a method.
SAMPLERS: dict[str, Sampler] = {
    "qr": qr_sampler,
    "householder": DrawSampler(householder.draw_shape, householder.householder_matrices),
    "gram_schmidt": DrawSampler(matrix_shape, orthogonal_recipes.gram_schmidt),
    "svd": orthogonal_recipes.svd_sampler,
    "cholesky_qr2": DrawSampler(matrix_shape, orthogonal_recipes.cholesky_qr2),
    "polar": DrawSampler(matrix_shape, orthogonal_recipes.polar),
}

#: On CPU, matrices ``n × m`` with ``n·m² <= CPU_QR_MAX_WORK`` (up to
#: 2048 × 2048) are made by LAPACK's QR, one at a time; larger ones by the
#: Householder accumulation (on CPU one matrix at a time for a stack). Users
#: initialize once, and for one call -- compile plus run, what a model's set-up
#: pays -- QR is the cheaper up to this size: the Householder program takes
#: 0.5-0.9 s to compile, QR's about 0.2 s. Measured in fresh processes
#: (benchmarks/first_call.py, 2-core CPU, qr / householder wall): 1024² 0.51 /
#: 0.80 s, 2048² 0.97 / 1.61 s, 4096² 3.05 / 2.15 s, (4096, 512) 0.52 / 0.92 s;
#: stacks (64, 256, 256) 0.79 / 1.15 s, (8, 512, 512) 0.68 / 0.94 s,
#: (4, 1024, 1024) 0.89 / 1.05 s, (16, 1024, 1024) 1.74 / 1.30 s. Repeated
#: calls of one compiled program are faster with ``"householder"`` (~3x for a
#: matrix from 1024² on, ~2x for the (64, 256, 256) stack). The rule depends
#: on the matrix size only, so a larger stack starts with a smaller one's
#: matrices.
CPU_QR_MAX_WORK = 2048**3


@functools.lru_cache(maxsize=32)
def _sampler(method: str, block_size: int | None) -> Sampler:
    """``SAMPLERS[method]``, with ``block_size`` for ``"householder"`` (one object per
    option, so that compiled programs are shared)."""
    if block_size is None:
        return SAMPLERS[method]
    return DrawSampler(householder.draw_shape, functools.partial(
        householder.householder_matrices, block_size=block_size))


def auto_method(n: int, m: int, backend: str | None = None) -> str:
    """The method ``method="auto"`` picks for matrices ``n × m`` (``n >= m``).

    The cheaper total of compiling and running one call. On CPU, ``"qr"``
    when ``n·m² <=`` :data:`CPU_QR_MAX_WORK`, ``"householder"`` otherwise. On
    every other backend ``"qr"``: on a GPU the Householder program compiles
    for 3-36 s (its stages' matrix products each have their own shapes) against
    ~0.6 s for QR, though it then runs 2.3-82x faster (NVIDIA H200, jax 0.11.2,
    ``benchmarks/RESULTS.md``); TPUs are unmeasured and get JAX's own method.
    The number of matrices (a stack, gate blocks, a ``jax.vmap`` over keys)
    does not change the choice, so a stack's slices and a vmapped call's
    matrices are those of the single calls' method.
    """
    backend = backend or jax.default_backend()
    if backend == "cpu" and n * m * m > CPU_QR_MAX_WORK:
        return "householder"
    return "qr"


class _Plan(NamedTuple):
    """How a weight shape is read as ``batch_shape`` matrices ``rows × cols``."""

    batch_dims: tuple[int, ...]
    row_dims: tuple[int, ...]
    row_axes: tuple[int, ...]
    batch_shape: tuple[int, ...]  # batch_dims, then the block index
    rows: int
    cols: int

    @property
    def matrix(self) -> tuple[int, int]:
        """``(tall, short)``: the samplers' ``n >= m`` (a wide weight is a transposed draw)."""
        return max(self.rows, self.cols), min(self.rows, self.cols)


def _plan(dims: tuple[int, ...], column_axis: int, batch_axes: tuple[int, ...],
          num_blocks: int) -> _Plan:
    row_axes = tuple(a for a in range(len(dims)) if a != column_axis and a not in batch_axes)
    batch_dims = tuple(dims[a] for a in batch_axes)
    row_dims = tuple(dims[a] for a in row_axes)
    # With blocks, the block index is one more batch axis (kept out otherwise,
    # so that a plain matrix is drawn exactly as JAX draws it).
    batch_shape = batch_dims + ((num_blocks,) if num_blocks > 1 else ())
    return _Plan(batch_dims, row_dims, row_axes, batch_shape, math.prod(row_dims),
                 dims[column_axis] // num_blocks)


#: Methods that walk a stack one matrix at a time on CPU (a LAPACK call, or the
#: Householder products, per matrix: see ``householder_matrices``).
_LOOPED_ON_CPU = frozenset({"qr", "householder", "svd", "cholesky_qr2", "polar"})

_STATIC = ("dims", "column_axis", "batch_axes", "num_blocks", "method", "block_size", "dtype",
           "sharding")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _orthogonal_array(key: Array, scale: Array, *, dims: tuple[int, ...], column_axis: int,
                      batch_axes: tuple[int, ...], num_blocks: int, method: str,
                      block_size: int | None, dtype: np.dtype,
                      sharding: NamedSharding | None) -> Array:
    """Scaled Haar matrices laid out in ``dims``, computed in ``dtype``."""
    plan = _plan(dims, column_axis, batch_axes, num_blocks)
    keys = typed_keys(key)
    if plan.batch_shape:
        keys = slice_keys(keys, plan.batch_shape)
    tall, short = plan.matrix

    def sample(keys: Array) -> Array:
        return haar_matrices(_sampler(method, block_size), keys, tall, short, dtype)

    if sharding is not None and method in _LOOPED_ON_CPU and jax.default_backend() == "cpu":
        entries = _batch_entries(sharding, dims, batch_axes, len(plan.batch_shape))
        if any(entries):
            # The partitioner cannot split a loop over matrices: each device walks its own
            # (without a context mesh, on an Auto copy of the mesh, as constrain does).
            mesh = auto_mesh(sharding.mesh) if jax.sharding.get_abstract_mesh().empty else None
            sample = jax.shard_map(sample, mesh=mesh, in_specs=PartitionSpec(*entries),
                                   out_specs=PartitionSpec(*entries, None, None))
    return _place(sample(keys), scale, dims, column_axis, batch_axes, num_blocks, sharding)


def _batch_entries(sharding: NamedSharding, dims: tuple[int, ...],
                   batch_axes: tuple[int, ...], batch_rank: int) -> tuple[Any, ...]:
    """The mesh axes of the matrices' batch axes in the output's sharding (none for the
    block axis of ``num_blocks``)."""
    spec = tuple(sharding.spec) + (None,) * (len(dims) - len(sharding.spec))
    return tuple(spec[a] for a in batch_axes) + (None,) * (batch_rank - len(batch_axes))


@functools.partial(jax.jit, static_argnames=_STATIC)
def _orthogonal_from_draws(draws: Array, scale: Array, *, dims: tuple[int, ...],
                           column_axis: int, batch_axes: tuple[int, ...], num_blocks: int,
                           method: str, block_size: int | None, dtype: np.dtype,
                           sharding: None) -> Array:
    """:func:`_orthogonal_array` from its Gaussians (an eager call's shared draw)."""
    del dtype
    plan = _plan(dims, column_axis, batch_axes, num_blocks)
    tall, short = plan.matrix
    sampler = cast(DrawSampler, _sampler(method, block_size))
    z = take_gaussians(draws, plan.batch_shape, sampler.draw_shape(tall, short))
    return _place(sampler.from_draws(z, tall, short), scale, dims, column_axis, batch_axes,
                  num_blocks, sharding)


def _place(q: Array, scale: Array, dims: tuple[int, ...], column_axis: int,
           batch_axes: tuple[int, ...], num_blocks: int, sharding: NamedSharding | None
           ) -> Array:
    """Scales the ``(*batch_shape, tall, short)`` matrices and lays them out in ``dims``."""
    plan = _plan(dims, column_axis, batch_axes, num_blocks)
    if plan.rows < plan.cols:
        q = jnp.swapaxes(q, -1, -2)  # a wide matrix: orthonormal rows
    if sharding is not None:
        # Shard the samples along the batch axes as the output will be: the
        # partitioner then gives each device only its own slices to compute.
        entries = _batch_entries(sharding, dims, batch_axes, q.ndim - 2)
        q = constrain(q, sharding, (*entries, None, None))
    if num_blocks > 1:
        q = jnp.moveaxis(q, -3, -2)  # (*batch, rows, block, cols)
    q = q.reshape(*plan.batch_dims, *plan.row_dims, dims[column_axis])
    order = np.argsort((*batch_axes, *plan.row_axes, column_axis))
    return scale_samples(jnp.transpose(q, tuple(int(a) for a in order)), scale)


def orthogonal(
    scale: float = 1.0,
    column_axis: int = -1,
    dtype: DTypeLike | None = None,
    *,
    batch_axis: AxisLike = (),
    method: str = "auto",
    num_blocks: int | None = None,
    block_size: int | None = None,
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
      each initialized separately, which needs no ``num_blocks``: called by
      such a cell, ``num_blocks`` must be its number of gates and each kernel
      is one block (see :func:`jaxinit.gate_blocks`).

    Methods (all exact, all Haar):

    * ``"qr"``: QR of a Gaussian matrix; for every shape and float32/float64/
      complex dtype that ``jax.nn.initializers.orthogonal(scale, column_axis)``
      accepts, the same bits for the same key. On CPU the matrices of a stack
      are made one QR at a time (a GPU runs them as one batched QR, whose
      values can differ from the single call's in the last bits).
    * ``"householder"``: draws the Householder reflectors of a Gaussian matrix
      directly (half the random numbers) and only accumulates them, in
      compact-WY blocks, so almost all work is large matrix products
      (:mod:`jaxinit.householder`): several times faster than ``"qr"`` for
      large or stacked matrices, and no LAPACK.
    * ``"gram_schmidt"``, ``"svd"`` (the classic recipes), ``"cholesky_qr2"``
      and ``"polar"`` (matrix-product methods for accelerators, with a checked
      orthogonality bound): see :mod:`jaxinit.orthogonal_recipes`.
    * ``"auto"`` (default): :func:`auto_method`: on CPU, ``"qr"`` for
      matrices up to ``2048 × 2048`` (``n·m² <= 2048³``, where one call costs
      less with QR), single or stacked, else ``"householder"``; ``"qr"`` on
      GPU/TPU. For many calls of one compiled program (a vmap over many
      seeds, repeated re-initialization), ``method="householder"`` is ~3x
      faster warm from ``1024 × 1024`` on (3-9x on a GPU).

    Keys and transforms: a single matrix is drawn from ``key`` itself; matrix
    ``i`` of a stack (the slices, then the blocks, in row-major order) from
    ``jax.random.fold_in(key, i)``, so the first slices of a larger stack are
    the same matrices. Under ``jax.vmap`` over keys the call is computed as
    one batched call on the stacked keys: the result for ``keys[i]`` equals
    ``init(keys[i], shape)`` -- bit for bit with ``"qr"``, ``"householder"``,
    ``"svd"`` and ``"cholesky_qr2"`` on CPU (one matrix at a time), up to
    rounding (last bits) with the others. No program ever contains a batched LAPACK
    call, which can deadlock on CPU with jaxlib 0.10.

    Time to first weights: every new shape compiles a program. Eager calls
    take their random numbers from a program shared by all shapes of a size
    class, so a new shape compiles only its transform. Across runs, JAX's
    persistent compilation cache keeps the compiled programs:
    ``jax.config.update("jax_compilation_cache_dir", "/path/to/cache")``.

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
      block_size: reflectors per compact-WY block of ``method="householder"``
        (default :func:`jaxinit.householder.default_block_size`). It changes
        the speed and the rounding, not the law or the random numbers: the
        fastest size depends on the CPU, and ``python benchmarks/orthogonal.py
        --cases <case> --block-sizes 32 64 128 256`` measures it on yours.

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
    if block_size is not None:
        block_size = check_int(name, "block_size", block_size, minimum=1)
        if method != "householder":
            raise ValueError(f"{name}: block_size={block_size} applies to "
                             f"method='householder' only; got method={method!r}.")

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
                     "orthogonal", scale, column_axis, batch_axes, method, blocks, block_size))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype,
             sharding: NamedSharding | None) -> Array:
        col, batch = layout(shape)
        plan = _plan(shape, col, batch, blocks)
        tall, short = plan.matrix
        chosen = auto_method(tall, short) if method == "auto" else method
        options = dict(dims=shape, column_axis=col, batch_axes=batch, num_blocks=blocks,
                       method=chosen, block_size=block_size, dtype=dtype)
        sampler = _sampler(chosen, block_size)
        if sharding is None and isinstance(sampler, DrawSampler):
            # An eager call: its Gaussians (the same bits) from a program shared by
            # many shapes, so that each new shape compiles only the transform.
            draws = eager_gaussians(key, plan.batch_shape, sampler.draw_shape(tall, short),
                                    dtype)
            if draws is not None:
                return _orthogonal_from_draws(draws, scale, sharding=None, **options)
        return _orthogonal_array(key, scale, sharding=sharding, **options)

    if blocks == 1:
        return init
    # In a Flax cell that keeps one kernel per gate, each kernel is one block.
    one_block = orthogonal(scale, column_axis, dtype, batch_axis=batch_axis, method=method,
                           block_size=block_size)
    return follow_cell(name, "num_blocks", blocks, column_axis, init, one_block)
