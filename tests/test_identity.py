"""Tests of identity, dirac and delta_orthogonal: exact identity / isometry under SAME convs."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from inputs import normal_input
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxinit.identity import delta_orthogonal, dirac, eye, identity
from jaxinit.testing import assert_orthogonal

KEY = jax.random.key(0)
DIMENSION_NUMBERS = {
    3: ("NWC", "WIO", "NWC"),
    4: ("NHWC", "HWIO", "NHWC"),
    5: ("NDHWC", "DHWIO", "NDHWC"),
}


def _conv_same(x, kernel, dilation=None):
    rank = kernel.ndim
    return lax.conv_general_dilated(
        x, kernel, window_strides=(1,) * (rank - 2), padding="SAME",
        rhs_dilation=dilation, dimension_numbers=DIMENSION_NUMBERS[rank],
        precision=lax.Precision.HIGHEST,
    )


def _input(kernel_shape, seed=1):
    spatial = (7, 6, 5)[: len(kernel_shape) - 2]
    return normal_input((2, *spatial, kernel_shape[-2]), seed)


# --- identity ---------------------------------------------------------------------------------


def test_identity_values():
    np.testing.assert_array_equal(identity()(KEY, (3, 3)), np.eye(3))
    np.testing.assert_array_equal(identity(0.01)(KEY, (4, 4)), 0.01 * np.eye(4, dtype=np.float32))
    # Rectangular: ones on the main diagonal only.
    np.testing.assert_array_equal(identity(2.0)(KEY, (2, 5)), 2 * np.eye(2, 5))
    np.testing.assert_array_equal(identity()(KEY, (5, 2)), np.eye(5, 2))
    assert eye is identity
    x = jax.random.normal(jax.random.key(1), (4, 6))
    np.testing.assert_allclose(x @ identity(0.5)(KEY, (6, 6)), 0.5 * x, rtol=1e-6)


def test_identity_batch_axis_gives_one_identity_per_slice():
    w = identity(batch_axis=0)(KEY, (3, 4, 4))
    np.testing.assert_array_equal(w, np.broadcast_to(np.eye(4), (3, 4, 4)))
    w = identity(batch_axis=(1,))(KEY, (2, 3, 5))  # matrix axes 0 and 2
    np.testing.assert_array_equal(w, np.broadcast_to(np.eye(2, 5)[:, None], (2, 3, 5)))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.complex64])
def test_identity_dtypes(dtype):
    w = identity(0.01, dtype)(KEY, (3, 3))
    assert w.dtype == dtype
    np.testing.assert_array_equal(w, jnp.asarray(0.01, dtype) * jnp.eye(3, dtype=dtype))


def test_identity_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"jaxinit\.identity.*batch_axis"):
        identity()(KEY, (2, 3, 3))
    with pytest.raises(ValueError, match=r"jaxinit\.identity.*shape"):
        identity()(KEY, (3,))
    with pytest.raises(ValueError, match=r"jaxinit\.identity.*batch_axis"):
        identity(batch_axis=3)(KEY, (2, 3, 3))
    with pytest.raises(TypeError, match=r"jaxinit\.identity.*batch_axis"):
        identity(batch_axis="0")
    with pytest.raises(ValueError, match=r"jaxinit\.identity.*batch_axis"):
        identity(batch_axis=(0, 0))
    with pytest.raises(ValueError, match=r"jaxinit\.identity.*scale"):
        identity(float("nan"))
    with pytest.raises(TypeError, match=r"jaxinit\.identity.*dtype"):
        identity()(KEY, (2, 2), jnp.int32)
    with pytest.raises(TypeError, match=r"jaxinit\.identity.*key"):
        identity()(0, (2, 2))


def test_zero_size_shapes():
    assert identity()(KEY, (0, 3)).shape == (0, 3)
    assert identity(batch_axis=0)(KEY, (0, 3, 3)).shape == (0, 3, 3)
    assert dirac()(KEY, (3, 3, 0, 4)).shape == (3, 3, 0, 4)
    assert delta_orthogonal()(KEY, (3, 0, 4)).shape == (3, 0, 4)


def test_jit_equals_eager():
    for init, shape in [(identity(0.3, batch_axis=0), (2, 3, 3)), (dirac(2), (3, 3, 2, 4)),
                        (delta_orthogonal(1.5), (3, 3, 4, 4))]:
        jitted = jax.jit(init, static_argnums=1)(KEY, shape)
        np.testing.assert_array_equal(jitted, init(KEY, shape))


# --- dirac ------------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial", [(3,), (4,), (5, 1), (2, 4), (3, 3, 3), (2, 3, 4)])
def test_dirac_conv_is_identity_with_same_padding(spatial):
    # Odd and even sizes alike: XLA's SAME pads (k - 1) // 2 before, the centre tap.
    shape = (*spatial, 4, 4)
    kernel = dirac(scale=0.5)(KEY, shape)
    x = _input(shape)
    np.testing.assert_array_equal(_conv_same(x, kernel), 0.5 * x)


def test_dirac_even_kernel_with_dilation_is_a_shift():
    # As documented: with dilation 2 and k = 2 no tap lines up with SAME's padding.
    shape = (2, 2, 3, 3)
    x = _input(shape)
    y = _conv_same(x, dirac()(KEY, shape), dilation=(2, 2))
    assert not np.allclose(y, x)
    np.testing.assert_array_equal(_conv_same(x, dirac()(KEY, (3, 3, 3, 3)), dilation=(2, 2)), x)


def test_dirac_grouped_flax_conv_is_identity():
    groups, channels = 3, 6
    conv = nn.Conv(channels, (3, 3), feature_group_count=groups, padding="SAME", use_bias=False,
                   kernel_init=dirac(groups), precision=lax.Precision.HIGHEST)
    x = normal_input((2, 5, 5, channels), seed=2)
    params = conv.init(KEY, x)
    assert params["params"]["kernel"].shape == (3, 3, channels // groups, channels)
    np.testing.assert_array_equal(conv.apply(params, x), x)


def test_dirac_groups_with_more_outputs_than_inputs():
    # in_features = 4 in 2 groups (c = 2), out = 6 (p = 3): output g·3 + j copies
    # input g·2 + j for j < 2; output g·3 + 2 is zero.
    conv = nn.Conv(6, (3,), feature_group_count=2, padding="SAME", use_bias=False,
                   kernel_init=dirac(2))
    x = normal_input((1, 7, 4), seed=3)
    y = conv.apply(conv.init(KEY, x), x)
    np.testing.assert_array_equal(y[..., [0, 1, 3, 4]], x)
    np.testing.assert_array_equal(y[..., [2, 5]], 0)


def test_dirac_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"jaxinit\.dirac.*groups=2"):
        dirac(2)(KEY, (3, 3, 2, 5))
    with pytest.raises(ValueError, match=r"jaxinit\.dirac.*groups"):
        dirac(0)
    with pytest.raises(TypeError, match=r"jaxinit\.dirac.*groups"):
        dirac(1.5)
    with pytest.raises(ValueError, match=r"jaxinit\.dirac.*shape.*rank 2"):
        dirac()(KEY, (3, 3))
    with pytest.raises(ValueError, match=r"jaxinit\.dirac.*shape.*rank 6"):
        dirac()(KEY, (1, 1, 1, 1, 3, 3))


def test_dirac_bfloat16():
    w = dirac(scale=0.1, dtype=jnp.bfloat16)(KEY, (3, 2, 2))
    assert w.dtype == jnp.bfloat16
    np.testing.assert_array_equal(w[1], jnp.asarray(0.1, jnp.bfloat16) * jnp.eye(2))


# --- delta_orthogonal -------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 4, 6), (3, 3, 4, 4), (4, 2, 3, 5), (3, 3, 3, 2, 2)])
@pytest.mark.parametrize("column_axis", [-1, -2])
def test_delta_orthogonal_equals_jax(shape, column_axis):
    expected = jax.nn.initializers.delta_orthogonal(0.7, column_axis)(KEY, shape)
    np.testing.assert_array_equal(delta_orthogonal(0.7, column_axis)(KEY, shape), expected)


@pytest.mark.parametrize("dtype", ["float64", "complex64"])
def test_delta_orthogonal_equals_jax_other_dtypes(dtype):
    with jax.enable_x64(dtype == "float64"):
        expected = jax.nn.initializers.delta_orthogonal(2.0, dtype=dtype)(KEY, (3, 3, 5, 5))
        w = delta_orthogonal(2.0, dtype=dtype)(KEY, (3, 3, 5, 5))
        assert w.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(w, expected)


@pytest.mark.parametrize("shape", [(3, 5, 5), (3, 3, 6, 6), (3, 1, 3, 4, 4), (5, 3, 8)])
def test_delta_orthogonal_conv_is_an_isometry(shape):
    scale = 1.5
    kernel = delta_orthogonal(scale)(KEY, shape)
    x = _input(shape)
    y = _conv_same(x, kernel)
    np.testing.assert_allclose(jnp.linalg.norm(y, axis=-1), scale * jnp.linalg.norm(x, axis=-1),
                               rtol=1e-5)
    # Zero everywhere but the centre tap, which has orthonormal rows.
    centre = tuple((k - 1) // 2 for k in shape[:-2])
    assert_orthogonal(kernel[centre], scale=scale)
    assert float(jnp.sum(kernel**2)) == pytest.approx(float(jnp.sum(kernel[centre] ** 2)))


def test_delta_orthogonal_bfloat16_computed_in_float32():
    w = delta_orthogonal(dtype=jnp.bfloat16)(KEY, (3, 3, 8, 8))
    assert w.dtype == jnp.bfloat16
    assert_orthogonal(w[1, 1])
    reference = delta_orthogonal(dtype=jnp.float32)(KEY, (3, 3, 8, 8))
    np.testing.assert_array_equal(w, reference.astype(jnp.bfloat16))


def test_delta_orthogonal_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"jaxinit\.delta_orthogonal.*in_features=5"):
        delta_orthogonal()(KEY, (3, 3, 5, 4))
    with pytest.raises(ValueError, match=r"jaxinit\.delta_orthogonal.*shape.*rank 2"):
        delta_orthogonal()(KEY, (4, 4))
    with pytest.raises(ValueError, match=r"jaxinit\.delta_orthogonal.*column_axis"):
        delta_orthogonal(column_axis=-3)
    with pytest.raises(ValueError, match=r"jaxinit\.delta_orthogonal.*column_axis"):
        delta_orthogonal(column_axis=0)(KEY, (3, 3, 4, 4))
    with pytest.raises(TypeError, match=r"jaxinit\.delta_orthogonal.*dtype"):
        delta_orthogonal()(KEY, (3, 4, 4), jnp.int8)
    # Counted from the front, the last two axes are accepted.
    np.testing.assert_array_equal(delta_orthogonal(column_axis=3)(KEY, (3, 3, 4, 4)),
                                  delta_orthogonal()(KEY, (3, 3, 4, 4)))


# --- sharding ---------------------------------------------------------------------------------


@pytest.mark.devices(8)
@pytest.mark.timeout(120)
def test_out_sharding_gives_the_unsharded_values():
    mesh = jax.make_mesh((8,), ("x",))
    cases = [
        (identity(0.5, batch_axis=0), (8, 4, 4), P("x")),
        (dirac(), (3, 3, 4, 8), P(None, None, None, "x")),
        (delta_orthogonal(), (3, 3, 4, 8), P(None, None, None, "x")),
    ]
    for init, shape, spec in cases:
        unsharded = init(KEY, shape)
        outputs = [init(KEY, shape, out_sharding=NamedSharding(mesh, spec))]  # no mesh context
        with jax.set_mesh(mesh):
            outputs.append(init(KEY, shape, out_sharding=spec))
            outputs.append(jax.jit(lambda k, init=init, shape=shape, spec=spec: init(
                k, shape, out_sharding=spec))(KEY))
        for w in outputs:
            assert w.sharding.is_equivalent_to(NamedSharding(mesh, spec), len(shape))
            np.testing.assert_array_equal(w, unsharded)
        # Each device builds its own shard: no communication in the program.
        hlo = jax.jit(lambda k, init=init, shape=shape, spec=spec: init(
            k, shape, out_sharding=NamedSharding(mesh, spec))).lower(KEY).compile().as_text()
        assert not re.search(r"all-gather|all-reduce|all-to-all|collective-permute", hlo)
