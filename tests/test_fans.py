"""compute_fans and calculate_gain."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxinit


@pytest.mark.parametrize(
    "shape, kwargs, expected",
    [
        ((10, 20), {}, (10, 20)),
        ((3, 3, 16, 32), {}, (144, 288)),  # HWIO conv: receptive 9
        ((5, 3, 3, 16, 32), {"batch_axis": 0}, (144, 288)),  # batch axis counts for neither
        ((4, 6, 8), {"in_axis": (0, 1), "out_axis": 2}, (24, 8)),
        ((32, 3, 3, 16), {"in_axis": -1, "out_axis": 0}, (144, 288)),  # OHWI layout
        ((7,), {"in_axis": 0, "out_axis": ()}, (7, 1)),
    ],
)
def test_compute_fans(shape, kwargs, expected):
    assert jaxinit.compute_fans(shape, **kwargs) == expected


def test_compute_fans_matches_jax_for_float_results():
    from jax._src.nn.initializers import _compute_fans

    cases = [((3, 3, 16, 32), {}), ((2, 5, 7, 11), {"in_axis": (1, 2), "batch_axis": 0})]
    for shape, kw in cases:
        expected = tuple(int(f) for f in _compute_fans(shape, **kw))
        assert jaxinit.compute_fans(shape, **kw) == expected


@pytest.mark.parametrize(
    "shape, kwargs, match",
    [
        ((10,), {}, "rank 1"),
        ((4, 5), {"in_axis": 2}, "in_axis=2 is out of range"),
        ((4, 5), {"out_axis": -3}, "out_axis=-3 is out of range"),
        ((4, 5, 6), {"in_axis": (0, 0)}, "repeats an axis"),
        ((4, 5, 6), {"in_axis": 0, "out_axis": 0}, "in_axis and out_axis both contain axis 0"),
        ((4, 5, 6), {"batch_axis": -1}, "out_axis and batch_axis both contain axis 2"),
        ((4, -5), {}, "negative dimension"),
    ],
)
def test_compute_fans_errors(shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        jaxinit.compute_fans(shape, **kwargs)


def test_compute_fans_rejects_non_int_axis():
    with pytest.raises(TypeError, match="in_axis"):
        jaxinit.compute_fans((3, 4), in_axis=1.5)


@pytest.mark.parametrize(
    "name, param, expected",
    [
        ("linear", None, 1.0),
        ("conv2d", None, 1.0),
        ("sigmoid", None, 1.0),
        ("tanh", None, 5 / 3),
        ("relu", None, math.sqrt(2)),
        ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
        ("leaky_relu", 0.2, math.sqrt(2 / 1.04)),
        ("selu", None, 0.75),
    ],
)
def test_calculate_gain(name, param, expected):
    assert jaxinit.calculate_gain(name, param) == pytest.approx(expected, rel=1e-15)


def test_calculate_gain_errors():
    with pytest.raises(ValueError, match="nonlinearity='gelu' is not supported"):
        jaxinit.calculate_gain("gelu")
    with pytest.raises(ValueError, match="only accepted for 'leaky_relu'"):
        jaxinit.calculate_gain("relu", 0.1)
    with pytest.raises(ValueError, match="must be finite"):
        jaxinit.calculate_gain("leaky_relu", float("nan"))


@given(
    shape=st.lists(st.integers(1, 6), min_size=2, max_size=5),
    data=st.data(),
)
@settings(max_examples=200, deadline=None)
def test_compute_fans_properties(shape, data):
    ndim = len(shape)
    axes = data.draw(st.permutations(range(ndim)))
    n_in = data.draw(st.integers(1, ndim - 1))
    n_out = data.draw(st.integers(1, ndim - n_in))
    n_batch = data.draw(st.integers(0, ndim - n_in - n_out))
    in_axis, out_axis = axes[:n_in], axes[n_in:n_in + n_out]
    batch_axis = axes[n_in + n_out:n_in + n_out + n_batch]
    fan_in, fan_out = jaxinit.compute_fans(shape, in_axis, out_axis, batch_axis)
    in_size = math.prod(shape[a] for a in in_axis)
    out_size = math.prod(shape[a] for a in out_axis)
    batch_size = math.prod(shape[a] for a in batch_axis)
    # Both fans share one receptive field; together they cover the whole shape.
    assert fan_in * out_size == fan_out * in_size
    assert fan_in // in_size * in_size * out_size * batch_size == math.prod(shape)
    # Negative spellings of the same axes give the same fans.
    negative = [a - ndim for a in in_axis]
    assert jaxinit.compute_fans(shape, negative, out_axis, batch_axis) == (fan_in, fan_out)
