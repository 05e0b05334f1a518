"""jaxinit.threefry: JAX's normal, uniform and truncated normal draws, bit for bit, from one
fused elementwise program; JAX's own functions for other keys and settings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry2x32_p

from jaxinit import threefry

SHAPES = [(), (0, 3), (7,), (33, 17, 5), (512, 513)]

DRAWS = {
    "normal": (lambda k, s, d: threefry.normal(k, s, d),
               lambda k, s, d: jax.random.normal(k, s, d)),
    "uniform": (lambda k, s, d: threefry.uniform(k, s, d, -0.3, 0.7),
                lambda k, s, d: jax.random.uniform(k, s, d, -0.3, 0.7)),
    "truncated_normal": (lambda k, s, d: threefry.truncated_normal(k, -1.5, 2.0, s, d),
                         lambda k, s, d: jax.random.truncated_normal(k, -1.5, 2.0, s, d)),
}


def assert_same_bits(expected, actual):
    expected, actual = np.asarray(expected), np.asarray(actual)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, (
        f"expected {expected.dtype}{expected.shape}, got {actual.dtype}{actual.shape}")
    # Compared as bytes: equal floats with other bits (a -0.0, a NaN payload) count as differing.
    same = expected.tobytes() == actual.tobytes()
    assert same, (f"{np.mean(expected != actual):.1%} of the elements differ, the largest by "
                  f"{np.max(np.abs(expected.astype(np.float64) - actual.astype(np.float64)))}")


def test_threefry_is_jaxs_block_function():
    """Every random word of jaxinit's draws and of sparse comes from this hash: a wrong
    rotation or key word would still look random, so compare it with JAX's bit for bit."""
    words = np.random.default_rng(0).integers(0, 2**32, (4, 1000), dtype=np.uint32)
    k0, k1, x0, x1 = (jnp.asarray(w) for w in words)
    ours = jax.jit(threefry.threefry2x32)(k0, k1, x0, x1)
    theirs = threefry2x32_p.bind(k0, k1, x0, x1)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_same_bits_as_jax(name):
    ours, theirs = DRAWS[name]
    for seed, shape in enumerate(SHAPES):
        key = jax.random.key(seed)
        assert_same_bits(theirs(key, shape, jnp.float32), ours(key, shape, jnp.float32))
    for dtype in (jnp.float16, jnp.bfloat16):  # 16 and 8 random bits per number
        assert_same_bits(theirs(key, (9, 7), dtype), ours(key, (9, 7), dtype))


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_same_bits_under_jit_vmap_and_with_legacy_keys(name):
    ours, theirs = DRAWS[name]
    shape, keys = (6, 10), jax.random.split(jax.random.key(7), 5)
    assert_same_bits(jax.jit(lambda k: theirs(k, shape, jnp.float32) * 3 + 1)(keys[0]),
                     jax.jit(lambda k: ours(k, shape, jnp.float32) * 3 + 1)(keys[0]))
    assert_same_bits(jax.vmap(lambda k: theirs(k, shape, jnp.float32))(keys),
                     jax.vmap(lambda k: ours(k, shape, jnp.float32))(keys))
    legacy = jax.random.PRNGKey(11)
    assert_same_bits(theirs(legacy, shape, jnp.float32), ours(legacy, shape, jnp.float32))


def test_complex_normal_is_jax_complex_normal():
    key = jax.random.key(4)
    assert_same_bits(jax.random.normal(key, (9, 4), jnp.complex64),
                     threefry.normal(key, (9, 4), jnp.complex64))


def test_64_bit_draws_are_jax_draws():
    with jax.enable_x64(True):
        key = jax.random.key(5)
        for dtype in (jnp.float64, jnp.complex128):
            assert_same_bits(jax.random.normal(key, (40, 3), dtype),
                             threefry.normal(key, (40, 3), dtype))
        assert_same_bits(jax.random.uniform(key, (40, 3), jnp.float64, -2.0, 3.0),
                         threefry.uniform(key, (40, 3), jnp.float64, -2.0, 3.0))
        assert_same_bits(jax.random.truncated_normal(key, -2.0, 1.0, (40, 3), jnp.float64),
                         threefry.truncated_normal(key, -2.0, 1.0, (40, 3), jnp.float64))


def test_the_draw_is_one_elementwise_program():
    """No loop: JAX's CPU lowering of threefry is a five-step loop over whole arrays."""
    key = jax.random.key(0)
    text = jax.jit(lambda k: threefry.normal(k, (64, 32), jnp.float32)).lower(key).as_text()
    assert "while" not in text, "the draw contains a loop"


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_other_keys_and_settings_fall_back_to_jax(name):
    ours, theirs = DRAWS[name]
    rbg = jax.random.key(1, impl="rbg")
    assert_same_bits(theirs(rbg, (5, 4), jnp.float32), ours(rbg, (5, 4), jnp.float32))
    with jax.threefry_partitionable(False):
        key = jax.random.key(2)
        assert_same_bits(theirs(key, (5, 4), jnp.float32), ours(key, (5, 4), jnp.float32))


@pytest.mark.parametrize(("key", "shape", "dtype"), [
    (jax.random.split(jax.random.key(0), 2), (3,), jnp.float32),  # several keys
    (jax.random.key(0), (3, -1), jnp.float32),
    (jax.random.key(0), (2.5,), jnp.float32),
    (jax.random.key(0), (3,), jnp.int32),
    (0, (3,), jnp.float32),
], ids=["keys", "negative", "float_dim", "int_dtype", "int_key"])
@pytest.mark.parametrize("name", sorted(DRAWS))
def test_bad_arguments_raise_what_jax_raises(name, key, shape, dtype):
    ours, theirs = DRAWS[name]
    with pytest.raises(Exception) as expected:
        theirs(key, shape, dtype)
    with pytest.raises(expected.type) as actual:
        ours(key, shape, dtype)
    assert str(actual.value) == str(expected.value)


def test_fold_in_is_jax_fold_in():
    key, data = jax.random.key(9), jnp.array([[0, 1, 7], [2**31, 2**32 - 1, 5]], jnp.uint32)
    one_each = jax.vmap(jax.vmap(jax.random.fold_in, (None, 0)), (None, 0))(key, data)
    assert_same_bits(jax.random.key_data(one_each),
                     jax.random.key_data(threefry.fold_in(key, data)))
    for k in (key, jax.random.PRNGKey(4), jax.random.key(1, impl="rbg")):
        typed = threefry.typed_keys(k)
        assert_same_bits(jax.random.key_data(jax.random.fold_in(typed, 11)),
                         jax.random.key_data(threefry.fold_in(k, 11)))
    keys = jax.random.split(key, 3)
    assert_same_bits(jax.random.key_data(jax.vmap(jax.random.fold_in, (0, None))(keys, 6)),
                     jax.random.key_data(jax.vmap(threefry.fold_in, (0, None))(keys, 6)))
