"""jaxinit.orthogonal: orthogonality, Haar law, layout, JAX identity, sharding, errors."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from designs import rotation
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxinit.haar import PER_KEY_DRAWS, qr_sampler
from jaxinit.orthogonal import SAMPLERS, auto_method, orthogonal
from jaxinit.testing import assert_haar, assert_orthogonal

KEY = jax.random.key(7)
METHODS = ["qr", "householder"]  # "auto" picks one of them (test_auto_rule)

# (shape, factory kwargs, batch_axis for the check, column_axis for the check)
# (Square and tall stacks also in the Haar tests, gate blocks below.)
LAYOUTS = [
    ("square", (40, 40), {}),
    ("conv_tall", (3, 3, 8, 16), {}),
    ("column_axis_0_wide", (20, 3, 5), {"column_axis": 0}),
    ("stacked_middle_wide", (10, 2, 30), {"batch_axis": 1}),
]
STACK = (2, 64, 64)  # shared by several tests, so that they share compilations


def _check(w, scale=1.0, **kwargs):
    assert_orthogonal(w, scale=scale, column_axis=kwargs.get("column_axis", -1),
                      batch_axis=kwargs.get("batch_axis", ()))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("layout", LAYOUTS, ids=[lay[0] for lay in LAYOUTS])
def test_orthogonal_every_method_and_layout(method, layout):
    _, shape, kwargs = layout
    w = orthogonal(1.5, method=method, **kwargs)(KEY, shape)
    assert w.shape == shape and w.dtype == jnp.float32
    _check(w, 1.5, **kwargs)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.complex64])
def test_orthogonal_dtypes(method, dtype):
    w = orthogonal(method=method, batch_axis=0)(KEY, (2, 12, 20), dtype)
    assert w.dtype == dtype
    _check(w, batch_axis=0)


def test_auto_method_float16_and_default_dtype():
    init = orthogonal(dtype=jnp.float16)
    assert init(KEY, (100, 30)).dtype == jnp.float16
    _check(init(KEY, (100, 30)))


@pytest.mark.parametrize("method", ["qr", "householder"])
def test_orthogonal_float64_and_complex128(method):
    # (complex128 for qr: its float64 bits equal JAX's, see the identity tests.)
    with jax.enable_x64(True):
        for dtype in (jnp.float64, jnp.complex128)[: 1 if method == "qr" else 2]:
            w = orthogonal(method=method, batch_axis=0)(KEY, (2, 40, 30), dtype)
            assert w.dtype == dtype
            # float64 accumulation: far below the float32 tolerance.
            assert_orthogonal(w, batch_axis=0, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_num_blocks_gives_independent_orthogonal_blocks(method):
    h = 24
    w = orthogonal(method=method, num_blocks=4)(KEY, (h, 4 * h))
    blocks = np.asarray(w).reshape(h, 4, h)  # gates i, f, g, o in column order
    assert_orthogonal(blocks, batch_axis=1)
    # Wide blocks with a batch axis.
    w = orthogonal(method=method, num_blocks=3, batch_axis=0)(KEY, (2, 9, 12))
    _check(np.asarray(w).reshape(2, 9, 3, 4), batch_axis=(0, 2))


@pytest.mark.parametrize("method", ["gram_schmidt", "svd", "cholesky_qr2", "polar"])
def test_recipe_methods_through_the_factory(method):
    # Their laws are tested in test_orthogonal_recipes.py; here the plumbing.
    w = orthogonal(2.0, method=method, batch_axis=0, num_blocks=2)(KEY, (2, 12, 20))
    assert_orthogonal(np.asarray(w).reshape(2, 12, 2, 10), scale=2.0, batch_axis=(0, 2))


def _max_abs_correlation(a, b):
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return abs(np.corrcoef(a, b)[0, 1]), a.size


@pytest.mark.parametrize("method", ["qr", "householder"])
def test_slices_and_blocks_are_independent(method):
    w = orthogonal(method=method, batch_axis=0)(KEY, STACK)
    corr, count = _max_abs_correlation(w[0], w[1])
    # Entries of independent matrices: the sample correlation has s.e. 1/sqrt(N);
    # 5 s.e. is exceeded by chance with probability 5.7e-7.
    assert not np.array_equal(w[0], w[1])
    assert corr < 5 / np.sqrt(count)
    w = orthogonal(method=method, num_blocks=4)(KEY, (24, 96))
    corr, count = _max_abs_correlation(w[:, :24], w[:, 24:48])
    assert not np.array_equal(w[:, :24], w[:, 24:48])
    assert corr < 5 / np.sqrt(count)


# Haar statistics: N independent draws, n small enough for scipy's references.
# assert_haar's checks each fail a correct sampler with probability <= 1e-4
# (KS) or 5.7e-7 (5 s.e. moments); keys are fixed, so runs are deterministic.
HAAR_COUNT = 3000


@pytest.mark.parametrize("method", ["qr", "householder"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64])
def test_haar_statistics_square(method, dtype):
    q = orthogonal(method=method, batch_axis=0)(jax.random.key(11), (HAAR_COUNT, 6, 6), dtype)
    assert_haar(q, name=f"{method} {jnp.dtype(dtype).name}")


@pytest.mark.parametrize("method", ["qr", "householder"])
def test_haar_statistics_tall_columns(method):
    q = orthogonal(method=method, batch_axis=0)(jax.random.key(12), (HAAR_COUNT, 7, 4))
    assert_haar(q, name=f"{method} tall")


def _qr_without_sign_correction(key, batch_shape, n, m, dtype):
    z = jax.random.normal(key, (*batch_shape, n, m), dtype)
    return jax.lax.map(lambda a: jnp.linalg.qr(a)[0], z.reshape(-1, n, m)).reshape(z.shape)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64])
def test_haar_checks_reject_qr_without_sign_correction(dtype):
    # LAPACK's R has a negative diagonal for most draws, so the uncorrected Q
    # is far from Haar (e.g. its trace is biased): the checks must fail.
    q = _qr_without_sign_correction(jax.random.key(11), (HAAR_COUNT,), 6, 6, dtype)
    with pytest.raises(AssertionError):
        assert_haar(q)


def test_householder_haar_with_many_blocks():
    # Small blocks exercise the rolled stages, the ragged last block and T's
    # recurrence on vectors of every length down to 1.
    from jaxinit.householder import householder_sampler
    keys = jax.random.split(jax.random.key(13), HAAR_COUNT)
    q = jax.jit(lambda k: householder_sampler(k, 9, 9, np.dtype(np.float32), block_size=2))(keys)
    assert_orthogonal(q, batch_axis=0)
    assert_haar(q, name="householder b=2")


def test_householder_block_size_changes_only_the_rounding():
    # The reflectors come from the key alone; the block size regroups the same products.
    default = orthogonal(method="householder", batch_axis=0)(KEY, (3, 40, 24))
    init = orthogonal(method="householder", batch_axis=0, block_size=5)
    small_blocks = init(KEY, (3, 40, 24))
    assert not np.array_equal(small_blocks, default)  # another program, other rounding
    np.testing.assert_allclose(small_blocks, default, rtol=0, atol=2e-6)
    assert_orthogonal(small_blocks, batch_axis=0)
    np.testing.assert_array_equal(jax.jit(init, static_argnums=1)(KEY, (3, 40, 24)),
                                  small_blocks)
    np.testing.assert_array_equal(init(KEY, (1, 40, 24)), small_blocks[:1])


@pytest.mark.parametrize("method", ["qr", "householder"])
def test_eager_equals_jit(method):
    # An eager stack draws each matrix's numbers on its own up to PER_KEY_DRAWS matrices,
    # in one batched draw above: both are the jitted call's numbers.
    init = orthogonal(method=method, batch_axis=0)
    for shape in (STACK, (PER_KEY_DRAWS + 1, 8, 8)):
        eager = init(KEY, shape)
        jitted = jax.jit(init, static_argnums=1)(KEY, shape)
        np.testing.assert_array_equal(eager, jitted, err_msg=str(shape))


JAX_SHAPES = [((10, 4), -1), ((4, 10), -1), ((3, 3, 8, 16), -1), ((3, 4, 5), 1)]


@pytest.mark.parametrize("shape,column_axis", JAX_SHAPES)
def test_qr_is_bit_identical_to_jax(shape, column_axis):
    ours = orthogonal(0.7, column_axis, method="qr")(KEY, shape)
    ref = jax.nn.initializers.orthogonal(0.7, column_axis)(KEY, shape)
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("key", [jax.random.PRNGKey(123), jax.random.key(5, impl="rbg")])
def test_qr_is_bit_identical_to_jax_for_other_key_types(key):
    ours = orthogonal(method="qr")(key, (10, 4))
    np.testing.assert_array_equal(ours, jax.nn.initializers.orthogonal()(key, (10, 4)))


def test_qr_bit_identical_complex_and_float64():
    ours = orthogonal(method="qr")(KEY, (12, 8), jnp.complex64)
    np.testing.assert_array_equal(ours, jax.nn.initializers.orthogonal()(KEY, (12, 8),
                                                                         jnp.complex64))
    with jax.enable_x64(True):
        ours = orthogonal(2.0, method="qr")(KEY, (9, 13), jnp.float64)
        ref = jax.nn.initializers.orthogonal(2.0)(KEY, (9, 13), jnp.float64)
        np.testing.assert_array_equal(ours, ref)


def test_stack_slices_are_jax_matrices_of_folded_keys():
    # Slice i of a stack is drawn from fold_in(key, i): with "qr" on CPU (one LAPACK call per
    # matrix), JAX's matrix for that key, bit for bit. A GPU runs the stack as one batched
    # QR, whose last bits differ from the single matrix's (at most 1.1e-5 on an H200).
    if jax.default_backend() == "cpu":
        assert_same = np.testing.assert_array_equal
    else:
        assert_same = functools.partial(np.testing.assert_allclose, rtol=0, atol=1e-4)
    ours = orthogonal(method="qr", batch_axis=0)(KEY, (3, 10, 6))
    for i in range(3):
        assert_same(ours[i], jax.random.orthogonal(jax.random.fold_in(KEY, i), 10, m=6))
    # Gate blocks are stack slices too, numbered (row-major) after the batch axes.
    blocks = orthogonal(method="qr", batch_axis=0, num_blocks=2)(KEY, (3, 6, 8))
    assert_same(blocks[1, :, 4:], jax.random.orthogonal(jax.random.fold_in(KEY, 3), 6, m=4))


@pytest.mark.timeout(120)
def test_several_batched_initializers_in_one_jit_do_not_deadlock():
    # Batched LAPACK calls in one program can hang on CPU with jaxlib 0.10;
    # neither method issues one, so this must finish (the timeout catches a hang).
    inits = [orthogonal(method=m, batch_axis=0) for m in ("qr", "householder")] * 2

    @jax.jit
    def init_all(key):
        keys = jax.random.split(key, len(inits))
        return [init(k, (32, 64, 64)) for init, k in zip(inits, keys, strict=True)]

    for step in range(5):
        for w in init_all(jax.random.key(step)):
            assert w.shape == (32, 64, 64)


@pytest.mark.devices(8)
@pytest.mark.parametrize("method,axis_type", [("householder", AxisType.Explicit),
                                              ("householder", AxisType.Auto),
                                              ("qr", AxisType.Explicit)])
def test_sharded_equals_unsharded(method, axis_type):
    mesh = jax.make_mesh((8,), ("x",), axis_types=(axis_type,))
    sharding = NamedSharding(mesh, P("x"))
    init = orthogonal(method=method, batch_axis=0)
    shape = (16, 40, 24)
    unsharded = init(KEY, shape)
    sharded = init(KEY, shape, out_sharding=sharding)
    assert sharded.sharding.is_equivalent_to(sharding, len(shape))
    np.testing.assert_array_equal(sharded, unsharded)
    if axis_type == AxisType.Explicit:
        with jax.set_mesh(mesh):
            by_spec = init(KEY, shape, out_sharding=P("x"))
        np.testing.assert_array_equal(by_spec, unsharded)


CALLS = [(False, False), (True, False), (False, True), (True, True)]


# Each way of calling (eager or jitted, with or without a mesh set) meets each method.
@pytest.mark.devices(4)
@pytest.mark.parametrize("jitted, with_context, method", rotation(
    CALLS, ["auto", "householder"], ["eager", "jit", "eager-set_mesh", "jit-set_mesh"],
    ["auto", "householder"]))
def test_stack_sharded_on_a_default_mesh(jitted, with_context, method):
    # jax.make_mesh's default axes are Explicit in jax 0.10; this once crashed
    # (a sharding constraint inside the computation named an Explicit axis).
    mesh = jax.make_mesh((4,), ("x",))
    sharding = NamedSharding(mesh, P("x"))
    init = orthogonal(batch_axis=0, method=method)
    make = lambda k: init(k, (8, 64, 64), out_sharding=sharding)  # noqa: E731
    if jitted:
        make = jax.jit(make)
    if with_context:
        with jax.set_mesh(mesh):
            w = make(KEY)
    else:
        w = make(KEY)
    assert w.sharding.is_equivalent_to(sharding, 3)
    np.testing.assert_array_equal(w, init(KEY, (8, 64, 64)))


@pytest.mark.devices(8)
@pytest.mark.parametrize("method", ["householder", "qr"])  # batched; one matrix at a time
def test_sharded_along_batch_splits_the_work(method):
    mesh = jax.make_mesh((8,), ("x",), axis_types=(AxisType.Explicit,))
    sharding = NamedSharding(mesh, P(None, "x"))
    init = orthogonal(method=method, batch_axis=1)
    with jax.set_mesh(mesh):
        hlo = jax.jit(lambda k: init(k, (40, 16, 24), out_sharding=sharding)).lower(
            KEY).compile().as_text()
    assert not re.search(r"all-gather|all-to-all|all-reduce|collective-permute", hlo)
    # Every device's program works on 16/8 = 2 slices: no array of all 16.
    assert re.search(r"f32\[2,40,24\]", hlo)
    assert not re.search(r"\[16,40,24\]|\[40,16,24\]", hlo)


@pytest.mark.parametrize("method", sorted(SAMPLERS))
def test_slices_do_not_depend_on_the_batch_size(method):
    # The first slices of a bigger stack are the same bits (per-slice keys and
    # arithmetic: matrix products, no batch-dependent reductions, a method and block
    # size that do not look at the batch), which sharding relies on.
    init = orthogonal(method=method, batch_axis=0)
    np.testing.assert_array_equal(init(KEY, (16, 20, 12))[:2], init(KEY, (2, 20, 12)))


def test_householder_slices_do_not_depend_on_the_batch_size_at_any_size():
    # The stage plan once depended on the stack's total work: 64 matrices 256 x 256 took
    # four stages and 2 of them one, which rounded differently.
    init = orthogonal(method="householder", batch_axis=0)
    stack = init(KEY, (64, 256, 256))
    np.testing.assert_array_equal(stack[:2], init(KEY, (2, 256, 256)))
    if jax.default_backend() == "cpu":  # one matrix at a time: the single call's bits
        single = orthogonal(method="householder")
        np.testing.assert_array_equal(stack[5], single(jax.random.fold_in(KEY, 5), (256, 256)))


def test_zero_size_shapes():
    for shape, kwargs in [((0, 5), {}), ((4, 0), {}), ((0, 3, 3), {"batch_axis": 0})]:
        w = orthogonal(**kwargs)(KEY, shape, jnp.bfloat16)
        assert w.shape == shape and w.dtype == jnp.bfloat16


def test_auto_rule():
    assert auto_method(32, 32, "cpu") == "qr"
    assert auto_method(2048, 2048, "cpu") == "qr"
    assert auto_method(2049, 2048, "cpu") == "householder"
    assert auto_method(8192, 1024, "cpu") == "qr"
    assert auto_method(8192, 8192, "gpu") == auto_method(8192, 8192, "tpu") == "qr"
    assert set(SAMPLERS) >= {"qr", "householder"}
    assert qr_sampler(KEY, 4, 3, np.dtype(np.float32)).shape == (4, 3)


def test_auto_stacks_of_any_size_agree():
    # The method depends on the matrix size only: a larger stack starts with the
    # matrices of a smaller one, and slice i is the single call's matrix of fold_in(key, i).
    init = orthogonal(batch_axis=0)
    np.testing.assert_array_equal(init(KEY, (12, 96, 96))[:2], init(KEY, (2, 96, 96)))
    single = orthogonal()(jax.random.fold_in(KEY, 1), (96, 96))
    np.testing.assert_array_equal(init(KEY, (2, 96, 96))[1], single)


@pytest.mark.parametrize("kwargs,match", [
    ({"method": "lu"}, "method='lu'"),
    ({"num_blocks": 0}, "num_blocks=0"),
    ({"num_blocks": 2.0}, "num_blocks=2.0"),
    ({"column_axis": 1.5}, "column_axis=1.5"),
    ({"batch_axis": "x"}, "batch_axis='x'"),
    ({"scale": float("nan")}, "scale=nan"),
    ({"dtype": jnp.int32}, "dtype=int32"),
    ({"method": "householder", "block_size": 0}, "block_size=0"),
    ({"method": "householder", "block_size": 8.0}, "block_size=8.0"),
    ({"block_size": 64}, "block_size=64 applies to method='householder' only"),
])
def test_factory_errors_name_the_argument(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=re.escape(match)) as info:
        orthogonal(**kwargs)
    assert "jaxinit.orthogonal" in str(info.value)


@pytest.mark.parametrize("kwargs,shape,match", [
    ({}, (5,), "rank 1"),
    ({"column_axis": 2}, (3, 4), "column_axis=2"),
    ({"batch_axis": -3}, (3, 4), "batch_axis=-3"),
    ({"batch_axis": 1}, (3, 4), "both contain axis 1"),  # overlaps the column axis
    ({"batch_axis": 0}, (3, 4), "batch_axis=0"),  # no row axis left
    ({"num_blocks": 3}, (4, 8), "num_blocks=3"),
])
def test_call_errors_name_the_argument(kwargs, shape, match):
    with pytest.raises(ValueError, match=re.escape(match)) as info:
        orthogonal(**kwargs)(KEY, shape)
    assert "jaxinit.orthogonal" in str(info.value)


def test_call_rejects_integer_dtype_and_bad_key():
    with pytest.raises(TypeError, match="dtype=int32"):
        orthogonal()(KEY, (3, 3), jnp.int32)
    with pytest.raises(TypeError, match="key="):
        orthogonal()(np.zeros(3), (3, 3))
