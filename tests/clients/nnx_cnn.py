"""An nnx CNN in the style of Flax's MNIST example: two 3x3 convolutions, each followed by
ReLU and 2x2 average pooling, then two Linear layers."""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

CLASSES = 10


class CNN(nnx.Module):
    def __init__(self, inits: Any, rngs: nnx.Rngs):
        conv = functools.partial(nnx.Conv, kernel_size=(3, 3), kernel_init=inits.he_normal(),
                                 bias_init=inits.zeros_init(), rngs=rngs)
        linear = functools.partial(nnx.Linear, kernel_init=inits.glorot_uniform(),
                                   bias_init=inits.constant(0.01), rngs=rngs)
        self.conv1, self.conv2 = conv(1, 32), conv(32, 64)  # the example's widths
        self.linear1, self.linear2 = linear(2 * 2 * 64, 16), linear(16, CLASSES)

    def __call__(self, x):
        pool = functools.partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        x = pool(nnx.relu(self.conv1(x)))
        x = pool(nnx.relu(self.conv2(x)))
        return self.linear2(nnx.relu(self.linear1(x.reshape(x.shape[0], -1))))


def model(inits, rngs: nnx.Rngs) -> CNN:
    return CNN(inits, rngs)


def batch():
    images = jax.random.uniform(jax.random.key(1), (4, 8, 8, 1))
    return (images,), jnp.array([0, 3, 5, 9])


def loss(net, inputs, labels):
    return optax.softmax_cross_entropy_with_integer_labels(net(*inputs), labels).mean()
