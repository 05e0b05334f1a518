"""sparse: exact counts per unit, N(0, stddev²) values, uniform positions, fan-in-free variance."""

import importlib
import itertools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from example_loader import load_example
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from jaxinit.sparse import nonzero_count, sparse
from jaxinit.testing import assert_ks, assert_variance

# The module, not the function `jaxinit.sparse` the package exports under the same name.
SPARSE = importlib.import_module("jaxinit.sparse")


def _force_path(monkeypatch, floyd):
    """Floyd's algorithm (True) or the random keys (False) for every count: the method is
    a static argument of the compiled sampler, so forcing it compiles the other program."""
    monkeypatch.setattr(SPARSE, "_uses_floyd", lambda n, m: floyd)


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
        ((1000, 9), {"num_nonzero": 500}, {}, 500),  # keys, 5-bit
        ((37, 9), {"zero_fraction": 0.5}, {}, 18),  # keys, fan-in not a multiple of 32
        ((3, 3, 50, 6), {"zero_fraction": 0.3}, {}, 315),  # keys on a conv kernel
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
    method = SPARSE._sampling_method
    assert method(784, 15) == method(100, 10) == method(1000, 250) == "kept"
    assert method(10, 15) == method(36, 36) == "dense"
    assert method(1000, 500) == method(1000, 251) == method(37, 18) == "keys"
    assert method(1000, 990) == method(1000, 750) == "zeros"


def test_forcing_the_path_changes_the_sampler(monkeypatch):
    """Guards the forced-path tests below: the path is part of the compiled program's key."""
    _force_path(monkeypatch, True)
    floyd = sparse(5)(jax.random.key(3), (50, 40))
    _force_path(monkeypatch, False)
    by_keys = sparse(5)(jax.random.key(3), (50, 40))
    assert not np.array_equal(np.asarray(floyd) != 0, np.asarray(by_keys) != 0)


def test_nonzero_count_conventions():
    # PyTorch's rounding: ceil(f * fan_in) zeros; Lasagne's: int(f * fan_in) kept.
    assert nonzero_count(7, zero_fraction=0.5) == 3
    assert nonzero_count(7, nonzero_fraction=0.5) == 3
    assert nonzero_count(9, zero_fraction=0.1) == 8
    assert nonzero_count(9, nonzero_fraction=0.1) == 0
    assert nonzero_count(25, zero_fraction=0.28) == 17  # ceil(0.28 * 25) = ceil(7.000000000000001)


def test_uniform_below_is_the_top_word_of_the_64_bit_product():
    """floor((hi·2³² + lo)·bound / 2⁶⁴), checked against Python integers, edge words included."""
    rng = np.random.default_rng(1)
    edges = np.array([0, 1, 0xFFFF, 0x10000, 2**31, 2**32 - 1], np.uint64)
    hi = np.concatenate([rng.integers(0, 2**32, 5000, dtype=np.uint64), np.repeat(edges, 6)])
    lo = np.concatenate([rng.integers(0, 2**32, 5000, dtype=np.uint64), np.tile(edges, 6)])
    bound = np.concatenate([rng.integers(1, 2**31, 5000, dtype=np.uint64),
                            np.resize(np.array([1, 2, 3, 4096, 2**31 - 1, 2**31], np.uint64), 36)])
    got = np.asarray(jax.jit(SPARSE._uniform_below)(
        *(jnp.asarray(v.astype(np.uint32)) for v in (hi, lo, bound))))
    expected = [((int(h) << 32 | int(low)) * int(b)) >> 64
                for h, low, b in zip(hi, lo, bound, strict=True)]
    np.testing.assert_array_equal(got.astype(np.int64), expected)


# (name, shape, count): one case per sampling path, about 1.4e6 non-zeros each.
VALUE_CASES = [
    ("dense", (12, 120000), {"num_nonzero": 12}),
    ("zeros", (200, 7400), {"num_nonzero": 190}),
    ("keys", (200, 14000), {"num_nonzero": 100}),
    ("kept", (200, 28000), {"num_nonzero": 50}),
]


@pytest.mark.parametrize("path, shape, count", VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_nonzeros_are_normal_with_the_right_variance(path, shape, count):
    """Detects a 1% error in the variance of the non-zeros, on every sampling path.

    With N >= 1.38e6 values the sample variance has s.e. sigma²·sqrt(2/N) <= 0.0012 sigma²;
    the band is 4.9 s.e. (false failure 1e-6 for a correct sampler), and a 1% variance
    error sits 8.3 s.e. away from the target, so it is detected with probability
    P(Z > 8.3 - 4.9) > 0.9996 (scaling the values by 1.01, a 2% error, at 16.6 s.e.).
    """
    assert SPARSE._sampling_method(shape[0], count["num_nonzero"]) == path
    stddev = 0.3
    w = np.asarray(sparse(**count, stddev=stddev)(jax.random.key(14), shape))
    values = w[w != 0]
    assert values.size == count["num_nonzero"] * shape[1] >= 1.38e6
    assert_variance(values, stddev**2, num_sigmas=4.9, mean=0.0, name=f"non-zeros ({path})")
    # The shape: KS against N(0, stddev²); a correct sampler fails with probability 1e-4.
    assert_ks(values, "norm", (0.0, stddev), name=f"non-zeros ({path})")


def test_default_stddev_is_0_01():
    key, shape = jax.random.key(2), (200, 300)
    np.testing.assert_array_equal(sparse(15)(key, shape), sparse(15, stddev=0.01)(key, shape))


def _hits_chi_square(hits, units, fan_in, k):
    """Pearson's statistic of the per-input counts, with its p-value: the indicator
    vector of a uniform k-subset has variance p(1-p) per input and covariance
    -p(1-p)/(F-1), so (F-1)/F · sum((h - Up)²)/(Up(1-p)) is chi-square with F-1 d.o.f."""
    p = k / fan_in
    statistic = (fan_in - 1) / fan_in * np.sum((hits - units * p) ** 2) / (units * p * (1 - p))
    return scipy.stats.chi2.sf(statistic, fan_in - 1)


@pytest.mark.parametrize("floyd", [True, False])
@pytest.mark.parametrize("fan_in, k", [(200, 20), (200, 100), (200, 180)])
def test_each_input_chosen_with_frequency_k_over_fan_in(monkeypatch, floyd, fan_in, k):
    _force_path(monkeypatch, floyd)
    units = 20000
    w = sparse(k)(jax.random.key(3), (fan_in, units))
    hits = (np.asarray(w) != 0).sum(axis=1)  # per input: Binomial(units, k / fan_in)
    # Omnibus: a chi-square over all inputs (false failure 1e-4), which sees a bias of a few
    # tenths of a percent spread over many inputs (e.g. ties broken towards low indices)...
    assert _hits_chi_square(hits, units, fan_in, k) > 1e-4, hits
    # ...and each input within 5.5 s.d. (3.8e-8 each, < 1e-5 over 200 inputs).
    p = k / fan_in
    assert np.all(np.abs(hits - units * p) <= 5.5 * math.sqrt(units * p * (1 - p)))


@pytest.mark.parametrize("floyd", [True, False])
@pytest.mark.parametrize("fan_in, k", [(5, 2), (6, 4), (12, 6)])
def test_every_subset_equally_likely(monkeypatch, floyd, fan_in, k):
    """The set of connected inputs is uniform over all C(fan_in, k) subsets, per unit.

    With the keys, fan-ins this small have 1-bit keys, so about half the inputs tie at the
    k-th key: this exercises the uniform choice among ties."""
    _force_path(monkeypatch, floyd)
    units = 30000
    w = sparse(k)(jax.random.key(4), (fan_in, units))
    masks = (np.asarray(w) != 0).T
    codes = masks @ (1 << np.arange(fan_in))
    subsets = [sum(1 << i for i in c) for c in itertools.combinations(range(fan_in), k)]
    counts = np.array([(codes == s).sum() for s in subsets])
    assert counts.sum() == units
    # chi-square goodness of fit to the uniform (>= 32 expected per cell); false failure 1e-4.
    assert scipy.stats.chisquare(counts).pvalue > 1e-4, counts


@pytest.mark.parametrize("k", [2, 126])
def test_pairs_equally_likely_with_multi_bit_keys(monkeypatch, k):
    """fan_in 128 has 2-bit keys, and k = 2 (or 126) puts the k-th key at the first
    (or last) key value: all C(128, 2) pairs of kept (or zeroed) inputs equally likely."""
    _force_path(monkeypatch, False)
    fan_in, units = 128, 81280  # 10 expected per pair
    w = np.asarray(sparse(k)(jax.random.key(15), (fan_in, units))) != 0
    chosen = w if k == 2 else ~w
    first = np.argmax(chosen, axis=0)
    second = fan_in - 1 - np.argmax(chosen[::-1], axis=0)
    assert np.all(chosen.sum(axis=0) == 2) and np.all(first < second)
    counts = np.bincount(first * fan_in + second, minlength=fan_in * fan_in)
    counts = counts[np.triu_indices(fan_in, 1)[0] * fan_in + np.triu_indices(fan_in, 1)[1]]
    assert scipy.stats.chisquare(counts).pvalue > 1e-4  # false failure 1e-4


@pytest.mark.parametrize("floyd", [True, False])
def test_units_are_independent(monkeypatch, floyd):
    """Two units share j of their k inputs with the hypergeometric law when independent."""
    _force_path(monkeypatch, floyd)
    fan_in, k, units = 40, 5, 20000
    w = np.asarray(sparse(k)(jax.random.key(5), (fan_in, units))) != 0
    shared = (w[:, 0::2] & w[:, 1::2]).sum(axis=0)
    expected = scipy.stats.hypergeom(fan_in, k, k).pmf(np.arange(k + 1)) * shared.size
    observed = np.bincount(shared, minlength=k + 1)
    # merge the sparse tail (j >= 2) so every expected count is >= 5; false failure 1e-4.
    obs = np.array([observed[0], observed[1], observed[2:].sum()])
    exp = np.array([expected[0], expected[1], expected[2:].sum()])
    assert scipy.stats.chisquare(obs, exp).pvalue > 1e-4, (obs, exp)


def test_more_ties_than_the_tie_set_holds_still_keeps_exactly_k(monkeypatch):
    """The fallback for a unit with more ties than the 128-bit tie set (probability below
    2^-98) keeps its first ties: forced here with a 32-bit tie set and 25 ties per key."""
    monkeypatch.setattr(SPARSE, "_TIE_BITS", 32)  # read when traced: a fresh jit below
    fan_in, units, k = 200, 300, 101

    def kept_inputs(key):
        bits = SPARSE._kept_by_keys(*SPARSE._substreams(SPARSE._root(key), 2), (1, units),
                                    fan_in, k)
        return SPARSE._unpack(jnp.swapaxes(bits, 1, 2), fan_in)[0]

    kept = np.asarray(jax.jit(kept_inputs)(jax.random.key(16)))
    np.testing.assert_array_equal(kept.sum(axis=0), k)


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


def test_jit_vmap_eager_and_determinism():
    init = sparse(4)
    key = jax.random.key(10)
    eager = init(key, (30, 20))
    jitted = jax.jit(init, static_argnums=1)(key, (30, 20))
    np.testing.assert_array_equal(eager, jitted)
    np.testing.assert_array_equal(eager, init(key, (30, 20)))
    assert not np.array_equal(eager, init(jax.random.key(11), (30, 20)))
    legacy = init(jax.random.PRNGKey(0), (30, 20))
    assert ((np.asarray(legacy) != 0).sum(axis=0) == 4).all()


@pytest.mark.parametrize("count", [{"num_nonzero": 4}, {"zero_fraction": 0.5}])  # kept, keys
def test_vmap_over_keys_equals_one_call_per_key(count):
    init = sparse(**count)
    keys = jax.random.split(jax.random.key(17), 3)
    mapped = jax.vmap(lambda k: init(k, (64, 16)))(keys)
    np.testing.assert_array_equal(mapped, np.stack([init(k, (64, 16)) for k in keys]))


def test_other_key_implementations():
    init = sparse(zero_fraction=0.5)
    w = init(jax.random.key(0, impl="rbg"), (64, 40))
    assert ((np.asarray(w) != 0).sum(axis=0) == 32).all()
    np.testing.assert_array_equal(w, init(jax.random.key(0, impl="rbg"), (64, 40)))


def test_low_precision_and_float64_dtypes():
    for dtype in (jnp.bfloat16, jnp.float16):
        w = sparse(5, stddev=0.1)(jax.random.key(12), (100, 400), dtype)
        assert w.dtype == dtype
        assert ((np.asarray(w, np.float32) != 0).sum(axis=0) == 5).all()
    default = sparse(3, dtype=jnp.bfloat16)(jax.random.key(12), (10, 4))
    assert default.dtype == jnp.bfloat16
    with jax.enable_x64(True):
        w = np.asarray(sparse(zero_fraction=0.5, stddev=0.1)(jax.random.key(12), (400, 600),
                                                              jnp.float64))
    assert w.dtype == np.float64 and ((w != 0).sum(axis=0) == 200).all()
    # 52-bit mantissas: the values are not float32 numbers.
    assert np.mean(w[w != 0] != w[w != 0].astype(np.float32)) > 0.99
    assert_ks(w[w != 0], "norm", (0.0, 0.1), name="float64 non-zeros")


def test_zero_size_shapes():
    for shape in [(0, 5), (5, 0), (3, 3, 0, 4)]:
        w = sparse(3)(jax.random.key(0), shape)
        assert w.shape == shape and w.size == 0


COLLECTIVE = re.compile(r"all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter")


@pytest.mark.devices(8)
@pytest.mark.parametrize("count", [{"num_nonzero": 5}, {"zero_fraction": 0.5},
                                   {"zero_fraction": 0.05}])  # kept, keys, zeros
def test_out_sharding_along_the_units(count):
    mesh = jax.make_mesh((8,), ("d",), axis_types=(AxisType.Explicit,))
    sharding = NamedSharding(mesh, PartitionSpec(None, "d"))
    init = sparse(**count)
    key = jax.random.key(13)
    plain = init(key, (64, 32))
    eager = init(key, (64, 32), out_sharding=sharding)
    assert eager.sharding.is_equivalent_to(sharding, 2)
    np.testing.assert_array_equal(eager, plain)
    with jax.set_mesh(mesh):
        program = jax.jit(lambda k: init(k, (64, 32), out_sharding=PartitionSpec(None, "d")))
        jitted = program(key)
        # Every unit is made on the device that holds it: nothing moves between devices.
        assert not COLLECTIVE.search(program.lower(key).compile().as_text())
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
    # Positions share a uint32 counter word with the stream's index (2 bits) and units have
    # their own: refused, never repeated.
    with pytest.raises(ValueError, match=r"fan_in=1073741824 and 1 units; accepted: a fan-in "
                                         r"below 2\^30"):
        sparse(3)(key, (2**30, 1))
    with pytest.raises(ValueError, match=r"and 4294967296 units"):
        sparse(3, batch_axis=0)(key, (2**16, 3, 2**16))


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
