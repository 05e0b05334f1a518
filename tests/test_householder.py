"""jaxinit.householder: the packed draws, the reflectors, their compact-WY product, the stages."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinit import householder
from jaxinit.householder import (
    _packing,
    _reflectors,
    _stage_plan,
    _unpack,
    _wy_factor,
    householder_sampler,
    reflector_draws,
)
from jaxinit.testing import assert_orthogonal


def _vector(draws, n, m, k):
    """Reflector k's Gaussian vector (length n - k), read from the packed draws by hand."""
    rows, length = draws.shape
    even = 2 * rows
    if k < rows:
        return draws[k, :n - k][::-1]
    return draws[even - 1 - k, length - (n - k):]


def _reference(key, n, m, dtype):
    """Q·diag(phase of R_kk) from the same vectors, reflector by reflector in numpy."""
    draws = np.asarray(reflector_draws(key, n, m, np.dtype(dtype))).astype(np.complex128)
    q, phases = np.eye(n, dtype=np.complex128), []
    for k in range(m):
        x = _vector(draws, n, m, k)
        phase = x[0] / abs(x[0])
        v = x + phase * np.linalg.norm(x) * np.eye(n - k)[0]
        h = np.eye(n, dtype=np.complex128)
        h[k:, k:] -= 2 * np.outer(v, v.conj()) / np.vdot(v, v)
        # The reflector's defining property: H x = -phase·‖x‖ e₁ (R_kk has phase -phase).
        np.testing.assert_allclose(h[k:, k:] @ x, -phase * np.linalg.norm(x) * np.eye(n - k)[0],
                                   atol=1e-5)
        q = q @ h
        phases.append(-phase)
    return q[:, :m] * np.array(phases)


@pytest.mark.parametrize("t_in_loop", [False, True])
@pytest.mark.parametrize("dtype,n,m,block_size", [
    (np.float32, 9, 9, 4), (np.complex64, 20, 7, 3), (np.float32, 33, 33, 8),
    (np.complex64, 12, 5, 64), (np.float32, 10, 1, 4)])
def test_blocked_product_equals_reflector_by_reflector(dtype, n, m, block_size, t_in_loop,
                                                       monkeypatch):
    # Large matrices on CPU apply T inside the loop instead of copying V·T first: lowering the
    # size threshold runs that form on these small ones.
    if t_in_loop:
        monkeypatch.setattr(householder, "LARGE_MATRIX", 0)
    key = jax.random.key(3)
    q = jax.jit(lambda k: householder_sampler(k, n, m, np.dtype(dtype),
                                              block_size=block_size))(key)
    # float32 rounding of an O(n)-step product: a few ulps times sqrt(n).
    np.testing.assert_allclose(np.asarray(q), _reference(key, n, m, dtype), atol=2e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.complex64])
def test_batched_form_as_on_accelerators(dtype):
    # Off CPU a stack goes through the program whole (on CPU it is mapped one matrix at a
    # time), so CI runs the batched form directly to keep its shapes and values honest.
    draws = reflector_draws(jax.random.split(jax.random.key(8), 3), 40, 33, np.dtype(dtype))
    stack = jax.jit(lambda d: householder._one_matrix(d, 40, 33, 8, None))(draws)
    single = jax.jit(lambda d: householder._one_matrix(d, 40, 33, 8, None))(draws[1])
    assert_orthogonal(stack, batch_axis=0)
    np.testing.assert_allclose(stack[1], single, rtol=0, atol=2e-6)


@pytest.mark.parametrize("n,m", [(7, 7), (7, 6), (9, 4), (5, 1), (6, 5)])
def test_packing_uses_each_draw_once(n, m):
    # Every vector k (length n - k) gets its own entries of the packed draw, none shared,
    # and the draw holds at most n numbers more than the n·m - m(m-1)/2 the vectors use.
    rows, length = _packing(n, m)
    index = np.arange(rows * length).reshape(rows, length)
    used = np.concatenate([_vector(index, n, m, k) for k in range(m)])
    assert len(used) == n * m - m * (m - 1) // 2 == len(set(used.tolist()))
    assert rows * length - len(used) <= n
    # _unpack puts vector k at the end of row k.
    unpacked = np.asarray(_unpack(jnp.asarray(index, jnp.float32), n, m)).astype(int)
    for k in range(m):
        np.testing.assert_array_equal(unpacked[k, k:], _vector(index, n, m, k))


def test_values_do_not_depend_on_block_size_or_stage_plan():
    # The vectors are fixed by the key alone; block size and stages change only rounding.
    key = jax.random.key(4)
    plans = [(4, 1), (8, 1), (8, 100), (16, 2), (64, 6)]
    results = [jax.jit(lambda k, b=b, s=s: householder_sampler(
        k, 40, 37, np.dtype(np.float32), block_size=b, max_stages=s))(key) for b, s in plans]
    for q in results[1:]:
        np.testing.assert_allclose(q, results[0], atol=2e-6)
    assert_orthogonal(results[0])


def test_wy_factor_reproduces_the_product_of_reflectors():
    x = jax.random.normal(jax.random.key(5), (2, 16, 40), jnp.complex64)
    # Jitted: eagerly each operation would compile a program of its own.
    w, _ = jax.jit(_reflectors)(x)
    t = jax.jit(_wy_factor)(w)
    assert np.allclose(np.tril(np.asarray(t)[0], -1), 0)  # upper triangular
    for b in range(2):
        product = np.eye(40, dtype=np.complex128)
        for i in range(16):
            vi = np.asarray(w[b, i], np.complex128)
            product = product @ (np.eye(40) - 2 * np.outer(vi, vi.conj()) / np.vdot(vi, vi))
        vb = np.asarray(w[b], np.complex128).T
        wy = np.eye(40) - vb @ np.asarray(t[b], np.complex128) @ vb.conj().T
        np.testing.assert_allclose(wy, product, atol=1e-5)


@pytest.mark.parametrize("invert", [householder._unit_upper_inverse_by_columns,
                                    householder._unit_upper_inverse_by_products],
                         ids=["columns", "products"])
def test_unit_upper_triangular_inverses(invert):
    # Both ways of forming T (the CPU's and the accelerators') on a CPU, for sizes below,
    # at and above the product's leaf and not powers of two, batched.
    rng = np.random.default_rng(0)
    for b in (1, 5, 32, 100):
        a = np.triu(rng.normal(size=(2, 3, b, b)), 1).astype(np.float32) / np.sqrt(b)
        inverse = np.asarray(jax.jit(invert)(jnp.asarray(a)), np.float64)
        np.testing.assert_allclose(inverse @ (np.eye(b) + a), np.broadcast_to(np.eye(b), a.shape),
                                   atol=2e-5, err_msg=f"b={b}")


def test_degenerate_zero_vector_gives_identity_not_nan():
    # A zero draw (probability zero, but possible in floating point): no NaN, an identity.
    for dtype in (jnp.float32, jnp.complex64):
        w, sign = jax.jit(_reflectors)(jnp.zeros((2, 5), dtype))
        t = jax.jit(_wy_factor)(w[None])
        assert np.all(np.isfinite(w)) and np.all(np.isfinite(t)) and np.all(t == 0)
        assert np.all(np.abs(sign) == 1)
    draws = jnp.zeros(householder.draw_shape(5, 2))
    q = jax.jit(householder.householder_matrices, static_argnums=(1, 2))(draws, 5, 2)
    assert np.all(np.isfinite(q))


def test_stage_plan_covers_every_block_once_within_the_stage_limit():
    for n, m, b, stages in [(8192, 8192, 128, 6), (1000, 300, 64, 3), (50, 50, 64, 6)]:
        plan = _stage_plan(n, m, b, stages)
        blocks = [j for first, end in plan for j in range(first, end)]
        assert blocks == list(range(-(-m // b)))
        assert len(plan) <= stages


def test_rejects_wide_requests():
    with pytest.raises(ValueError, match="n >= m"):
        householder_sampler(jax.random.key(0), 3, 5, np.dtype(np.float32))


def test_default_plan_is_bounded():
    # Each stage compiles one loop body: the default plan keeps the program small.
    for n, m in [(64, 64), (1024, 1024), (8192, 8192), (8192, 100)]:
        b = householder.default_block_size(n, m)
        assert len(_stage_plan(n, m, b, householder.MAX_STAGES)) <= householder.MAX_STAGES


@pytest.mark.parametrize(("dtype", "block_size"), [
    (np.float32, 64), (np.complex64, 100), (np.float32, 128),
    *(pytest.param(d, b, marks=pytest.mark.slow)
      for d, b in [(np.complex64, 64), (np.float32, 100), (np.complex64, 128)])])
def test_stacks_with_merged_wy_factors(dtype, block_size):
    # Blocks larger than the leaf size build T by merging; with a batch axis this once
    # crashed XLA's CPU compiler (products with several batch axes).
    keys = jax.random.split(jax.random.key(6), 3)
    sample = jax.jit(lambda k: householder_sampler(k, 130, 120, np.dtype(dtype),
                                                   block_size=block_size))
    q = sample(keys)
    assert_orthogonal(q, batch_axis=0)
    single = sample(keys[1])
    np.testing.assert_allclose(q[1], single, rtol=0, atol=2e-6)
