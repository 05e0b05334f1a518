"""A small ResNet in the style of Flax's ImageNet example: bias-free convolutions, BatchNorm
(running statistics in ``batch_stats``) with the last scale of each residual branch
initialized to zero, a strided block with a 1x1 projection, global mean pooling, here on
one-channel images. Convolutions use He's truncated normal init. One stage of one block
after the stem, 32 filters: every distinct kernel shape costs a compilation, and XLA compiles
the draws of kernels with few channels slowest."""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import linen as nn

CLASSES = 5


class ResNetBlock(nn.Module):
    filters: int
    conv: Any
    norm: Any
    inits: Any
    strides: tuple[int, int] = (1, 1)

    @nn.compact
    def __call__(self, x):
        residual = x
        y = nn.relu(self.norm()(self.conv(self.filters, (3, 3), self.strides)(x)))
        y = self.conv(self.filters, (3, 3))(y)
        y = self.norm(scale_init=self.inits.zeros_init())(y)
        if residual.shape != y.shape:
            residual = self.conv(self.filters, (1, 1), self.strides, name="conv_proj")(residual)
            residual = self.norm(name="norm_proj")(residual)
        return nn.relu(residual + y)


class ResNet(nn.Module):
    inits: Any
    stage_sizes: tuple[int, ...] = (1,)
    num_filters: int = 32

    @nn.compact
    def __call__(self, x, train: bool = True):
        conv = functools.partial(
            nn.Conv, use_bias=False,
            kernel_init=self.inits.he_normal())
        norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                                 epsilon=1e-5, scale_init=self.inits.ones,
                                 bias_init=self.inits.zeros)
        x = nn.relu(norm(name="bn_init")(conv(self.num_filters, (3, 3), name="conv_init")(x)))
        for i, size in enumerate(self.stage_sizes):
            for j in range(size):
                strides = (2, 2) if j == 0 else (1, 1)  # each stage starts strided
                x = ResNetBlock(self.num_filters * 2**i, conv, norm, self.inits, strides)(x)
        return nn.Dense(CLASSES, kernel_init=self.inits.lecun_normal(),
                        bias_init=self.inits.zeros_init())(jnp.mean(x, axis=(1, 2)))


def model(inits) -> ResNet:
    return ResNet(inits)


def batch():
    images = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
    return (images,), jnp.array([0, 1, 2, 3])


def loss(net, variables, inputs, labels):
    """Training mode: normalized with the batch's statistics (their update is dropped)."""
    logits, _ = net.apply(variables, *inputs, mutable=["batch_stats"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
