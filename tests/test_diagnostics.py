"""Per-layer diagnostics: definitions checked against a hand-written forward pass, and
closed-form signal propagation (orthogonal linear nets, ReLU nets with He vs LeCun)."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from inputs import normal_input

from jaxinit.diagnostics import format_table, layer_statistics, plot_statistics
from jaxinit.unit_variance import LSUVLayer, LSUVReport, lsuv

pytestmark = pytest.mark.timeout(120)


def _x(shape, seed=0):
    return normal_input(shape, seed)


def test_values_match_a_hand_written_forward_and_backward_pass():
    model = nn.Sequential([nn.Dense(16, bias_init=nn.initializers.normal(0.5)), nn.relu,
                           nn.Dense(12), jnp.tanh, nn.Dense(3)])
    x = _x((32, 8))
    variables = model.init(jax.random.key(1), x)
    p = variables["params"]
    r = jax.random.normal(jax.random.key(5), (32, 3))
    stats = layer_statistics(model, variables, x, loss_fn=lambda out: jnp.sum(out * r))

    def forward(p, eps):
        z1 = x @ p["layers_0"]["kernel"] + p["layers_0"]["bias"] + eps[0]
        a1 = jax.nn.relu(z1)
        z2 = a1 @ p["layers_2"]["kernel"] + p["layers_2"]["bias"] + eps[1]
        a2 = jnp.tanh(z2)
        z3 = a2 @ p["layers_4"]["kernel"] + p["layers_4"]["bias"] + eps[2]
        return jnp.sum(z3 * r), (z1, a1, z2, a2, z3)

    eps = [jnp.zeros((32, 16)), jnp.zeros((32, 12)), jnp.zeros((32, 3))]
    (gp, geps), (z1, a1, z2, a2, z3) = jax.grad(forward, (0, 1), has_aux=True)(p, eps)
    assert [s.name for s in stats] == ["layers_0", "layers_2", "layers_4"]
    assert [s.kind for s in stats] == ["Dense"] * 3
    assert [s.shape for s in stats] == [(32, 16), (32, 12), (32, 3)]
    for s, z, a, ge, name in zip(stats, (z1, z2, z3), (a1, a2, z3), geps,
                                 ("layers_0", "layers_2", "layers_4"), strict=True):
        np.testing.assert_allclose(
            [s.pre_mean, s.pre_std, s.act_mean, s.act_std, s.act_mean_sq],
            [z.mean(), z.std(), a.mean(), a.std(), (a**2).mean()], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(s.grad_out_std, ge.std(), rtol=1e-5)
        np.testing.assert_allclose(s.grad_kernel_std, gp[name]["kernel"].std(), rtol=1e-5)
        np.testing.assert_allclose(s.pre_dead, np.mean(np.all(np.asarray(z) <= 0, axis=0)))
        np.testing.assert_allclose(
            s.pre_saturated, np.mean(np.abs(np.tanh(np.asarray(z))) >= 0.99), atol=1e-7)
    # Layer 1's activation is a ReLU: exact zeros, unbounded above -> no saturation bounds.
    np.testing.assert_allclose(stats[0].act_dead, np.mean(np.all(np.asarray(a1) == 0, axis=0)))
    assert math.isnan(stats[0].act_saturated)
    # Layer 2's activation is a tanh: bounds (-1, 1) inferred.
    np.testing.assert_allclose(stats[1].act_saturated, np.mean(np.abs(np.asarray(a2)) >= 0.99),
                               atol=1e-7)


def test_sigmoid_saturation_and_given_bounds():
    # Large weights: most sigmoid units sit near 0 or 1.
    model = nn.Sequential([nn.Dense(32, kernel_init=nn.initializers.normal(3.0)),
                           jax.nn.sigmoid, nn.Dense(4)])
    x = _x((64, 16))
    variables = model.init(jax.random.key(0), x)
    stats = layer_statistics(model, variables, x)
    p0 = variables["params"]["layers_0"]
    a = np.asarray(jax.nn.sigmoid(x @ p0["kernel"] + p0["bias"]))
    expected = np.mean((a <= 0.005) | (a >= 0.995))
    assert expected > 0.3  # the case is not vacuous
    np.testing.assert_allclose(stats[0].act_saturated, expected, atol=1e-7)
    # The output layer has no recognizable bounded activation; explicit bounds apply to all.
    assert math.isnan(stats[1].act_saturated)
    # (Run eagerly: jit=False must give the jitted numbers.)
    forced = layer_statistics(model, variables, x, bounds=(0.0, 1.0), margin=0.2, jit=False)
    np.testing.assert_allclose(forced[0].act_saturated, np.mean((a <= 0.1) | (a >= 0.9)),
                               atol=1e-7)
    for s, t in zip(stats, forced, strict=True):
        np.testing.assert_allclose([s.pre_std, s.act_std, s.grad_out_std, s.grad_kernel_std],
                                   [t.pre_std, t.act_std, t.grad_out_std, t.grad_kernel_std],
                                   rtol=1e-5)


def test_dead_relu_units_are_counted():
    # Bias -100 on half the units: those pre-activations are < 0 on every example.
    bias = jnp.concatenate([jnp.full((8,), -100.0), jnp.zeros((8,))])
    model = nn.Sequential([nn.Dense(16, bias_init=lambda *_: bias), nn.relu, nn.Dense(4)])
    x = _x((64, 8))
    stats = layer_statistics(model, model.init(jax.random.key(0), x), x)
    assert stats[0].pre_dead >= 0.5 and stats[0].act_dead >= 0.5
    # The other 8 units are zero on all 64 examples only with probability ~ 2^-64 each.
    assert stats[0].act_dead == 0.5


def _linear_orthogonal(depth, width):
    return nn.Sequential([nn.Dense(width, kernel_init=nn.initializers.orthogonal())
                          for _ in range(depth)])


def test_orthogonal_linear_net_keeps_the_std_of_every_layer():
    # x -> x Q1 ... Ql preserves each example's norm exactly, so E[h^2] over the batch is
    # the same at every layer (float32 rounding only), forward and backward. The std
    # differs from sqrt(E[h^2]) by the squared mean, which is N(0, E[h^2]/(B*n)): with
    # B*n = 16384 entries, 5 s.e. give mean^2 <= 25/16384 = 1.5e-3 of E[h^2], so the std
    # is constant within 2e-3 (relative) except with probability < 1e-6.
    depth, width = 12, 64
    model = _linear_orthogonal(depth, width)
    x = _x((256, width)) * 2.0
    stats = layer_statistics(model, model.init(jax.random.key(3), x), x)
    assert len(stats) == depth
    mean_sq = float(jnp.mean(x**2))
    for s in stats:
        np.testing.assert_allclose(s.act_mean_sq, mean_sq, rtol=1e-4)
        np.testing.assert_allclose(s.pre_std, float(jnp.std(x)), rtol=2e-3)
        np.testing.assert_allclose(s.grad_out_std, stats[-1].grad_out_std, rtol=2e-3)
    # The default loss is sum(out * r), r ~ N(0, 1): the last layer's gradient is r itself,
    # a sample std of 16384 standard normals: 1 +- 5 * 0.0055.
    assert abs(stats[-1].grad_out_std - 1.0) < 0.03


def _relu_net(depth, width, kernel_init):
    layers = []
    for _ in range(depth):
        layers += [nn.Dense(width, kernel_init=kernel_init), nn.relu]
    return nn.Sequential(layers)


def test_relu_net_he_keeps_mean_square_lecun_halves_it():
    # z = a W with W_ij ~ N(0, s^2/n) gives E[z^2] = s^2 E[a^2]; a' = relu(z) keeps half of
    # a symmetric z's second moment: E[a'^2] = (s^2/2) E[a^2]. With unit-variance inputs,
    # layer l has E[a_l^2] = (s^2/2)^l: 1 for He (s^2 = 2), 2^-l for LeCun (s^2 = 1).
    # Finite width: each layer's ratio is a mean over n units of relu(z)^2, whose relative
    # variance is (E[relu(z)^4] - E[relu(z)^2]^2) / E[relu(z)^2]^2 = (3/2 - 1/4)/(1/4) = 5,
    # so one example's ratio has relative s.e. sqrt(5/n) = 0.049 for n = 2048 (the batch
    # mean varies less). 5 s.e. bands: He ratio in [0.75, 1.25], LeCun in [0.375, 0.625];
    # over 8 layers, log of the total ratio within 5*sqrt(8*5/n) = 0.70 of its target.
    # A correct implementation leaves a band with probability < 1e-5.
    depth, width = 8, 2048
    x = _x((128, width))
    results = {}
    for name, scale in (("he", 2.0), ("lecun", 1.0)):
        init = nn.initializers.variance_scaling(scale, "fan_in", "normal")
        model = _relu_net(depth, width, init)
        stats = layer_statistics(model, model.init(jax.random.key(7), x), x)
        results[name] = [float(jnp.mean(x**2))] + [s.act_mean_sq for s in stats]
    he, lecun = np.array(results["he"]), np.array(results["lecun"])
    he_ratio, lecun_ratio = he[1:] / he[:-1], lecun[1:] / lecun[:-1]
    assert np.all(np.abs(he_ratio - 1.0) < 0.25), he_ratio
    assert np.all(np.abs(lecun_ratio - 0.5) < 0.125), lecun_ratio
    assert abs(math.log(he[-1] / he[0])) < 0.70, he
    assert abs(math.log(lecun[-1] / lecun[0]) - depth * math.log(0.5)) < 0.70, lecun


class _Residual(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(32, name="stem")(x)
        for i in range(3):
            branch = nn.Dense(32, name=f"block{i}_a")(nn.relu(x))
            x = x + nn.Dense(32, name=f"block{i}_b", kernel_init=nn.initializers.zeros)(branch)
        return nn.Dense(4, name="head")(nn.relu(x))


def test_residual_model_activation_is_what_the_next_layer_receives():
    model = _Residual()
    x = _x((64, 16))
    variables = model.init(jax.random.key(0), x)
    stats = layer_statistics(model, variables, x)
    assert [s.name for s in stats] == ["stem", "block0_a", "block0_b", "block1_a", "block1_b",
                                       "block2_a", "block2_b", "head"]
    # Zero-initialized second branch layers: the stream stays equal to the stem output, so
    # what the layer after each block_b receives is relu(stream) = relu(stem output), and
    # block_b's own output is exactly zero.
    _, inter = model.apply(variables, x, capture_intermediates=True)
    stem = inter["intermediates"]["stem"]["__call__"][0]
    relu_stem = jax.nn.relu(stem)
    for s in stats:
        if s.name.endswith("_b"):
            assert s.pre_std == 0.0
            np.testing.assert_allclose(s.act_std, float(jnp.std(relu_stem)), rtol=1e-5)
    # Backward: the gradient reaches the stem through the skip connections, but nothing
    # reaches a block's first layer, whose only path out goes through a zero kernel.
    for s in stats:
        assert (s.grad_out_std == 0.0) == s.name.endswith("_a"), s


def test_conv_and_nnx_models_give_the_same_numbers_as_linen():
    x = _x((8, 10, 10, 3))
    linen_model = nn.Sequential([nn.Conv(8, (3, 3)), nn.relu, nn.Conv(8, (3, 3)), jnp.tanh,
                                 lambda h: h.mean((1, 2)), nn.Dense(5)])
    variables = linen_model.init(jax.random.key(0), x)
    p = variables["params"]
    rngs = nnx.Rngs(0)
    nnx_model = nnx.Sequential(nnx.Conv(3, 8, (3, 3), rngs=rngs), nnx.relu,
                               nnx.Conv(8, 8, (3, 3), rngs=rngs), jnp.tanh,
                               lambda h: h.mean((1, 2)), nnx.Linear(8, 5, rngs=rngs))
    for i, name in ((0, "layers_0"), (2, "layers_2"), (5, "layers_5")):
        nnx_model.layers[i].kernel[...] = p[name]["kernel"]
        nnx_model.layers[i].bias[...] = p[name]["bias"]
    a = layer_statistics(linen_model, variables, x)
    b = layer_statistics(nnx_model, None, x)
    assert [s.kind for s in a] == ["Conv", "Conv", "Dense"]
    assert [s.kind for s in b] == ["Conv", "Conv", "Linear"]
    assert [s.name for s in b] == ["layers/0", "layers/2", "layers/5"]
    for sa, sb in zip(a, b, strict=True):
        np.testing.assert_allclose(
            [sa.pre_std, sa.act_std, sa.act_dead, sa.grad_out_std, sa.grad_kernel_std],
            [sb.pre_std, sb.act_std, sb.act_dead, sb.grad_out_std, sb.grad_kernel_std],
            rtol=1e-4)


def test_table_and_plot(tmp_path):
    x = _x((32, 16))
    runs = {}
    for name, init in (("he", nn.initializers.he_normal()), ("small", nn.initializers.normal())):
        model = _relu_net(4, 16, init)
        runs[name] = layer_statistics(model, model.init(jax.random.key(0), x), x)
    table = format_table(runs["he"], title="he")
    lines = table.splitlines()
    assert lines[0] == "he" and "act std" in lines[1] and len(lines) == 3 + 4
    assert "layers_6" in table
    path = plot_statistics(runs, str(tmp_path / "stats.png"), title="relu")
    data = (tmp_path / "stats.png").read_bytes()
    assert path.endswith("stats.png") and data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(ValueError, match="runs is empty"):
        plot_statistics({}, str(tmp_path / "none.png"))


# ---------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def small():
    model = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(2)])
    x = _x((4, 5))
    return model, model.init(jax.random.key(0), x), x


def test_batch_of_the_wrong_shape(small):
    model, variables, _ = small
    with pytest.raises(ValueError, match=r"batch of shape \(4, 7\).*fit the model"):
        layer_statistics(model, variables, jnp.ones((4, 7)))


def test_empty_batch(small):
    model, variables, _ = small
    with pytest.raises(ValueError, match=r"batch of shape \(0, 5\) is empty"):
        layer_statistics(model, variables, jnp.ones((0, 5)))
    with pytest.raises(ValueError, match="batch is empty"):
        layer_statistics(model, variables, [])
    with pytest.raises(ValueError, match="leading batch axis"):
        layer_statistics(model, variables, jnp.float32(1.0))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_batch(small, bad):
    model, variables, x = small
    with pytest.raises(ValueError, match=r"1 non-finite value"):
        layer_statistics(model, variables, x.at[2, 3].set(bad))


def test_model_without_kernels():
    model = nn.Sequential([nn.relu, nn.LayerNorm()])
    x = _x((4, 5))
    with pytest.raises(ValueError, match="no layer with a 'kernel'"):
        layer_statistics(model, model.init(jax.random.key(0), x), x)


def test_wrong_model_or_params(small):
    model, variables, x = small
    with pytest.raises(TypeError, match="needs its params"):
        layer_statistics(model, None, x)
    with pytest.raises(TypeError, match="must be the variables dict"):
        layer_statistics(model, [1, 2], x)
    with pytest.raises(TypeError, match="not a Flax linen or nnx Module"):
        layer_statistics(lambda v: v, None, x)
    with pytest.raises(TypeError, match="params must be None for an nnx model"):
        layer_statistics(nnx.Linear(5, 2, rngs=nnx.Rngs(0)), variables, x)
    with pytest.raises(ValueError, match="margin"):
        layer_statistics(model, variables, x, margin=1.5)
    # The bare params collection is accepted as well as the variables dict.
    assert len(layer_statistics(model, variables["params"], x)) == 2


def test_layers_inside_lifted_transforms_are_refused_clearly():
    class Remat(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(nn.remat(nn.Dense)(8)(x))

    model, x = Remat(), _x((4, 3))
    variables = model.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="lifted transform"):
        layer_statistics(model, variables, x)
    with pytest.raises(ValueError, match="lifted transform"):
        lsuv(model, variables, x, key=jax.random.key(0))


# ------------------------------------------------------------------ a ResNet, full names


class ResNetBlock(nn.Module):
    """The residual block of Flax's ImageNet example, with BatchNorm and a projection."""

    filters: int
    strides: tuple[int, int] = (1, 1)

    @nn.compact
    def __call__(self, x, train: bool = True):
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
        residual = x
        y = nn.Conv(self.filters, (3, 3), self.strides, use_bias=False)(x)
        y = nn.relu(norm()(y))
        y = nn.Conv(self.filters, (3, 3), use_bias=False)(y)
        y = norm(scale_init=nn.initializers.zeros)(y)
        if residual.shape != y.shape:
            residual = nn.Conv(self.filters, (1, 1), self.strides, use_bias=False,
                               name="conv_proj")(residual)
            residual = norm(name="norm_proj")(residual)
        return nn.relu(residual + y)


class ResNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Conv(4, (3, 3), use_bias=False, name="conv_init")(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, name="bn_init")(x))
        x = ResNetBlock(8, (2, 2))(x, train)
        return nn.Dense(5)(x.mean((1, 2)))


def test_format_table_shows_the_full_names_of_resnet_layers():
    model, x = ResNet(), _x((2, 4, 4, 3))
    variables = jax.jit(model.init)(jax.random.key(0), x)  # one compile, not one per op
    stats = layer_statistics(model, variables, x, apply_kwargs={"train": False})
    names = ["conv_init", "ResNetBlock_0/Conv_0", "ResNetBlock_0/Conv_1",
             "ResNetBlock_0/conv_proj", "Dense_0"]
    assert [s.name for s in stats] == names
    lines = format_table(stats).splitlines()
    rows = lines[2:]
    for s, row in zip(stats, rows, strict=True):
        assert row.split()[1] == s.name and row.split()[2] == s.kind
    # One column width for every row: the name column fits the longest name.
    assert len({len(line) for line in lines}) == 1
    assert lines[0].index("kind") == lines[0].index("layer") + len("ResNetBlock_0/conv_proj") + 1


def test_lsuv_report_shows_full_names():
    layers = [LSUVLayer("encoder/layers/11/attention/query", "DenseGeneral", 2.0, 1.5, 1.0, 1,
                        True), LSUVLayer("head", "Dense", 0.5, 0.4, 0.7, 10, False)]
    lines = LSUVReport(layers, [("encoder/final_norm", "LayerNorm")]).format().splitlines()
    assert lines[1].startswith("encoder/layers/11/attention/query DenseGeneral ")
    assert lines[2].startswith("head" + " " * 30 + "Dense        ")
    assert lines[2].endswith("(not converged)")


# ---------------------------------------------------------------------------- options


def test_options_are_checked_with_clear_errors(small):
    model, variables, x = small
    cases = [
        (TypeError, r"margin='a' must be a real number", {"margin": "a"}),
        (TypeError, r"margin=None must be a real number", {"margin": None}),
        (ValueError, r"margin=1.5 must be in \(0, 1\)", {"margin": 1.5}),
        (TypeError, r"bounds='ab' must be None or a pair \(low, high\)", {"bounds": "ab"}),
        (TypeError, r"bounds\[1\]='x' must be a real number", {"bounds": (0.0, "x")}),
        (ValueError, r"bounds=\(1.0, 0.0\) must be \(low, high\) with low < high",
         {"bounds": (1.0, 0.0)}),
        (TypeError, r"key=0 is not a PRNG key", {"key": 0}),
        (TypeError, r"loss_fn=3 must be a callable", {"loss_fn": 3}),
        (TypeError, r"apply_kwargs=\[1\] must be a mapping", {"apply_kwargs": [1]}),
        (TypeError, r"jit='yes' must be True or False", {"jit": "yes"}),
    ]
    for error, message, kwargs in cases:
        with pytest.raises(error, match="jaxinit.layer_statistics: " + message):
            layer_statistics(model, variables, x, **kwargs)
    stats = layer_statistics(model, variables, x, margin=np.float32(0.05), bounds=(np.int64(0), 1))
    assert len(stats) == 2
