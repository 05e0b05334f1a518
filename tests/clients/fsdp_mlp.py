"""An nnx MLP sharded over a 2 x 4 ``("data", "model")`` mesh, in the style of Flax's FSDP
toy example: every parameter annotated with ``nnx.with_partitioning`` and the model created
under ``jax.set_mesh`` inside a jitted function, so that each device creates only its shard."""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import AxisType

DIN, DMID, DOUT = 8, 16, 8
MESH_SHAPE, MESH_AXES = (2, 4), ("data", "model")
# Leaf path -> the partition spec its parameter is annotated with.
SPECS = {
    "['params']['up']['kernel']": ("data", "model"),
    "['params']['up']['bias']": ("model",),
    "['params']['down']['kernel']": ("model", "data"),
    "['params']['down']['bias']": ("data",),
}


class MLP(nnx.Module):
    def __init__(self, inits: Any, rngs: nnx.Rngs):
        self.up = nnx.Linear(
            DIN, DMID, rngs=rngs,
            kernel_init=nnx.with_partitioning(inits.lecun_normal(), ("data", "model")),
            bias_init=nnx.with_partitioning(inits.zeros_init(), ("model",)))
        self.down = nnx.Linear(
            DMID, DOUT, rngs=rngs,
            kernel_init=nnx.with_partitioning(inits.he_uniform(), ("model", "data")),
            bias_init=nnx.with_partitioning(inits.constant(0.1), ("data",)))

    def __call__(self, x):
        return self.down(nnx.relu(self.up(x)))


def model(inits, rngs: nnx.Rngs) -> MLP:
    return MLP(inits, rngs)


def batch():
    """Regression of y = 0.8 x² + 0.1, per feature."""
    x = jnp.linspace(-2, 2, 16 * DIN).reshape(16, DIN)
    return (x,), 0.8 * x[:, :DOUT] ** 2 + 0.1


def loss(net, inputs, targets):
    return jnp.mean((net(*inputs) - targets) ** 2)


def mesh() -> jax.sharding.Mesh:
    """Auto axes, as ``jax.sharding.Mesh`` builds them: XLA shards the activations."""
    return jax.make_mesh(MESH_SHAPE, MESH_AXES, axis_types=(AxisType.Auto,) * 2)
