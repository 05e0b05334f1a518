"""Drop-in compatibility: every name jax.nn.initializers also has gives the same values.

For the same key, shape and float32/float64 dtype, jaxinit's values are bit-identical
to JAX's. Documented exceptions (tested in their own files): 16-bit dtypes (sampled
in float32 here), the complex truncated normal (std constant corrected here) and
orthogonal's fast default method.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from designs import rotation

import jaxinit

KEYS = [jax.random.key(0), jax.random.PRNGKey(123), jax.random.key(5, impl="rbg")]

# (name, factory args) for every shared name whose values must match.
FACTORIES = [
    ("normal", ()), ("normal", (0.3,)),
    ("uniform", ()), ("uniform", (2.5,)),
    ("truncated_normal", ()), ("truncated_normal", (0.7,)),
    ("constant", (0.25,)),
    ("variance_scaling", (1.3, "fan_in", "normal")),
    ("variance_scaling", (0.5, "fan_out", "uniform")),
    ("variance_scaling", (2.0, "fan_avg", "truncated_normal")),
    ("variance_scaling", (1.0, "fan_geo_avg", "normal")),
    ("glorot_uniform", ()), ("glorot_normal", ()), ("he_uniform", ()), ("he_normal", ()),
    ("lecun_uniform", ()), ("lecun_normal", ()),
]
FACTORY_IDS = [f"{name}{list(args) if args else ''}" for name, args in FACTORIES]
# Other names for the same functions, in JAX as here: their values are those above.
ALIASES = {"xavier_uniform": "glorot_uniform", "xavier_normal": "glorot_normal",
           "kaiming_uniform": "he_uniform", "kaiming_normal": "he_normal"}
AXIS_NAMES = {"variance_scaling", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
              "lecun_uniform", "lecun_normal"}
# (shape, axis kwargs) -- axis kwargs only for the fan-based schemes.
SHAPES = [
    ((17, 31), {}),
    ((3, 3, 8, 16), {}),
    ((5, 7, 11), {"in_axis": 0, "out_axis": 2}),
    ((4, 6, 10, 12), {"in_axis": (1, 2), "out_axis": -1, "batch_axis": 0}),
    ((1, 1), {}),
]
SHAPE_IDS = ["dense", "conv", "axes", "batch_axis", "1x1"]


def _make(module, name, args, axes):
    factory = getattr(module, name)
    return factory(*args, **axes) if name in AXIS_NAMES else factory(*args)


def _assert_same(name, args, shape, axes, key, dtype):
    ours = _make(jaxinit, name, args, axes)(key, shape, dtype)
    theirs = _make(jax.nn.initializers, name, args, axes)(key, shape, dtype)
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_aliases_are_the_same_functions_as_in_jax():
    for alias, name in ALIASES.items():
        assert getattr(jaxinit, alias) is getattr(jaxinit, name), alias
        assert getattr(jax.nn.initializers, alias) is getattr(jax.nn.initializers, name), alias


# Each factory draws through its own options and each shape through the shared fan and
# shape code: the default run meets every factory and every shape (`designs.rotation`).
@pytest.mark.parametrize("name, args, shape, axes",
                         rotation(FACTORIES, SHAPES, FACTORY_IDS, SHAPE_IDS))
def test_bit_identical_float32(name, args, shape, axes):
    _assert_same(name, args, shape, axes, KEYS[0], jnp.float32)


@pytest.mark.parametrize("name, args, key",
                         rotation(FACTORIES, KEYS[1:], FACTORY_IDS, ["PRNGKey", "rbg"]))
def test_bit_identical_for_every_key_kind(name, args, key):
    _assert_same(name, args, (12, 20), {}, key, jnp.float32)


@pytest.mark.parametrize("name, args", FACTORIES, ids=FACTORY_IDS)
def test_bit_identical_float64_and_default_dtype(name, args):
    with jax.enable_x64(True):
        key = jax.random.key(3)
        for dtype in (None, jnp.float64):
            ours = _make(jaxinit, name, args, {})(key, (13, 9), dtype)
            theirs = _make(jax.nn.initializers, name, args, {})(key, (13, 9), dtype)
            assert ours.dtype == theirs.dtype == jnp.float64
            np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


@pytest.mark.parametrize("args", [(1.0, "fan_in", "uniform"), (1.0, "fan_avg", "normal")])
def test_complex_variance_scaling_matches_jax(args):
    # Only the complex truncated normal differs (its std constant is corrected here).
    _assert_same("variance_scaling", args, (6, 5), {}, jax.random.key(11), jnp.complex64)


@pytest.mark.parametrize("name, args", FACTORIES + [(alias, ()) for alias in ALIASES])
def test_same_defaults_and_positional_order(name, args):
    ours = inspect.signature(getattr(jaxinit, name)).parameters
    theirs = inspect.signature(getattr(jax.nn.initializers, name)).parameters
    shared = [p for p in theirs.values() if p.kind is not p.KEYWORD_ONLY]
    ours_positional = [p for p in ours.values() if p.kind is not p.KEYWORD_ONLY]
    assert [p.name for p in ours_positional[: len(shared)]] == [p.name for p in shared]
    for p in shared:
        assert ours[p.name].default == p.default, (name, p.name)


def test_zeros_ones_match():
    key = jax.random.key(0)
    for name in ("zeros", "ones"):
        ours = getattr(jaxinit, name)(key, (3, 2))
        theirs = getattr(jax.nn.initializers, name)(key, (3, 2))
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
