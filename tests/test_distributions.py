"""Constant and fixed-scale random schemes: exact laws, dtypes, errors.

Statistical checks: 5 standard errors for variances/means (false failure ≈ 5.7e-7
each) and KS p > 1e-4 (false failure 1e-4 each), fixed keys.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jaxinit
from jaxinit.testing import UNIFORM_EXCESS_KURTOSIS, assert_ks, assert_variance

KEY = jax.random.key(7)
SHAPES = [(300, 400), (3, 3, 32, 64), (120000,)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("stddev, mean", [(0.01, 0.0), (0.1, 0.0), (0.5, -0.25)])
def test_normal_law(shape, stddev, mean):
    w = jaxinit.normal(stddev, mean=mean)(KEY, shape)
    assert w.shape == shape
    assert_variance(w, stddev**2, mean=mean)
    assert_ks(w, "norm", (mean, stddev))


def test_rbm_and_small_random_presets_are_0_01_randn():
    # Hinton (2010): RBM weights ~ N(0, 0.01²), i.e. 0.01 * randn(D, H), rounded once.
    expected = np.asarray(jax.random.normal(KEY, (784, 500))) * np.float32(0.01)
    np.testing.assert_array_equal(jaxinit.rbm_normal()(KEY, (784, 500)), expected)
    np.testing.assert_array_equal(jaxinit.normal(0.01)(KEY, (784, 500)), expected)
    np.testing.assert_array_equal(jaxinit.rbm_normal(0.1)(KEY, (4, 5)),
                                  np.asarray(jax.random.normal(KEY, (4, 5))) * np.float32(0.1))


@pytest.mark.parametrize("shape", SHAPES)
def test_uniform_law(shape):
    w = np.asarray(jaxinit.uniform(0.3)(KEY, shape))
    assert w.min() >= 0 and w.max() < 0.3
    assert_variance(w, 0.09 / 12, excess_kurtosis=UNIFORM_EXCESS_KURTOSIS, mean=0.15)
    assert_ks(w, "uniform", (0, 0.3))


@pytest.mark.parametrize("low, high", [(-0.5, 0.5), (-1.0, 0.25), (2.0, 3.0)])
def test_uniform_range_law(low, high):
    w = np.asarray(jaxinit.uniform_range(low, high)(KEY, (400, 300)))
    assert w.min() >= low and w.max() < high
    assert_variance(w, (high - low) ** 2 / 12, excess_kurtosis=UNIFORM_EXCESS_KURTOSIS,
                    mean=(low + high) / 2)
    assert_ks(w, "uniform", (low, high - low))


def test_symmetric_uniform_law():
    w = np.asarray(jaxinit.symmetric_uniform(0.05)(KEY, (500, 500)))
    assert np.abs(w).max() <= 0.05
    assert_variance(w, 0.05**2 / 3, excess_kurtosis=UNIFORM_EXCESS_KURTOSIS, mean=0.0)
    assert_ks(w, "uniform", (-0.05, 0.1))


@pytest.mark.parametrize("lower, upper", [(-2.0, 2.0), (-1.0, 3.0), (0.0, 1.5)])
def test_truncated_normal_law(lower, upper):
    stddev = 0.2
    w = np.asarray(jaxinit.truncated_normal(stddev, lower=lower, upper=upper)(KEY, (400, 400)))
    # Open interval before scaling; the product with stddev may round onto a bound.
    assert w.min() >= lower * stddev and w.max() <= upper * stddev
    law = scipy.stats.truncnorm(lower, upper, scale=stddev)
    assert_variance(w, law.var(), excess_kurtosis=float(law.stats(moments="k")),
                    mean=law.mean())
    assert_ks(w, "truncnorm", (lower, upper, 0, stddev))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_is_sampled_in_float32(dtype):
    for init in [jaxinit.normal(0.1), jaxinit.uniform(0.1), jaxinit.truncated_normal(0.1),
                 jaxinit.uniform_range(-0.1, 0.2)]:
        low = init(KEY, (200, 300), dtype)
        high = init(KEY, (200, 300), jnp.float32)
        assert low.dtype == dtype
        np.testing.assert_array_equal(np.asarray(low), np.asarray(high.astype(dtype)))
    assert_variance(jaxinit.normal(0.1)(KEY, (400, 500), jnp.bfloat16), 0.01)


def test_complex_normal():
    w = np.asarray(jaxinit.normal(0.2)(KEY, (400, 400), jnp.complex64), np.complex128)
    assert_ks(w.real, "norm", (0, 0.2 / math.sqrt(2)), name="real part")
    assert_ks(w.imag, "norm", (0, 0.2 / math.sqrt(2)), name="imaginary part")


@pytest.mark.parametrize("init", [jaxinit.zeros, jaxinit.ones, jaxinit.constant(-0.5)])
@pytest.mark.parametrize("dtype", [None, jnp.float32, jnp.bfloat16, jnp.complex64])
def test_constants(init, dtype):
    w = init(KEY, (3, 4), dtype)
    expected = {jaxinit.zeros: 0.0, jaxinit.ones: 1.0}.get(init, -0.5)
    assert w.shape == (3, 4) and w.dtype == (dtype or jnp.float32)
    assert bool(jnp.all(w == expected))


def test_constant_broadcasts_array_value():
    w = jaxinit.constant(jnp.array([1.0, 2.0, 3.0]))(KEY, (2, 3))
    np.testing.assert_array_equal(np.asarray(w), [[1, 2, 3], [1, 2, 3]])


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: jaxinit.normal(0.0), ValueError, r"jaxinit\.normal: stddev=0.0 must be > 0"),
        (lambda: jaxinit.normal(-0.1), ValueError, "stddev=-0.1"),
        (lambda: jaxinit.normal(float("nan")), ValueError, "must be finite"),
        (lambda: jaxinit.normal("0.1"), TypeError, "stddev='0.1' must be a real number"),
        (lambda: jaxinit.uniform(0.0), ValueError, "scale=0.0"),
        (lambda: jaxinit.uniform_range(1.0, 1.0), ValueError, "low=1.0 must be < high=1.0"),
        (lambda: jaxinit.symmetric_uniform(-1.0), ValueError, "limit=-1.0"),
        (lambda: jaxinit.truncated_normal(1.0, lower=2.0, upper=-2.0), ValueError,
         "lower=2.0 must be < upper=-2.0"),
        (lambda: jaxinit.constant(float("inf")), ValueError, "must be finite"),
        (lambda: jaxinit.constant("a"), TypeError, "must be a number"),
    ],
)
def test_factory_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "init, shape, dtype, error, match",
    [
        (jaxinit.normal(), (3, -1), None, ValueError, "negative dimension"),
        (jaxinit.normal(), (3, 4), jnp.int32, TypeError, "dtype=int32"),
        (jaxinit.uniform(), (3, 4), jnp.complex64, TypeError,
         r"jaxinit\.uniform: dtype=complex64 is not supported"),
        (jaxinit.truncated_normal(), (3, 4), jnp.complex64, TypeError, "complex64"),
        (jaxinit.zeros, (3, 4), jnp.uint8, TypeError, "dtype=uint8"),
        (jaxinit.constant(1.0), (2.5,), None, TypeError, "shape"),
    ],
)
def test_initializer_errors(init, shape, dtype, error, match):
    with pytest.raises(error, match=match):
        init(KEY, shape, dtype)


def test_bad_key_is_refused():
    with pytest.raises(TypeError, match="key=.* is not a PRNG key"):
        jaxinit.normal()(jnp.zeros(2, jnp.float32), (2, 2))
