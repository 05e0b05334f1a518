"""Statistical assertions for initializers, usable on your own initializers too.

Each assertion tests a distribution, not one number: its tolerance is derived
from the sampling distribution of the statistic, and its message says what was
expected and what came. Use fixed keys so a run is deterministic.

* :func:`assert_variance` / :func:`assert_std`: sample variance against a
  target, within ``num_sigmas`` standard errors. The standard error of the
  sample variance of N i.i.d. draws is ``σ² · sqrt(2/(N-1) + κ/N)`` with κ the
  excess kurtosis (0 for a normal, -1.2 for a uniform). With the default
  5 standard errors a correct sampler fails with probability ≈ 5.7e-7.
* :func:`assert_ks`: a Kolmogorov–Smirnov test against an exact CDF; fails
  when the p-value is below ``min_p_value`` (default 1e-4, the false-failure
  probability of a correct sampler).
* :func:`assert_orthogonal`: ``QᵀQ = scale²·I`` (or ``QQᵀ`` for wide
  matrices) per matrix, with a tolerance scaled to the dtype.
* :func:`assert_haar`: many independent samples of a (semi-)orthogonal or
  unitary matrix follow the Haar measure (Mezzadri 2007; Diaconis &
  Shahshahani 1994 for the trace moments).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import chex
import jax.numpy as jnp
import numpy as np
import scipy.stats

from jaxinit.core import AxisLike, DTypeLike, compute_dtype, normalize_axes

__all__ = [
    "assert_haar",
    "assert_ks",
    "assert_orthogonal",
    "assert_std",
    "assert_variance",
    "orthogonality_error",
]

#: Excess kurtosis of U(-a, a).
UNIFORM_EXCESS_KURTOSIS = -1.2


def _as_float64(x: object) -> np.ndarray:
    arr = np.asarray(x)
    if np.iscomplexobj(arr):
        raise TypeError("expected real samples; pass x.real and x.imag separately.")
    return arr.astype(np.float64).ravel()


def assert_variance(
    x: object,
    expected: float,
    *,
    excess_kurtosis: float = 0.0,
    num_sigmas: float = 5.0,
    mean: float | None = None,
    name: str = "samples",
) -> None:
    """Asserts the sample variance of ``x`` matches ``expected`` within ``num_sigmas`` s.e.

    Args:
      x: i.i.d. real samples (any shape).
      expected: the target variance σ².
      excess_kurtosis: κ of the target distribution (0 normal, -1.2 uniform).
      num_sigmas: width of the band in standard errors.
      mean: if given, also asserts the sample mean is within ``num_sigmas``
        standard errors ``sqrt(σ²/N)`` of it.
      name: what ``x`` is, for the message.
    """
    samples = _as_float64(x)
    n = samples.size
    if n < 2:
        raise ValueError(f"assert_variance: need at least 2 samples of {name}, got {n}.")
    try:
        chex.assert_tree_all_finite(samples)
    except AssertionError as err:
        raise AssertionError(f"{name}: expected finite samples, got "
                             f"{n - int(np.isfinite(samples).sum())} NaN/inf of {n}.") from err
    variance = float(samples.var(ddof=1))
    se = expected * math.sqrt(2.0 / (n - 1) + excess_kurtosis / n)
    if not abs(variance - expected) <= num_sigmas * se:
        raise AssertionError(
            f"{name}: expected variance {expected:.6g} ± {num_sigmas * se:.3g} "
            f"({num_sigmas} s.e., N={n}), got {variance:.6g} "
            f"({(variance - expected) / se:+.1f} s.e.)."
        )
    if mean is not None:
        sample_mean = float(samples.mean())
        se_mean = math.sqrt(expected / n)
        if not abs(sample_mean - mean) <= num_sigmas * se_mean:
            raise AssertionError(
                f"{name}: expected mean {mean:.6g} ± {num_sigmas * se_mean:.3g} "
                f"({num_sigmas} s.e., N={n}), got {sample_mean:.6g}."
            )


def assert_std(x: object, expected: float, **kwargs: object) -> None:
    """Asserts the sample std of ``x`` matches ``expected``; see :func:`assert_variance`."""
    assert_variance(x, expected**2, **kwargs)  # type: ignore[arg-type]


def assert_ks(
    x: object,
    cdf: str | Callable[[np.ndarray], np.ndarray],
    args: Sequence[float] = (),
    *,
    min_p_value: float = 1e-4,
    name: str = "samples",
) -> float:
    """Asserts ``x`` is consistent with the distribution ``cdf`` by a one-sample KS test.

    Args:
      x: i.i.d. real samples.
      cdf: a ``scipy.stats`` distribution name (``"norm"``, ``"uniform"``,
        ``"truncnorm"``, ...) or a CDF callable.
      args: the distribution's parameters, as ``scipy.stats`` takes them.
      min_p_value: the test fails below this p-value (its false-failure rate).
      name: what ``x`` is, for the message.

    Returns:
      The p-value.
    """
    samples = _as_float64(x)
    result = scipy.stats.kstest(samples, cdf, args=tuple(args))
    if not result.pvalue > min_p_value:
        raise AssertionError(
            f"{name}: expected a sample of {cdf}{tuple(args)}, but the KS test rejects it: "
            f"D={result.statistic:.4g}, p={result.pvalue:.3g} <= {min_p_value:g} "
            f"(N={samples.size})."
        )
    return float(result.pvalue)


def _as_matrices(q: np.ndarray, column_axis: int, batch_axes: tuple[int, ...]) -> np.ndarray:
    """Reshapes to ``(batch, rows, cols)``: rows are all axes but the batch and column ones."""
    rest = [a for a in range(q.ndim) if a != column_axis and a not in batch_axes]
    moved = np.transpose(q, (*batch_axes, *rest, column_axis))
    batch = math.prod(q.shape[a] for a in batch_axes)
    return moved.reshape(batch, -1, q.shape[column_axis])


def orthogonality_error(
    q: object, *, scale: float = 1.0, column_axis: int = -1, batch_axis: AxisLike = ()
) -> float:
    """Max over matrices of ``max|QᴴQ - scale²·I|`` (``QQᴴ`` for wide), in float64."""
    arr = np.asarray(q)
    if arr.ndim < 2:
        raise ValueError(f"orthogonality_error: need rank >= 2, got shape {arr.shape}.")
    col = normalize_axes("orthogonality_error", "column_axis", column_axis, arr.ndim)[0]
    batch = normalize_axes("orthogonality_error", "batch_axis", batch_axis, arr.ndim)
    wide = np.asarray(arr, np.complex128 if np.iscomplexobj(arr) else np.float64)
    mats = _as_matrices(wide, col, batch)
    if mats.shape[1] < mats.shape[2]:
        mats = np.swapaxes(mats, 1, 2)
    gram = np.conj(np.swapaxes(mats, 1, 2)) @ mats
    eye = scale**2 * np.eye(mats.shape[2])
    return float(np.max(np.abs(gram - eye))) if gram.size else 0.0


def default_orthogonality_tolerance(dtype: DTypeLike, n: int) -> float:
    """Tolerance for ``max|QᵀQ - I|``: a final cast plus an O(√n·ε) float computation.

    Rounding each entry to ``dtype`` moves a Gram entry by at most ≈ 2ε(dtype);
    computing in ``compute_dtype(dtype)`` (float32 for 16-bit) adds a
    backward-stable factorization's error, ≈ √n·ε in practice (Higham 2002, §19).
    """
    out = np.dtype(dtype)
    out_eps = float(jnp.finfo(out).eps)
    compute_eps = float(jnp.finfo(compute_dtype(out)).eps)
    return 4 * out_eps + 16 * math.sqrt(max(n, 1)) * compute_eps


def assert_orthogonal(
    q: object,
    *,
    scale: float = 1.0,
    column_axis: int = -1,
    batch_axis: AxisLike = (),
    atol: float | None = None,
    name: str = "Q",
) -> float:
    """Asserts every matrix of ``q`` is (semi-)orthogonal times ``scale``.

    The matrices are formed as in :func:`jaxinit.orthogonal`: ``column_axis``
    holds the columns, ``batch_axis`` indexes independent matrices and all
    other axes are flattened into rows. Tall (or square) matrices need
    orthonormal columns, wide ones orthonormal rows. Complex: unitary.

    Returns:
      The largest deviation found.
    """
    arr = np.asarray(q)
    err = orthogonality_error(arr, scale=scale, column_axis=column_axis, batch_axis=batch_axis)
    if atol is None:
        n = max(arr.shape) if arr.ndim else 1
        atol = default_orthogonality_tolerance(arr.dtype, n) * max(scale**2, 1.0)
    if not err <= atol:
        raise AssertionError(
            f"{name}: expected (semi-)orthogonal matrices with scale {scale} "
            f"(max|QᵀQ - scale²I| <= {atol:.3g}), got max deviation {err:.3g} "
            f"for shape {arr.shape}, dtype {arr.dtype}."
        )
    return err


def _assert_mean(values: np.ndarray, expected: float, num_sigmas: float, what: str) -> None:
    """Sample mean within ``num_sigmas`` standard errors (sample std / sqrt(N)) of ``expected``."""
    se = float(values.std(ddof=1)) / math.sqrt(values.size)
    got = float(values.mean())
    if not abs(got - expected) <= num_sigmas * se:
        raise AssertionError(
            f"{what}: expected {expected:g} ± {num_sigmas * se:.3g} ({num_sigmas} s.e., "
            f"N={values.size}), got {got:.4g}."
        )


def _assert_householder_signs(q: np.ndarray, num_sigmas: float, name: str) -> None:
    """Each diagonal sign of R in the Householder QR of Haar samples is a fair coin.

    If Q is Haar, so is ``Q·D`` for any diagonal of signs (phases) D, and the QR
    of ``Q·D`` is that of Q with the signs of ``diag(R)`` flipped by D: each
    sign of R's diagonal (real in LAPACK's Householder convention, also for
    complex Q) is +1 with probability 1/2. A sampler that fixes the sign of one
    column -- e.g. misses the sign correction of the last column alone, which
    moves no trace moment or single entry visibly for n >= 100 -- fails here.
    """
    count = q.shape[0]
    r_diagonal = np.diagonal(np.linalg.qr(q, mode="r"), axis1=-2, axis2=-1).real
    positive = np.mean(r_diagonal > 0, axis=0)
    se = 0.5 / math.sqrt(count)
    worst = int(np.argmax(np.abs(positive - 0.5)))
    if not abs(positive[worst] - 0.5) <= num_sigmas * se:
        raise AssertionError(
            f"{name}: expected each sign of diag(R) in the Householder QR of the samples to "
            f"be + with probability 0.5 ± {num_sigmas * se:.3g}, got {positive[worst]:.4f} "
            f"for column {worst}."
        )


def assert_haar(
    samples: object,
    *,
    num_sigmas: float = 5.0,
    min_p_value: float = 1e-4,
    seed: int = 0,
    name: str = "Q",
) -> None:
    """Asserts ``samples`` of shape ``(N, n, m)``, n >= m, are N independent Haar draws.

    Real (Haar on O(n), or the first m columns of it):

    * square: P(det Q > 0) = 1/2 (binomial s.e. ``0.5/sqrt(N)``);
    * square: E[tr Q] = 0, E[(tr Q)²] = 1, E[(tr Q)⁴] = 3 (the moments of tr Q
      match those of N(0, 1) up to order n; needs n >= 4);
    * a column is uniform on the sphere, so ``(Q₀₀ + 1)/2 ~ Beta((n-1)/2, (n-1)/2)``
      (KS test);
    * the entry ``Q[n-1, m-1]`` matches ``scipy.stats.ortho_group`` by a
      two-sample KS test.

    Complex (Haar on U(n)): E[tr U] = 0, E|tr U|² = 1, E|tr U|⁴ = 2 (n >= 2);
    ``|U₀₀|² ~ Beta(1, n-1)``; eigen-angles uniform on (-π, π); the entry's real
    part matches ``scipy.stats.unitary_group``.

    Both: each sign of ``diag(R)`` in the Householder QR of the samples is a
    fair coin (binomial s.e. ``0.5/sqrt(N)``), column by column.

    Moment checks use ``num_sigmas`` standard errors estimated from the sample
    (false-failure ≈ 5.7e-7 each at 5, m of them for the signs); KS checks fail
    below ``min_p_value``.
    Without Mezzadri's sign correction, QR-based samplers fail these checks.
    """
    q = np.asarray(samples)
    q = q.astype(np.complex128 if np.iscomplexobj(q) else np.float64)
    if q.ndim != 3 or q.shape[1] < q.shape[2]:
        raise ValueError(f"assert_haar: expected shape (N, n, m) with n >= m, got {q.shape}.")
    count, n, m = q.shape
    _assert_householder_signs(q, num_sigmas, name)
    rng = np.random.default_rng(seed)
    square = n == m
    if np.iscomplexobj(q):
        if square and n >= 2:
            tr = np.trace(q, axis1=1, axis2=2)
            _assert_mean(tr.real, 0.0, num_sigmas, f"{name}: E[Re tr U]")
            _assert_mean(tr.imag, 0.0, num_sigmas, f"{name}: E[Im tr U]")
            _assert_mean(np.abs(tr) ** 2, 1.0, num_sigmas, f"{name}: E|tr U|²")
            _assert_mean(np.abs(tr) ** 4, 2.0, num_sigmas, f"{name}: E|tr U|⁴")
            angles = np.angle(np.linalg.eigvals(q)).ravel()
            assert_ks(angles, "uniform", (-np.pi, 2 * np.pi), min_p_value=min_p_value,
                      name=f"{name}: eigen-angles")
        if n >= 2:
            assert_ks(np.abs(q[:, 0, 0]) ** 2, "beta", (1, n - 1), min_p_value=min_p_value,
                      name=f"{name}: |U₀₀|²")
        reference = scipy.stats.unitary_group.rvs(n, size=count, random_state=rng)
        entry = q[:, n - 1, m - 1].real
        ref_entry = reference.reshape(count, n, n)[:, n - 1, m - 1].real
    else:
        if square:
            positive = float(np.mean(np.linalg.det(q) > 0))
            se = 0.5 / math.sqrt(count)
            if not abs(positive - 0.5) <= num_sigmas * se:
                raise AssertionError(
                    f"{name}: expected P(det > 0) = 0.5 ± {num_sigmas * se:.3g}, "
                    f"got {positive:.4f}."
                )
            if n >= 4:
                tr = np.trace(q, axis1=1, axis2=2)
                _assert_mean(tr, 0.0, num_sigmas, f"{name}: E[tr Q]")
                _assert_mean(tr**2, 1.0, num_sigmas, f"{name}: E[(tr Q)²]")
                _assert_mean(tr**4, 3.0, num_sigmas, f"{name}: E[(tr Q)⁴]")
        if n >= 2:
            assert_ks((q[:, 0, 0] + 1) / 2, "beta", ((n - 1) / 2, (n - 1) / 2),
                      min_p_value=min_p_value, name=f"{name}: (Q₀₀+1)/2")
        reference = scipy.stats.ortho_group.rvs(max(n, 2), size=count, random_state=rng)
        entry = q[:, n - 1, m - 1]
        ref_entry = reference.reshape(count, max(n, 2), max(n, 2))[:, n - 1, m - 1]
    result = scipy.stats.ks_2samp(entry, ref_entry)
    if not result.pvalue > min_p_value:
        raise AssertionError(
            f"{name}: expected entry [{n - 1}, {m - 1}] distributed as under the Haar measure "
            f"(scipy reference), two-sample KS gives D={result.statistic:.4g}, "
            f"p={result.pvalue:.3g} <= {min_p_value:g}."
        )
