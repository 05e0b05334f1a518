"""Tests of the alternative orthogonal samplers: orthogonality, exact Haar law, robustness."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from designs import rotation

from jaxinit import orthogonal_recipes as recipes
from jaxinit.haar import map_matrices
from jaxinit.orthogonal_recipes import (
    cholesky_qr2_sampler,
    gram_schmidt_sampler,
    polar_sampler,
    svd_sampler,
)
from jaxinit.testing import assert_haar, assert_orthogonal, orthogonality_error

SAMPLERS = {
    "gram_schmidt": gram_schmidt_sampler,
    "svd": svd_sampler,
    "cholesky_qr2": cholesky_qr2_sampler,
    "polar": polar_sampler,
}
# (batch_shape, n, m): tall, two batch axes, a single column. Square batched
# matrices, real and complex, are checked with the Haar samples below.
CASES = [((), 40, 12), ((2, 3), 9, 5), ((), 7, 1)]


def _jitted(sampler):
    return jax.jit(sampler, static_argnums=(1, 2, 3))


def _keys(seed, batch_shape):
    """One key per matrix: a key for (), else a stack of keys of that shape."""
    key = jax.random.key(seed)
    if not batch_shape:
        return key
    return jax.random.split(key, int(np.prod(batch_shape))).reshape(batch_shape)


# Each sampler on one of the layouts, every layout met (all pairs with --run-slow); every
# sampler's batched square and tall matrices are checked again by the Haar tests below.
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name, batch_shape, n, m", rotation(
    list(SAMPLERS), CASES, list(SAMPLERS), ["tall", "two_batch_axes", "one_column"]))
def test_orthonormal_columns(name, batch_shape, n, m):
    q = _jitted(SAMPLERS[name])(_keys(0, batch_shape), n, m, "float32")
    assert q.shape == (*batch_shape, n, m)
    assert q.dtype == np.float32
    assert np.all(np.isfinite(np.asarray(q)))
    batch_axis = tuple(range(len(batch_shape)))
    assert_orthogonal(q, batch_axis=batch_axis, name=name)
    # Slices are independent draws, not copies.
    flat = np.asarray(q).reshape(-1, n * m)
    assert len(np.unique(flat.round(5), axis=0)) == len(flat)


@pytest.mark.timeout(120)
# Each sampler at 64-bit precision, real or complex (both with --run-slow); the complex
# arithmetic of every sampler is checked at complex64 by the Haar tests below.
@pytest.mark.parametrize("name, dtype", rotation(list(SAMPLERS), ["float64", "complex128"],
                                                 list(SAMPLERS), ["float64", "complex128"]))
def test_orthonormal_columns_x64(name, dtype):
    with jax.enable_x64(True):
        q = _jitted(SAMPLERS[name])(_keys(1, (2,)), 48, 20, dtype)
        assert q.dtype == np.dtype(dtype)
        # float64 tolerance: 4·eps + 16·sqrt(48)·eps ≈ 2.6e-14.
        assert_orthogonal(q, batch_axis=0, name=f"{name} {dtype}")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["gram_schmidt", "cholesky_qr2"])
@pytest.mark.parametrize("n,m", [(32, 32), (50, 20)])
def test_qr_samplers_equal_jax_orthogonal(name, n, m):
    # Both compute the Q with positive diagonal R of the same Gaussian draw as
    # jax.random.orthogonal, per key: equal up to rounding, which a wrong sign
    # or a wrong column order would break by O(1).
    keys = _keys(2, (3,))
    q = _jitted(SAMPLERS[name])(keys, n, m, "float32")
    expected = np.stack([jax.random.orthogonal(k, n, (), jnp.float32, m) for k in keys])
    np.testing.assert_allclose(q, expected, atol=2e-5)


@pytest.mark.timeout(60)
def test_polar_sampler_is_the_polar_factor():
    keys = _keys(3, (2,))
    q = _jitted(polar_sampler)(keys, 40, 16, "float32")
    z = np.stack([np.asarray(jax.random.normal(k, (40, 16), jnp.float32), np.float64)
                  for k in keys])
    u, _, vh = np.linalg.svd(z, full_matrices=False)
    np.testing.assert_allclose(q, u @ vh, atol=2e-5)


@pytest.mark.timeout(60)
def test_svd_sampler_is_u_with_random_signs():
    key = jax.random.key(4)
    q = np.asarray(_jitted(svd_sampler)(key, 30, 30, "float32"))
    key_z, _ = jax.random.split(key)
    z = np.asarray(jax.random.normal(key_z, (30, 30), jnp.float32), np.float64)
    u = np.linalg.svd(z)[0]
    signs = np.sign(np.sum(q * u, axis=0))
    np.testing.assert_allclose(q, u * signs, atol=2e-5)
    # The signs are random, not the LAPACK ones: P(all 30 agree) = 2^-30.
    assert 0 < np.sum(signs > 0) < 30


# --- Haar law -----------------------------------------------------------------------------
# assert_haar: each moment check fails a correct sampler with probability ≈ 5.7e-7
# (5 s.e.), each KS check with 1e-4; fixed keys make the outcome deterministic.
HAAR_SAMPLES = 2000


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("dtype", ["float32", "complex64"])
def test_haar_square(name, dtype):
    q = _jitted(SAMPLERS[name])(_keys(5, (HAAR_SAMPLES,)), 4, 4, dtype)
    assert q.dtype == np.dtype(dtype)
    assert_orthogonal(q, batch_axis=0, name=f"{name} {dtype}")
    assert_haar(q, name=f"{name} {dtype}")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", SAMPLERS)
def test_haar_tall(name):
    q = _jitted(SAMPLERS[name])(_keys(6, (HAAR_SAMPLES,)), 6, 3, "float32")
    assert_orthogonal(q, batch_axis=0, name=f"{name} tall")
    assert_haar(q, name=f"{name} tall")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("dtype", ["float32", "complex64"])
def test_plain_svd_u_is_not_haar(dtype):
    # The seed's recipe as written: U of svd(randn(n, n)) with LAPACK's signs.
    # Measured: P(det U > 0) ≈ 0.13 (real), E[Re tr U] ≈ -0.53 (complex).
    z = jax.random.normal(jax.random.key(5), (HAAR_SAMPLES, 4, 4), dtype)
    u = jax.lax.map(lambda a: jnp.linalg.svd(a)[0], z)
    with pytest.raises(AssertionError):
        assert_haar(u)


# --- ill-conditioning, fall-backs -----------------------------------------------------------


def _ill_conditioned(n, condition, dtype, seed=0):
    """A matrix with singular values geometric from 1 down to 1/condition."""
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(rng.standard_normal((n, n)))[0]
    v = np.linalg.qr(rng.standard_normal((n, n)))[0]
    sigma = np.geomspace(1.0, 1.0 / condition, n)
    return jnp.asarray((u * sigma) @ v.T, dtype)


@pytest.mark.timeout(120)
def test_cholesky_qr_shift_handles_what_cholesky_qr2_cannot():
    # κ = 1e5 > 1/sqrt(eps) ≈ 2900 in float32: plain CholeskyQR2 cannot reach
    # orthogonality (or breaks down), the shifted passes do, with no fall-back.
    n = 256
    z = _ill_conditioned(n, 1e5, jnp.float32)
    accept = recipes._accept_tolerance(np.dtype(np.float32), n)
    plain, _, _ = jax.jit(lambda a: recipes._cholesky_qr_passes(a, accept, 0.0, 2))(z)
    plain_error = orthogonality_error(plain)
    assert not plain_error <= accept, plain_error
    shift = recipes._cholesky_shift_factor(n, n, np.dtype(np.float32))
    q, g, passes = jax.jit(lambda a: recipes._cholesky_qr_passes(a, accept, shift, 10))(z)
    assert int(passes) < 10
    assert float(recipes._gram_error(g)) <= accept
    assert_orthogonal(q)
    # Still the Q of the QR with positive diagonal R.
    q_ref, r_ref = np.linalg.qr(np.asarray(z, np.float64))
    q_ref = q_ref * np.sign(np.diag(r_ref))
    np.testing.assert_allclose(q, q_ref, atol=1e-2)  # Q's condition number is κ


@pytest.mark.timeout(120)
def test_polar_iteration_converges_on_ill_conditioned_input():
    n = 256
    z = _ill_conditioned(n, 1e6, jnp.float32)
    accept = recipes._accept_tolerance(np.dtype(np.float32), n)
    q, g, steps = jax.jit(lambda a: recipes._polar_iteration(a, accept, 12))(z)
    budget = len(recipes._newton_schulz_scalings(float(jnp.finfo(jnp.float32).eps))) + 12
    assert int(steps) < budget
    assert float(recipes._gram_error(g)) <= accept
    assert_orthogonal(q)


@pytest.mark.timeout(120)
def test_fall_backs_give_the_same_matrix():
    # Too few passes/steps: the check must notice and recompute by QR / SVD.
    z = jax.random.normal(jax.random.key(7), (2, 64, 64), jnp.float32)
    accept = recipes._accept_tolerance(np.dtype(np.float32), 64)
    q = jax.jit(lambda a: map_matrices(
        lambda b: recipes._cholesky_qr(b, accept, 1e-3, max_passes=1), a))(z)
    assert_orthogonal(q, batch_axis=0)
    np.testing.assert_allclose(q, jax.random.orthogonal(jax.random.key(7), 64, (2,)), atol=2e-5)
    few = -len(recipes._newton_schulz_scalings(float(jnp.finfo(jnp.float32).eps)))
    p = jax.jit(lambda a: recipes._polar(a, accept, extra_steps=few))(z)
    assert_orthogonal(p, batch_axis=0)
    u, _, vh = np.linalg.svd(np.asarray(z, np.float64), full_matrices=False)
    np.testing.assert_allclose(p, u @ vh, atol=2e-5)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", ["cholesky_qr2", "polar"])
def test_large_square_float32(name):
    # n = 1024 square: κ(Z) ~ 1e3-1e4, κ² far beyond 1/eps(float32).
    q = _jitted(SAMPLERS[name])(jax.random.key(8), 1024, 1024, "float32")
    assert_orthogonal(q, name=name)


# --- batching, jit ----------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_several_batched_samplers_in_one_jit_do_not_hang():
    # Batched LAPACK calls running together in one program can deadlock on the
    # CPU thread pool (jaxlib 0.10); the samplers must never build such a program.
    @jax.jit
    def init_all(key):
        keys = jax.random.split(key, (8, 8))
        return [
            sampler(k, 32, 32, jnp.float32)
            for k, sampler in zip(keys, [*SAMPLERS.values(), *SAMPLERS.values()], strict=True)
        ]

    for seed in range(3):
        for q in init_all(jax.random.key(seed)):
            assert_orthogonal(q, batch_axis=0)


def test_wide_or_empty_request_is_refused():
    for n, m in [(3, 5), (0, 0)]:
        with pytest.raises(ValueError, match=r"n >= m >= 1"):
            polar_sampler(jax.random.key(0), n, m, jnp.float32)


# --- each matrix on its own -------------------------------------------------------------------


@pytest.mark.timeout(120)
@pytest.mark.parametrize("iteration", ["polar", "cholesky_qr2"])
def test_a_matrix_does_not_depend_on_the_rest_of_its_batch(iteration):
    # The batch runs until its slowest matrix converges; a converged matrix must be
    # frozen meanwhile, or extra steps change its last bits (up to ~1e3 ulp measured).
    # Measured steps (polar, CholeskyQR passes): κ = 2: 21, 2; κ = 1e8: 29, 5.
    easy = jnp.stack([_ill_conditioned(64, 2.0, jnp.float32, seed=s) for s in (2, 3)])
    hard = _ill_conditioned(64, 1e8, jnp.float32, seed=1)
    accept = recipes._accept_tolerance(np.dtype(np.float32), 64)
    if iteration == "polar":
        run = jax.jit(lambda z: recipes._polar_iteration(z, accept, 12))
    else:
        shift = recipes._cholesky_shift_factor(64, 64, np.dtype(np.float32))
        run = jax.jit(lambda z: recipes._cholesky_qr_passes(z, accept, shift, 10))
    with_easy, _, steps_easy = run(easy)
    with_hard, _, steps_hard = run(jnp.stack([easy[0], hard]))
    assert int(steps_hard) > int(steps_easy)  # the hard matrix did keep the batch going
    np.testing.assert_array_equal(with_hard[0], with_easy[0])


@pytest.mark.parametrize("x64", [False, True])
def test_svd_signs_are_jax_rademacher(x64):
    # The real signs come from the fused uniform draw; they must be jax.random.rademacher's
    # (a flipped comparison or the wrong float type would still look like fair coins).
    key = jax.random.key(5)
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        ours = np.asarray(recipes._random_phases(key, (7, 300), np.dtype(dtype)))
        theirs = np.asarray(jax.random.rademacher(key, (7, 300), dtype))
    assert ours.dtype == theirs.dtype, f"expected {theirs.dtype}, got {ours.dtype}"
    assert np.array_equal(ours, theirs), f"{np.mean(ours != theirs):.1%} of the signs differ"
