"""LSUV on attention models whose projections are ``Einsum``/``DenseGeneral`` layers: an nnx
Gemma-style decoder (``nnx.Einsum`` projections, RMSNorm, gated MLP) and a linen
Transformer block (``nn.MultiHeadDotProductAttention``, whose q/k/v/out are
``DenseGeneral``, and an ``nn.Einsum`` MLP). Output variances are measured independently:
by calling the returned model's own sub-modules (nnx) or through linen's
``capture_intermediates``."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from inputs import normal_input

from jaxinit.diagnostics import layer_statistics
from jaxinit.kernel_layout import KernelLayout, kernel_layout
from jaxinit.testing import assert_orthogonal
from jaxinit.unit_variance import lsuv

pytestmark = pytest.mark.timeout(180)

VOCAB, FEATURES, HEADS, HEAD_DIM, HIDDEN = 32, 16, 2, 4, 24


def attend(q, k, v):
    """Causal softmax attention on (batch, time, heads, head_dim) arrays."""
    logits = jnp.einsum("BTNH,BSNH->BNTS", q, k) * q.shape[-1] ** -0.5
    t = q.shape[1]
    logits = jnp.where(jnp.tril(jnp.ones((t, t), bool)), logits, -1e30)
    return jnp.einsum("BNTS,BSNH->BTNH", jax.nn.softmax(logits, axis=-1), v)


class Attention(nnx.Module):
    def __init__(self, rngs):
        self.q_einsum = nnx.Einsum("BTD,NDH->BTNH", (HEADS, FEATURES, HEAD_DIM), rngs=rngs)
        self.kv_einsum = nnx.Einsum("BSD,CKDH->CBSKH", (2, HEADS, FEATURES, HEAD_DIM),
                                    rngs=rngs)
        self.attn_vec_einsum = nnx.Einsum("BTNH,NHD->BTD", (HEADS, HEAD_DIM, FEATURES),
                                          rngs=rngs)

    def __call__(self, x):
        q = self.q_einsum(x)
        k, v = self.kv_einsum(x)
        return self.attn_vec_einsum(attend(q, k, v))


class FeedForward(nnx.Module):
    def __init__(self, rngs):
        self.gating_einsum = nnx.Einsum("BTD,GDF->GBTF", (2, FEATURES, HIDDEN), rngs=rngs)
        self.linear = nnx.Einsum("BTF,FD->BTD", (HIDDEN, FEATURES), rngs=rngs)

    def __call__(self, x):
        gate, up = self.gating_einsum(x)
        return self.linear(jax.nn.gelu(gate) * up)


class Block(nnx.Module):
    def __init__(self, rngs):
        self.pre_attention_norm = nnx.RMSNorm(FEATURES, rngs=rngs)
        self.attn = Attention(rngs)
        self.pre_ffw_norm = nnx.RMSNorm(FEATURES, rngs=rngs)
        self.mlp = FeedForward(rngs)

    def __call__(self, x):
        x = x + self.attn(self.pre_attention_norm(x))
        return x + self.mlp(self.pre_ffw_norm(x))


class GemmaStyleDecoder(nnx.Module):
    def __init__(self, num_layers, rngs):
        self.embedder = nnx.Embed(VOCAB, FEATURES, rngs=rngs)
        self.layers = nnx.List([Block(rngs) for _ in range(num_layers)])
        self.final_norm = nnx.RMSNorm(FEATURES, rngs=rngs)

    def __call__(self, tokens):
        x = self.embedder(tokens) * FEATURES**0.5
        for block in self.layers:
            x = block(x)
        return self.embedder.attend(self.final_norm(x))


@nnx.jit
def _einsum_outputs(model, tokens):
    """Every Einsum layer's output, computed by calling the model's own sub-modules."""
    outputs = {}
    x = model.embedder(tokens) * FEATURES**0.5
    for i, block in enumerate(model.layers):
        h = block.pre_attention_norm(x)
        q, kv = block.attn.q_einsum(h), block.attn.kv_einsum(h)
        a = block.attn.attn_vec_einsum(attend(q, kv[0], kv[1]))
        x = x + a
        h = block.pre_ffw_norm(x)
        gu = block.mlp.gating_einsum(h)
        d = block.mlp.linear(jax.nn.gelu(gu[0]) * gu[1])
        x = x + d
        for name, value in (("attn/q_einsum", q), ("attn/kv_einsum", kv),
                            ("attn/attn_vec_einsum", a), ("mlp/gating_einsum", gu),
                            ("mlp/linear", d)):
            outputs[f"layers/{i}/{name}"] = value
    return outputs


def test_lsuv_rescales_the_einsum_layers_of_a_gemma_style_decoder():
    model = GemmaStyleDecoder(1, nnx.Rngs(0))
    tokens = jax.random.randint(jax.random.key(0), (8, 6), 0, VOCAB)
    expected = [f"layers/0/{n}" for n in ("attn/q_einsum", "attn/kv_einsum",
                                          "attn/attn_vec_einsum", "mlp/gating_einsum",
                                          "mlp/linear")]
    with pytest.warns(UserWarning, match="embedder"):
        new_model, report = lsuv(model, None, tokens, key=jax.random.key(1))
    assert [r.name for r in report.layers] == expected
    assert {r.kind for r in report.layers} == {"Einsum"}
    assert all(r.converged for r in report.layers), report.format()
    assert all(name == "embedder" or "norm" in name for name, _ in report.unhandled)
    measured = {k: float(jnp.var(v)) for k, v in _einsum_outputs(new_model, tokens).items()}
    for r in report.layers:
        assert abs(measured[r.name] - 1.0) < 0.1, (r.name, measured[r.name])
        np.testing.assert_allclose(r.var_after, measured[r.name], rtol=1e-4)


def test_einsum_kernels_are_pre_initialized_as_contracted_by_feature_matrices():
    model = GemmaStyleDecoder(1, nnx.Rngs(0))
    tokens = jax.random.randint(jax.random.key(0), (8, 6), 0, VOCAB)
    with pytest.warns(UserWarning, match="embedder"):
        new_model, _ = lsuv(model, None, tokens, key=jax.random.key(1), tol=1e9)
    attn, mlp = new_model.layers[0].attn, new_model.layers[0].mlp
    # q: kernel (N, D, H) contracts D: the (D, N*H) matrix has orthonormal columns.
    q = np.asarray(attn.q_einsum.kernel[...]).transpose(1, 0, 2).reshape(FEATURES, -1)
    assert_orthogonal(q, name="q_einsum")
    kv = np.asarray(attn.kv_einsum.kernel[...]).transpose(2, 0, 1, 3).reshape(FEATURES, -1)
    assert_orthogonal(kv, name="kv_einsum")
    out = np.asarray(attn.attn_vec_einsum.kernel[...]).reshape(-1, FEATURES)
    assert_orthogonal(out, name="attn_vec_einsum")
    gating = np.asarray(mlp.gating_einsum.kernel[...]).transpose(1, 0, 2).reshape(FEATURES, -1)
    assert_orthogonal(gating, name="gating_einsum")


class TransformerBlock(nn.Module):
    """A pre-norm encoder block in linen: DenseGeneral attention projections, Einsum MLP."""

    @nn.compact
    def __call__(self, x):
        h = nn.LayerNorm()(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=HEADS, name="attention")(h, h)
        h = nn.LayerNorm()(x)
        h = nn.gelu(nn.Einsum((FEATURES, HIDDEN), "btd,df->btf", name="mlp_in")(h))
        return x + nn.Einsum((HIDDEN, FEATURES), "btf,fd->btd", name="mlp_out")(h)


def _captured_variances(model, variables, x):
    _, state = model.apply(variables, x, capture_intermediates=True)
    inter = state["intermediates"]
    found = {f"attention/{n}": inter["attention"][n]["__call__"][0]
             for n in ("query", "key", "value", "out")}
    found.update({n: inter[n]["__call__"][0] for n in ("mlp_in", "mlp_out")})
    return {k: float(jnp.var(v)) for k, v in found.items()}


def test_lsuv_on_linen_dense_general_and_einsum_layers():
    model = TransformerBlock()
    x = normal_input((8, 6, FEATURES), scale=3.0)
    variables = model.init(jax.random.key(1), x)
    stats = layer_statistics(model, variables, x)
    assert [s.kind for s in stats] == ["DenseGeneral"] * 4 + ["Einsum"] * 2
    new, report = lsuv(model, variables, x, key=jax.random.key(2))
    names = ["attention/query", "attention/key", "attention/value", "attention/out",
             "mlp_in", "mlp_out"]
    assert [r.name for r in report.layers] == names
    assert all(r.converged for r in report.layers), report.format()
    measured = _captured_variances(model, new, x)
    for r in report.layers:
        assert abs(measured[r.name] - 1.0) < 0.1, (r.name, measured[r.name])
        np.testing.assert_allclose(r.var_after, measured[r.name], rtol=1e-4)
    # The query kernel (D, N, H) is pre-initialized as a (D, N*H) orthonormal matrix.
    query = np.asarray(new["params"]["attention"]["query"]["kernel"]).reshape(FEATURES, -1)
    scale = np.linalg.norm(query) / np.sqrt(query.shape[1])
    assert_orthogonal((query / scale).astype(np.float32), name="query")


def _abstract(build):
    return nnx.eval_shape(lambda: build(nnx.Rngs(0)))  # no parameters drawn


def test_kernel_layouts_of_linear_layers():
    cases = [
        (_abstract(lambda r: nnx.Einsum("BTD,NDH->BTNH", (2, 4, 3), rngs=r)), 3,
         ((1,), (0, 2), ())),
        (_abstract(lambda r: nnx.Einsum("...D,DF->...F", (4, 5), rngs=r)), 2, ((0,), (1,), ())),
        (_abstract(lambda r: nnx.Einsum("BTNH,NHK->BTNK", (2, 3, 4), rngs=r)), 3,
         ((1,), (2,), (0,))),
        (_abstract(lambda r: nnx.LinearGeneral((4, 3), 5, axis=(-2, -1), rngs=r)), 3,
         ((0, 1), (2,), ())),
        (_abstract(lambda r: nnx.Conv(3, 4, (3, 3), rngs=r)), 4, ((0, 1, 2), (3,), ())),
        (nn.DenseGeneral((2, 4), batch_dims=(0,)), 4, ((1,), (2, 3), (0,))),
    ]
    for module, ndim, expected in cases:
        assert kernel_layout(module, ndim, {}) == KernelLayout(*expected), module
    # A call-time equation wins over the module's own; one the layout cannot follow is None.
    einsum = _abstract(lambda r: nnx.Einsum("BTD,DF->BTF", (4, 5), rngs=r))
    assert kernel_layout(einsum, 2, {"einsum_str": "BTF,DF->BTD"}) == KernelLayout((1,), (0,))
    assert kernel_layout(einsum, 2, {"einsum_str": "BD,...F->BF"}) is None
    assert kernel_layout(_abstract(lambda r: nnx.Embed(3, 4, rngs=r)), 2, {}) is None


def test_einsum_batch_axes_get_one_orthonormal_matrix_each():
    class PerHead(nnx.Module):
        """Each head's own (H, K) projection: the head axis is an einsum batch axis."""

        def __init__(self, rngs):
            self.split = nnx.Einsum("BTD,DNH->BTNH", (FEATURES, HEADS, 8), rngs=rngs)
            self.per_head = nnx.Einsum("BTNH,NHK->BTNK", (HEADS, 8, 4), rngs=rngs)

        def __call__(self, x):
            return self.per_head(self.split(x))

    x = normal_input((4, 5, FEATURES))
    new_model, report = lsuv(PerHead(nnx.Rngs(0)), None, x, key=jax.random.key(1), tol=1e9)
    assert [r.name for r in report.layers] == ["split", "per_head"]
    kernel = np.asarray(new_model.per_head.kernel[...])
    assert_orthogonal(kernel, batch_axis=0, name="per_head")
    assert not np.allclose(kernel[0], kernel[1])
