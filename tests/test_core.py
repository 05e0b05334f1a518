"""The initializer contract: protocol, keys, dtypes, zero-size shapes."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxinit

KEY = jax.random.key(1)
INITS = {
    "zeros": jaxinit.zeros,
    "ones": jaxinit.ones,
    "constant": jaxinit.constant(0.5),
    "normal": jaxinit.normal(),
    "uniform": jaxinit.uniform(),
    "uniform_range": jaxinit.uniform_range(-1.0, 2.0),
    "symmetric_uniform": jaxinit.symmetric_uniform(),
    "truncated_normal": jaxinit.truncated_normal(),
    "glorot_uniform": jaxinit.glorot_uniform(),
    "glorot_normal": jaxinit.glorot_normal(),
    "he_uniform": jaxinit.he_uniform(),
    "he_normal": jaxinit.he_normal(),
    "lecun_uniform": jaxinit.lecun_uniform(),
    "lecun_normal": jaxinit.lecun_normal(),
}

@pytest.mark.parametrize("name", INITS)
def test_has_the_initializer_signature_of_jax(name):
    # Flax calls init(key, shape, dtype); jax.nn.initializers adds out_sharding=None.
    parameters = inspect.signature(INITS[name]).parameters
    assert list(parameters) == ["key", "shape", "dtype", "out_sharding"]
    assert parameters["dtype"].default is None and parameters["out_sharding"].default is None
    assert isinstance(INITS[name], jaxinit.Initializer)


def test_the_factory_dtype_is_the_signature_default():
    init = jaxinit.normal(dtype=jnp.bfloat16)
    assert inspect.signature(init).parameters["dtype"].default == jnp.bfloat16


# Purity, jit and vmap are checked for every public factory in test_contract.py, JAX's
# values for every shared name in test_jax_compat.py.


@pytest.mark.parametrize("name", INITS)
@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (2, 0, 4, 4)])
def test_zero_size_shapes(name, shape):
    w = INITS[name](KEY, shape)
    assert w.shape == shape and w.dtype == jnp.float32


@pytest.mark.parametrize("name", ["normal", "uniform", "he_normal", "zeros"])
def test_legacy_and_typed_keys_agree(name):
    legacy = INITS[name](jax.random.PRNGKey(4), (5, 5))
    typed = INITS[name](jax.random.wrap_key_data(jax.random.PRNGKey(4)), (5, 5))
    np.testing.assert_array_equal(np.asarray(legacy), np.asarray(typed))


def test_default_dtype_follows_x64():
    with jax.enable_x64(True):
        assert jaxinit.he_normal()(jax.random.key(0), (3, 3)).dtype == jnp.float64
        assert jaxinit.zeros(jax.random.key(0), (3,)).dtype == jnp.float64
    assert jaxinit.he_normal()(KEY, (3, 3)).dtype == jnp.float32


def test_factory_dtype_is_the_default():
    init = jaxinit.normal(dtype=jnp.bfloat16)
    assert init(KEY, (2, 2)).dtype == jnp.bfloat16
    assert init(KEY, (2, 2), jnp.float32).dtype == jnp.float32


@pytest.mark.parametrize("dtype", [jnp.float8_e4m3fn, jnp.float16, jnp.bfloat16])
def test_low_precision_outputs_are_finite(dtype):
    for name in ["normal", "he_normal", "glorot_uniform", "truncated_normal"]:
        w = INITS[name](KEY, (64, 64), dtype)
        assert w.dtype == dtype
        assert bool(jnp.all(jnp.isfinite(w.astype(jnp.float32))))
