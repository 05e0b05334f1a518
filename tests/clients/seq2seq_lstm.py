"""An encoder-decoder LSTM in the style of Flax's seq2seq example: one-hot tokens, an
encoder ``nn.RNN(nn.LSTMCell)`` whose final carry starts a decoder ``nn.RNN(nn.LSTMCell)``
run with teacher forcing, and a Dense projection to the vocabulary."""

import functools
from typing import Any

import jax
import optax
from flax import linen as nn

VOCAB, HIDDEN, IN_LEN, OUT_LEN = 16, 16, 5, 4
# The recurrent kernels of linen's LSTMCell (one (h, h) kernel per gate): orthogonal().
ORTHOGONAL = {r"\['h[ifgo]'\]\['kernel'\]": 1.0}


class Seq2seq(nn.Module):
    inits: Any

    def cell(self, name):
        return nn.LSTMCell(HIDDEN, kernel_init=self.inits.lecun_normal(),
                           recurrent_kernel_init=self.inits.orthogonal(),
                           bias_init=self.inits.zeros_init(), name=name)

    @nn.compact
    def __call__(self, encoder_tokens, decoder_tokens):
        one_hot = functools.partial(jax.nn.one_hot, num_classes=VOCAB)
        carry, _ = nn.RNN(self.cell("encoder_cell"), return_carry=True,
                          name="encoder")(one_hot(encoder_tokens))
        y = nn.RNN(self.cell("decoder_cell"), name="decoder")(
            one_hot(decoder_tokens), initial_carry=carry)
        return nn.Dense(VOCAB, kernel_init=self.inits.glorot_uniform(),
                        bias_init=self.inits.zeros, name="logits")(y)


def model(inits) -> Seq2seq:
    return Seq2seq(inits)


def batch():
    """(inputs, targets) of a copy task: the decoder reads ``<go> + target[:-1]`` and
    predicts ``target``."""
    source = jax.random.randint(jax.random.key(1), (2, IN_LEN), 2, VOCAB)
    target = source[:, :OUT_LEN]
    decoder_in = jax.numpy.pad(target, ((0, 0), (1, 0)), constant_values=1)[:, :-1]
    return (source, decoder_in), target


def loss(net, variables, inputs, target):
    logits = net.apply(variables, *inputs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, target).mean()
