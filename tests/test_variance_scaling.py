"""Variance scaling family: exact distributions by variance and KS tests, axes, errors.

Every statistical check uses a fixed key. ``assert_variance`` allows 5 standard
errors (false failure ≈ 5.7e-7 per check) and ``assert_ks`` fails below
p = 1e-4 (false failure 1e-4 per check); with ~300 checks in this file the
chance that a correct implementation fails anywhere is below 0.04.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from designs import rotation

import jaxinit
from jaxinit.testing import UNIFORM_EXCESS_KURTOSIS, assert_ks, assert_variance
from jaxinit.variance_scaling import COMPLEX_TRUNCATED_NORMAL_STD, TRUNCATED_NORMAL_STD

KEY = jax.random.key(20240601)

# (shape, axis kwargs, fan_in, fan_out): dense, conv HWIO, stacked with batch_axis, grouped axes.
SHAPES = [
    ((256, 512), {}, 256, 512),
    ((3, 3, 64, 96), {}, 576, 864),
    ((4, 128, 256), {"batch_axis": 0}, 128, 256),
    ((8, 16, 200), {"in_axis": (0, 1), "out_axis": 2}, 128, 200),
]

# Excess kurtosis of N(0,1) truncated to (-2, 2), for the variance test's standard error.
TRUNC_KURTOSIS = float(scipy.stats.truncnorm.stats(-2, 2, moments="k"))


def _denominator(mode, fan_in, fan_out):
    return {
        "fan_in": fan_in,
        "fan_out": fan_out,
        "fan_avg": (fan_in + fan_out) / 2,
        "fan_geo_avg": math.sqrt(fan_in * fan_out),
    }[mode]


def check_real_law(w, distribution, variance, name):
    """Variance, bounds and KS test of the exact real law of a variance-scaled sample."""
    # Bounds hold up to one rounding of the sample's dtype (the product limit * u rounds).
    slack = 1 + float(jnp.finfo(w.dtype).eps)
    w = np.asarray(w, np.float64).ravel()
    std = math.sqrt(variance)
    if distribution == "normal":
        assert_variance(w, variance, mean=0.0, name=name)
        assert_ks(w, "norm", (0, std), name=name)
    elif distribution == "truncated_normal":
        unscaled = std / TRUNCATED_NORMAL_STD
        assert np.abs(w).max() < 2 * unscaled * slack, f"{name}: sample outside (-2σ', 2σ')"
        assert_variance(w, variance, excess_kurtosis=TRUNC_KURTOSIS, mean=0.0, name=name)
        assert_ks(w, "truncnorm", (-2, 2, 0, unscaled), name=name)
    else:
        limit = math.sqrt(3 * variance)
        assert np.abs(w).max() <= limit * slack, f"{name}: sample outside [-limit, limit]"
        assert_variance(w, variance, excess_kurtosis=UNIFORM_EXCESS_KURTOSIS, mean=0.0,
                        name=name)
        assert_ks(w, "uniform", (-limit, 2 * limit), name=name)


MODES = ["fan_in", "fan_out", "fan_avg", "fan_geo_avg"]
DISTRIBUTIONS = ["normal", "truncated_normal", "uniform"]
LAWS = [(mode, distribution) for mode in MODES for distribution in DISTRIBUTIONS]


# Every mode with every distribution; the shapes' fans (test_fans.py) are met by a
# rotation in the default run, and in every combination with --run-slow.
@pytest.mark.parametrize("mode, distribution, shape, axes, fan_in, fan_out", rotation(
    LAWS, SHAPES, [f"{m}-{d}" for m, d in LAWS], ["dense", "conv", "batch_axis", "grouped"]))
def test_variance_scaling_real_law(mode, distribution, shape, axes, fan_in, fan_out):
    scale = 1.7
    w = jaxinit.variance_scaling(scale, mode, distribution, **axes)(KEY, shape)
    assert w.shape == shape and w.dtype == jnp.float32
    check_real_law(w, distribution, scale / _denominator(mode, fan_in, fan_out),
                   f"{mode}/{distribution}{shape}")


@pytest.mark.parametrize("distribution", ["normal", "truncated_normal", "uniform"])
def test_variance_scaling_bfloat16_is_computed_in_float32(distribution):
    shape = (512, 256)
    w16 = jaxinit.variance_scaling(2.0, "fan_in", distribution)(KEY, shape, jnp.bfloat16)
    w32 = jaxinit.variance_scaling(2.0, "fan_in", distribution)(KEY, shape, jnp.float32)
    assert w16.dtype == jnp.bfloat16
    # Same float32 sample, rounded once: each entry within half a bfloat16 ulp.
    np.testing.assert_array_equal(np.asarray(w16), np.asarray(w32.astype(jnp.bfloat16)))
    check_real_law(w16, distribution, 2.0 / 512, f"bfloat16 {distribution}")


@pytest.mark.parametrize("distribution", ["normal", "truncated_normal", "uniform"])
def test_variance_scaling_complex_law(distribution):
    shape = (400, 600)
    variance = 1.0 / 400
    w = np.asarray(jaxinit.variance_scaling(1.0, "fan_in", distribution)(
        KEY, shape, jnp.complex64), np.complex128).ravel()
    # E|w|² = σ²; the per-sample spread of |w|² sets the standard error (CLT).
    power = np.abs(w) ** 2
    se = power.std(ddof=1) / math.sqrt(power.size)
    assert abs(power.mean() - variance) <= 5 * se, (power.mean(), variance, se)
    assert_ks(np.angle(w), "uniform", (-np.pi, 2 * np.pi), name="phase")
    if distribution == "normal":
        assert_ks(w.real, "norm", (0, math.sqrt(variance / 2)), name="real part")
        assert_ks(w.imag, "norm", (0, math.sqrt(variance / 2)), name="imaginary part")
    elif distribution == "uniform":
        # Uniform on the disk of radius sqrt(2σ²): |w|²/(2σ²) ~ U(0, 1).
        assert_ks(power / (2 * variance), "uniform", (), name="|w|² on the disk")
    else:
        # |w|²/c² ~ Exp(1) truncated to (0, 4), c = σ / COMPLEX_TRUNCATED_NORMAL_STD.
        c2 = variance / COMPLEX_TRUNCATED_NORMAL_STD**2
        assert_ks(power / c2, "truncexpon", (4.0,), name="|w|² truncated exponential")


def test_complex_truncated_normal_constant_is_exact_and_jax_is_not():
    # E|z|² of the unit complex normal with |z|² truncated at 4, by numerical integration.
    second_moment = scipy.stats.truncexpon(4.0).mean()
    assert COMPLEX_TRUNCATED_NORMAL_STD == pytest.approx(math.sqrt(second_moment), rel=1e-12)
    # JAX's constant makes the variance 1.87% high: more than 10 standard errors here.
    shape = (1000, 1000)
    jax_w = jax.nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")(
        KEY, shape, jnp.complex64)
    power = np.abs(np.asarray(jax_w, np.complex128)) ** 2
    se = power.std(ddof=1) / math.sqrt(power.size)
    assert (power.mean() - 1e-3) / se > 10


@pytest.mark.parametrize(
    "factory, kwargs, distribution, variance",
    [
        (jaxinit.glorot_uniform, {}, "uniform", 2 / (300 + 500)),
        (jaxinit.glorot_uniform, {"gain": 4.0}, "uniform", 16 * 2 / (300 + 500)),
        (jaxinit.glorot_normal, {}, "truncated_normal", 2 / (300 + 500)),
        (jaxinit.glorot_normal, {"gain": 5 / 3}, "truncated_normal", (5 / 3) ** 2 * 2 / 800),
        (jaxinit.he_uniform, {}, "uniform", 2 / 300),
        (jaxinit.he_normal, {}, "truncated_normal", 2 / 300),
        (jaxinit.he_normal, {"negative_slope": 0.2}, "truncated_normal", 2 / (1.04 * 300)),
        (jaxinit.lecun_uniform, {}, "uniform", 1 / 300),
        (jaxinit.lecun_normal, {}, "truncated_normal", 1 / 300),
    ],
)
def test_named_schemes_law(factory, kwargs, distribution, variance):
    w = factory(**kwargs)(KEY, (300, 500))
    check_real_law(w, distribution, variance, f"{factory.__name__}{kwargs}")


def test_glorot_bengio_formulas():
    # Glorot & Bengio (2010): tanh r = sqrt(6/(fan_in+fan_out)); sigmoid: 4 times that.
    tanh_w = jaxinit.glorot_uniform()(KEY, (100, 200))
    sigm_w = jaxinit.glorot_uniform(gain=4.0)(KEY, (100, 200))
    r = math.sqrt(6 / 300) * (1 + 1.2e-7)  # one float32 rounding
    assert float(jnp.abs(tanh_w).max()) <= r and float(jnp.abs(tanh_w).max()) > 0.99 * r
    np.testing.assert_allclose(np.asarray(sigm_w), 4 * np.asarray(tanh_w), rtol=1e-6)
    # He et al. 2015 in a conv kernel: std sqrt(2 / (kh * kw * c_in)).
    w = jaxinit.he_normal()(KEY, (5, 5, 32, 64))
    assert_variance(w, 2 / (25 * 32), excess_kurtosis=TRUNC_KURTOSIS)


def test_aliases():
    assert jaxinit.xavier_uniform is jaxinit.glorot_uniform
    assert jaxinit.xavier_normal is jaxinit.glorot_normal
    assert jaxinit.kaiming_uniform is jaxinit.he_uniform
    assert jaxinit.kaiming_normal is jaxinit.he_normal


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: jaxinit.variance_scaling(1.0, "fan_sum", "normal"), ValueError,
         "mode='fan_sum' is not supported"),
        (lambda: jaxinit.variance_scaling(1.0, "fan_in", "cauchy"), ValueError,
         "distribution='cauchy' is not supported"),
        (lambda: jaxinit.variance_scaling(0.0, "fan_in", "normal"), ValueError, "scale=0.0"),
        (lambda: jaxinit.variance_scaling(-1.0, "fan_in", "normal"), ValueError, "must be > 0"),
        (lambda: jaxinit.variance_scaling(float("inf"), "fan_in", "normal"), ValueError,
         "must be finite"),
        (lambda: jaxinit.glorot_uniform(gain=0.0), ValueError, "gain=0.0"),
        (lambda: jaxinit.he_normal(negative_slope="0.1"), TypeError, "negative_slope"),
    ],
)
def test_factory_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize(
    "shape, kwargs, dtype, error, match",
    [
        ((10,), {}, None, ValueError, "rank 1"),
        ((4, 5), {"in_axis": 3}, None, ValueError, "in_axis=3 is out of range"),
        ((4, 5, 6), {"batch_axis": (0, -3)}, None, ValueError, "names one axis twice"),
        ((4, -5), {}, None, ValueError, "negative dimension"),
        ((4, 5), {}, jnp.int32, TypeError, "dtype=int32 is not supported"),
        ((4, 5), {}, jnp.bool_, TypeError, "dtype=bool is not supported"),
    ],
)
def test_initializer_errors(shape, kwargs, dtype, error, match):
    init = jaxinit.he_uniform(**kwargs)
    with pytest.raises(error, match=match):
        init(KEY, shape, dtype)


@pytest.mark.parametrize("name", ["lecun_normal", "lecun_uniform", "he_normal", "he_uniform",
                                  "glorot_normal", "glorot_uniform", "xavier_uniform"])
def test_errors_name_the_factory_the_user_called(name):
    factory = getattr(jaxinit, name)
    public = {"xavier_uniform": "glorot_uniform"}.get(name, name)
    with pytest.raises(TypeError, match=rf"^jaxinit\.{public}: dtype=int8"):
        factory()(KEY, (3, 3), jnp.int8)
    with pytest.raises(ValueError, match=rf"^jaxinit\.{public}: .*rank 1"):
        factory()(KEY, (3,))
    with pytest.raises(ValueError, match=rf"^jaxinit\.{public}: batch_axis=\(0, 0\) repeats"):
        factory(batch_axis=(0, 0))


def test_overlapping_axes_follow_jax_like_flax_embed():
    # Flax nn.Embed's default: in_axis=-2 and out_axis=0 are the same axis of a 2-D table.
    ours = jaxinit.variance_scaling(1.0, "fan_in", "normal", out_axis=0)
    theirs = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal", out_axis=0)
    for shape in [(100, 16), (7, 3), (3, 10)]:
        np.testing.assert_array_equal(ours(KEY, shape), theirs(KEY, shape))
