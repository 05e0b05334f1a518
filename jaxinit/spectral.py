"""Recurrent kernels of a chosen spectral radius, and a matmul-only estimate of it.

Below 1 the linear recurrence ``h <- W h`` decays (stable), at 1 it neither
grows nor decays (critical), above 1 it grows, and a tanh network becomes
chaotic (Sompolinsky et al. 1988): extremely sensitive to small perturbations.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from jaxinit import threefry
from jaxinit.contract import initializer, scale_samples
from jaxinit.core import (
    Array,
    DTypeLike,
    Initializer,
    check_choice,
    check_int,
    check_real,
    compute_dtype,
    runtime_check,
)
from jaxinit.orthogonal import orthogonal

__all__ = ["estimate_spectral_radius", "spectral_radius"]


def _check_square(name: str, dims: tuple[int, ...]) -> None:
    if dims[-1] != dims[-2]:
        raise ValueError(
            f"{name}: shape={dims} is not square in its last two axes; accepted: square "
            "matrices (..., n, n), e.g. a recurrent kernel."
        )


def _normalize(x: Array) -> tuple[Array, Array]:
    """``(x / ‖x‖_F, log ‖x‖_F)`` per matrix, without overflow or underflow (0 gives -inf)."""
    peak = jnp.max(jnp.abs(x), axis=(-2, -1), keepdims=True)
    nonzero = peak > 0
    y = x / jnp.where(nonzero, peak, 1).astype(x.dtype)
    frobenius = jnp.sqrt(jnp.sum(jnp.real(y * jnp.conj(y)), axis=(-2, -1), keepdims=True))
    frobenius = jnp.where(nonzero, frobenius, 1)
    log_norm = jnp.where(nonzero, jnp.log(peak) + jnp.log(frobenius), -jnp.inf)
    return y / frobenius.astype(x.dtype), log_norm


def estimate_spectral_radius(a: Array, num_squarings: int = 20) -> Array:
    """Spectral radius of each square matrix ``a[..., :, :]`` using matmuls only.

    Gelfand's formula ρ(A) = lim ‖Aᵏ‖^(1/k), with k = 2^num_squarings reached by
    repeated squaring, normalizing each power to unit Frobenius norm (scaled
    by its largest entry first, so neither ``1e20·I`` nor ``1e-30·I`` over- or
    underflows) and summing the logs of the norms weighted by 1/2ʲ (the late,
    less accurate factors count least). ``ρ ≤ ‖Aᵏ‖^(1/k) ≤ ρ·(κ·n)^(1/k)``
    for a diagonalizable A with eigenvector condition number κ, so with the
    default k = 2²⁰ the estimate is high by at most ``log(κ·n)/k`` relative
    (≈ 2·10⁻⁵ for κ·n = 10⁹; measured ≈ 1.5·10⁻⁶ for Gaussian matrices up to
    n = 1024). Defective matrices converge too (a Jordan block of size m adds
    ``(m-1)·log(k)/k``); a nilpotent or zero matrix gives exactly 0. Needs no
    eigendecomposition, so it runs on every backend and under ``jit``.
    Computed in float32 at least; complex matrices are accepted.

    Args:
      a: square matrices ``(..., n, n)``.
      num_squarings: squarings, >= 1 (the error falls as ``1/2^num_squarings``).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxinit.spectral import estimate_spectral_radius
      >>> round(float(estimate_spectral_radius(jnp.array([[0.0, 2.0], [-2.0, 0.0]]))), 4)
      2.0
    """
    name = "jaxinit.estimate_spectral_radius"
    num_squarings = check_int(name, "num_squarings", num_squarings, minimum=1)
    a = jnp.asarray(a)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"{name}: a has shape {a.shape}; accepted: square matrices (..., n, n).")
    if not jnp.issubdtype(a.dtype, jnp.number):
        raise TypeError(f"{name}: a has dtype {a.dtype}; accepted: a numeric dtype.")
    cdt = jnp.promote_types(compute_dtype(np.dtype(a.dtype)), jnp.float32)
    m, log_radius = _normalize(a.astype(cdt))
    for j in range(1, num_squarings + 1):
        m, log_norm = _normalize(jnp.matmul(m, m, precision=jax.lax.Precision.HIGHEST))
        log_radius = log_radius + log_norm / 2.0**j
    return jnp.exp(log_radius)[..., 0, 0]


_BASES = ("orthogonal", "normal")


def spectral_radius(
    radius: float,
    base: str | Initializer = "orthogonal",
    *,
    num_squarings: int = 20,
    dtype: DTypeLike | None = None,
) -> Initializer:
    """Builds a recurrent-kernel initializer with spectral radius ``radius``.

    Square kernels ``(..., n, n)`` (leading axes: independent stacked kernels).

    * ``base="orthogonal"`` (default): ``radius · Q`` with Q Haar orthogonal.
      An orthogonal matrix has all its eigenvalues on the unit circle, so
      every eigenvalue of the result has modulus ``radius``: exact up to
      rounding (relative error ≈ √n·ε), with no eigenvalue computation.
    * ``base="normal"`` or any initializer: the base matrix W is rescaled by
      ``radius / ρ̂(W)``, with ρ̂ from :func:`estimate_spectral_radius`
      (Gelfand's formula by repeated squaring: matmuls only, every backend,
      under ``jit``; cost ``num_squarings`` n×n matmuls). Measured against
      float64 ``numpy.linalg.eig`` for Gaussian n = 8…1024: relative error
      ≈ 1.5·10⁻⁶ with the default 20 squarings (it falls as 1/2^num_squarings:
      1.5·10⁻³ with 10, 10⁻⁴ with 14). ``"normal"`` is W ~ N(0, 1/n),
      whose spectral radius is ≈ 1 by the circular law; without the rescaling
      the radius of an n×n Gaussian fluctuates by O(√(log n / n)). A base
      matrix whose spectral radius is 0 (zero, or nilpotent) cannot be
      rescaled: the program raises when it runs.

    ``jnp.linalg.eig`` is not used: it is implemented only on CPU. With
    ``out_sharding`` the estimate's reductions are partitioned as well, so a
    non-orthogonal base may differ from the unsharded values by an ulp or so,
    and so may a call under ``jax.vmap`` over keys (batched matrix products).

    Regimes: radius < 1 stable (states and gradients of h ← W h decay),
    = 1 critical, > 1 growing / chaotic for tanh networks ("large weights can
    also result in chaos").

    Args:
      radius: the target spectral radius, > 0.
      base: ``"orthogonal"``, ``"normal"`` or an initializer of square matrices.
      num_squarings: squarings of the Gelfand estimate (non-orthogonal bases), in [1, 60].
      dtype: the initializer's default dtype (real floating).

    Example:
      >>> import jax, numpy as np
      >>> from jaxinit.spectral import spectral_radius
      >>> w = spectral_radius(1.1, "normal")(jax.random.key(0), (64, 64))
      >>> round(float(np.abs(np.linalg.eigvals(np.asarray(w, np.float64))).max()), 3)
      1.1
    """
    name = "jaxinit.spectral_radius"
    radius = check_real(name, "radius", radius, positive=True)
    if isinstance(base, str):
        check_choice(name, "base", base, _BASES)
    elif not callable(base):
        raise TypeError(f"{name}: base={base!r} must be 'orthogonal', 'normal' or an initializer.")
    num_squarings = check_int(name, "num_squarings", num_squarings, minimum=1)
    if num_squarings > 60:
        raise ValueError(f"{name}: num_squarings={num_squarings!r} must be an int in [1, 60].")

    def check(dims: tuple[int, ...]) -> None:
        _check_square(name, dims)

    @initializer(name, dtype=dtype, allow_complex=False, min_rank=2, check=check,
                 bound=lambda _: (radius, f"radius={radius!r}"),
                 cache_key=("spectral_radius", radius, base, num_squarings)
                 if isinstance(base, str) else None, structured=True)
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype,
             sharding: NamedSharding | None) -> Array:
        if base == "orthogonal":
            # The output's sharding passed on: orthogonal lays out its stack by it.
            stacked = orthogonal(radius, batch_axis=tuple(range(len(shape) - 2)))
            return stacked(key, shape, dtype, out_sharding=sharding)
        return rescaled(key, shape, dtype)

    # One compiled program, so that eager calls round as calls inside a user's jit do.
    @functools.partial(jax.jit, static_argnums=(1, 2))
    def rescaled(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        if base == "normal":
            w = scale_samples(threefry.normal(key, shape, dtype), 1 / math.sqrt(shape[-1]))
        else:
            w = jnp.asarray(base(key, shape, dtype), dtype)  # type: ignore[operator]
        rho = estimate_spectral_radius(w, num_squarings)[..., None, None]
        if not isinstance(base, str):
            runtime_check(jnp.all(rho > 0), f"{name}: base={base!r} gave a matrix whose "
                          "spectral radius is 0 (zero or nilpotent), which no factor can rescale "
                          f"to radius={radius!r}; accepted: a base with non-zero eigenvalues.")
        return w * (jnp.array(radius, rho.dtype) / rho).astype(dtype)

    return init
