"""Haar orthogonal matrices from directly drawn Householder reflectors.

The Householder QR of an ``n × m`` Gaussian matrix ``Z`` (``n >= m``) reduces
column ``k`` with a reflector built from the sub-column below the diagonal of
the partially reduced matrix. The earlier reflectors are orthogonal maps that
do not depend on the columns to their right, so that sub-column is again a
fresh standard Gaussian vector of length ``n - k``, independent of everything
before it. The reflectors can therefore be drawn directly, one Gaussian vector
each -- ``n·m - m(m-1)/2`` numbers in all, about half of ``Z`` -- and the
factorization itself skipped: only ``Q = H₁H₂…H_m`` is formed. Multiplying
column ``k`` by the sign (the phase, for complex) of ``R``'s diagonal entry
``β_k`` gives the ``Q`` of the QR with positive ``diag(R)``, which is exactly
Haar distributed (Mezzadri 2007, "How to generate random matrices from the
classical compact groups", Notices AMS 54(5)).

The vectors are drawn in one call, before any loop, packed two to a row
(:func:`reflector_draws`): vector ``k`` is a fixed part of that draw whatever
the block size and the loop plan below, which change only the rounding.

Reflector ``k`` of a vector ``x = (α, x₂)`` is ``H = I - 2vvᴴ/(vᴴv)`` with
``v = x + φ‖x‖e₁``, ``φ = α/|α|``: ``Hx = -φ‖x‖e₁`` (for real data, LAPACK's
``larfg`` reflector), so the phase of ``R``'s diagonal entry is ``-φ``.

``Q`` is accumulated from the last block of ``b`` reflectors to the first, as
LAPACK's ``orgqr`` does, each block touching only the trailing rows and
columns, with the compact-WY form ``H_k…H_{k+b-1} = I - V T Vᴴ`` where
``T⁻¹ = striu(VᴴV) + diag(1/τ)`` and here ``1/τ_i = v_iᴴv_i/2`` (Joffrain et
al. 2006, "Accumulating Householder transformations, revisited", ACM TOMS
32(2)). ``T`` needs no triangular solve: with ``T⁻¹ = D(I + A)``, ``A``
strictly upper triangular, ``(I + A)⁻¹`` is formed a column at a time on a
CPU (``b`` matrix-vector steps in one small loop, as LAPACK's ``larft``) and
elsewhere by the Neumann product ``(I - A)(I + A²)(I + A⁴)…``, i.e.
``log₂ b`` small matrix products. The reflectors and ``T`` of all
blocks are computed at once, before the accumulation; the blocks then run in
a few rolled loops ("stages"), each on a fixed trailing window ``C``, so the
program size does not grow with ``m``. A block is applied as
``C - (V T)(VᴴC)``, two large matrix products (for large matrices on CPU
``C - V(T(VᴴC))``, which needs no copy ``V T`` of the reflectors).
Nearly all of the ``≈ 4/3·n³`` flops (square case) are large matrix products,
batched over any leading axes (on CPU, a stack is made one matrix at a time), and
no LAPACK routine is called at all.
Every matrix product asks for ``Precision.HIGHEST``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxinit.core import Array, is_complex
from jaxinit.haar import gaussian, map_matrices, matmul

__all__ = [
    "default_block_size",
    "draw_shape",
    "householder_matrices",
    "householder_sampler",
    "reflector_draws",
]

#: Loop stages (see `_stage_plan`); each compiles one loop body of two or three
#: matrix products (~0.05 s). The limit depends on the matrix, never on the number of
#: matrices, so that the first slices of a larger stack (and each device's
#: slices of a sharded one) round exactly as a smaller stack does. Matrices with
#: ``n·m² < SINGLE_STAGE_WORK`` take one stage: its extra (zero) work, up to
#: ~2.7x the exact, costs less than compiling more bodies. Below
#: ``TWO_STAGE_WORK`` they take two stages; larger ones four up to
#: ``SMALL_PLAN_COLUMNS`` columns, ``MAX_STAGES`` above. Measured on a 2-core
#: CPU, warm, 1 / 2 / 4 stages: stacks (64, 256, 256) 109 / 87 / 85 ms,
#: (8, 512, 512) 53 / 36 / 40 ms,
#: (4, 1024, 1024) 168 / 121 / 107 ms (compile 0.55-0.62 s for one or two stages,
#: 0.66-0.70 s for four); 1024² 4 stages 0.46 s to compile, 17 ms warm, against
#: 6 stages 0.57 s, 20 ms; 2048² 0.71 s, 130 ms against 0.85 s, 119 ms.
MAX_STAGES = 6
SMALL_PLAN_STAGES = 4
SMALL_PLAN_COLUMNS = 1024
TWO_STAGE_WORK = 1 << 29
SINGLE_STAGE_WORK = 1 << 21

#: Matrices of at least this many entries (16 MiB in float32) take blocks of 128
#: reflectors and, on CPU, apply ``T`` inside the accumulation loop (see `_one_matrix`).
LARGE_MATRIX = 1 << 22


def _stage_limit(n: int, m: int) -> int:
    """The most loop stages for ``n × m`` matrices (``n >= m``); see `MAX_STAGES`."""
    work = n * m * m
    if work < SINGLE_STAGE_WORK:
        return 1
    if work < TWO_STAGE_WORK:
        return 2
    return SMALL_PLAN_STAGES if m <= SMALL_PLAN_COLUMNS else MAX_STAGES


def default_block_size(n: int, m: int) -> int:
    """Reflectors per compact-WY block for ``n × m`` matrices (``n >= m``).

    Chosen from warm timings on the machine these defaults were measured on (a
    2-core AMD EPYC, float32; ``benchmarks/orthogonal.py --block-sizes`` runs
    the same sweep on any machine): 32 up to m = 256 (a stack of 64 matrices
    256 × 256: b = 16, 32 and 64 within 15%; 8192 × 256: 32 ahead of 64 and
    128), 128 above m = 1024 (2048 × 2048: b = 128 and 256 within 2%, b = 64
    ~20% slower) and for matrices of 2²² entries or more, 64 otherwise
    (1024 × 1024: b = 32, 64 and 128 within 5%). The product that updates the
    trailing window, ``(n × b)·(b × m)``, runs far below matrix-multiply speed
    once the window outgrows the cache and ``b`` is 64 (8192 × 1024: 128 is
    10% faster, 4096 × 1024 and 16384 × 512 7-9%). Larger blocks run their
    products closer to matrix-multiply speed but cost more in ``T`` and in
    zero work.
    """
    if m <= 256:
        return 32
    return 128 if m > 1024 or n * m >= LARGE_MATRIX else 64


def _packing(n: int, m: int) -> tuple[int, int]:
    """``(rows, length)`` of the packed draw: vectors ``k`` and ``m' - 1 - k`` share a row."""
    even = m + m % 2
    return even // 2, 2 * n - even + 1


def reflector_draws(keys: Array, n: int, m: int, dtype: np.dtype) -> Array:
    """The Gaussian vectors of the ``m`` reflectors of each matrix, packed.

    Shape ``(*keys.shape, P, R)`` with ``P = ceil(m/2)``, ``R = 2n - m' + 1``
    (``m'`` = m rounded up to even): row ``p`` holds vector ``p`` (length
    ``n - p``) reversed at its start and vector ``m' - 1 - p`` (length
    ``n - m' + 1 + p``) at its end, so every row has the same length.
    """
    return gaussian(keys, _packing(n, m), dtype)


def _unpack(draws: Array, n: int, m: int) -> Array:
    """``(..., m, n)``: row ``k`` holds vector ``k`` in its last ``n - k`` entries
    (the entries before are other vectors', ignored by `_reflectors`)."""
    rows, length = draws.shape[-2:]
    # Slices, flips and one concatenation fuse into a single pass; a gather of
    # whole packed rows would first copy twice the draw.
    heads = jnp.flip(draws[..., :n], axis=-1)
    tails = jnp.flip(draws[..., length - n:], axis=-2)[..., :m - rows, :]
    return jnp.concatenate([heads, tails], axis=-2)


def _reflectors(x: Array) -> tuple[Array, Array]:
    """Householder vectors of the rows of ``x`` (..., m, n): row ``k`` reflects
    entries ``k:`` (``k`` is the diagonal); entries before ``k`` are ignored.

    For ``x = (α, x₂)`` the reflector ``H = I - 2 v vᴴ / (vᴴv)`` with
    ``v = x + φ‖x‖e₁``, ``φ = α/|α|`` (1 for ``α = 0``), maps ``x`` to
    ``-φ‖x‖e₁``: the diagonal entry of ``R`` has the phase ``-φ``. (For real
    data this is LAPACK's ``larfg`` reflector, scaled differently.)

    Returns:
      ``W`` (..., m, n) with ``W[k] = vₖᵀ``, zero before ``k``; and ``sign``
      (..., m), the phase ``-φ`` of ``R``'s diagonal entry.
    """
    m, n = x.shape[-2:]
    column = jax.lax.broadcasted_iota(np.int32, (m, n), 1)
    diagonal = jax.lax.broadcasted_iota(np.int32, (m, n), 0)
    tail = jnp.where(column >= diagonal, x, jnp.zeros((), x.dtype))
    squares = jnp.real(tail * jnp.conj(tail))
    # On CPU the program sees one matrix at a time (`householder_matrices`), and a row
    # sum fuses with the squares. Elsewhere it sees the whole stack, and a reduction's
    # order of summation can depend on the batch size where a matrix product per slice
    # does not: row sums as a product with ones keep stacked and sharded results
    # bit-identical to single calls.
    if jax.default_backend() == "cpu":
        norm = jnp.sqrt(jnp.sum(squares, axis=-1))
    else:
        norm = jnp.sqrt(matmul(squares, jnp.ones((n, 1), squares.dtype))[..., 0])
    alpha = jnp.diagonal(x, axis1=-2, axis2=-1)
    if is_complex(x.dtype):
        magnitude = jnp.abs(alpha)
        phase = jnp.where(magnitude == 0, jnp.ones((), x.dtype),
                          alpha / jnp.where(magnitude == 0, 1, magnitude).astype(x.dtype))
    else:
        phase = jnp.where(alpha >= 0, 1, -1).astype(x.dtype)
    w = jnp.where(column == diagonal, tail + (phase * norm.astype(x.dtype))[..., None], tail)
    return w, -phase


#: `_unit_upper_inverse_by_products` inverts diagonal blocks of this size by a
#: Neumann product, then merges pairs of blocks up to the block size.
_LEAF = 32


def _flat_matmul(a: Array, b: Array) -> Array:
    """``a @ b`` for stacks with the same leading axes, as one batch axis (XLA's CPU
    compiler fails on some products with several batch axes)."""
    lead = a.shape[:-2]
    out = matmul(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]))
    return out.reshape(*lead, *out.shape[-2:])


def _diagonal_blocks(a: Array, size: int) -> Array:
    """The ``size × size`` diagonal blocks of matrices (..., b, b): (..., b/size, size, size)."""
    b = a.shape[-1]
    count = b // size
    blocks = a.reshape(*a.shape[:-2], count, size, count, size)
    return jnp.moveaxis(jnp.diagonal(blocks, axis1=-4, axis2=-2), -1, -3)


def _wy_factor(w: Array) -> Array:
    """The upper-triangular ``T`` with ``H₁…H_b = I - V T Vᴴ`` for ``V = wᵀ`` (..., b, n).

    With ``G = VᴴV`` and ``H_i = I - τ_i v_i v_iᴴ``, ``τ_i = 2/G_ii``:
    ``T⁻¹ = striu(G) + diag(G)/2 = D(I + A)`` with ``D = diag(1/τ)`` and
    ``A = τ·striu(G)`` strictly upper triangular, so ``T = (I + A)⁻¹ τ``
    (columns scaled by ``τ``). A zero vector (a zero draw, probability zero) is
    the identity (``τ = 0``).
    """
    gram = _flat_matmul(jnp.conj(w), jnp.swapaxes(w, -1, -2))
    half = jnp.real(jnp.diagonal(gram, axis1=-2, axis2=-1)) / 2
    tau = jnp.where(half > 0, 1 / jnp.where(half > 0, half, 1), 0).astype(w.dtype)
    strict = tau[..., :, None] * jnp.triu(gram, 1)
    if jax.default_backend() == "cpu":
        inverse = _unit_upper_inverse_by_columns(strict)
    else:
        inverse = _unit_upper_inverse_by_products(strict)
    return inverse * tau[..., None, :]


def _unit_upper_inverse_by_columns(a: Array) -> Array:
    """``(I + A)⁻¹`` for strictly upper-triangular ``A`` (..., b, b), a column at a time:
    ``S = I - S·A``, and column ``j`` of ``S·A`` needs only the columns before ``j``.

    One small loop body (the program compiles in ~0.2 s, against 0.3-0.9 s for
    :func:`_unit_upper_inverse_by_products` on a 2-core CPU, b = 16-128); ``b``
    matrix-vector steps, as fast as the products on a CPU.
    """
    b = a.shape[-1]
    eye = jnp.eye(b, dtype=a.dtype)

    def column(j: Array, s: Array) -> Array:
        a_j = jax.lax.dynamic_index_in_dim(a, j, axis=a.ndim - 1)
        e_j = jax.lax.dynamic_index_in_dim(eye, j, axis=1)
        return jax.lax.dynamic_update_index_in_dim(s, e_j - _flat_matmul(s, a_j), j,
                                                   axis=s.ndim - 1)

    # `+ zeros_like(a)`: the carry varies over a shard_map's devices as `a` does.
    return jax.lax.fori_loop(1, b, column, eye + jnp.zeros_like(a))


def _unit_upper_inverse_by_products(a: Array) -> Array:
    """``(I + A)⁻¹`` for strictly upper-triangular ``A`` (..., b, b) by matrix products
    only (a few kernels on an accelerator, where ``b`` sequential steps would each
    be one): the diagonal blocks of size ``_LEAF`` by the Neumann product
    ``(I + A)⁻¹ = (I - A)(I + A²)(I + A⁴)…`` (``A`` nilpotent), then pairs of
    neighbouring blocks merged, ``[[X, Y], [0, Z]]⁻¹ = [[X⁻¹, -X⁻¹YZ⁻¹], [0, Z⁻¹]]``,
    up to ``b`` (padded with identity rows to a power of two).
    """
    b = a.shape[-1]
    padded = 1 << (b - 1).bit_length()
    leaf = min(_LEAF, padded)
    unit = jnp.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, padded - b)] * 2)

    def square(_: Array, carry: tuple[Array, Array]) -> tuple[Array, Array]:
        power, inverse = carry
        power = _flat_matmul(power, power)
        return power, inverse + _flat_matmul(inverse, power)

    power = _diagonal_blocks(-unit, leaf)
    # A rolled loop: one body to compile, whatever the leaf size.
    _, inverse = jax.lax.fori_loop(0, max(math.ceil(math.log2(leaf)) - 1, 0), square,
                                   (power, jnp.eye(leaf, dtype=a.dtype) + power))
    size = leaf
    while size < padded:
        upper = _diagonal_blocks(unit, 2 * size)[..., :size, size:]
        first, second = inverse[..., 0::2, :, :], inverse[..., 1::2, :, :]
        corner = -_flat_matmul(first, _flat_matmul(upper, second))
        top = jnp.concatenate([first, corner], axis=-1)
        bottom = jnp.concatenate([jnp.zeros_like(second), second], axis=-1)
        inverse = jnp.concatenate([top, bottom], axis=-2)
        size *= 2
    return inverse[..., 0, :b, :b]


def _stage_plan(n: int, m: int, b: int, max_stages: int) -> list[tuple[int, int]]:
    """Groups the ``ceil(m / b)`` blocks into contiguous stages ``[first, end)``.

    A stage runs as one rolled loop on the fixed trailing window that its first
    block needs, so its later blocks do some extra (exactly zero) work; the
    grouping minimizes that work by dynamic programming.
    """
    blocks = -(-m // b)
    def cost(first: int, end: int) -> int:
        return (end - first) * (n - first * b) * (m - first * b)
    # plans[s][covered] = (cost, stages): the cheapest s-stage cover of the first blocks.
    plans: list[dict[int, tuple[int, list[tuple[int, int]]]]] = [{0: (0, [])}]
    for _ in range(max_stages):
        nxt: dict[int, tuple[int, list[tuple[int, int]]]] = {}
        for covered, (c, stages) in plans[-1].items():
            for end in range(covered + 1, blocks + 1):
                cand = (c + cost(covered, end), [*stages, (covered, end)])
                if end not in nxt or cand[0] < nxt[end][0]:
                    nxt[end] = cand
        plans.append(nxt)
    return min((p[blocks] for p in plans if blocks in p), key=lambda p: p[0])[1]


def householder_sampler(keys: Array, n: int, m: int, dtype: np.dtype, *,
                        block_size: int | None = None, max_stages: int | None = None) -> Array:
    """Haar ``(*keys.shape, n, m)`` matrices with orthonormal columns (``n >= m``).

    ``dtype`` is float32/float64 (orthogonal) or complex64/complex128 (unitary);
    matrix ``i`` depends on ``keys[i]`` alone. See the module docstring.
    """
    if n < m:
        raise ValueError(f"householder_sampler: needs n >= m, got n={n}, m={m}.")
    return householder_matrices(reflector_draws(keys, n, m, np.dtype(dtype)), n, m,
                                block_size=block_size, max_stages=max_stages)


def draw_shape(n: int, m: int) -> tuple[int, int]:
    """The shape of one matrix's :func:`reflector_draws`."""
    return _packing(n, m)


def householder_matrices(draws: Array, n: int, m: int, *, block_size: int | None = None,
                         max_stages: int | None = None) -> Array:
    """The matrices of :func:`householder_sampler` from their :func:`reflector_draws`.

    On CPU a stack is made one matrix at a time (:func:`jaxinit.haar.map_matrices`):
    XLA's CPU runtime runs the batched forms of the small products (the reflectors'
    norms, ``T``'s column steps) several times slower than one matrix's, and each
    matrix then rounds as the single call does, whatever the stack's size or sharding.
    Measured on a 2-core CPU, warm: (16, 1024, 1024) 330 ms against 565 ms batched,
    (64, 256, 256) 68 against 90-109 ms, (32, 384, 384) 82-90 against 118-132 ms.
    """
    return map_matrices(functools.partial(_one_matrix, n=n, m=m, block_size=block_size,
                                          max_stages=max_stages), draws)


def _one_matrix(draws: Array, n: int, m: int, block_size: int | None,
                max_stages: int | None) -> Array:
    dtype = np.dtype(draws.dtype)
    b = min(block_size or default_block_size(n, m), m)
    if max_stages is None:
        max_stages = _stage_limit(n, m)
    blocks = -(-m // b)
    w, sign = _reflectors(_unpack(draws, n, m))
    if blocks * b > m:  # a ragged last block, padded with zero vectors (identities)
        w = jnp.pad(w, [(0, 0)] * (w.ndim - 2) + [(0, blocks * b - m), (0, 0)])
    w = w.reshape(*w.shape[:-2], blocks, b, n)
    # Block j is I - V T Vᴴ with V = w_jᵀ, applied as c - (V T)(Vᴴc). The loops take
    # Vᴴ = conj(w_j) and the rows (V T)ᵀ = Tᵀ w_j of a copy made beforehand, or, for
    # large matrices on CPU, w_j itself and T: c - V(T(Vᴴc)). That saves a buffer the
    # size of the output (fresh memory costs a page fault per 4 KiB on first touch,
    # more than a pass of arithmetic) and costs one more small product to compile in
    # each stage's loop body (~0.02 s on CPU; unmeasured on a GPU, where compiling
    # this program is already slow, so it keeps the copy there).
    t = _wy_factor(w)
    t_in_loop = n * m >= LARGE_MATRIX and jax.default_backend() == "cpu"
    left = w if t_in_loop else _flat_matmul(jnp.swapaxes(t, -1, -2), w)
    vh = jnp.conj(w)
    # Q = H₁…H_m·diag(sign) applied to the first m columns of I, from the last
    # block to the first: block j changes only rows and columns >= j·b, and
    # its rows above j·b are exact zeros, so every block can work on the
    # whole trailing window of its stage.
    row = jax.lax.broadcasted_iota(np.int32, (n, m), 0)
    col = jax.lax.broadcasted_iota(np.int32, (n, m), 1)
    q = jnp.where(row == col, sign[..., None, :], jnp.zeros((), dtype))
    for first, end in reversed(_stage_plan(n, m, b, max_stages)):
        k_lo = first * b

        def apply_block(step: Array | int, c: Array, end: int = end, k_lo: int = k_lo) -> Array:
            block = end - 1 - step

            def of_block(a: Array) -> Array:
                return jax.lax.dynamic_index_in_dim(a, block, axis=a.ndim - 3, keepdims=False)

            y = matmul(of_block(vh)[..., k_lo:], c)
            if t_in_loop:
                y = matmul(of_block(t), y)
            return c - matmul(jnp.swapaxes(of_block(left)[..., k_lo:], -1, -2), y)

        window = q[..., k_lo:, k_lo:]
        if end - first == 1:
            window = apply_block(0, window)
        else:
            window = jax.lax.fori_loop(0, end - first, apply_block, window)
        q = q.at[..., k_lo:, k_lo:].set(window)
    return q
