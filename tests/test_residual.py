"""Residual-depth helpers: scaled initializers, 1/sqrt(2L) projections, zero branch output."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinit import residual_projection, residual_zero, scaled
from jaxinit.distributions import normal
from jaxinit.testing import assert_std
from jaxinit.variance_scaling import lecun_normal

KEY = jax.random.key(0)


def test_scaled_multiplies_the_base_values():
    base = normal(0.3)
    np.testing.assert_allclose(scaled(base, -0.25)(KEY, (50, 40)),
                               -0.25 * np.asarray(base(KEY, (50, 40))), rtol=1e-6)
    assert scaled(base, 2.0)(KEY, (3, 3), jnp.bfloat16).dtype == jnp.bfloat16


def test_residual_projection_std_is_base_over_sqrt_2L():
    w = residual_projection(8, normal(0.02))(KEY, (512, 512))
    # 262144 normal samples: 5 s.e. of the variance is 1.4%; false failure ≈ 6e-7.
    assert_std(w, 0.02 / math.sqrt(16))
    default = residual_projection(3)(KEY, (256, 128))
    np.testing.assert_allclose(default, np.asarray(lecun_normal()(KEY, (256, 128))) / math.sqrt(6),
                               rtol=1e-6)
    one_branch = residual_projection(4, normal(1.0), branches_per_layer=1)(KEY, (10, 10))
    np.testing.assert_allclose(one_branch, np.asarray(normal(1.0)(KEY, (10, 10))) / 2, rtol=1e-6)


def _residual_stream_variance(init, num_layers, n=256, branches=2):
    """Var of x after num_layers·branches updates x ← x + x W (linear branches)."""
    x = jax.random.normal(jax.random.key(1), (64, n))
    keys = jax.random.split(jax.random.key(2), num_layers * branches)
    for key in keys:
        x = x + x @ init(key, (n, n))
    return float(jnp.var(x))


def test_residual_projection_keeps_the_stream_variance_bounded_in_depth():
    depth = 16
    # Each unscaled branch with Var(W) = 1/n adds the stream's own variance: 2^(2L) growth.
    # Scaled by 1/sqrt(2L), the factor is (1 + 1/(2L))^(2L) ≈ e.
    scaled_var = _residual_stream_variance(residual_projection(depth, lecun_normal()), depth)
    plain_var = _residual_stream_variance(lecun_normal(), depth)
    assert 1.5 < scaled_var < 5.0, scaled_var
    assert plain_var > 1e6, plain_var


def test_residual_zero_makes_the_block_the_identity():
    w = residual_zero()(KEY, (8, 8))
    np.testing.assert_array_equal(w, np.zeros((8, 8)))
    x = jax.random.normal(KEY, (4, 8))
    hidden = jnp.tanh(x @ lecun_normal()(jax.random.key(3), (8, 8)))
    np.testing.assert_array_equal(x + hidden @ w, x)
    assert residual_zero(jnp.bfloat16)(KEY, (2,)).dtype == jnp.bfloat16


def test_errors():
    with pytest.raises(ValueError, match="jaxinit.scaled: factor=0"):
        scaled(normal(), 0.0)
    with pytest.raises(TypeError, match="jaxinit.scaled: init=1"):
        scaled(1, 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be finite"):
        scaled(normal(), float("nan"))
    with pytest.raises(ValueError, match="num_layers=0 must be an int >= 1"):
        residual_projection(0)
    with pytest.raises(ValueError, match="branches_per_layer=0"):
        residual_projection(4, branches_per_layer=0)
    with pytest.raises(TypeError, match="dtype=int32"):
        residual_zero()(KEY, (2,), jnp.int32)


@pytest.mark.devices(8)
def test_out_sharding_and_base_default_dtype():
    import jax.numpy as jnp
    from jax.sharding import AxisType, NamedSharding, PartitionSpec

    mesh = jax.make_mesh((8,), ("d",), axis_types=(AxisType.Explicit,))
    sharding = NamedSharding(mesh, PartitionSpec("d"))
    for init in (residual_projection(4), residual_zero()):
        plain = jax.jit(init, static_argnums=1)(KEY, (16, 8))
        sharded = init(KEY, (16, 8), out_sharding=sharding)
        assert sharded.sharding.is_equivalent_to(sharding, 2)
        np.testing.assert_array_equal(sharded, plain)
    # Without a dtype the wrapped initializer keeps its own default dtype.
    assert scaled(normal(0.1, jnp.bfloat16), 0.5)(KEY, (2, 2)).dtype == jnp.bfloat16
