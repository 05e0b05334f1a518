"""jaxinit.torch: each torch.nn.init scheme against PyTorch's formula; linear_default; layouts.

Every KS test compares the samples with the exact law that PyTorch's source
defines for that shape (fans of ``(out, in, *k)``), and fails below p = 1e-4:
with fixed keys a test is deterministic, and a correct sampler would fail
with probability 1e-4. Each law is checked on tens of thousands of samples,
where a wrong fan (e.g. reading Flax's ``(in, out)``) or a truncation moves
the KS distance by far more than the test's resolution (~0.01). Where PyTorch
is importable, its own sampler is compared too (two-sample KS).
"""

from __future__ import annotations

import math
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from example_loader import load_example
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import jaxinit
import jaxinit.torch as tinit
from jaxinit.testing import assert_haar, assert_ks, assert_orthogonal

try:
    import equinox as eqx
except ImportError:  # the test extra installs it
    eqx = None
needs_equinox = pytest.mark.skipif(eqx is None, reason="needs equinox (pip install .[test])")

KEY = jax.random.key(0)
CONV = (64, 32, 3, 3)  # fan_in 288, fan_out 576; 18 432 samples


def draw(init, shape, key=KEY, dtype=None):
    return np.asarray(init(key, shape, dtype), np.float64)


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


# ------------------------------------------------------------------------------ gains, fans


def test_calculate_gain_is_pytorchs_table():
    expected = {"linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0,
                "conv_transpose1d": 1.0, "conv_transpose2d": 1.0, "conv_transpose3d": 1.0,
                "sigmoid": 1.0, "tanh": 5 / 3, "relu": math.sqrt(2), "selu": 0.75,
                "leaky_relu": math.sqrt(2 / (1 + 0.01**2))}
    assert set(tinit.GAINS) == set(expected)
    for nonlinearity, gain in expected.items():
        assert tinit.calculate_gain(nonlinearity) == pytest.approx(gain, rel=1e-15)
    assert tinit.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert tinit.calculate_gain("leaky_relu", 0) == pytest.approx(math.sqrt(2))
    torch = torch_or_none()
    if torch is not None:
        for nonlinearity in expected:
            assert tinit.calculate_gain(nonlinearity) == pytest.approx(
                torch.nn.init.calculate_gain(nonlinearity), rel=1e-15)
        assert tinit.calculate_gain("leaky_relu", 3) == pytest.approx(
            torch.nn.init.calculate_gain("leaky_relu", 3))
    with pytest.raises(ValueError, match="jaxinit.torch.calculate_gain: nonlinearity='gelu'"):
        tinit.calculate_gain("gelu")
    with pytest.raises(ValueError, match="param=0.1 is the negative slope"):
        tinit.calculate_gain("relu", 0.1)
    with pytest.raises(TypeError, match="param=True"):
        tinit.calculate_gain("leaky_relu", True)


def test_fans_read_out_in_kernel():
    assert tinit.fans((10, 20)) == (20, 10)
    assert tinit.fans((64, 3, 5, 7)) == (105, 2240)
    torch = torch_or_none()
    if torch is not None:
        for shape in [(10, 20), (64, 3, 5, 7), (4, 2, 3)]:
            got = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))
            assert tinit.fans(shape) == tuple(got)
    with pytest.raises(ValueError, match=r"jaxinit.torch.fans: shape=\(5,\) has rank 1"):
        tinit.fans((5,))


# ------------------------------------------------------------------------------ elementwise


def test_uniform():
    assert_ks(draw(tinit.uniform(-0.5, 1.5), (200, 100)), "uniform", (-0.5, 2.0))
    assert_ks(draw(tinit.uniform(), (20_000,)), "uniform", (0.0, 1.0))  # PyTorch's U(0, 1)
    with pytest.raises(ValueError, match=r"jaxinit.torch.uniform: a=1.0 must be < b=1.0"):
        tinit.uniform(1.0, 1.0)


def test_normal():
    assert_ks(draw(tinit.normal(0.5, 2.0), (200, 100)), "norm", (0.5, 2.0))
    assert_ks(draw(tinit.normal(), (20_000,)), "norm", (0.0, 1.0))  # PyTorch's default std 1
    with pytest.raises(ValueError, match=r"jaxinit.torch.normal: std=0.0 must be > 0"):
        tinit.normal(std=0.0)


@pytest.mark.parametrize("mean, std, a, b", [
    (0.0, 1.0, -2.0, 2.0),  # PyTorch's defaults
    (0.5, 2.0, -1.0, 0.5),  # absolute bounds: [-0.75, 0] standard deviations
    (0.0, 0.02, -2.0, 2.0),  # timm's trunc_normal_(std=.02): nothing truncated
    (0.0, 0.5, 2.0, 2.5),  # far in the tail: [4, 5] standard deviations
])
def test_trunc_normal_absolute_bounds(mean, std, a, b):
    w = draw(tinit.trunc_normal(mean, std, a, b), (20_000,))
    assert a <= w.min() and w.max() <= b
    alpha, beta = (a - mean) / std, (b - mean) / std
    assert_ks(w, "truncnorm", (alpha, beta, mean, std))
    torch = torch_or_none()
    if torch is not None:
        torch.manual_seed(0)
        with warnings.catch_warnings():  # PyTorch warns about intervals far in a tail
            warnings.simplefilter("ignore", UserWarning)
            reference = torch.nn.init.trunc_normal_(torch.empty(20_000, dtype=torch.float64),
                                                    mean, std, a, b).numpy()
        assert scipy.stats.ks_2samp(w, reference).pvalue > 1e-4


def test_trunc_normal_errors():
    with pytest.raises(ValueError, match=r"jaxinit.torch.trunc_normal: a=2.0 must be < b=-2.0"):
        tinit.trunc_normal(a=2.0, b=-2.0)
    with pytest.raises(ValueError, match=r"jaxinit.torch.trunc_normal: std=-1.0 must be > 0"):
        tinit.trunc_normal(std=-1.0)


def test_constant_ones_zeros():
    np.testing.assert_array_equal(tinit.constant(0.3)(KEY, (2, 3)), np.full((2, 3), 0.3,
                                                                             np.float32))
    np.testing.assert_array_equal(tinit.ones()(KEY, 4), np.ones(4))
    np.testing.assert_array_equal(tinit.zeros(dtype=jnp.bfloat16)(KEY, 4), np.zeros(4))
    assert tinit.zeros(dtype=jnp.bfloat16)(KEY, 4).dtype == jnp.bfloat16
    with pytest.raises(ValueError, match="jaxinit.torch.constant: value=nan"):
        tinit.constant(float("nan"))


# ------------------------------------------------------------------------------ structured


def test_eye():
    for shape in [(3, 5), (5, 3), (4, 4)]:
        np.testing.assert_array_equal(tinit.eye()(KEY, shape), np.eye(*shape))
        torch = torch_or_none()
        if torch is not None:
            np.testing.assert_array_equal(tinit.eye()(KEY, shape),
                                          torch.nn.init.eye_(torch.empty(shape)).numpy())
    with pytest.raises(ValueError, match=r"jaxinit.torch.eye: shape=\(2, 2, 2\) has rank 3"):
        tinit.eye()(KEY, (2, 2, 2))


def dirac_reference(shape, groups):
    """PyTorch's dirac_, written as its loops: W[g·p + d, d, k//2, ...] = 1, d < min(p, in)."""
    w = np.zeros(shape)
    per_group = shape[0] // groups
    centre = tuple(k // 2 for k in shape[2:])
    for g in range(groups):
        for d in range(min(per_group, shape[1])):
            w[(g * per_group + d, d, *centre)] = 1
    return w


@pytest.mark.parametrize("shape, groups", [
    ((4, 4, 3), 1), ((6, 2, 3, 3), 3), ((4, 4, 2, 2), 1), ((8, 3, 5, 4, 3), 2), ((3, 5, 3), 1),
])
def test_dirac(shape, groups):
    w = np.asarray(tinit.dirac(groups)(KEY, shape))
    np.testing.assert_array_equal(w, dirac_reference(shape, groups))
    torch = torch_or_none()
    if torch is not None:
        np.testing.assert_array_equal(w, torch.nn.init.dirac_(torch.empty(shape), groups).numpy())


def test_dirac_errors():
    with pytest.raises(ValueError, match=r"jaxinit.torch.dirac: shape=\(4, 4\) has rank 2"):
        tinit.dirac()(KEY, (4, 4))
    with pytest.raises(ValueError, match=r"5 output channels \(axis 0\), not divisible by "
                                         r"groups=2"):
        tinit.dirac(2)(KEY, (5, 2, 3))


def test_orthogonal():
    # (16, 4, 3, 3): out = 16 <= in·k = 36: orthonormal rows of the (16, 36) view.
    w = np.asarray(tinit.orthogonal(gain=2.0)(KEY, (16, 4, 3, 3))).reshape(16, -1)
    assert_orthogonal(w.T, scale=2.0)
    # (40, 8): out > in: orthonormal columns.
    assert_orthogonal(tinit.orthogonal()(KEY, (40, 8)))
    # Haar over many independent draws (keys folded from one).
    init = tinit.orthogonal()
    samples = np.stack([np.asarray(init(jax.random.fold_in(KEY, i), (6, 6)))
                        for i in range(300)])
    assert_haar(samples)
    with pytest.raises(ValueError, match=r"jaxinit.torch.orthogonal: shape=\(3,\) has rank 1"):
        init(KEY, (3,))


def test_sparse():
    rows, cols, sparsity = 20, 2000, 0.28
    w = draw(tinit.sparse(sparsity, std=0.5), (rows, cols))
    zeros = w == 0
    # PyTorch: exactly ceil(sparsity · rows) zeros in every column (ceil(5.6) = 6).
    assert (zeros.sum(axis=0) == math.ceil(sparsity * rows)).all()
    assert_ks(w[~zeros], "norm", (0.0, 0.5))
    # Positions uniform: each row is zero in a column with probability 6/20, so the
    # per-row counts are multinomial; chi-square over the 20 rows, p > 1e-4.
    counts = zeros.sum(axis=1)
    assert scipy.stats.chisquare(counts).pvalue > 1e-4
    assert not (draw(tinit.sparse(0.0), (5, 5)) == 0).any()  # sparsity 0: a dense normal
    with pytest.raises(ValueError, match=r"jaxinit.torch.sparse: sparsity=0.9 zeroes all 1 rows"):
        tinit.sparse(0.9)(KEY, (1, 4))
    with pytest.raises(ValueError, match=r"shape=\(4, 4, 4\) has rank 3"):
        tinit.sparse(0.5)(KEY, (4, 4, 4))
    with pytest.raises(ValueError, match=r"sparsity=1.0 is outside \[0, 1\)"):
        tinit.sparse(1.0)


# ------------------------------------------------------------------------------ fan-scaled


def uniform_law(bound):
    return "uniform", (-bound, 2 * bound)


@pytest.mark.parametrize("gain", [1.0, math.sqrt(2)])
def test_xavier_uniform(gain):
    bound = gain * math.sqrt(6 / (288 + 576))
    assert_ks(draw(tinit.xavier_uniform(gain), CONV), *uniform_law(bound))


def test_xavier_normal_is_a_plain_normal():
    # Untruncated: a normal truncated at 2 std (jaxinit.glorot_normal) has KS distance
    # 0.02 from it, 3x the test's resolution at N = 18 432.
    assert_ks(draw(tinit.xavier_normal(), CONV), "norm", (0, math.sqrt(2 / (288 + 576))))


@pytest.mark.parametrize("kwargs, bound", [
    ({}, math.sqrt(2) * math.sqrt(3 / 288)),  # a=0, leaky_relu: gain sqrt(2)
    ({"a": math.sqrt(5)}, 1 / math.sqrt(288)),  # PyTorch's layer default: U(±1/sqrt(fan_in))
    ({"mode": "fan_out", "nonlinearity": "relu"}, math.sqrt(2) * math.sqrt(3 / 576)),
    ({"nonlinearity": "tanh"}, 5 / 3 * math.sqrt(3 / 288)),
])
def test_kaiming_uniform(kwargs, bound):
    assert_ks(draw(tinit.kaiming_uniform(**kwargs), CONV), *uniform_law(bound))


def test_kaiming_normal():
    assert_ks(draw(tinit.kaiming_normal(mode="fan_out", nonlinearity="relu"), CONV), "norm",
              (0, math.sqrt(2 / 576)))
    assert_ks(draw(tinit.kaiming_normal(a=0.2), CONV), "norm",
              (0, math.sqrt(2 / 1.04) / math.sqrt(288)))
    with pytest.raises(ValueError, match=r"jaxinit.torch.kaiming_normal: a=0.2 is the negative "
                                         r"slope of 'leaky_relu', but nonlinearity='relu'"):
        tinit.kaiming_normal(a=0.2, nonlinearity="relu")
    with pytest.raises(ValueError, match=r"jaxinit.torch.kaiming_normal: mode='fan_avg'"):
        tinit.kaiming_normal(mode="fan_avg")


@pytest.mark.parametrize("name, factory, kwargs", [
    ("xavier_uniform", "xavier_uniform_", {}), ("xavier_normal", "xavier_normal_", {}),
    ("kaiming_uniform", "kaiming_uniform_", {"a": math.sqrt(5)}),
    ("kaiming_normal", "kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}),
    ("uniform", "uniform_", {"a": -1.0, "b": 2.0}), ("normal", "normal_", {"std": 0.3}),
    ("sparse", "sparse_", {"sparsity": 0.5}),
])
def test_same_law_as_pytorchs_sampler(name, factory, kwargs):
    torch = pytest.importorskip("torch")
    shape = (128, 144) if name == "sparse" else CONV
    ours = draw(getattr(tinit, name)(**kwargs), shape).ravel()
    torch.manual_seed(0)
    theirs = getattr(torch.nn.init, factory)(torch.empty(shape, dtype=torch.float64),
                                             **kwargs).numpy().ravel()
    assert scipy.stats.ks_2samp(ours, theirs).pvalue > 1e-4


# ------------------------------------------------------------------------------ layouts, contract


def test_layout_attribute_and_for_layout_as_a_flax_kernel_init():
    assert tinit.kaiming_uniform().layout == "torch"
    assert tinit.normal().layout is None and tinit.trunc_normal().layout is None
    # PyTorch's default weight as a Flax kernel_init: the fan-in is Flax's axis -2.
    dense = nn.Dense(32, kernel_init=jaxinit.for_layout(tinit.kaiming_uniform(a=math.sqrt(5)),
                                                        "flax"))
    kernel = dense.init(KEY, jnp.ones((1, 400)))["params"]["kernel"]
    assert kernel.shape == (400, 32)
    assert_ks(np.asarray(kernel), *uniform_law(1 / 20))


@pytest.mark.parametrize("factory", [
    tinit.xavier_uniform, tinit.xavier_normal, tinit.kaiming_uniform, tinit.kaiming_normal,
])
def test_fan_schemes_refuse_rank_1_and_compute_16_bit_in_float32(factory):
    name = factory.__name__
    with pytest.raises(ValueError, match=rf"^jaxinit.torch.{name}: shape=\(8,\) has rank 1"):
        factory()(KEY, (8,))
    w = factory()(KEY, CONV, jnp.bfloat16)
    assert w.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(w, np.float32),
                               np.asarray(factory()(KEY, CONV, jnp.float32).astype(jnp.bfloat16),
                                          np.float32))
    assert factory()(KEY, (0, 4)).shape == (0, 4)


@pytest.mark.devices(8)
def test_sharded_draw_equals_unsharded():
    sharding = NamedSharding(jax.make_mesh((2, 4), ("x", "y")), P("x", "y"))
    shape = (16, 8, 3)
    for init in (tinit.kaiming_uniform(), tinit.dirac()):
        sharded = init(KEY, shape, out_sharding=sharding)
        assert sharded.sharding.is_equivalent_to(sharding, 3)
        np.testing.assert_array_equal(np.asarray(sharded),
                                      np.asarray(jax.jit(lambda k, i=init: i(k, shape))(KEY)))


# ------------------------------------------------------------------------------ linear_default


def scaled_by_bound(leaves_and_fans):
    return np.concatenate([np.ravel(leaf) * math.sqrt(fan_in) for leaf, fan_in in leaves_and_fans])


@needs_equinox
def test_linear_default_on_equinox_and_linen():
    # Torch layout: an Equinox MLP (Linear weights (out, in)) and an Equinox-style Conv2d
    # (weight (out, in, kh, kw), bias (out, 1, 1)).
    model = {"mlp": eqx.filter_eval_shape(eqx.nn.MLP, 48, 1024, 64, depth=1, key=KEY),
             "conv": {"weight": jnp.zeros((256, 16, 3, 3)), "bias": jnp.zeros((256, 1, 1))}}
    new = jaxinit.reinit(jax.random.key(1), model, tinit.linear_default(), layout="torch")
    # Every weight and bias is U(±1/sqrt(fan_in)) with the weight's fan_in: times sqrt(fan_in)
    # all are U(-1, 1). Weights: 3072 + 65 536 + 36 864 samples, biases 64 + 1024 + 256.
    weights = [(new["mlp"].layers[0].weight, 48), (new["mlp"].layers[1].weight, 64),
               (new["conv"]["weight"], 144)]
    biases = [(new["mlp"].layers[0].bias, 48), (new["mlp"].layers[1].bias, 64),
              (new["conv"]["bias"], 144)]
    assert_ks(scaled_by_bound(weights), *uniform_law(1.0))
    assert_ks(scaled_by_bound(biases), *uniform_law(1.0))
    # Linen (flax layout): the same rules, fans read from (in, out) and (kh, kw, in, out).
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(256, (3, 3), name="conv")(x)
            return nn.Dense(1024, name="fc")(x.mean(axis=(1, 2)))

    variables = jax.eval_shape(Net().init, KEY, jnp.ones((1, 5, 5, 16)))  # shapes only
    params = jaxinit.reinit(jax.random.key(1), variables, tinit.linear_default())["params"]
    assert_ks(scaled_by_bound([(params["conv"]["kernel"], 144), (params["fc"]["kernel"], 256)]),
              *uniform_law(1.0))
    assert_ks(scaled_by_bound([(params["conv"]["bias"], 144), (params["fc"]["bias"], 256)]),
              *uniform_law(1.0))


def test_linear_default_matches_pytorchs_layers():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layer = torch.nn.Linear(300, 4096)
    params = {"weight": jnp.zeros((4096, 300)), "bias": jnp.zeros(4096)}
    new = jaxinit.reinit(KEY, params, tinit.linear_default(), layout="torch")
    for name in ("weight", "bias"):
        theirs = getattr(layer, name).detach().numpy().ravel()
        assert scipy.stats.ks_2samp(np.ravel(new[name]), theirs).pvalue > 1e-4, name


def test_linear_default_module_scope_and_norm_exemption():
    tree = {"fc": {"weight": jnp.zeros((8, 4)), "bias": jnp.zeros(8)},
            "norm": {"weight": jnp.ones(8), "bias": jnp.zeros(8)}}
    # A norm layer is not a linear layer: its bias (first in tree order) has no usable weight.
    with pytest.raises(ValueError, match=r"'norm/bias' .* sibling 'norm/weight' of shape \(8,\):"
                                         r" .* is not a linear or convolution weight"):
        jaxinit.reinit(KEY, tree, tinit.linear_default(), layout="torch")
    with pytest.raises(ValueError, match=r"leaf 'norm/weight' .* jaxinit.torch.kaiming_uniform: "
                                         r"shape=\(8,\) has rank 1"):
        jaxinit.reinit(KEY, {"norm": {"weight": jnp.ones(8)}}, tinit.linear_default(),
                       layout="torch", allow_unused=True)
    new = jaxinit.reinit(KEY, tree, {r"norm/.*": None, **tinit.linear_default()},
                         layout="torch")
    assert new["norm"]["weight"] is tree["norm"]["weight"]
    new = jaxinit.reinit(KEY, tree, tinit.linear_default(module="fc"), layout="torch")
    assert new["norm"]["bias"] is tree["norm"]["bias"]
    assert float(jnp.abs(new["fc"]["bias"]).max()) <= 0.5


# ------------------------------------------------------------------------------ example


@needs_equinox
def test_torch_port_example(tmp_path):
    example = load_example("torch_port")
    out = tmp_path / "table.json"
    table = example.main(["--out", str(out)])
    assert out.exists()
    # Conv weights: 288 and 18 432 samples; the std's s.e. is 4% and 0.5%: 20% is 5 s.e.
    for name in ("conv1.weight", "conv2.weight"):
        row = table[name]
        for port in ("equinox", "linen"):
            assert abs(row[port] / row["target"] - 1) < 0.2, (name, port, row)
    for name in ("fc.weight", "fc.bias"):
        row = table[name]
        assert row["equinox_max"] <= row["bound"] and row["linen_max"] <= row["bound"]
