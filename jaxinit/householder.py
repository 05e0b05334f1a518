"""Haar orthogonal matrices from directly drawn Householder reflectors.

The Householder QR of an ``n × m`` Gaussian matrix ``Z`` (``n >= m``) reduces
column ``k`` with a reflector built from the sub-column below the diagonal of
the partially reduced matrix. The earlier reflectors are orthogonal maps that
do not depend on the columns to their right, so that sub-column is again a
fresh standard Gaussian vector of length ``n - k``, independent of everything
before it. The reflectors can therefore be drawn directly, one Gaussian vector
each, and the factorization itself skipped: only ``Q = H₁H₂…H_m`` is formed.
Here block ``j`` of ``b`` reflectors takes its vectors from the lower trapezoid
of a fresh ``n × b`` Gaussian panel (key ``fold_in(key, j)``), drawn inside its
loop step so that no ``n × m`` Gaussian matrix is held in memory.
Multiplying column ``k`` by the sign (the phase, for complex) of ``R``'s
diagonal entry ``β_k`` gives the ``Q`` of the QR with positive ``diag(R)``,
which is exactly Haar distributed (Mezzadri 2007, "How to generate random
matrices from the classical compact groups", Notices AMS 54(5)).

Reflector ``k`` is built as LAPACK's ``larfg`` does: for ``x = (α, x₂)``,
``β = -sign(Re α)·‖x‖``, ``τ = (β - α)/β`` and ``v = (1, x₂/(α - β))``, so that
``(I - τ v vᴴ)ᴴ x = β e₁``.

``Q`` is accumulated from the last block of ``b`` reflectors to the first, as
LAPACK's ``orgqr`` does, each block touching only the trailing rows and
columns, with the compact-WY form ``H_k…H_{k+b-1} = I - V T Vᴴ`` where
``T⁻¹ = striu(VᴴV) + diag(1/τ)`` (Joffrain et al. 2006, "Accumulating
Householder transformations, revisited", ACM TOMS 32(2)). ``T`` needs no
triangular solve: with ``T⁻¹ = D + N``, ``N`` strictly upper triangular and
``M = -D⁻¹N`` nilpotent, ``T = (I + M)(I + M²)(I + M⁴)… D⁻¹``, i.e. ``log₂ b``
small matrix products. The blocks run in a few rolled loops ("stages"), each
on a fixed trailing window, so the program size does not grow with ``m``.
Nearly all of the ``≈ 4/3·n³`` flops (square case) are large matrix products,
batched over any leading axes, and no LAPACK routine is called at all
(batched LAPACK calls can deadlock on CPU with jaxlib 0.10; see
:mod:`jaxinit.orthogonal`). Every matrix product asks for
``Precision.HIGHEST``, which keeps TPUs (bf16 passes) and GPUs (TF32) from
losing orthogonality.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxinit.core import Array

__all__ = ["default_block_size", "householder_sampler"]

_HIGHEST = jax.lax.Precision.HIGHEST

#: Most loop stages (see `_stage_plan`); each compiles one loop body, so this
#: bounds the compiled program: measured compile time ~1.3 s for n = 1024, 4096
#: and 16384 alike; the extra (zero) work is <= 1.22x the exact work (n = 8192).
MAX_STAGES = 6


def default_block_size(n: int, m: int, batch: int = 1) -> int:
    """Reflectors per compact-WY block for ``batch`` matrices ``n × m`` (``n >= m``).

    Measured on a 2-core CPU (float32, benchmarks/orthogonal.py): b = 128 is
    fastest for m >= 2048 (b = 64 and 256 within ~10%), b = 64 for single
    smaller matrices (256 × 256: 0.84 ms against 1.19 ms with b = 16). Building
    T costs ~4·log₂(b)·b³ flops per block, not negligible against the ~4/3·m³
    of the accumulation for small m; once a batch amortizes the per-block
    overhead, small blocks win (64 × 256 × 256: b = 16 0.054 s, b = 32 0.065 s,
    b = 64 0.081 s).
    """
    del n
    if batch >= 8 and m <= 512:
        return 16 if m <= 256 else 32
    return 64 if m <= 1024 else 128


def _mT(x: Array) -> Array:
    return jnp.swapaxes(x, -1, -2)


def _matmul(a: Array, b: Array) -> Array:
    return jnp.matmul(a, b, precision=_HIGHEST)


def _reflectors(x: Array, offset: Array | int) -> tuple[Array, Array, Array]:
    """Householder reflectors of the columns of a Gaussian block ``x`` (..., L, b).

    Column ``i`` is the reflector of global column ``offset + i`` of the
    window: it uses only rows ``offset + i + 1:`` of ``x`` below its unit
    diagonal entry at row ``offset + i``; the other entries are ignored.

    Returns:
      ``V`` (..., L, b), zero above the unit entries; ``tau`` (..., b); ``sign``
      (..., b), the sign of ``β`` (``R``'s diagonal), all in ``x.dtype``.
    """
    length, b = x.shape[-2:]
    rows = jax.lax.broadcasted_iota(np.int32, (length, b), 0)
    diagonal = jax.lax.broadcasted_iota(np.int32, (length, b), 1) + offset
    zero = jnp.zeros((), x.dtype)
    below = jnp.where(rows > diagonal, x, zero)
    alpha = jnp.sum(jnp.where(rows == diagonal, x, zero), axis=-2)
    # Column sums as a product with ones: XLA's CPU reductions sum in an order
    # that depends on the batch size, a matrix product per slice does not, so
    # sharded and unsharded results stay bit-identical.
    squares = jnp.real(below * jnp.conj(below))
    below_norm2 = _matmul(jnp.ones((1, length), squares.dtype), squares)[..., 0, :]
    norm = jnp.sqrt(jnp.real(alpha * jnp.conj(alpha)) + below_norm2)
    s = jnp.where(jnp.real(alpha) >= 0, 1.0, -1.0).astype(norm.dtype)
    # A zero vector (probability zero, but a float draw can be exactly 0) gets
    # the identity (τ = 0) instead of a division by zero.
    degenerate = norm == 0
    beta = jnp.where(degenerate, 1.0, -s * norm)
    denom = jnp.where(degenerate, 1.0, alpha - beta)
    tau = jnp.where(degenerate, 0.0, (beta - alpha) / beta).astype(x.dtype)
    v = below / denom[..., None, :] + (rows == diagonal).astype(x.dtype)
    sign = jnp.where(degenerate, 1.0, -s).astype(x.dtype)
    return v, tau, sign


def _diag(d: Array) -> Array:
    return d[..., None, :] * jnp.eye(d.shape[-1], dtype=d.dtype)


def _wy_factor(v: Array, tau: Array) -> Array:
    """The upper-triangular ``T`` with ``H₁…H_b = I - V T Vᴴ``, by matrix products only."""
    b = v.shape[-1]
    gram = _matmul(jnp.conj(_mT(v)), v)
    strict_upper = jnp.triu(gram, 1)
    m = -tau[..., :, None] * strict_upper  # -D⁻¹N with D = diag(1/τ)
    eye = jnp.eye(b, dtype=v.dtype)

    def double(_: int, carry: tuple[Array, Array]) -> tuple[Array, Array]:
        partial_sum, power = carry  # Σ_{i<2^k} Mⁱ and M^(2^k)
        power = _matmul(power, power)
        return partial_sum + _matmul(partial_sum, power), power

    steps = max(math.ceil(math.log2(b)) - 1, 0)
    partial_sum, _ = jax.lax.fori_loop(0, steps, double, (eye + m, m))
    return partial_sum * tau[..., None, :]


def _stage_plan(n: int, m: int, b: int, max_stages: int) -> list[tuple[int, int]]:
    """Groups the ``ceil(m / b)`` blocks into contiguous stages ``[first, end)``.

    A stage runs as one rolled loop on the fixed trailing window that its first
    block needs, so its later blocks do some extra (exactly zero) work; the
    grouping minimizes that work by dynamic programming. A ragged last block
    forms its own stage.
    """
    full = m // b
    def cost(first: int, end: int) -> int:
        return (end - first) * (n - first * b) * (m - first * b)
    # plans[s][covered] = (cost, stages): the cheapest s-stage cover of the first blocks.
    plans: list[dict[int, tuple[int, list[tuple[int, int]]]]] = [{0: (0, [])}]
    for _ in range(max_stages):
        nxt: dict[int, tuple[int, list[tuple[int, int]]]] = {}
        for covered, (c, stages) in plans[-1].items():
            for end in range(covered + 1, full + 1):
                cand = (c + cost(covered, end), [*stages, (covered, end)])
                if end not in nxt or cand[0] < nxt[end][0]:
                    nxt[end] = cand
        plans.append(nxt)
    stages = min((p[full] for p in plans if full in p), key=lambda p: p[0])[1] if full else []
    if m % b:
        stages.append((full, full + 1))
    return stages


def householder_sampler(
    key: Array,
    batch_shape: tuple[int, ...],
    n: int,
    m: int,
    dtype: np.dtype,
    *,
    block_size: int | None = None,
) -> Array:
    """Haar ``(*batch_shape, n, m)`` matrices with orthonormal columns (``n >= m``).

    ``dtype`` is float32/float64 (orthogonal) or complex64/complex128 (unitary);
    every ``n × m`` slice is independent. See the module docstring.
    """
    if n < m:
        raise ValueError(f"householder_sampler: needs n >= m, got n={n}, m={m}.")
    dtype = np.dtype(dtype)
    b = min(block_size or default_block_size(n, m, math.prod(batch_shape)), m)
    batch_zeros = (0,) * len(batch_shape)
    q = jnp.zeros((*batch_shape, n, m), dtype)
    for first, end in reversed(_stage_plan(n, m, b, MAX_STAGES)):
        k_lo = first * b
        width = min(b, m - k_lo)

        def apply_block(step: Array | int, c: Array, end: int = end, k_lo: int = k_lo,
                        width: int = width) -> Array:
            block = end - 1 - step
            offset = block * b - k_lo
            # Block j's reflectors are drawn as the lower trapezoid of a fresh
            # Gaussian (n, b) panel: column k uses rows k: only. The full-height
            # draw keeps the values independent of the stage plan.
            x = jax.random.normal(jax.random.fold_in(key, block), (*batch_shape, n, width),
                                  dtype)[..., k_lo:, :]
            v, tau, sign = _reflectors(x, offset)
            t = _wy_factor(v, tau)
            # The block's own columns, still untouched (zero), become diag(sign)·e_k.
            c = jax.lax.dynamic_update_slice(c, _diag(sign), (*batch_zeros, offset, offset))
            y = _matmul(t, _matmul(jnp.conj(_mT(v)), c))
            return c - _matmul(v, y)

        window = q[..., k_lo:, k_lo:]
        if end - first == 1:
            window = apply_block(0, window)
        else:
            window = jax.lax.fori_loop(0, end - first, apply_block, window)
        q = q.at[..., k_lo:, k_lo:].set(window)
    return q
