"""A decoder-only language model in the style of Flax's LM1B example: a config carrying the
kernel/bias initializers (``xavier_uniform()``, ``normal(1e-6)``), every parameter wrapped
in ``nn.with_logical_partitioning``, fixed sinusoidal position embeddings, pre-LayerNorm
blocks of self-attention and an MLP.

Widths are equal so that kernels share shapes: every distinct (sampler, shape) costs a
compilation, eager and jitted."""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

VOCAB, LENGTH = 16, 8


@dataclasses.dataclass(frozen=True)
class Config:
    inits: Any  # the initializer namespace
    emb_dim: int = 16
    num_heads: int = 2
    mlp_dim: int = 16
    num_layers: int = 1

    def kernel(self, *axes):
        return nn.with_logical_partitioning(self.inits.xavier_uniform(), axes)

    def bias(self, *axes):
        return nn.with_logical_partitioning(self.inits.normal(stddev=1e-6), axes)

    def layer_norm(self, **kwargs):
        return nn.LayerNorm(
            scale_init=nn.with_logical_partitioning(self.inits.ones, ("embed",)),
            bias_init=nn.with_logical_partitioning(self.inits.zeros, ("embed",)), **kwargs)


def sinusoidal(length: int, dim: int) -> jax.Array:
    """Fixed position embeddings: sines and cosines of geometrically spaced frequencies."""
    position = np.arange(length)[:, None]
    freq = np.exp(-np.log(1e4) * np.arange(dim // 2) / (dim // 2 - 1))
    return jnp.asarray(np.concatenate([np.sin(position * freq), np.cos(position * freq)], -1),
                       jnp.float32)


class Block(nn.Module):
    config: Config

    @nn.compact
    def __call__(self, x, mask):
        c = self.config
        y = nn.MultiHeadDotProductAttention(
            num_heads=c.num_heads, kernel_init=c.kernel("embed", "kv"),
            bias_init=c.bias("embed"), use_bias=False, deterministic=True)(
                c.layer_norm()(x), mask=mask)
        x = x + y
        y = nn.Dense(c.mlp_dim, kernel_init=c.kernel("embed", "mlp"),
                     bias_init=c.bias("mlp"))(c.layer_norm()(x))
        y = nn.Dense(c.emb_dim, kernel_init=c.kernel("mlp", "embed"),
                     bias_init=c.bias("embed"))(nn.relu(y))
        return x + y


class TransformerLM(nn.Module):
    config: Config

    @nn.compact
    def __call__(self, tokens):
        c = self.config
        mask = nn.combine_masks(nn.make_attention_mask(tokens > 0, tokens > 0),
                                nn.make_causal_mask(tokens))
        embed = nn.Embed(VOCAB, c.emb_dim, embedding_init=nn.with_logical_partitioning(
            c.inits.normal(stddev=1.0), ("vocab", "embed")))
        shifted = jnp.pad(tokens, ((0, 0), (1, 0)))[:, :-1]
        y = embed(shifted) + sinusoidal(tokens.shape[1], c.emb_dim)
        for i in range(c.num_layers):
            y = Block(c, name=f"block_{i}")(y, mask)
        y = c.layer_norm(name="final_norm")(y)
        return nn.Dense(VOCAB, kernel_init=c.kernel("embed", "vocab"),
                        bias_init=c.bias("vocab"), name="logits")(y)


def model(init) -> TransformerLM:
    return TransformerLM(Config(init))


def batch():
    """(inputs, targets): the model predicts each token from the ones before it."""
    tokens = jax.random.randint(jax.random.key(1), (2, LENGTH), 1, VOCAB)
    return (tokens,), tokens


def loss(net, variables, inputs, tokens):
    logits = net.apply(variables, *inputs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens).mean()
