"""An nnx decoder in the style of Flax's Gemma example: an embedding table N(0, 0.01²)
whose transpose gives the logits, attention and gated-MLP projections as ``nnx.Einsum``
kernels drawn from ``normal()``, and Gemma's RMSNorm, whose ``scale_init(key, dim, dtype)``
receives the shape as an int (zeros: the layer scales by ``1 + scale``)."""

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

VOCAB, LENGTH, EMBED, HEADS, HEAD_DIM, HIDDEN, LAYERS = 16, 8, 16, 1, 16, 16, 1


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, inits: Any, rngs: nnx.Rngs):
        self.scale = nnx.Param(inits.zeros_init()(rngs.params(), dim, jnp.float32))

    def __call__(self, x):
        var = jnp.mean(jnp.square(x), axis=-1, keepdims=True)
        return x * jax.lax.rsqrt(var + 1e-6) * (1 + self.scale[...])


class Block(nnx.Module):
    def __init__(self, inits: Any, rngs: nnx.Rngs):
        def einsum(spec, shape):
            return nnx.Einsum(spec, shape, kernel_init=inits.normal(), rngs=rngs)

        self.pre_attention_norm = RMSNorm(EMBED, inits, rngs)
        self.q_einsum = einsum("BTD,NDH->BTNH", (HEADS, EMBED, HEAD_DIM))
        self.kv_einsum = einsum("BSD,CKDH->CBSKH", (2, HEADS, EMBED, HEAD_DIM))
        self.attn_vec_einsum = einsum("BTNH,NHD->BTD", (HEADS, HEAD_DIM, EMBED))
        self.pre_ffw_norm = RMSNorm(EMBED, inits, rngs)
        self.gating_einsum = einsum("BTD,GDF->GBTF", (2, EMBED, HIDDEN))
        self.linear = einsum("BTF,FD->BTD", (HIDDEN, EMBED))

    def __call__(self, x):
        h = self.pre_attention_norm(x)
        q, (k, v) = self.q_einsum(h), self.kv_einsum(h)
        logits = jnp.einsum("BTNH,BSNH->BNTS", q, k) * HEAD_DIM**-0.5
        causal = jnp.tril(jnp.ones((x.shape[1], x.shape[1]), bool))
        probs = jax.nn.softmax(jnp.where(causal, logits, -1e30), axis=-1)
        x = x + self.attn_vec_einsum(jnp.einsum("BNTS,BSNH->BTNH", probs, v))
        gate, up = self.gating_einsum(self.pre_ffw_norm(x))
        return x + self.linear(jax.nn.gelu(gate) * up)


class Decoder(nnx.Module):
    def __init__(self, inits: Any, rngs: nnx.Rngs):
        self.embedding = nnx.Param(inits.normal()(rngs.params(), (VOCAB, EMBED)))
        self.layers = nnx.List([Block(inits, rngs) for _ in range(LAYERS)])
        self.final_norm = RMSNorm(EMBED, inits, rngs)

    def __call__(self, tokens):
        x = self.embedding[...][tokens] * jnp.sqrt(EMBED).astype(jnp.float32)
        for layer in self.layers:
            x = layer(x)
        return self.final_norm(x) @ self.embedding[...].T


def model(inits, rngs: nnx.Rngs) -> Decoder:
    return Decoder(inits, rngs)


def batch():
    tokens = jax.random.randint(jax.random.key(1), (2, LENGTH + 1), 0, VOCAB)
    return (tokens[:, :-1],), tokens[:, 1:]


def loss(net, inputs, targets):
    return optax.softmax_cross_entropy_with_integer_labels(net(*inputs), targets).mean()
