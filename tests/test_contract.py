"""The contract under hostile input: each class of bad input, over every public factory.

Each test is a table: a class of input (a batch of keys, an unsigned float dtype,
an overflowing option, a traced option, ...) run over every row of
``factories.FACTORIES`` or over the cases of that class. Every case must end in a
clear error naming the factory and the argument, or in a correct value.
"""

from __future__ import annotations

import logging
import math
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from factories import ALIASES, FACTORIES, HELPERS, KEY, NO_DTYPE_OPTION

import jaxinit
from jaxinit.testing import assert_ks

NAMES = sorted(set(FACTORIES) - set(ALIASES))
PUBLIC = {"zeros_init": "zeros", "ones_init": "ones",
          "spectral_radius_normal": "spectral_radius"}


def _label(name: str) -> str:
    """The name the errors of a row's initializer carry."""
    base = PUBLIC.get(name, name)
    return {"scaled": "scaled", "gate_blocks": "gate_blocks"}.get(base, base)


def _build(name, **options):
    return FACTORIES[name].build(**options)


def test_every_public_name_is_covered():
    covered = set(FACTORIES) | HELPERS
    assert set(jaxinit.__all__) <= covered, sorted(set(jaxinit.__all__) - covered)


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_aliases_are_the_same_function(alias):
    # So every table below holds for them: their rows are not run again.
    assert getattr(jaxinit, alias) is getattr(jaxinit, ALIASES[alias])


# --- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_a_batch_of_keys_is_refused_naming_the_factory_and_vmap(name):
    init, shape = _build(name), FACTORIES[name].shape
    with pytest.raises(TypeError, match=rf"^jaxinit\.{_label(name)}: key has shape \(2,\), a "
                                        r"batch of keys; accepted: a single key.*jax\.vmap"):
        init(jax.random.split(KEY, 2), shape)


@pytest.mark.parametrize("name", ["normal", "zeros", "orthogonal", "sparse"])
@pytest.mark.parametrize("raw", [np.zeros((3,), np.uint32), np.zeros((), np.uint32),
                                 np.zeros((2, 2, 2), np.uint32)])
def test_raw_key_data_of_the_wrong_shape(name, raw):
    with pytest.raises(TypeError, match=rf"^jaxinit\.{_label(name)}: key .*(single key|batch)"):
        _build(name)(raw, FACTORIES[name].shape)


def test_legacy_and_batched_keys_under_vmap_are_single_keys():
    keys = jax.random.split(KEY, 3)
    w = jax.vmap(lambda k: jaxinit.he_normal()(k, (4, 5)))(keys)
    np.testing.assert_array_equal(w[1], jaxinit.he_normal()(keys[1], (4, 5)))
    raw = jax.random.key_data(keys)
    w_raw = jax.vmap(lambda k: jaxinit.he_normal()(k, (4, 5)))(raw)
    np.testing.assert_array_equal(w_raw, w)


# --- dtypes --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_dtypes_without_sign_or_zero_are_refused(name):
    with pytest.raises(TypeError, match=rf"^jaxinit\.{_label(name)}: dtype=float8_e8m0fnu "
                                        "cannot hold negative values or zero"):
        _build(name)(KEY, FACTORIES[name].shape, jnp.float8_e8m0fnu)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, jnp.bool_])
def test_integer_dtypes_are_refused_when_called(name, dtype):
    with pytest.raises(TypeError, match=rf"^jaxinit\.{_label(name)}: dtype=\w+ is not supported"):
        _build(name)(KEY, FACTORIES[name].shape, dtype)


@pytest.mark.parametrize("name", sorted(set(NAMES) - NO_DTYPE_OPTION - {"scaled"}))
def test_an_integer_dtype_option_is_refused_by_the_factory(name):
    with pytest.raises(TypeError, match=rf"^jaxinit\.{_label(name)}: dtype=int32"):
        _build(name, dtype=jnp.int32)


@pytest.mark.parametrize("name", NAMES)
def test_complex_dtypes_are_refused_or_correct(name):
    row = FACTORIES[name]
    init = _build(name)
    if not row.complex_ok:
        with pytest.raises(TypeError, match=rf"^jaxinit\.{_label(name)}: dtype=complex64"):
            init(KEY, row.shape, jnp.complex64)
        return
    w = init(KEY, row.shape, jnp.complex64)
    assert w.dtype == jnp.complex64 and bool(jnp.all(jnp.isfinite(w)))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_64_bit_dtypes_without_x64_warn_and_truncate(name, dtype):
    if dtype == "complex128" and not FACTORIES[name].complex_ok:
        return
    with pytest.warns(UserWarning, match=rf"jaxinit\.{_label(name)}: dtype={dtype} is not "
                                         "available without x64"):
        w = _build(name)(KEY, FACTORIES[name].shape, dtype)
    assert w.dtype == jnp.dtype(dtype.replace("64", "32").replace("128", "64"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float8_e4m3fn])
def test_low_precision_is_computed_in_float32_and_cast_once(name, dtype):
    init, shape = _build(name), FACTORIES[name].shape
    low = init(KEY, shape, dtype)
    assert low.dtype == dtype
    np.testing.assert_array_equal(np.asarray(low, np.float32),
                                  np.asarray(init(KEY, shape, jnp.float32).astype(dtype),
                                             np.float32))


# --- shapes, purity ------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_zero_size_shapes_give_empty_arrays(name):
    empty = (0,) + FACTORIES[name].shape[1:]
    if name in ("irnn", "spectral_radius", "spectral_radius_normal"):
        empty = (0, 0)
    w = _build(name)(KEY, empty)
    assert w.shape == empty and w.dtype == jnp.float32


@pytest.mark.parametrize("name", NAMES)
def test_eager_and_jit_are_bit_identical(name):
    init, shape = _build(name), FACTORIES[name].shape
    eager = init(KEY, shape)
    jitted = jax.jit(init, static_argnums=1)(KEY, shape)
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(jitted))
    np.testing.assert_array_equal(np.asarray(init(KEY, shape)), np.asarray(eager))  # pure
    assert bool(jnp.all(jnp.isfinite(eager)))


@pytest.mark.parametrize("name", ["zeros", "ones", "constant", "normal", "uniform",
                                  "uniform_range", "truncated_normal", "relu_bias", "gate_bias"])
def test_an_int_shape_means_a_vector_as_in_jax(name):
    init = _build(name)
    np.testing.assert_array_equal(init(KEY, 8), init(KEY, (8,)))


@pytest.mark.parametrize("shape", ["ab", (2, "3"), (2, 1.5), (2, True), None])
def test_shapes_that_are_not_ints(shape):
    with pytest.raises(TypeError, match=r"^jaxinit\.normal: shape=.* must be an int or a sequence"):
        jaxinit.normal()(KEY, shape)


# --- options that overflow the dtype -------------------------------------------------------

OVERFLOWS = [
    (lambda: jaxinit.normal(1e39), jnp.float32, "stddev=1e+39"),
    (lambda: jaxinit.normal(1000.0), jnp.float8_e4m3fn, "stddev=1000.0"),
    (lambda: jaxinit.normal(0.1, mean=7e4), jnp.float16, "mean=70000.0"),
    (lambda: jaxinit.constant(1e39), jnp.float32, "value=1e+39"),
    (lambda: jaxinit.constant(1e5), jnp.float16, "value=100000.0"),
    (lambda: jaxinit.constant(np.linspace(1.0, 4e38, 8)), jnp.bfloat16, None),
    (lambda: jaxinit.lstm_bias(1e5), jnp.float16, "values="),  # shape (8, 8): 8 gates of 2
    (lambda: jaxinit.variance_scaling(1e300, "fan_in", "normal"), jnp.float32, "scale=1e+300"),
    (lambda: jaxinit.glorot_uniform(gain=1e39), jnp.float32, "gain=1e+39"),
    (lambda: jaxinit.uniform(1e39), jnp.float32, "scale=1e+39"),
    (lambda: jaxinit.uniform_range(-1.0, 1e39), jnp.float32, "high=1e+39"),
    (lambda: jaxinit.truncated_normal(1e38, upper=4.0), jnp.float32, "stddev=1e+38"),
    (lambda: jaxinit.identity(1e5), jnp.float16, "scale=100000.0"),
    (lambda: jaxinit.orthogonal(1e39), jnp.float32, "scale=1e+39"),
    (lambda: jaxinit.sparse(2, stddev=1e38), jnp.float32, "stddev=1e+38"),
    (lambda: jaxinit.scaled(jaxinit.normal(1.0), 1e38), jnp.float32, "factor=1e+38"),
    (lambda: jaxinit.spectral_radius(1e39), jnp.float32, "radius=1e+39"),
]


@pytest.mark.parametrize("make, dtype, option", OVERFLOWS)
def test_options_that_overflow_the_dtype_are_refused_when_called(make, dtype, option):
    init = make()
    with pytest.raises(ValueError, match=r"^jaxinit\.\w+: .*overflows " + np.dtype(dtype).name
                       + r" \(largest finite"):
        init(KEY, (8, 8), dtype)
    if option is not None:
        with pytest.raises(ValueError, match=re.escape(option)):
            init(KEY, (8, 8), dtype)


@pytest.mark.parametrize("make, dtype", [
    (lambda: jaxinit.uniform_range(-3e38, 3e38), jnp.float32),  # high - low overflows float32
    (lambda: jaxinit.symmetric_uniform(3e38), jnp.float32),
    (lambda: jaxinit.normal(60000 / 5.5 / 1.6), jnp.float16),  # large but within float16
    (lambda: jaxinit.constant(448.0), jnp.float8_e4m3fn),
    (lambda: jaxinit.glorot_uniform(gain=1e20), jnp.float32),  # the variance overflows, not w
])
def test_the_largest_options_that_fit_give_finite_values(make, dtype):
    w = make()(KEY, (256, 64), dtype)
    assert bool(jnp.all(jnp.isfinite(w.astype(jnp.float32))))
    if "uniform" in repr(make):
        assert float(jnp.std(w.astype(jnp.float32))) > 1e37


@pytest.mark.parametrize("make, option", [
    (lambda: jaxinit.glorot_uniform(gain=1e200), "gain=1e+200"),
    (lambda: jaxinit.he_uniform(negative_slope=1e200), "negative_slope=1e+200"),
    (lambda: jaxinit.calculate_gain("leaky_relu", 1e200), "param=1e+200"),
    (lambda: jaxinit.normal(10**400), "stddev=1.000e+400"),
    (lambda: jaxinit.orthogonal(10**400), "scale=1.000e+400"),
    (lambda: jaxinit.constant(10**400), "value="),
    (lambda: jaxinit.truncated_normal(1.0, upper=10**400), "upper=1.000e+400"),
])
def test_huge_options_raise_value_error_not_overflow_error(make, option):
    with pytest.raises(ValueError, match=re.escape(option)):
        make()


# --- options checked when the factory is called -------------------------------------------

EARLY = [
    (lambda: jaxinit.variance_scaling(1.0, "fan_in", "normal", in_axis="a"), TypeError,
     "variance_scaling: in_axis='a' must be an int or a sequence of ints"),
    (lambda: jaxinit.variance_scaling(1.0, "fan_in", "normal", in_axis=1.5), TypeError,
     "variance_scaling: in_axis=1.5"),
    (lambda: jaxinit.variance_scaling(1.0, "fan_in", "normal", in_axis=True), TypeError,
     "variance_scaling: in_axis=True"),
    (lambda: jaxinit.variance_scaling(1.0, "fan_in", "normal", in_axis=(0, 0)), ValueError,
     r"variance_scaling: in_axis=\(0, 0\) repeats an axis"),
    (lambda: jaxinit.variance_scaling(1.0, "fan", "normal"), ValueError,
     "variance_scaling: mode='fan'"),
    (lambda: jaxinit.variance_scaling(1.0, "fan_in", 3), ValueError,
     "variance_scaling: distribution=3"),
    (lambda: jaxinit.xavier_uniform(batch_axis=(0, 0)), ValueError,
     r"glorot_uniform: batch_axis=\(0, 0\)"),
    (lambda: jaxinit.sparse(3, in_axis=0, out_axis=0), ValueError,
     "sparse: in_axis and out_axis both contain axis 0"),
    (lambda: jaxinit.sparse(3, batch_axis="x"), TypeError, "sparse: batch_axis='x'"),
    (lambda: jaxinit.orthogonal(column_axis=1.0), TypeError, "orthogonal: column_axis=1.0"),
    (lambda: jaxinit.orthogonal(num_blocks=0), ValueError, "orthogonal: num_blocks=0"),
    (lambda: jaxinit.orthogonal(method="householdr"), ValueError,
     "orthogonal: method='householdr'"),
    (lambda: jaxinit.identity(batch_axis=(1, 1)), ValueError, r"identity: batch_axis=\(1, 1\)"),
    (lambda: jaxinit.dirac(groups=0), ValueError, "dirac: groups=0"),
    (lambda: jaxinit.dirac(groups=2.0), TypeError, "dirac: groups=2.0"),
    (lambda: jaxinit.normal(dtype=jnp.int32), TypeError, "normal: dtype=int32"),
    (lambda: jaxinit.orthogonal(dtype="int8"), TypeError, "orthogonal: dtype=int8"),
    (lambda: jaxinit.identity(dtype=jnp.float8_e8m0fnu), TypeError,
     "identity: dtype=float8_e8m0fnu"),
    (lambda: jaxinit.shardable("x")(5), TypeError, r"shardable\('x'\): init=5"),
    (lambda: jaxinit.shardable(5), TypeError, "shardable: name=5"),
    (lambda: jaxinit.scaled(5, 2.0), TypeError, "scaled: init=5"),
    (lambda: jaxinit.gate_blocks(jaxinit.normal(), 0), ValueError, "gate_blocks: num_gates=0"),
    (lambda: jaxinit.gate_bias({"x": 1.0}), ValueError, "gate_bias: .*not in gate_order"),
    (lambda: jaxinit.spectral_radius(0.9, "eig"), ValueError, "spectral_radius: base='eig'"),
    (lambda: jaxinit.spectral_radius(0.9, num_squarings=0), ValueError,
     "spectral_radius: num_squarings=0"),
    (lambda: jaxinit.sparse(), ValueError, "sparse: exactly one of"),
    (lambda: jaxinit.sparse(zero_fraction=1.0), ValueError, "sparse: zero_fraction=1.0"),
]


@pytest.mark.parametrize("make, error, match", EARLY)
def test_bad_options_are_refused_by_the_factory(make, error, match):
    with pytest.raises(error, match=r"^jaxinit\." + match):
        make()


@pytest.mark.parametrize("make", [
    lambda: jaxinit.identity(batch_axis=np.int64(0)),
    lambda: jaxinit.spectral_radius(0.9, num_squarings=np.int64(10)),
    lambda: jaxinit.residual_projection(np.int64(4)),
    lambda: jaxinit.sparse(np.int32(3)),
    lambda: jaxinit.dirac(np.int16(1)),
    lambda: jaxinit.orthogonal(column_axis=np.int64(-1), num_blocks=np.int64(1)),
    lambda: jaxinit.gate_blocks(jaxinit.normal(), np.int64(2)),
    lambda: jaxinit.variance_scaling(1.0, "fan_in", "normal", in_axis=np.int8(0),
                                     out_axis=(np.int64(1),)),
])
def test_numpy_integers_are_ints(make):
    w = make()(KEY, (2, 4, 4))
    assert bool(jnp.all(jnp.isfinite(w)))


@pytest.mark.parametrize("make, error, match", [
    (lambda: jaxinit.constant(1 + 2j)(KEY, (3,)), TypeError,
     r"constant: value=\(1\+2j\) is complex but dtype=float32 is real"),
    (lambda: jaxinit.constant(np.arange(3.0))(KEY, (4,)), ValueError,
     r"constant: value of shape \(3,\) does not broadcast to shape=\(4,\)"),
    (lambda: jaxinit.constant(np.arange(3.0))(KEY, (1,)), ValueError,
     "constant: .*does not broadcast"),
    (lambda: jaxinit.constant("a"), TypeError, "constant: value='a' must be a number"),
    (lambda: jaxinit.constant(True), TypeError, "constant: value=True must be a number"),
    (lambda: jaxinit.normal(np.array(1 + 2j)), TypeError, "normal: stddev=.* must be a real"),
    (lambda: jaxinit.normal(np.ones(2)), TypeError, r"normal: stddev has shape \(2,\)"),
    (lambda: jaxinit.normal("0.1"), TypeError, "normal: stddev='0.1' must be a real number"),
    (lambda: jaxinit.uniform_range(1.0, 1.0), ValueError,
     "uniform_range: low=1.0 must be < high=1.0"),
])
def test_messages_name_the_argument_and_what_is_accepted(make, error, match):
    with pytest.raises(error, match=r"^jaxinit\." + match):
        make()


# --- traced options ------------------------------------------------------------------------


@pytest.mark.parametrize("make, args", [
    (lambda v: jaxinit.constant(v), (2.5,)),
    (lambda v: jaxinit.constant(v), (np.arange(4.0),)),
    (lambda m: jaxinit.normal(0.1, mean=m), (2.0,)),
    (lambda s: jaxinit.normal(s), (0.3,)),
    (lambda lo, hi: jaxinit.uniform_range(lo, hi), (-1.0, 2.0)),
    (lambda s: jaxinit.variance_scaling(s, "fan_in", "normal"), (2.0,)),
    (lambda s: jaxinit.orthogonal(s), (1.5,)),
    (lambda s: jaxinit.identity(s), (0.5,)),
])
def test_traced_options_work_under_jit_and_equal_concrete_ones(make, args):
    shape = (4, 4)
    traced = jax.jit(lambda *a: make(*a)(KEY, shape))(*args)
    np.testing.assert_array_equal(np.asarray(traced), np.asarray(make(*args)(KEY, shape)))


@pytest.mark.parametrize("make, value, match", [
    (lambda s: jaxinit.normal(s), -1.0, r"jaxinit\.normal: stddev=-1\.0 must be finite and > 0"),
    (lambda s: jaxinit.variance_scaling(s, "fan_in", "uniform"), -2.0,
     r"jaxinit\.variance_scaling: scale=-2\.0 must be finite and > 0"),
    (lambda s: jaxinit.uniform(s), float("nan"), r"jaxinit\.uniform: scale=nan must be finite"),
    (lambda v: jaxinit.constant(v), float("inf"), r"jaxinit\.constant: value must be finite"),
    (lambda v: jaxinit.constant(v, jnp.float16), 1e5,
     r"jaxinit\.constant: value reaches .* overflows float16"),
    (lambda hi: jaxinit.uniform_range(1.0, hi), 0.0, r"jaxinit\.uniform_range: low=1\.0 must be"),
])
def test_bad_traced_options_raise_when_the_program_runs(make, value, match, caplog):
    fn = jax.jit(lambda v: make(v)(KEY, (4, 4)))
    with caplog.at_level(logging.CRITICAL), pytest.raises(Exception, match=match):
        jax.block_until_ready(fn(value))


# --- far tails -------------------------------------------------------------------------------


@pytest.mark.parametrize("lower, upper", [(10.0, 11.0), (3.0, 3.5), (-40.0, -38.0), (6.0, 1e9),
                                          (2.9, 3.1)])
def test_far_tail_truncations_follow_the_exact_law(lower, upper):
    scipy_stats = pytest.importorskip("scipy.stats")
    w = jaxinit.truncated_normal(1.0, lower=lower, upper=upper)(KEY, (20000,))
    assert float(w.min()) >= lower and float(w.max()) <= upper
    # KS with N = 20000: false failure 1e-4; a law stuck on a few values fails at p ~ 0.
    law = scipy_stats.truncnorm(lower, min(upper, 1e6))
    assert_ks(np.asarray(w, np.float64), law.cdf, name=f"truncated_normal({lower}, {upper})")


def test_far_tail_in_float64_and_scaled():
    with jax.enable_x64(True):
        w = jaxinit.truncated_normal(2.0, lower=8.0, upper=9.0)(KEY, (20000,), jnp.float64)
    scipy_stats = pytest.importorskip("scipy.stats")
    assert_ks(np.asarray(w) / 2.0, scipy_stats.truncnorm(8.0, 9.0).cdf)


# --- spectral radius, degenerate inputs ---------------------------------------------------


@pytest.mark.parametrize("matrix, radius", [
    (1e20 * np.eye(3), 1e20), (1e-30 * np.eye(3), 1e-30), (np.zeros((3, 3)), 0.0),
    (np.array([[0.0, 1.0], [0.0, 0.0]]), 0.0), (np.array([[0.0, 2.0], [-2.0, 0.0]]), 2.0),
    (np.diag([3.0, -5.0, 1.0]), 5.0),
])
def test_estimate_spectral_radius_never_gives_nan(matrix, radius):
    rho = float(jaxinit.estimate_spectral_radius(jnp.asarray(matrix, jnp.float32)))
    assert math.isfinite(rho)
    np.testing.assert_allclose(rho, radius, rtol=1e-4)


@pytest.mark.parametrize("call, error, match", [
    (lambda: jaxinit.estimate_spectral_radius(jnp.eye(3), 0), ValueError, "num_squarings=0"),
    (lambda: jaxinit.estimate_spectral_radius(jnp.ones((3, 2))), ValueError,
     r"a has shape \(3, 2\); accepted: square"),
    (lambda: jaxinit.estimate_spectral_radius(jnp.ones(3)), ValueError, "square"),
    (lambda: jaxinit.spectral_radius(0.9)(KEY, (3, 4)), ValueError, "not square"),
])
def test_spectral_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("base", [jaxinit.zeros, lambda k, s, d=None: jnp.triu(jnp.ones(s), 1)])
def test_a_base_with_spectral_radius_zero_is_refused(base, caplog):
    init = jaxinit.spectral_radius(0.9, base)
    with caplog.at_level(logging.CRITICAL), pytest.raises(Exception, match="spectral radius is 0"):
        jax.block_until_ready(init(KEY, (4, 4)))


# --- compiled programs are shared -----------------------------------------------------------


@pytest.mark.devices(2)
def test_fresh_factories_with_equal_options_reuse_the_sharded_program(caplog):
    mesh = jax.make_mesh((2,), ("d",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
    jaxinit.normal(0.1)(KEY, (8, 4), out_sharding=sharding)  # compile once
    with warnings.catch_warnings(), jax.log_compiles(True), caplog.at_level(logging.WARNING):
        for _ in range(3):
            jaxinit.normal(0.1)(KEY, (8, 4), out_sharding=sharding)
    compiled = [r for r in caplog.records if "Compiling" in r.getMessage()]
    assert not compiled, [r.getMessage() for r in compiled]


# --- transforms ----------------------------------------------------------------------------

#: Equal to the per-key calls up to rounding under vmap: the radius estimate's batched
#: matrix products may round differently from single ones (1-2 ulp measured).
VMAP_TO_ROUNDING = {"spectral_radius_normal"}


@pytest.mark.parametrize("name", [n for n in NAMES if FACTORIES[n].random])
def test_vmap_over_keys_equals_the_per_key_calls(name):
    # The README's promise: the values of init(keys[i], shape), bit for bit, under jax.vmap.
    init, shape = _build(name), FACTORIES[name].shape
    keys = jax.random.split(KEY, 2)
    batched = jax.vmap(lambda k: init(k, shape))(keys)
    assert not np.array_equal(np.asarray(batched[0]), np.asarray(batched[1])), "same draws"
    for i in range(2):
        single = np.asarray(init(keys[i], shape))
        if name in VMAP_TO_ROUNDING:
            np.testing.assert_allclose(np.asarray(batched[i]), single, rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_array_equal(np.asarray(batched[i]), single,
                                          err_msg=f"{name}, key {i}")
