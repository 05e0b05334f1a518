"""Sharded init on 8 fake CPU devices: mesh-independent values, no collectives, per-shard memory.

Every scheme is a row of CASES; adding a scheme is adding a row. A row's shape
must be divisible by 8 along its first two dimensions (every spec below splits
one of them 8 ways or both 2 x 4 ways).
"""

from __future__ import annotations

import re
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxinit.constant import constant, ones, zeros
from jaxinit.contract import shardable
from jaxinit.distributions import (
    normal,
    symmetric_uniform,
    truncated_normal,
    uniform,
    uniform_range,
)
from jaxinit.identity import dirac, identity
from jaxinit.orthogonal import orthogonal
from jaxinit.sharding import NonPartitionableRandomWarning, check_out_sharding
from jaxinit.sparse import sparse
from jaxinit.spectral import spectral_radius
from jaxinit.variance_scaling import (
    glorot_normal,
    glorot_uniform,
    he_normal,
    he_uniform,
    lecun_normal,
    lecun_uniform,
    variance_scaling,
)

pytestmark = pytest.mark.devices(8)

DENSE = (16, 24)
CONV = (8, 16, 3, 4)  # sharded along its first two axes; fans from the last two

# (name, initializer, shape, dtype)
CASES = [
    ("zeros", zeros, DENSE, None),
    ("ones", ones, DENSE, jnp.bfloat16),
    ("constant", constant(0.25), DENSE, None),
    ("normal", normal(0.1), DENSE, None),
    ("normal_mean", normal(0.1, mean=1.0), DENSE, None),
    ("normal_complex", normal(0.1), DENSE, jnp.complex64),
    ("uniform", uniform(2.0), DENSE, None),
    ("uniform_range", uniform_range(-1.0, 3.0), DENSE, None),
    ("symmetric_uniform", symmetric_uniform(0.5), DENSE, jnp.bfloat16),
    ("truncated_normal", truncated_normal(1.0, lower=-1.0, upper=2.0), DENSE, None),
    ("glorot_uniform", glorot_uniform(), DENSE, None),
    ("glorot_normal", glorot_normal(), CONV, None),
    ("he_uniform", he_uniform(), CONV, None),
    ("he_normal", he_normal(), DENSE, jnp.float16),
    ("lecun_uniform", lecun_uniform(), DENSE, None),
    ("lecun_normal", lecun_normal(), DENSE, None),
    ("vs_fan_geo_normal", variance_scaling(2.0, "fan_geo_avg", "normal"), DENSE, None),
    ("vs_complex_uniform", variance_scaling(1.0, "fan_in", "uniform"), DENSE, jnp.complex64),
    ("vs_complex_truncated", variance_scaling(1.0, "fan_out", "truncated_normal"), DENSE,
     jnp.complex64),
    ("vs_batched", variance_scaling(1.0, "fan_in", "normal", in_axis=1, out_axis=2,
                                    batch_axis=0), CONV, None),
]
IDS = [case[0] for case in CASES]

# Structured schemes (orthogonal, identity, sparse...) shard along their batch
# axes, so each row names its spec and a large shape for the memory check:
# (name, initializer, shape, dtype, spec, large shape). Each row is compiled
# on its own -- several batched LAPACK calls in one CPU program can deadlock --
# and under a timeout.
# The leading (batch) axis split 8 ways on every mesh. Orthogonal stacks hold two slices
# per device: with a single slice XLA lowers the batched matmuls to plain ones, whose
# summation order differs from the batched kernel's in the last bit.
BATCHED = P(("x", "y"))
STRUCTURED_CASES: list[tuple] = [
    ("identity_stack", identity(0.5, batch_axis=0), (8, 4, 4), None, BATCHED, (64, 256, 256)),
    ("dirac", dirac(), (3, 3, 8, 8), None, P(None, None, None, ("x", "y")), (3, 3, 256, 256)),
    ("sparse_stack", sparse(5, batch_axis=0), (8, 32, 16), None, BATCHED, (64, 256, 256)),
    ("orthogonal_stack", orthogonal(batch_axis=0, method="householder"), (16, 16, 16), None,
     BATCHED, (64, 256, 256)),
    ("spectral_radius_stack", spectral_radius(0.9), (16, 16, 16), None, BATCHED, (64, 128, 128)),
]
STRUCTURED_IDS = [case[0] for case in STRUCTURED_CASES]

MESH_SHAPES = [(1, 8), (2, 4), (8, 1)]
SPECS = [P("x", "y"), P("y", "x"), P(("x", "y")), P(None, ("y", "x")), P("y"), P()]

KEY = jax.random.key(42)
COLLECTIVE = re.compile(r"all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter")


def auto_mesh(shape: tuple[int, int]) -> jax.sharding.Mesh:
    return jax.make_mesh(shape, ("x", "y"), axis_types=(AxisType.Auto, AxisType.Auto))


def explicit_mesh(shape: tuple[int, int]) -> jax.sharding.Mesh:
    return jax.make_mesh(shape, ("x", "y"), axis_types=(AxisType.Explicit, AxisType.Explicit))


def init_every_case(key, out_shardings=None):
    """All cases in one program (compiling one program per case would dominate the test time)."""
    shardings = out_shardings or [None] * len(CASES)
    return tuple(init(key, shape, dtype, out_sharding=sharding)
                 for (_, init, shape, dtype), sharding in zip(CASES, shardings, strict=True))


@pytest.fixture(scope="module")
def references():
    """Unsharded values, computed under jit like the sharded ones."""
    values = jax.jit(init_every_case)(KEY)
    return {case[0]: np.asarray(v) for case, v in zip(CASES, values, strict=True)}


@pytest.mark.parametrize("mesh_index", range(len(MESH_SHAPES)))
def test_sharded_values_equal_unsharded_and_program_has_no_collectives(mesh_index, references):
    # Case i on mesh m gets spec (i + 2m) mod 6, so every case meets three specs
    # over the three meshes and every spec meets every mesh. A case appears
    # once per program: two shardings of one value would need communication.
    mesh = auto_mesh(MESH_SHAPES[mesh_index])
    shardings = [NamedSharding(mesh, SPECS[(i + 2 * mesh_index) % len(SPECS)])
                 for i in range(len(CASES))]
    compiled = jax.jit(lambda k: init_every_case(k, shardings)).lower(KEY).compile()
    assert not COLLECTIVE.search(compiled.as_text()), "sharded init communicates"
    for (name, _, shape, _), sharding, out in zip(CASES, shardings, compiled(KEY), strict=True):
        assert out.sharding.is_equivalent_to(sharding, len(shape)), (name, sharding.spec)
        np.testing.assert_array_equal(
            np.asarray(out), references[name],
            err_msg=f"{name} on mesh {MESH_SHAPES[mesh_index]} with {sharding.spec}")


def test_explicit_mesh_partition_spec_under_jit(references):
    specs = [SPECS[i % 4] for i in range(len(CASES))]
    mesh = explicit_mesh((4, 2))
    with jax.set_mesh(mesh):
        compiled = jax.jit(lambda k: init_every_case(k, specs)).lower(KEY).compile()
        outputs = compiled(KEY)
    assert not COLLECTIVE.search(compiled.as_text())
    for (name, *_), spec, out in zip(CASES, specs, outputs, strict=True):
        # The sharding is part of the result's type in Explicit mode.
        assert out.sharding.is_equivalent_to(NamedSharding(mesh, spec), out.ndim), name
        assert jax.typeof(out).sharding.spec == spec._normalized_spec_for_aval(out.ndim), name
        np.testing.assert_array_equal(np.asarray(out), references[name], err_msg=name)


@pytest.mark.parametrize("index", [IDS.index("he_normal"), IDS.index("normal_complex"),
                                   IDS.index("constant")])
def test_eager_out_sharding_equals_unsharded(index, references):
    name, init, shape, dtype = CASES[index]
    sharding = NamedSharding(auto_mesh((2, 4)), P("x", "y"))
    out = init(KEY, shape, dtype, out_sharding=sharding)
    assert out.sharding.is_equivalent_to(sharding, out.ndim)
    assert [s.data.shape for s in out.addressable_shards] == [
        (shape[0] // 2, shape[1] // 4, *shape[2:])] * 8
    np.testing.assert_array_equal(np.asarray(out), references[name])


def test_explicit_mesh_eager_and_in_traced_program_has_no_collectives():
    init = he_normal()
    shape = (64, 32)
    mesh = explicit_mesh((2, 4))
    with jax.set_mesh(mesh):
        eager = init(KEY, shape, out_sharding=P("x", "y"))
        program = jax.jit(lambda k: init(k, shape, out_sharding=P("x", "y")) * 2)
        text = program.lower(KEY).compile().as_text()
    assert not COLLECTIVE.search(text)
    assert eager.sharding == NamedSharding(mesh, P("x", "y"))
    reference = jax.jit(lambda k: init(k, shape))(KEY)
    np.testing.assert_array_equal(np.asarray(eager), np.asarray(reference))


def test_partition_spec_under_auto_mesh_context():
    init = glorot_uniform()
    with jax.set_mesh(auto_mesh((2, 4))):
        out = init(KEY, (16, 8), out_sharding=P(None, "y"))
    assert [s.data.shape for s in out.addressable_shards] == [(16, 2)] * 8
    reference = jax.jit(lambda k: init(k, (16, 8)))(KEY)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(reference))


def test_zero_size_shape_with_out_sharding():
    out = normal()(KEY, (0, 8), out_sharding=NamedSharding(auto_mesh((2, 4)), P("x", "y")))
    assert out.shape == (0, 8)


# A 4096 x 4096 parameter (times the trailing dims of the case) split 8 ways.
# Bound per device: the output shard plus at most four shard-sized temporaries
# in the compute dtype (the sampler's 32-bit counters and random bits, and the
# float32 result before the cast of a 16-bit output), plus 64 KiB of scalars.
# With float32 that is 5/8 of the whole array; the unsharded program exceeds
# it, its output alone being the whole array.
BIG = (4096, 4096)
SLACK = 64 * 1024


def per_device_bytes(init, shape, dtype, sharding):
    program = jax.jit(lambda k: init(k, shape, dtype, out_sharding=sharding))
    stats = program.lower(KEY).compile().memory_analysis()  # compiled, never run
    return stats.output_size_in_bytes, stats.temp_size_in_bytes


def shard_bound(shape, dtype):
    itemsize = np.dtype(dtype or jnp.float32).itemsize
    shard_elements = int(np.prod(shape)) // 8
    return shard_elements * (itemsize + 4 * max(itemsize, 4)) + SLACK


# The named variance-scaling presets run the sampler of a vs_* row with other constants:
# their programs hold the same temporaries (checked with --run-slow).
PRESETS = {"glorot_uniform", "glorot_normal", "he_uniform", "lecun_uniform", "lecun_normal"}


@pytest.mark.parametrize(("name", "init", "shape", "dtype"), [
    pytest.param(*case, id=case[0], marks=pytest.mark.slow if case[0] in PRESETS else ())
    for case in CASES])
def test_per_device_memory_of_large_sharded_init_is_one_shard(name, init, shape, dtype):
    big = BIG + shape[2:]
    sharding = NamedSharding(auto_mesh((2, 4)), P("x", "y"))
    output, temp = per_device_bytes(init, big, dtype, sharding)
    assert output == int(np.prod(big)) * np.dtype(dtype or jnp.float32).itemsize // 8
    assert output + temp <= shard_bound(big, dtype), (output, temp)


def test_per_device_memory_bound_is_exceeded_unsharded():
    output, temp = per_device_bytes(he_normal(), BIG, None, None)
    assert output + temp > shard_bound(BIG, None)


def test_shardable_wraps_a_foreign_initializer():
    init = shardable("jax.nn.initializers.he_normal")(jax.nn.initializers.he_normal())
    sharding = NamedSharding(auto_mesh((8, 1)), P("x"))
    out = init(KEY, (32, 16), out_sharding=sharding)
    assert out.sharding.is_equivalent_to(sharding, 2)
    np.testing.assert_array_equal(
        np.asarray(out), np.asarray(jax.jit(lambda k: jax.nn.initializers.he_normal()(
            k, (32, 16)))(KEY)))


def test_default_dtype_of_factory_is_kept_when_sharding():
    init = normal(dtype=jnp.bfloat16)
    out = init(KEY, (8, 8), out_sharding=NamedSharding(auto_mesh((2, 4)), P("x")))
    assert out.dtype == jnp.bfloat16


# ---- bad input: clear errors naming the initializer and the argument ----

def _mesh24():
    return auto_mesh((2, 4))


@pytest.mark.parametrize(
    ("make_sharding", "shape", "error", "fragment"),
    [
        (lambda: NamedSharding(_mesh24(), P("x", "y")), (16, 6), ValueError,
         r"splits dimension 1 of shape=\(16, 6\) \(size 6\) over mesh axes \('y',\)"),
        (lambda: NamedSharding(_mesh24(), P(("x", "y"))), (12, 8), ValueError,
         r"total size 8, which does not divide it"),
        (lambda: NamedSharding(_mesh24(), P("x", None, "y")), (16, 8), ValueError,
         r"has 3 entries but shape=\(16, 8\) has rank 2"),
        (lambda: NamedSharding(_mesh24(), P("x")), (), ValueError,
         r"has 1 entries but shape=\(\) has rank 0"),
        (lambda: P("x", "y"), (16, 8), ValueError,
         r"is a PartitionSpec but no mesh is set"),
        (lambda: jax.sharding.SingleDeviceSharding(jax.devices()[0]), (16, 8), TypeError,
         r"accepted: a jax.sharding.NamedSharding, a jax.sharding.PartitionSpec, or None"),
    ],
    ids=["indivisible", "indivisible_tuple", "rank_too_long", "rank_scalar", "spec_no_mesh",
         "wrong_type"],
)
@pytest.mark.parametrize(("name", "init"), [("jaxinit.he_normal", he_normal()),
                                            ("jaxinit.zeros", zeros),
                                            ("jaxinit.uniform_range", uniform_range(0, 1))])
def test_bad_out_sharding_raises_naming_initializer_and_argument(
        make_sharding, shape, error, fragment, name, init):
    if name == "jaxinit.he_normal" and shape == ():
        fragment = None  # the shape itself is refused first: fans need rank 2
    with pytest.raises(error, match=re.escape(name) + (
            r": out_sharding=.*" + fragment if fragment else r": shape=\(\) has rank 0")):
        init(KEY, shape, out_sharding=make_sharding())


@pytest.mark.parametrize(("name", "init"), [("jaxinit.orthogonal", orthogonal(batch_axis=0)),
                                            ("jaxinit.sparse", sparse(3, batch_axis=0)),
                                            ("jaxinit.identity", identity(batch_axis=0))])
def test_structured_schemes_refuse_an_indivisible_sharding(name, init):
    sharding = NamedSharding(_mesh24(), P(("x", "y")))
    with pytest.raises(ValueError, match=re.escape(name) + r": out_sharding=.*does not divide"):
        init(KEY, (12, 8, 8), out_sharding=sharding)


@pytest.mark.parametrize("spec", [P("z"), P("x", "x")])
def test_partition_spec_that_does_not_fit_the_context_mesh(spec):
    with jax.set_mesh(_mesh24()):
        with pytest.raises(ValueError, match=r"jaxinit.normal: out_sharding=.* does not fit the "
                                             r"mesh set with jax.set_mesh \(axes \('x', 'y'\)\)"):
            normal()(KEY, (8, 8), out_sharding=spec)


def test_named_sharding_on_another_mesh_than_the_explicit_context_mesh():
    other = NamedSharding(explicit_mesh((4, 2)), P("x"))
    with jax.set_mesh(explicit_mesh((2, 4))):
        with pytest.raises(ValueError, match=r"jaxinit.zeros: out_sharding=.* is on a mesh other "
                                             r"than the mesh set with jax.set_mesh"):
            zeros(KEY, (8, 8), out_sharding=other)


def test_short_spec_leaves_trailing_dimensions_unsharded():
    sharding = check_out_sharding("jaxinit.normal", (8, 3, 5), NamedSharding(_mesh24(), P("y")))
    assert sharding is not None and sharding.spec == P("y")


def test_warns_when_threefry_is_not_partitionable():
    init = normal()
    sharding = NamedSharding(_mesh24(), P("x"))
    with jax.threefry_partitionable(False):
        with pytest.warns(NonPartitionableRandomWarning, match="jax_threefry_partitionable"):
            init(KEY, (8, 8), out_sharding=sharding)
        with warnings.catch_warnings():  # constants draw nothing: no warning
            warnings.simplefilter("error", NonPartitionableRandomWarning)
            zeros(KEY, (8, 8), out_sharding=sharding)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonPartitionableRandomWarning)
        init(KEY, (8, 8), out_sharding=sharding)


# ---- Flax: a whole model initialized sharded in one call, with Flax's own API ----

@pytest.mark.timeout(120)
@pytest.mark.parametrize(("name", "init", "shape", "dtype", "spec", "large"), STRUCTURED_CASES,
                         ids=STRUCTURED_IDS)
def test_structured_sharded_values_equal_unsharded(name, init, shape, dtype, spec, large):
    # Every spec here splits 8 ways over ("x", "y"), the same partition on each of the
    # meshes, so each case takes one of them in turn.
    mesh_shape = MESH_SHAPES[STRUCTURED_IDS.index(name) % len(MESH_SHAPES)]
    sharding = NamedSharding(auto_mesh(mesh_shape), spec)
    compiled = jax.jit(lambda k: init(k, shape, dtype, out_sharding=sharding)).lower(KEY).compile()
    assert not COLLECTIVE.search(compiled.as_text()), "sharded init communicates"
    out = compiled(KEY)
    assert out.sharding.is_equivalent_to(sharding, len(shape))
    reference = jax.jit(lambda k: init(k, shape, dtype))(KEY)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(reference))


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("name", "init", "shape", "dtype", "spec", "large"), STRUCTURED_CASES,
                         ids=STRUCTURED_IDS)
def test_structured_per_device_memory_is_one_shard(name, init, shape, dtype, spec, large):
    sharding = NamedSharding(auto_mesh((2, 4)), spec)
    output, temp = per_device_bytes(init, large, dtype, sharding)
    assert output == int(np.prod(large)) * np.dtype(dtype or jnp.float32).itemsize // 8
    assert output + temp <= shard_bound(large, dtype), (output, temp)


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(64, kernel_init=nn.with_logical_partitioning(he_normal(), ("embed", "mlp")),
                     bias_init=nn.with_logical_partitioning(zeros, ("mlp",)))(x)
        return nn.Dense(16, kernel_init=nn.with_logical_partitioning(
            glorot_uniform(), ("mlp", "embed")))(x)


def test_linen_model_initializes_sharded_with_logical_axis_rules():
    mesh = auto_mesh((2, 4))
    model, x = LinenMLP(), jnp.ones((1, 16))
    specs = nn.get_partition_spec(jax.eval_shape(model.init, KEY, x))
    shardings = nn.logical_to_mesh_sharding(specs, mesh, (("embed", "x"), ("mlp", "y")))
    compiled = jax.jit(model.init, out_shardings=shardings).lower(KEY, x).compile()
    assert not COLLECTIVE.search(compiled.as_text())
    params = nn.unbox(compiled(KEY, x))["params"]
    assert params["Dense_0"]["kernel"].sharding.is_equivalent_to(
        NamedSharding(mesh, P("x", "y")), 2)
    assert params["Dense_1"]["kernel"].sharding.is_equivalent_to(
        NamedSharding(mesh, P("y", "x")), 2)
    reference = nn.unbox(jax.jit(model.init)(KEY, x))["params"]
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(reference), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


class NnxMLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.up = nnx.Linear(16, 64, kernel_init=nnx.with_partitioning(he_normal(), ("x", "y")),
                             bias_init=nnx.with_partitioning(zeros, ("y",)), rngs=rngs)
        self.down = nnx.Linear(64, 16, rngs=rngs, kernel_init=nnx.with_partitioning(
            glorot_uniform(), ("y", "x")))


@pytest.mark.parametrize("make_mesh", [auto_mesh, explicit_mesh], ids=["auto", "explicit"])
def test_nnx_model_initializes_sharded_under_jit(make_mesh):
    mesh = make_mesh((2, 4))
    with jax.set_mesh(mesh):
        text = jax.jit(lambda: nnx.state(NnxMLP(nnx.Rngs(0)))).lower().compile().as_text()
        model = nnx.jit(lambda: NnxMLP(nnx.Rngs(0)))()
    assert not COLLECTIVE.search(text)
    assert model.up.kernel[...].sharding.is_equivalent_to(NamedSharding(mesh, P("x", "y")), 2)
    assert model.down.kernel[...].sharding.is_equivalent_to(NamedSharding(mesh, P("y", "x")), 2)
    with nnx.use_eager_sharding(False):
        reference = nnx.jit(lambda: NnxMLP(nnx.Rngs(0)))()
    for got, want in zip(jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(reference)),
                         strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
