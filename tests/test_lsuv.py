"""LSUV: every handled layer ends within tol of the target (checked independently of the
code under test), inputs are never modified, unhandled layers are reported, bad input fails."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from inputs import normal_input

from jaxinit.diagnostics import layer_statistics
from jaxinit.testing import assert_orthogonal
from jaxinit.unit_variance import lsuv

pytestmark = pytest.mark.timeout(180)


def _x(shape, seed=0, scale=3.0):
    # Not unit variance on purpose: LSUV has to undo it.
    return normal_input(shape, seed, scale, shift=1.0)


def _linen_output_variances(model, variables, x):
    """Variance of every Dense/Conv output, through linen's own capture_intermediates."""
    _, state = model.apply(variables, x, capture_intermediates=True)
    found = {}

    def walk(tree, prefix):
        for k, v in tree.items():
            if k == "__call__":
                found[prefix] = float(jnp.var(v[0]))
            elif isinstance(v, dict):
                walk(v, f"{prefix}/{k}" if prefix else k)

    walk(state["intermediates"], "")
    return found


class _CNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(16, (3, 3), bias_init=nn.initializers.normal(0.1))(x))
        x = nn.relu(nn.Conv(16, (3, 3), strides=2)(x))
        x = x.mean((1, 2))
        x = nn.relu(nn.Dense(32)(x))
        return nn.Dense(10)(x)


def _as_numpy(a):
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        a = jax.random.key_data(a)
    return np.array(a, copy=True)


def _snapshot(tree):
    return jax.tree_util.tree_map(_as_numpy, tree)


def _assert_same(tree, snapshot):
    for a, b in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(snapshot),
                    strict=True):
        np.testing.assert_array_equal(_as_numpy(a), b)


@pytest.mark.parametrize("target,tol", [(1.0, 0.1), (2.0, 0.02)])
def test_linen_conv_and_dense_reach_the_target(target, tol):
    model, x = _CNN(), _x((32, 12, 12, 3))
    variables = model.init(jax.random.key(1), x)
    before = _snapshot(variables)
    new, report = lsuv(model, variables, x, key=jax.random.key(2), target=target, tol=tol)
    _assert_same(variables, before)  # the caller's params are untouched
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(variables)
    assert [r.name for r in report.layers] == ["Conv_0", "Conv_1", "Dense_0", "Dense_1"]
    assert report.unhandled == [] and all(r.converged for r in report.layers)
    measured = _linen_output_variances(model, new, x)
    for r in report.layers:
        assert abs(measured[r.name] - target) < tol, (r.name, measured[r.name])
        np.testing.assert_allclose(r.var_after, measured[r.name], rtol=1e-4)
    np.testing.assert_allclose(
        [r.var_before for r in report.layers],
        [_linen_output_variances(model, variables, x)[r.name] for r in report.layers],
        rtol=1e-4)
    # Biases are kept; kernels are orthogonal up to the one scale LSUV gave each.
    np.testing.assert_array_equal(new["params"]["Conv_0"]["bias"],
                                  variables["params"]["Conv_0"]["bias"])
    for name in ("Conv_1", "Dense_0"):
        kernel = np.asarray(new["params"][name]["kernel"])
        scale = np.linalg.norm(kernel) / np.sqrt(min(kernel.size // kernel.shape[-1],
                                                     kernel.shape[-1]))
        assert_orthogonal((kernel / scale).astype(np.float32), name=name)


def test_orthonormal_pre_init_and_custom_pre_init():
    model = nn.Sequential([nn.Dense(24), nn.relu, nn.Dense(8)])
    x = _x((64, 16))
    variables = model.init(jax.random.key(0), x)
    # A tolerance no variance misses: no rescaling, only the orthonormal pre-init.
    new, report = lsuv(model, variables, x, key=jax.random.key(4), tol=1e9)
    assert all(r.rounds == 0 for r in report.layers)
    assert_orthogonal(new["params"]["layers_0"]["kernel"])
    assert_orthogonal(new["params"]["layers_2"]["kernel"])
    ident = lambda key, shape, dtype=jnp.float32: jnp.eye(*shape, dtype=dtype)  # noqa: E731
    new, _ = lsuv(model, variables, x, key=jax.random.key(4), tol=1e9, orthogonal_init=ident)
    np.testing.assert_array_equal(new["params"]["layers_2"]["kernel"], jnp.eye(24, 8))


def test_nnx_returns_a_new_model_and_leaves_the_given_one_alone():
    rngs = nnx.Rngs(0)
    model = nnx.Sequential(nnx.Conv(3, 8, (3, 3), rngs=rngs), nnx.relu,
                           nnx.Conv(8, 8, (3, 3), rngs=rngs), nnx.relu,
                           lambda h: h.mean((1, 2)), nnx.Linear(8, 4, rngs=rngs))
    x = _x((16, 10, 10, 3))
    before = _snapshot(nnx.state(model))
    new_model, report = lsuv(model, None, x, key=jax.random.key(3))
    _assert_same(nnx.state(model), before)
    assert new_model is not model and isinstance(new_model, nnx.Sequential)
    assert [r.name for r in report.layers] == ["layers/0", "layers/2", "layers/5"]
    assert [r.kind for r in report.layers] == ["Conv", "Conv", "Linear"]
    # Independent check: run the returned model's layers one by one.
    h, measured = x, []
    for layer in new_model.layers:
        h = layer(h)
        if isinstance(layer, nnx.Linear | nnx.Conv):
            measured.append(float(jnp.var(h)))
    assert all(abs(v - 1.0) < 0.1 for v in measured), measured
    np.testing.assert_allclose([r.var_after for r in report.layers], measured, rtol=1e-4)
    # And the given model still computes what it did.
    assert not np.allclose(model(x), new_model(x))


class _Custom(nn.Module):
    """A layer LSUV cannot know how to rescale: its own parameter name and rule."""

    @nn.compact
    def __call__(self, x):
        w = self.param("w", nn.initializers.lecun_normal(), (x.shape[-1], 8))
        return x @ w


class _GatedKernel(nn.Module):
    """Owns a 'kernel' but its output is not linear in it: LSUV cannot know the rule."""

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], 8))
        return jnp.tanh(x @ kernel)


def test_linen_layers_it_does_not_handle_are_reported_and_warned():
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Dense(16)(x)
            x = nn.LayerNorm()(x)
            x = _Custom()(x)
            x = _GatedKernel()(x)
            x = nn.DenseGeneral((2, 4))(x)
            return nn.Dense(4)(x.reshape(x.shape[0], -1))

    model, x = Model(), _x((32, 8))
    variables = model.init(jax.random.key(0), x)
    with pytest.warns(UserWarning, match=r"left unchanged: .*_GatedKernel_0.*_Custom_0"):
        new, report = lsuv(model, variables, x, key=jax.random.key(1))
    reasons = dict(report.unhandled)
    assert set(reasons) == {"LayerNorm_0", "_Custom_0", "_GatedKernel_0"}
    assert "not known to be linear in its kernel" in reasons["_GatedKernel_0"]
    assert "parameters w" in reasons["_Custom_0"]
    assert [r.name for r in report.layers] == ["Dense_0", "DenseGeneral_0", "Dense_1"]
    for name in ("_Custom_0", "_GatedKernel_0", "LayerNorm_0"):
        _assert_same(new["params"][name], _snapshot(variables["params"][name]))


def test_nnx_layer_it_does_not_handle_and_a_shared_kernel():
    class Model(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(10, 8, rngs=rngs)
            self.shared = nnx.Linear(8, 8, rngs=rngs)
            self.head = nnx.Linear(8, 3, rngs=rngs)

        def __call__(self, tokens):
            h = self.embed(tokens).mean(1)
            return self.head(self.shared(self.shared(h)))

    model = Model(nnx.Rngs(0))
    tokens = jax.random.randint(jax.random.key(0), (32, 5), 0, 10)
    with pytest.warns(UserWarning, match="embed") as record:
        new_model, report = lsuv(model, None, tokens, key=jax.random.key(1))
    assert "shared" in str(record[0].message)
    reasons = dict(report.unhandled)
    assert set(reasons) == {"embed", "shared"}
    assert "used by 2 calls" in reasons["shared"]
    assert [r.name for r in report.layers] == ["head"]
    np.testing.assert_array_equal(new_model.shared.kernel[...], model.shared.kernel[...])


def test_a_layer_that_cannot_reach_the_target_is_flagged():
    # A bias of std 3 gives the output a variance of ~9 whatever the kernel scale.
    model = nn.Sequential([nn.Dense(64, bias_init=nn.initializers.normal(3.0))])
    x = _x((32, 16))
    with pytest.warns(UserWarning, match="not within tol"):
        _, report = lsuv(model, model.init(jax.random.key(0), x), x, key=jax.random.key(1),
                         max_rounds=4)
    (layer,) = report.layers
    assert not layer.converged and layer.rounds == 4 and layer.var_after > 2.0


# ---------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def small():
    model = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(2)])
    x = _x((4, 5))
    return model, model.init(jax.random.key(0), x), x


def test_bad_batches(small):
    model, variables, x = small
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"jaxinit.lsuv: running the model on a batch of shape"):
        lsuv(model, variables, jnp.ones((4, 3)), key=key)
    with pytest.raises(ValueError, match=r"jaxinit.lsuv: batch of shape \(0, 5\) is empty"):
        lsuv(model, variables, jnp.ones((0, 5)), key=key)
    with pytest.raises(ValueError, match=r"jaxinit.lsuv: .* 2 non-finite"):
        lsuv(model, variables, x.at[0, 0].set(jnp.nan).at[1, 1].set(jnp.inf), key=key)


def test_model_without_kernels():
    model = nn.Sequential([nn.LayerNorm(), nn.relu])
    x = _x((4, 5))
    with pytest.raises(ValueError, match="no layer with a 'kernel'"):
        lsuv(model, model.init(jax.random.key(0), x), x, key=jax.random.key(0))


def test_bad_options(small):
    model, variables, x = small
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="tol=0"):
        lsuv(model, variables, x, key=key, tol=0)
    with pytest.raises(ValueError, match="target=-1"):
        lsuv(model, variables, x, key=key, target=-1.0)
    with pytest.raises(ValueError, match="max_rounds=0"):
        lsuv(model, variables, x, key=key, max_rounds=0)
    with pytest.raises(TypeError, match="key=3 is not a PRNG key"):
        lsuv(model, variables, x, key=3)
    with pytest.raises(TypeError, match=r"jaxinit.lsuv: orthogonal_init=5 must be an initializer"):
        lsuv(model, variables, x, key=key, orthogonal_init=5)
    with pytest.raises(TypeError, match=r"jaxinit.lsuv: max_rounds=2.5 must be an int"):
        lsuv(model, variables, x, key=key, max_rounds=2.5)
    with pytest.raises(TypeError, match=r"jaxinit.lsuv: apply_kwargs=\(1,\) must be a mapping"):
        lsuv(model, variables, x, key=key, apply_kwargs=(1,))
    flat = lambda key, shape, dtype=jnp.float32: jnp.zeros((4,), dtype)  # noqa: E731
    with pytest.raises(ValueError, match=r"orthogonal_init returned shape \(4,\) for shape "
                                         r"\(5, 8\)"):
        lsuv(model, variables, x, key=key, orthogonal_init=flat)
    # numpy integers are integers.
    _, report = lsuv(model, variables, x, key=key, max_rounds=np.int64(2), tol=1e-6)
    assert all(r.rounds <= 2 for r in report.layers)


def test_nnx_model_that_updates_its_state_batchnorm_and_dropout():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(1, 8, (3, 3), rngs=rngs)
            self.bn = nnx.BatchNorm(8, rngs=rngs)  # training mode: updates its statistics
            self.drop = nnx.Dropout(0.5, rngs=rngs)  # draws from the model's RNG stream
            self.fc = nnx.Linear(8, 3, rngs=rngs)

        def __call__(self, x):
            return self.fc(self.drop(nnx.relu(self.bn(self.conv(x)))).mean((1, 2)))

    model = Net(nnx.Rngs(0, dropout=1))
    x = _x((16, 8, 8, 1))
    before = _snapshot(nnx.state(model))
    stats = layer_statistics(model, None, x)
    assert [s.name for s in stats] == ["conv", "fc"]
    new_model, report = lsuv(model, None, x, key=jax.random.key(2))
    _assert_same(nnx.state(model), before)
    assert all(abs(r.var_after - 1.0) < 0.1 for r in report.layers)
    assert dict(report.unhandled).keys() == {"bn"}
    # Running statistics are not LSUV's business: the new model starts from the same ones.
    np.testing.assert_array_equal(new_model.bn.mean[...], model.bn.mean[...])
