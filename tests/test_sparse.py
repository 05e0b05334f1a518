"""sparse: exact counts per unit, N(0, stddev²) values, uniform positions, fan-in-free variance."""

import importlib
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from example_loader import load_example
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from jaxinit.sparse import nonzero_count, sparse
from jaxinit.testing import assert_ks, assert_variance


def _force_path(monkeypatch, floyd):
    # The module, not the function `jaxinit.sparse` the package exports under the same name.
    sparse_module = importlib.import_module("jaxinit.sparse")
    monkeypatch.setattr(sparse_module, "_uses_floyd", lambda n, m: floyd)


def units_by_fan_in(w, in_axis=-2, out_axis=-1, batch_axis=()):
    """Reshapes to (units, fan_in): units are batch × out positions."""
    from jaxinit.fans import fan_axes

    ins, outs, batch, receptive = fan_axes("test", w.shape, in_axis, out_axis, batch_axis)
    order = (*batch, *outs, *receptive, *ins)
    num_units = math.prod(w.shape[a] for a in (*batch, *outs))
    return np.asarray(w).transpose(order).reshape(num_units, -1)


@pytest.mark.parametrize(
    "shape, count, kwargs, expected_k",
    [
        ((784, 500), {"num_nonzero": 15}, {}, 15),
        ((10, 7), {"num_nonzero": 15}, {}, 10),  # fan_in <= k: all connected
        ((15, 7), {"num_nonzero": 15}, {}, 15),
        ((3, 3, 4, 8), {"num_nonzero": 5}, {}, 5),  # HWIO conv: fan_in = 3*3*4
        ((3, 3, 4, 8), {"num_nonzero": 40}, {}, 36),  # conv, fan_in <= k
        ((2, 3, 3, 4, 8), {"num_nonzero": 7}, {"batch_axis": 0}, 7),
        ((8, 4, 3, 3), {"num_nonzero": 6}, {"in_axis": 1, "out_axis": 0}, 6),  # OIHW
        ((6, 5, 4, 3), {"num_nonzero": 4}, {"in_axis": (0, 1), "out_axis": (2, 3)}, 4),
        ((100, 7), {"zero_fraction": 0.9}, {}, 10),
        ((10, 7), {"zero_fraction": 0.25}, {}, 7),  # ceil(2.5) = 3 zeros
        ((10, 7), {"nonzero_fraction": 0.25}, {}, 2),  # int(2.5) = 2 kept
        ((1000, 9), {"num_nonzero": 500}, {}, 500),  # sort path
        ((1000, 9), {"num_nonzero": 990}, {}, 990),  # Floyd on the zeros
        ((1000, 9), {"nonzero_fraction": 0.999}, {}, 999),
    ],
)
def test_exactly_k_nonzeros_per_unit(shape, count, kwargs, expected_k):
    w = sparse(**count, **kwargs)(jax.random.key(0), shape)
    assert w.shape == shape and w.dtype == jnp.float32
    rows = units_by_fan_in(w, **kwargs)
    np.testing.assert_array_equal((rows != 0).sum(axis=1), expected_k)
    fan_in = rows.shape[1]
    assert nonzero_count(fan_in, **count) == expected_k


def test_sampling_method_of_the_count_cases():
    # The shapes above exercise every sampling path.
    method = importlib.import_module("jaxinit.sparse")._sampling_method
    assert method(784, 15) == "floyd_kept"
    assert method(10, 15) == method(36, 36) == "dense"
    assert method(1000, 500) == "sort"
    assert method(1000, 990) == method(1000, 999) == "floyd_zeros"


def test_forcing_the_path_changes_the_sampler(monkeypatch):
    """Guards the forced-path tests below: the path is part of the compiled program's key."""
    _force_path(monkeypatch, True)
    floyd = sparse(5)(jax.random.key(3), (50, 40))
    _force_path(monkeypatch, False)
    by_sort = sparse(5)(jax.random.key(3), (50, 40))
    assert not np.array_equal(np.asarray(floyd) != 0, np.asarray(by_sort) != 0)


def test_nonzero_count_conventions():
    # PyTorch's rounding: ceil(f * fan_in) zeros; Lasagne's: int(f * fan_in) kept.
    assert nonzero_count(7, zero_fraction=0.5) == 3
    assert nonzero_count(7, nonzero_fraction=0.5) == 3
    assert nonzero_count(9, zero_fraction=0.1) == 8
    assert nonzero_count(9, nonzero_fraction=0.1) == 0
    assert nonzero_count(25, zero_fraction=0.28) == 17  # ceil(0.28 * 25) = ceil(7.000000000000001)


@pytest.mark.parametrize(
    "shape, k",
    [((1000, 60), 15), ((4000, 8), 2000), ((300, 200), 290)],  # Floyd, sort, Floyd on zeros
)
def test_nonzeros_are_normal(shape, k):
    stddev = 0.1
    w = sparse(k, stddev=stddev)(jax.random.key(1), shape)
    values = np.asarray(w)[np.asarray(w) != 0]
    assert values.size == k * shape[1]
    # KS against N(0, stddev²); a correct sampler fails with probability 1e-4.
    assert_ks(values, "norm", (0.0, stddev), name=f"non-zeros of sparse({k})")


def test_default_stddev_is_0_01():
    w = sparse(15)(jax.random.key(2), (200, 2000))
    values = np.asarray(w)[np.asarray(w) != 0]
    assert_ks(values, "norm", (0.0, 0.01))


@pytest.mark.parametrize("floyd", [True, False])
@pytest.mark.parametrize("fan_in, k", [(50, 5), (50, 45)])
def test_each_input_chosen_with_frequency_k_over_fan_in(monkeypatch, floyd, fan_in, k):
    _force_path(monkeypatch, floyd)
    units = 20000
    w = sparse(k)(jax.random.key(3), (fan_in, units))
    hits = (np.asarray(w) != 0).sum(axis=1)  # per input: Binomial(units, k / fan_in)
    p = k / fan_in
    sd = math.sqrt(units * p * (1 - p))
    # 5.5 s.d. two-sided per input: 3.8e-8 each, < 2e-6 over the 50 inputs (union bound).
    assert np.all(np.abs(hits - units * p) <= 5.5 * sd), (hits.min(), hits.max(), units * p)


@pytest.mark.parametrize("floyd", [True, False])
@pytest.mark.parametrize("fan_in, k", [(5, 2), (6, 4)])
def test_every_subset_equally_likely(monkeypatch, floyd, fan_in, k):
    """The set of connected inputs is uniform over all C(fan_in, k) subsets, per unit."""
    _force_path(monkeypatch, floyd)
    units = 30000
    w = sparse(k)(jax.random.key(4), (fan_in, units))
    masks = (np.asarray(w) != 0).T
    codes = masks @ (1 << np.arange(fan_in))
    subsets = [sum(1 << i for i in c) for c in itertools.combinations(range(fan_in), k)]
    counts = np.array([(codes == s).sum() for s in subsets])
    assert counts.sum() == units
    # chi-square goodness of fit to the uniform; false failure 1e-4.
    assert scipy.stats.chisquare(counts).pvalue > 1e-4, counts


def test_units_are_independent():
    """Two units share j of their k inputs with the hypergeometric law when independent."""
    fan_in, k, units = 40, 5, 20000
    w = np.asarray(sparse(k)(jax.random.key(5), (fan_in, units))) != 0
    shared = (w[:, 0::2] & w[:, 1::2]).sum(axis=0)
    expected = scipy.stats.hypergeom(fan_in, k, k).pmf(np.arange(k + 1)) * shared.size
    observed = np.bincount(shared, minlength=k + 1)
    # merge the sparse tail (j >= 2) so every expected count is >= 5; false failure 1e-4.
    obs = np.array([observed[0], observed[1], observed[2:].sum()])
    exp = np.array([expected[0], expected[1], expected[2:].sum()])
    assert scipy.stats.chisquare(obs, exp).pvalue > 1e-4, (obs, exp)


@pytest.mark.parametrize("fan_in", [50, 300, 1500])
def test_preactivation_variance_is_k_stddev2_ex2_for_any_fan_in(fan_in):
    k, stddev, units = 10, 0.3, 8000
    w = sparse(k, stddev=stddev)(jax.random.key(6), (fan_in, units))
    # One independent input per unit, x ~ U(0, 1): E[x²] = 1/3, non-zero mean like a ReLU/sigmoid.
    x = jax.random.uniform(jax.random.key(7), (units, fan_in))
    s = np.asarray(jnp.sum(x * w.T, axis=1))
    expected = k * stddev**2 / 3
    # s = sum of k i.i.d. terms w·x, each of kurtosis E[w⁴]E[x⁴]/(E[w²]E[x²])² = 3·(1/5)·9 = 5.4,
    # so the excess kurtosis of s is 2.4 / k. 5 s.e.: false failure ≈ 6e-7.
    assert_variance(s, expected, excess_kurtosis=2.4 / k, mean=0.0, name=f"fan_in={fan_in}")


def _deep_tanh_mean_abs_and_saturation(init, width, depth=6):
    x = jax.random.normal(jax.random.key(8), (16, width))
    h = x
    for key in jax.random.split(jax.random.key(9), depth):
        h = jnp.tanh(h @ init(key, (width, width)))
    return float(jnp.mean(jnp.abs(h))), float(jnp.mean(jnp.abs(h) > 0.99))


def test_deep_tanh_mlp_is_width_independent_where_dense_gaussian_saturates():
    """Martens' argument: a unit's total input does not grow with the layer width."""
    sparse_stats = [_deep_tanh_mean_abs_and_saturation(sparse(15, stddev=0.5), w)
                    for w in (200, 800)]
    dense_stats = [_deep_tanh_mean_abs_and_saturation(jax.nn.initializers.normal(0.5), w)
                   for w in (200, 800)]
    # Same per-unit input statistics at both widths (measured mean|h| 0.646 / 0.645).
    assert abs(sparse_stats[0][0] - sparse_stats[1][0]) < 0.05, sparse_stats
    # Sparse pre-activation variance 15·0.25·E[h²] ≈ 2: P(|tanh| > 0.99) = P(|z| > 1.9) ≈ 0.06.
    assert all(saturated < 0.15 for _, saturated in sparse_stats), sparse_stats
    # Dense, same std: variance 0.25·width·E[h²] ≥ 35, so P(|z| > 2.65/√35) ≥ 0.65 saturate.
    assert all(saturated > 0.5 for _, saturated in dense_stats), dense_stats


def test_jit_eager_and_determinism():
    init = sparse(4)
    key = jax.random.key(10)
    eager = init(key, (30, 20))
    jitted = jax.jit(init, static_argnums=1)(key, (30, 20))
    np.testing.assert_array_equal(eager, jitted)
    np.testing.assert_array_equal(eager, init(key, (30, 20)))
    assert not np.array_equal(eager, init(jax.random.key(11), (30, 20)))
    legacy = init(jax.random.PRNGKey(0), (30, 20))
    assert ((np.asarray(legacy) != 0).sum(axis=0) == 4).all()


def test_low_precision_and_float64_dtypes():
    for dtype in (jnp.bfloat16, jnp.float16):
        w = sparse(5, stddev=0.1)(jax.random.key(12), (100, 400), dtype)
        assert w.dtype == dtype
        assert ((np.asarray(w, np.float32) != 0).sum(axis=0) == 5).all()
    default = sparse(3, dtype=jnp.bfloat16)(jax.random.key(12), (10, 4))
    assert default.dtype == jnp.bfloat16


def test_zero_size_shapes():
    for shape in [(0, 5), (5, 0), (3, 3, 0, 4)]:
        w = sparse(3)(jax.random.key(0), shape)
        assert w.shape == shape and w.size == 0


def test_out_sharding():
    mesh = jax.make_mesh((8,), ("d",), axis_types=(AxisType.Explicit,))
    sharding = NamedSharding(mesh, PartitionSpec(None, "d"))
    init = sparse(5)
    key = jax.random.key(13)
    plain = init(key, (64, 32))
    eager = init(key, (64, 32), out_sharding=sharding)
    assert eager.sharding.is_equivalent_to(sharding, 2)
    np.testing.assert_array_equal(eager, plain)
    with jax.set_mesh(mesh):
        jitted = jax.jit(lambda k: init(k, (64, 32), out_sharding=PartitionSpec(None, "d")))(key)
    assert jitted.sharding.is_equivalent_to(sharding, 2)
    np.testing.assert_array_equal(jitted, plain)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({}, ValueError, "exactly one of num_nonzero, zero_fraction, nonzero_fraction"),
        ({"num_nonzero": 3, "zero_fraction": 0.5}, ValueError, "exactly one"),
        ({"zero_fraction": 0.5, "nonzero_fraction": 0.5}, ValueError, "exactly one"),
        ({"num_nonzero": 0}, ValueError, "num_nonzero=0 must be an int >= 1"),
        ({"num_nonzero": -2}, ValueError, "num_nonzero=-2"),
        ({"num_nonzero": 1.5}, TypeError, "num_nonzero=1.5"),
        ({"num_nonzero": True}, TypeError, "num_nonzero=True"),
        ({"zero_fraction": 0.0}, ValueError, r"zero_fraction=0.0 is outside \(0, 1\)"),
        ({"zero_fraction": 1.0}, ValueError, "zero_fraction=1.0 is outside"),
        ({"nonzero_fraction": -0.1}, ValueError, "nonzero_fraction=-0.1 is outside"),
        ({"nonzero_fraction": 1.5}, ValueError, "nonzero_fraction=1.5 is outside"),
        ({"nonzero_fraction": float("nan")}, ValueError, "must be finite"),
        ({"num_nonzero": 3, "stddev": 0.0}, ValueError, "stddev=0.0 must be > 0"),
        ({"num_nonzero": 3, "stddev": -1.0}, ValueError, "stddev"),
    ],
)
def test_factory_errors(kwargs, error, match):
    with pytest.raises(error, match=match) as info:
        sparse(**kwargs)
    assert "jaxinit.sparse" in str(info.value)


def test_call_errors():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="0.01 leaves no non-zero input for fan_in=50"):
        sparse(nonzero_fraction=0.01)(key, (50, 3))
    with pytest.raises(ValueError, match="zero_fraction=0.5 leaves no non-zero input"):
        sparse(zero_fraction=0.5)(key, (1, 3))
    with pytest.raises(TypeError, match="jaxinit.sparse: dtype=int32"):
        sparse(3)(key, (5, 5), jnp.int32)
    with pytest.raises(TypeError, match="complex64"):
        sparse(3)(key, (5, 5), jnp.complex64)
    with pytest.raises(ValueError, match="rank 1"):
        sparse(3)(key, (5,))
    with pytest.raises(TypeError, match="not a PRNG key"):
        sparse(3)(0, (5, 5))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sparse_mlp_example_runs_and_writes_a_plot(tmp_path):
    module = load_example("sparse_tanh_mlp")
    out = tmp_path / "mlp.png"
    results = module.main(["--out", str(out), "--steps", "20", "--depth", "6", "--width", "64"])
    assert out.stat().st_size > 0
    # At init: small dense weights vanish with depth, unit-Gaussian dense ones saturate.
    assert results["dense N(0, 0.01²)"]["last_layer_mean_abs"] < 1e-4
    assert results["dense N(0, 1)"]["last_layer_mean_abs"] > 0.9
    assert 0.05 < results["sparse k=15, N(0, 1/15)"]["last_layer_mean_abs"] < 0.9
