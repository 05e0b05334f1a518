"""A GPT-2 port to linen: token and position embeddings N(0, 0.02²), pre-LayerNorm blocks
with a fused ``c_attn`` projection, residual projections (``c_proj``) N(0, (0.02/√(2L))²),
zero biases, and the output projection tied to the token embedding."""

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

VOCAB, CONTEXT, EMBED, HEADS, LAYERS, LENGTH = 16, 16, 16, 2, 2, 8


class Block(nn.Module):
    inits: Any

    def dense(self, features, name, stddev=0.02):
        return nn.Dense(features, kernel_init=self.inits.normal(stddev),
                        bias_init=self.inits.zeros, name=name)

    def norm(self, name):
        return nn.LayerNorm(1e-5, scale_init=self.inits.ones, bias_init=self.inits.zeros,
                            name=name)

    @nn.compact
    def __call__(self, x):
        b, t, _ = x.shape
        proj_std = 0.02 / math.sqrt(2 * LAYERS)
        q, k, v = jnp.split(self.dense(3 * EMBED, "c_attn")(self.norm("ln_1")(x)), 3, -1)
        q, k, v = (a.reshape(b, t, HEADS, EMBED // HEADS) for a in (q, k, v))
        y = nn.dot_product_attention(q, k, v, mask=nn.make_causal_mask(jnp.ones((b, t))))
        x = x + self.dense(EMBED, "attn_c_proj", proj_std)(y.reshape(b, t, EMBED))
        h = nn.gelu(self.dense(4 * EMBED, "c_fc")(self.norm("ln_2")(x)))
        return x + self.dense(EMBED, "mlp_c_proj", proj_std)(h)


class GPT2(nn.Module):
    inits: Any

    @nn.compact
    def __call__(self, tokens):
        wte = nn.Embed(VOCAB, EMBED, embedding_init=self.inits.normal(0.02), name="wte")
        wpe = self.param("wpe", self.inits.normal(0.02), (CONTEXT, EMBED))
        x = wte(tokens) + wpe[: tokens.shape[1]]
        for i in range(LAYERS):
            x = Block(self.inits, name=f"h_{i}")(x)
        x = nn.LayerNorm(1e-5, scale_init=self.inits.ones, bias_init=self.inits.zeros,
                         name="ln_f")(x)
        return wte.attend(x)


def model(inits) -> GPT2:
    return GPT2(inits)


def batch():
    tokens = jax.random.randint(jax.random.key(1), (2, LENGTH + 1), 0, VOCAB)
    return (tokens[:, :-1],), tokens[:, 1:]


def loss(net, variables, inputs, targets):
    logits = net.apply(variables, *inputs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
