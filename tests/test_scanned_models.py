"""layer_statistics and LSUV on stacks built the way Flax code builds them: ``nn.scan`` and
``nnx.scan`` over layers (stacked kernels), and the SST-2 classifier's ``nn.scan`` of an
``OptimizedLSTMCell`` over time. Every number is checked against a hand-written, unrolled
forward (and backward) pass over the same parameters."""

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

DEPTH, WIDTH = 3, 16


def _x(shape, seed=0, scale=3.0):
    return normal_input(shape, seed, scale, shift=1.0)


# ---------------------------------------------------------------- linen: nn.scan over layers


class MLPBlock(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x, _):
        return nn.relu(nn.Dense(self.width)(x)), None


class ScannedMLP(nn.Module):
    """A deep MLP whose hidden blocks are one ``nn.scan`` over stacked parameters."""

    depth: int = DEPTH
    width: int = WIDTH

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.width, name="embed")(x))
        blocks = nn.scan(MLPBlock, variable_axes={"params": 0}, split_rngs={"params": True},
                         length=self.depth)
        x, _ = blocks(self.width, name="layers")(x, None)
        return nn.Dense(3, name="head")(x)


def _unrolled(p, x, eps):
    """The forward pass of ScannedMLP written out layer by layer: pre-activations, and the
    input of each next layer."""
    stacked = p["layers"]["Dense_0"]
    weights = [(p["embed"]["kernel"], p["embed"]["bias"])]
    weights += [(stacked["kernel"][i], stacked["bias"][i]) for i in range(DEPTH)]
    weights += [(p["head"]["kernel"], p["head"]["bias"])]
    zs, acts, h = [], [], x
    for i, (kernel, bias) in enumerate(weights):
        z = h @ kernel + bias + eps[i]
        h = jax.nn.relu(z) if i < len(weights) - 1 else z
        zs.append(z)
        acts.append(h)
    return h, zs, acts


def test_linen_scan_over_layers_gives_one_record_per_layer():
    model, x = ScannedMLP(), _x((32, 8))
    variables = model.init(jax.random.key(1), x)
    r = jax.random.normal(jax.random.key(5), (32, 3))
    stats = layer_statistics(model, variables, x, loss_fn=lambda out: jnp.sum(out * r))
    assert [s.name for s in stats] == ["embed", "layers/0/Dense_0", "layers/1/Dense_0",
                                       "layers/2/Dense_0", "head"]

    def loss(p, eps):
        out, zs, acts = _unrolled(p, x, eps)
        return jnp.sum(out * r), (zs, acts)

    eps = [jnp.zeros((32, WIDTH))] * (DEPTH + 1) + [jnp.zeros((32, 3))]
    (grad_p, grad_eps), (zs, acts) = jax.grad(loss, (0, 1), has_aux=True)(
        variables["params"], eps)
    grad_kernels = [grad_p["embed"]["kernel"]]
    grad_kernels += [grad_p["layers"]["Dense_0"]["kernel"][i] for i in range(DEPTH)]
    grad_kernels += [grad_p["head"]["kernel"]]
    for s, z, a, ge, gk in zip(stats, zs, acts, grad_eps, grad_kernels, strict=True):
        np.testing.assert_allclose(
            [s.pre_mean, s.pre_std, s.act_std, s.grad_out_std, s.grad_kernel_std],
            [z.mean(), z.std(), a.std(), ge.std(), gk.std()], rtol=2e-5, atol=1e-7)
    # The layers differ (independent slices), so the records are not one layer repeated.
    assert len({round(s.pre_std, 6) for s in stats[1:4]}) == 3


def test_lsuv_rescales_each_slice_of_a_linen_scanned_stack():
    model, x = ScannedMLP(), _x((64, 8))
    variables = model.init(jax.random.key(1), x)
    before = jax.tree_util.tree_map(np.array, variables)
    new, report = lsuv(model, variables, x, key=jax.random.key(2))
    jax.tree_util.tree_map(np.testing.assert_array_equal, variables, before)
    assert [r.name for r in report.layers] == ["embed", "layers/0/Dense_0", "layers/1/Dense_0",
                                               "layers/2/Dense_0", "head"]
    assert report.unhandled == [] and all(r.converged for r in report.layers)
    zeros = [0.0] * (DEPTH + 2)
    _, zs, _ = _unrolled(new["params"], x, zeros)
    measured = [float(jnp.var(z)) for z in zs]
    assert all(abs(v - 1.0) < 0.1 for v in measured), measured
    np.testing.assert_allclose([r.var_after for r in report.layers], measured, rtol=1e-4)
    # Each slice is its own orthonormal matrix times its own scale.
    kernels = np.asarray(new["params"]["layers"]["Dense_0"]["kernel"])
    scales = np.linalg.norm(kernels, axis=(1, 2)) / np.sqrt(WIDTH)
    assert_orthogonal((kernels / scales[:, None, None]).astype(np.float32), batch_axis=0)
    assert not np.allclose(kernels[0] / scales[0], kernels[1] / scales[1])


# ---------------------------------------------------------------- nnx: nnx.scan over layers


class NnxBlock(nnx.Module):
    def __init__(self, width, rngs):
        self.linear = nnx.Linear(width, width, rngs=rngs)

    def __call__(self, x):
        return nnx.relu(self.linear(x))


class NnxScannedMLP(nnx.Module):
    """The nnx scan-over-layers pattern: blocks created by nnx.vmap, applied by nnx.scan."""

    def __init__(self, rngs):
        self.embed = nnx.Linear(8, WIDTH, rngs=rngs)

        @nnx.split_rngs(splits=DEPTH)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def create_block(rngs):
            return NnxBlock(WIDTH, rngs)

        self.blocks = create_block(rngs)
        self.head = nnx.Linear(WIDTH, 3, rngs=rngs)

    def __call__(self, x):
        @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
        def forward(h, block):
            return block(h)

        return self.head(forward(nnx.relu(self.embed(x)), self.blocks))


def test_nnx_scan_over_layers_statistics_and_lsuv():
    model, x = NnxScannedMLP(nnx.Rngs(0)), _x((64, 8))
    stats = layer_statistics(model, None, x)
    names = ["embed", "blocks/0/linear", "blocks/1/linear", "blocks/2/linear", "head"]
    assert [s.name for s in stats] == names

    def pre_activations(m):
        h, zs = x, []
        kernels = m.blocks.linear.kernel[...]
        biases = m.blocks.linear.bias[...]
        weights = [(m.embed.kernel[...], m.embed.bias[...])]
        weights += [(kernels[i], biases[i]) for i in range(DEPTH)]
        weights += [(m.head.kernel[...], m.head.bias[...])]
        for kernel, bias in weights:
            zs.append(h @ kernel + bias)
            h = jax.nn.relu(zs[-1])
        return zs

    np.testing.assert_allclose([s.pre_std for s in stats],
                               [float(z.std()) for z in pre_activations(model)], rtol=2e-5)
    kernel_before = np.array(model.blocks.linear.kernel[...])
    new_model, report = lsuv(model, None, x, key=jax.random.key(3))
    np.testing.assert_array_equal(model.blocks.linear.kernel[...], kernel_before)
    assert [r.name for r in report.layers] == names and report.unhandled == []
    measured = [float(jnp.var(z)) for z in pre_activations(new_model)]
    assert all(abs(v - 1.0) < 0.1 for v in measured), measured
    np.testing.assert_allclose([r.var_after for r in report.layers], measured, rtol=1e-4)


# ---------------------------------------------------------------- SST-2: nn.scan over time


class SST2Classifier(nn.Module):
    """Flax's SST-2 example, small: embeddings, an OptimizedLSTMCell scanned over time with
    shared parameters, a Dense classifier on the last hidden state."""

    hidden: int = 6

    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(20, 5)(tokens)
        lstm = nn.scan(nn.OptimizedLSTMCell, variable_broadcast="params", in_axes=1,
                       out_axes=1, split_rngs={"params": False})(self.hidden, name="lstm")
        carry = lstm.initialize_carry(jax.random.key(0), x[:, 0].shape)
        (_, h), _ = lstm(carry, x)
        return nn.Dense(2, name="classifier")(h)


GATES = ("i", "f", "g", "o")


def _gate_pre_activations(params, tokens):
    """Every gate's input and recurrent pre-activations over all steps, by an unrolled LSTM."""
    p = params["lstm"]
    x = params["Embed_0"]["embedding"][tokens]
    c = h = jnp.zeros((tokens.shape[0], p["hi"]["kernel"].shape[0]))
    found = {f"{side}{g}": [] for g in GATES for side in "ih"}
    for t in range(tokens.shape[1]):
        pre = {}
        for g in GATES:
            pre[g] = x[:, t] @ p["i" + g]["kernel"] + h @ p["h" + g]["kernel"] + p["h" + g]["bias"]
            found["i" + g].append(x[:, t] @ p["i" + g]["kernel"])
            found["h" + g].append(h @ p["h" + g]["kernel"] + p["h" + g]["bias"])
        c = jax.nn.sigmoid(pre["f"]) * c + jax.nn.sigmoid(pre["i"]) * jnp.tanh(pre["g"])
        h = jax.nn.sigmoid(pre["o"]) * jnp.tanh(c)
    found["classifier"] = [h @ params["classifier"]["kernel"] + params["classifier"]["bias"]]
    return {k: jnp.stack(v) for k, v in found.items()}


def test_sst2_optimized_lstm_under_scan_statistics_and_lsuv():
    model = SST2Classifier()
    tokens = jax.random.randint(jax.random.key(0), (16, 7), 0, 20)
    variables = model.init(jax.random.key(1), tokens)
    stats = layer_statistics(model, variables, tokens)
    order = [f"{side}{g}" for g in GATES for side in "ih"]
    assert [s.name for s in stats] == [f"lstm/{n}" for n in order] + ["classifier"]
    assert [s.kind for s in stats] == ["DenseParams"] * 8 + ["Dense"]
    # Scan over time: one record per gate layer covering all 7 steps.
    assert stats[0].shape == (7, 16, 6)
    expected = _gate_pre_activations(variables["params"], tokens)
    np.testing.assert_allclose([s.pre_std for s in stats],
                               [float(expected[n].std()) for n in [*order, "classifier"]],
                               rtol=1e-4)
    # The cell applies the DenseParams kernels itself: no output gradient to observe.
    assert all(np.isnan(s.grad_out_std) for s in stats[:8]) and stats[8].grad_out_std > 0
    assert all(s.grad_kernel_std > 0 for s in stats)

    new, report = lsuv(model, variables, tokens, key=jax.random.key(2))
    assert all(r.converged for r in report.layers), report.format()
    assert dict(report.unhandled).keys() == {"Embed_0"}
    measured = _gate_pre_activations(new["params"], tokens)
    for r in report.layers:
        variance = float(jnp.var(measured[r.name.removeprefix("lstm/")]))
        assert abs(variance - 1.0) < 0.1, (r.name, variance)
        np.testing.assert_allclose(r.var_after, variance, rtol=1e-4)


def test_layers_under_remat_inside_a_scan_are_refused_by_name():
    class RematStack(nn.Module):
        @nn.compact
        def __call__(self, x):
            blocks = nn.scan(nn.remat(MLPBlock), variable_axes={"params": 0},
                             split_rngs={"params": True}, length=2)
            return blocks(4, name="layers")(x, None)[0]

    model, x = RematStack(), _x((4, 4))
    variables = model.init(jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"layers/Dense_0 run inside a lifted transform"):
        layer_statistics(model, variables, x)
