"""jaxinit.draws: an eager draw is compiled flat, shared between sizes, and is JAX's draw."""

import math

import jax
import numpy as np
import pytest

from jaxinit import draws

KEY = jax.random.key(3)
SHAPE = (3, 5, 16)

DRAWS = {
    "normal": (lambda k, s: draws.normal(k, s, np.float32),
               lambda k, s: jax.random.normal(k, s, np.float32)),
    "uniform": (lambda k, s: draws.uniform(k, s, np.float32, -2.0, 0.5),
                lambda k, s: jax.random.uniform(k, s, np.float32, -2.0, 0.5)),
    "truncated_normal": (lambda k, s: draws.truncated_normal(k, -1.5, 2.0, s, np.float32),
                         lambda k, s: jax.random.truncated_normal(k, -1.5, 2.0, s, np.float32)),
}


@pytest.mark.parametrize("partitionable", [True, False])
@pytest.mark.parametrize("name", sorted(DRAWS))
def test_eager_draw_is_jax_draw(name, partitionable):
    ours, jax_draw = DRAWS[name]
    with jax.threefry_partitionable(partitionable):
        np.testing.assert_array_equal(np.asarray(ours(KEY, SHAPE)),
                                      np.asarray(jax_draw(KEY, SHAPE)))


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_eager_draws_cut_from_a_larger_draw_are_jax_draws(name, monkeypatch):
    """Sizes below, at and just above a power of two, and one above the shared limit.

    Compared with JAX's flat draw of the size (cheaper to compile than the
    shape's, and the same array: the test above).
    """
    monkeypatch.setattr(draws, "SHARED_DRAW_LIMIT", 4000)  # (65, 63) is above
    monkeypatch.setattr(draws, "SMALLEST_SHARED_DRAW", 8)
    ours, jax_draw = DRAWS[name]
    for shape in [(2,), (7,), (4, 4), (5, 3), (2, 1025), (65, 63)]:
        size = math.prod(shape)
        np.testing.assert_array_equal(np.asarray(ours(KEY, shape)),
                                      np.asarray(jax_draw(KEY, (size,))).reshape(shape),
                                      err_msg=str(shape))


@pytest.mark.parametrize("name", sorted(DRAWS))
def test_a_scaled_draw_is_the_draw_times_the_factor(name):
    """The factor applies before the cut (once per size class): the same rounding as after."""
    ours, jax_draw = DRAWS[name]
    factor = np.float32(0.3)
    scaled = {"normal": lambda: draws.normal(KEY, SHAPE, np.float32, factor=factor),
              "uniform": lambda: draws.uniform(KEY, SHAPE, np.float32, -2.0, 0.5, factor=factor),
              "truncated_normal": lambda: draws.truncated_normal(KEY, -1.5, 2.0, SHAPE,
                                                                 np.float32, factor=factor)}
    np.testing.assert_array_equal(np.asarray(scaled[name]()),
                                  np.asarray(jax_draw(KEY, SHAPE)) * factor)


def test_eager_threefry_draws_are_flat_and_shared_by_sizes_up_to_a_power_of_two():
    smallest = draws.SMALLEST_SHARED_DRAW
    assert draws.draw_shape(KEY, SHAPE) == draws.draw_shape(KEY, (7,)) == (smallest,)
    assert draws.draw_shape(KEY, (smallest,)) == (smallest,)
    assert draws.draw_shape(KEY, (3, smallest)) == draws.draw_shape(KEY, (4, smallest)) \
        == (4 * smallest,)
    assert draws.draw_shape(KEY, (5, smallest)) == (8 * smallest,)
    assert draws.draw_shape(jax.random.PRNGKey(0), SHAPE) == (smallest,)  # legacy uint32 key
    limit = draws.SHARED_DRAW_LIMIT
    assert draws.draw_shape(KEY, (limit,)) == (limit,)
    assert draws.draw_shape(KEY, (3, limit // 2)) == (3 * limit // 2,), "flat, not shared"
    with jax.threefry_partitionable(False):  # a number depends on the draw's size
        assert draws.draw_shape(KEY, SHAPE) == (240,)
    assert draws.draw_shape(jax.random.key(0, impl="rbg"), SHAPE) == SHAPE
    seen = []
    jax.jit(lambda k: seen.append(draws.draw_shape(k, SHAPE)) or k)(KEY)
    assert seen == [SHAPE], "a traced call must draw in its shape (a caller may shard it)"


def test_rbg_keys_draw_in_the_shape_and_match_jax():
    key = jax.random.key(1, impl="rbg")
    np.testing.assert_array_equal(np.asarray(draws.normal(key, SHAPE, np.float32)),
                                  np.asarray(jax.random.normal(key, SHAPE, np.float32)))
