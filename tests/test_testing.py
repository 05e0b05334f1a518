"""The statistical assertions themselves: they pass on correct samples and fail on wrong ones.

Each failing case is an error an initializer could make (a variance 1% or 5%
off, the wrong law, a matrix off orthogonal by 1e-3, a QR without the sign
correction, one column's sign fixed); each must raise with a message saying
what was expected and what came.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from jaxinit.testing import (
    assert_haar,
    assert_ks,
    assert_orthogonal,
    assert_std,
    assert_variance,
    orthogonality_error,
)

RNG = np.random.default_rng(0)
NORMAL = RNG.standard_normal(2**21)


def test_assert_variance_passes_the_true_variance_and_fails_one_percent_off():
    assert_variance(NORMAL, 1.0, mean=0.0)
    assert_std(NORMAL * 0.5, 0.5)
    with pytest.raises(AssertionError, match=r"expected variance 1.01 .* got 0.99"):
        assert_variance(NORMAL, 1.01)
    with pytest.raises(AssertionError, match=r"expected mean 0.01"):
        assert_variance(NORMAL, 1.0, mean=0.01)


def test_assert_variance_uses_the_kurtosis_of_the_law():
    uniform = RNG.uniform(-1, 1, 2**20)
    assert_variance(uniform, 1 / 3, excess_kurtosis=-1.2)
    # A uniform's variance estimate is 1.6x tighter than a normal's (kurtosis -1.2):
    # N = 2^20 puts a 1% error at 11.4 s.e.
    with pytest.raises(AssertionError):
        assert_variance(uniform * math.sqrt(1.01), 1 / 3, excess_kurtosis=-1.2)


def test_assert_variance_refuses_non_finite_samples():
    with pytest.raises(AssertionError, match="expected finite samples, got 1 NaN/inf"):
        assert_variance(np.array([1.0, np.nan, 2.0]), 1.0)


def test_assert_ks_detects_the_wrong_law():
    assert_ks(NORMAL[:100000], "norm")
    with pytest.raises(AssertionError, match="KS test rejects it"):
        assert_ks(RNG.uniform(-1.7, 1.7, 100000), "norm")
    with pytest.raises(AssertionError):
        assert_ks(NORMAL[:100000] * 1.05, "norm")  # D ≈ 0.012 against 0.0062 at p = 1e-4


def test_assert_orthogonal_tolerance_is_tight():
    q = np.linalg.qr(RNG.standard_normal((64, 64)))[0].astype(np.float32)
    assert assert_orthogonal(q) < 1e-5
    assert_orthogonal(2 * q, scale=2.0)
    assert_orthogonal(q[:, :10])  # tall: orthonormal columns
    assert_orthogonal(q[:10, :])  # wide: orthonormal rows
    bad = q.copy()
    bad[0, 0] += 1e-3
    with pytest.raises(AssertionError, match="expected .*orthogonal.* got max deviation"):
        assert_orthogonal(bad)
    with pytest.raises(AssertionError):
        assert_orthogonal(q, scale=1.001)
    stack = np.stack([q, bad])
    assert orthogonality_error(stack, batch_axis=0) > 1e-4


def _qr_without_sign_correction(count, n):
    return np.linalg.qr(RNG.standard_normal((count, n, n)))[0]


def _haar(count, n):
    return scipy.stats.ortho_group.rvs(n, size=count, random_state=RNG)


def test_assert_haar_passes_haar_samples():
    assert_haar(_haar(2000, 6))
    assert_haar(_haar(2000, 6)[:, :, :3])  # semi-orthogonal columns


def test_assert_haar_fails_qr_without_the_sign_correction():
    with pytest.raises(AssertionError):
        assert_haar(_qr_without_sign_correction(2000, 6))


def test_assert_haar_fails_special_orthogonal_samples():
    q = _haar(2000, 6)
    q[np.linalg.det(q) < 0, :, 0] *= -1  # every det = +1
    with pytest.raises(AssertionError, match="det"):
        assert_haar(q)


def test_assert_haar_sees_a_sign_error_in_the_last_column_alone():
    # For large n the trace moments and single entries barely move when the last column's
    # sign is fixed by the others; the sign of R's last diagonal entry is then constant.
    n, count = 16, 400
    q = _haar(count, n)
    last = np.sign(np.diagonal(np.linalg.qr(q, mode="r"), axis1=1, axis2=2)[:, -1])
    q[:, :, -1] *= last[:, None]
    with pytest.raises(AssertionError, match="column 15"):
        assert_haar(q)


def test_assert_haar_unitary():
    u = scipy.stats.unitary_group.rvs(5, size=2000, random_state=RNG)
    assert_haar(u)
    with pytest.raises(AssertionError):
        assert_haar(np.linalg.qr(RNG.standard_normal((2000, 5, 5))
                                 + 1j * RNG.standard_normal((2000, 5, 5)))[0])
