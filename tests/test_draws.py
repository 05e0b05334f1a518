"""jaxinit.draws: an eager draw is compiled flat and is JAX's draw bit for bit."""

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
def test_eager_flat_draw_is_jax_draw(name, partitionable):
    ours, jax_draw = DRAWS[name]
    with jax.threefry_partitionable(partitionable):
        np.testing.assert_array_equal(np.asarray(ours(KEY, SHAPE)),
                                      np.asarray(jax_draw(KEY, SHAPE)))


def test_only_eager_threefry_draws_are_flat():
    assert draws.draw_shape(KEY, SHAPE) == (240,)
    assert draws.draw_shape(jax.random.PRNGKey(0), SHAPE) == (240,)  # legacy uint32 key
    assert draws.draw_shape(KEY, (7,)) == (7,)
    assert draws.draw_shape(jax.random.key(0, impl="rbg"), SHAPE) == SHAPE
    seen = []
    jax.jit(lambda k: seen.append(draws.draw_shape(k, SHAPE)) or k)(KEY)
    assert seen == [SHAPE], "a traced call must draw in its shape (a caller may shard it)"


def test_rbg_keys_draw_in_the_shape_and_match_jax():
    key = jax.random.key(1, impl="rbg")
    np.testing.assert_array_equal(np.asarray(draws.normal(key, SHAPE, np.float32)),
                                  np.asarray(jax.random.normal(key, SHAPE, np.float32)))
