"""The nnx FSDP client on 8 CPU devices: parameters created sharded under a mesh inside jit
equal JAX's eager, unsharded values bit for bit, each lies on the devices its annotation
names, and the sharded model trains."""

import jax
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from . import fsdp_mlp
from .common import FLAX, assert_client, leaves, nnx_eager, nnx_inits

pytestmark = pytest.mark.timeout(120)


@pytest.mark.devices(8)
def test_sharded_init_equals_unsharded_and_trains():
    mesh = fsdp_mlp.mesh()
    with jax.set_mesh(mesh):
        inits = nnx_inits(fsdp_mlp)
    with nnx.use_eager_sharding(False):  # JAX's values as whole arrays on one device
        inits.reference = nnx_eager(fsdp_mlp, FLAX)
    assert_client(inits, {})
    jitted = leaves(inits.jitted, as_numpy=False)
    for path, spec in fsdp_mlp.SPECS.items():
        sharding = jitted[path].sharding
        assert sharding.is_equivalent_to(NamedSharding(mesh, P(*spec)), len(spec)), (path, sharding)
