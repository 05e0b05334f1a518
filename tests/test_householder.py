"""jaxinit.householder: the drawn reflectors, their compact-WY product, the stage plan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinit import householder
from jaxinit.householder import _reflectors, _stage_plan, _wy_factor, householder_sampler
from jaxinit.testing import assert_orthogonal


def _reference(key, n, m, dtype, b):
    """Q·diag(sign β) from the same Gaussian panels, reflector by reflector in numpy."""
    panels = [np.asarray(jax.random.normal(jax.random.fold_in(key, j), (n, min(b, m - j * b)),
                                           dtype)).astype(np.complex128)
              for j in range(-(-m // b))]
    q, signs = np.eye(n, dtype=np.complex128), []
    for k in range(m):
        x = panels[k // b][k:, k % b]
        alpha, norm = x[0], np.linalg.norm(x)
        beta = -norm if alpha.real >= 0 else norm
        tau = (beta - alpha) / beta
        v = np.concatenate([[1.0], x[1:] / (alpha - beta)])
        h = np.eye(n, dtype=np.complex128)
        h[k:, k:] -= tau * np.outer(v, v.conj())
        # larfg's defining property: Hᴴ x = β e₁.
        np.testing.assert_allclose(h[k:, k:].conj().T @ x, np.eye(n - k)[0] * beta, atol=1e-5)
        q = q @ h
        signs.append(np.sign(beta))
    return q[:, :m] * np.array(signs)


@pytest.mark.parametrize("dtype,n,m,block_size", [
    (np.float32, 9, 9, 4), (np.complex64, 20, 7, 3), (np.float32, 33, 33, 8),
    (np.complex64, 12, 5, 64)])
def test_blocked_product_equals_reflector_by_reflector(dtype, n, m, block_size):
    key = jax.random.key(3)
    q = jax.jit(lambda k: householder_sampler(k, (), n, m, np.dtype(dtype),
                                              block_size=block_size))(key)
    # float32 rounding of an O(n)-step product: a few ulps times sqrt(n).
    np.testing.assert_allclose(np.asarray(q), _reference(key, n, m, dtype, min(block_size, m)),
                               atol=2e-6)


def test_result_does_not_depend_on_the_stage_plan(monkeypatch):
    # In one rolled stage, later blocks work in a larger window than they need;
    # the extra rows and columns must contribute exact zeros.
    sample = lambda: householder_sampler(jax.random.key(4), (2,), 30, 27,  # noqa: E731
                                         np.dtype(np.float32), block_size=8)
    monkeypatch.setattr(householder, "MAX_STAGES", 1)
    one_stage = sample()
    monkeypatch.setattr(householder, "MAX_STAGES", 100)
    unrolled = sample()
    np.testing.assert_allclose(one_stage, unrolled, atol=1e-6)
    assert_orthogonal(one_stage, batch_axis=0)


def test_wy_factor_reproduces_the_product_of_reflectors():
    x = jax.random.normal(jax.random.key(5), (2, 40, 16), jnp.complex64)
    v, tau, _ = _reflectors(x, 0)
    t = _wy_factor(v, tau)
    assert np.allclose(np.tril(np.asarray(t)[0], -1), 0)  # upper triangular
    for b in range(2):
        product = np.eye(40, dtype=np.complex128)
        for i in range(16):
            vi = np.asarray(v[b, :, i], np.complex128)
            product = product @ (np.eye(40) - complex(tau[b, i]) * np.outer(vi, vi.conj()))
        vb = np.asarray(v[b], np.complex128)
        wy = np.eye(40) - vb @ np.asarray(t[b], np.complex128) @ vb.conj().T
        np.testing.assert_allclose(wy, product, atol=1e-5)


def test_degenerate_zero_vector_gives_identity_not_nan():
    v, tau, sign = _reflectors(jnp.zeros((5, 2)), 0)
    assert np.all(np.isfinite(v)) and np.all(tau == 0) and np.all(sign == 1)


def test_stage_plan_covers_every_block_once_within_the_stage_limit():
    for n, m, b, stages in [(8192, 8192, 128, 6), (1000, 300, 64, 3), (50, 50, 64, 6)]:
        plan = _stage_plan(n, m, b, stages)
        blocks = [j for first, end in plan for j in range(first, end)]
        assert blocks == list(range(-(-m // b)))
        assert len(plan) <= stages + 1  # + a ragged last block


def test_rejects_wide_requests():
    with pytest.raises(ValueError, match="n >= m"):
        householder_sampler(jax.random.key(0), (), 3, 5, np.dtype(np.float32))
