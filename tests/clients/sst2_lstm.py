"""A text classifier in the style of Flax's SST-2 example: an embedding table, a
unidirectional LSTM written as ``nn.scan`` over an ``nn.OptimizedLSTMCell`` (parameters
broadcast over time), a masked mean over the valid positions and a tanh MLP."""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

VOCAB, EMBED, HIDDEN, LENGTH, CLASSES = 16, 16, 16, 6, 2
ORTHOGONAL = {r"\['h[ifgo]'\]\['kernel'\]": 1.0}


class ScannedLSTM(nn.Module):
    inits: Any

    @functools.partial(nn.scan, variable_broadcast="params", in_axes=1, out_axes=1,
                       split_rngs={"params": False})
    @nn.compact
    def __call__(self, carry, x):
        return nn.OptimizedLSTMCell(HIDDEN, kernel_init=self.inits.lecun_normal(),
                                    recurrent_kernel_init=self.inits.orthogonal(),
                                    bias_init=self.inits.zeros_init())(carry, x)


class TextClassifier(nn.Module):
    inits: Any

    @nn.compact
    def __call__(self, tokens, lengths):
        table = self.param("embedding", self.inits.normal(stddev=0.1), (VOCAB, EMBED))
        x = table[tokens]
        carry = nn.OptimizedLSTMCell(HIDDEN, parent=None).initialize_carry(
            jax.random.key(0), x[:, 0].shape)
        _, hidden = ScannedLSTM(self.inits, name="lstm")(carry, x)
        mask = (jnp.arange(tokens.shape[1]) < lengths[:, None])[..., None]
        pooled = (hidden * mask).sum(1) / lengths[:, None]
        h = nn.tanh(nn.Dense(HIDDEN, kernel_init=self.inits.lecun_normal(),
                             bias_init=self.inits.zeros_init(), name="hidden")(pooled))
        return nn.Dense(CLASSES, use_bias=False, kernel_init=self.inits.lecun_normal(),
                        name="output")(h)


def model(inits) -> TextClassifier:
    return TextClassifier(inits)


def batch():
    tokens = jax.random.randint(jax.random.key(1), (4, LENGTH), 1, VOCAB)
    return (tokens, jnp.array([6, 3, 5, 2])), jnp.array([0, 1, 1, 0])


def loss(net, variables, inputs, labels):
    logits = net.apply(variables, *inputs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
