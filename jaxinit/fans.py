"""Fans and gains: how many inputs and outputs a weight connects, and the gain of a nonlinearity."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from jaxinit.core import (
    AxisLike,
    check_choice,
    check_disjoint,
    check_real,
    check_shape,
    normalize_axes,
)

__all__ = ["GAINS", "calculate_gain", "compute_fans", "fan_axes"]


def fan_axes(
    name: str,
    shape: tuple[int, ...],
    in_axis: AxisLike,
    out_axis: AxisLike,
    batch_axis: AxisLike,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Normalizes the axis arguments: returns ``(in_axes, out_axes, batch_axes, receptive_axes)``.

    Raises ``ValueError`` if the shape's rank cannot hold them, an axis is out of
    range, or two groups overlap.
    """
    ndim = len(shape)
    if ndim < 2 and in_axis == -2 and out_axis == -1:
        raise ValueError(
            f"{name}: shape={shape} has rank {ndim}; the default in_axis=-2, out_axis=-1 need "
            "rank >= 2 (pass in_axis/out_axis explicitly for other layouts)."
        )
    ins = normalize_axes(name, "in_axis", in_axis, ndim)
    outs = normalize_axes(name, "out_axis", out_axis, ndim)
    batch = normalize_axes(name, "batch_axis", batch_axis, ndim)
    check_disjoint(name, in_axis=ins, out_axis=outs, batch_axis=batch)
    used = set(ins) | set(outs) | set(batch)
    receptive = tuple(a for a in range(ndim) if a not in used)
    return ins, outs, batch, receptive


def compute_fans(
    shape: Sequence[int],
    in_axis: AxisLike = -2,
    out_axis: AxisLike = -1,
    batch_axis: AxisLike = (),
) -> tuple[int, int]:
    """Returns ``(fan_in, fan_out)`` of a weight of the given shape.

    ``fan_in = prod(shape[in_axis]) * receptive`` and
    ``fan_out = prod(shape[out_axis]) * receptive``, where ``receptive`` is the
    product of the axes in none of ``in_axis``, ``out_axis``, ``batch_axis``
    (the spatial axes of a convolution kernel). ``batch_axis`` axes count for
    neither fan. The defaults fit Flax/JAX layouts: ``(in, out)`` for dense
    kernels and ``(H, W, in, out)`` (HWIO) for convolutions.

    Args:
      shape: the weight's shape.
      in_axis: axis or axes of the inputs.
      out_axis: axis or axes of the outputs.
      batch_axis: axis or axes that hold independent weights (stacked layers).

    Example:
      >>> import jaxinit
      >>> jaxinit.compute_fans((3, 3, 16, 32))
      (144, 288)
    """
    dims = check_shape("compute_fans", shape)
    ins, outs, _, receptive = fan_axes("compute_fans", dims, in_axis, out_axis, batch_axis)
    receptive_size = math.prod(dims[a] for a in receptive)
    fan_in = math.prod(dims[a] for a in ins) * receptive_size
    fan_out = math.prod(dims[a] for a in outs) * receptive_size
    return fan_in, fan_out


def _leaky_relu_gain(slope: float) -> float:
    gain = math.sqrt(2.0 / (1.0 + slope * slope))
    if not gain > 0:
        raise ValueError(f"jaxinit.calculate_gain: param={slope!r} is out of range: the gain "
                         "sqrt(2 / (1 + slope²)) underflows to 0; accepted: |slope| < 1e150.")
    return gain


#: nonlinearity -> gain(param); ``param`` is accepted by ``leaky_relu`` only.
GAINS: dict[str, Callable[[float], float]] = {
    **{name: (lambda _: 1.0) for name in (
        "linear", "identity", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
        "conv_transpose2d", "conv_transpose3d", "sigmoid")},
    "tanh": lambda _: 5.0 / 3.0,
    "relu": lambda _: math.sqrt(2.0),
    "leaky_relu": _leaky_relu_gain,
    "selu": lambda _: 0.75,
}


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Returns the recommended gain (std multiplier) for a nonlinearity.

    The published table (He et al. 2015; Klambauer et al. 2017 for SELU):

    ========================  =============================
    nonlinearity              gain
    ========================  =============================
    linear, conv*, sigmoid    1
    tanh                      5/3
    relu                      sqrt(2)
    leaky_relu                sqrt(2 / (1 + slope**2)), slope = ``param`` (default 0.01)
    selu                      3/4
    ========================  =============================

    Multiply a unit-variance scheme's std by the gain, e.g.
    ``jaxinit.glorot_uniform(gain=jaxinit.calculate_gain("tanh"))``.

    Example:
      >>> import jaxinit
      >>> round(jaxinit.calculate_gain("leaky_relu", 0.2), 6)
      1.38675
    """
    name = "jaxinit.calculate_gain"
    check_choice(name, "nonlinearity", nonlinearity, tuple(GAINS))
    if param is not None and nonlinearity != "leaky_relu":
        raise ValueError(
            f"{name}: param={param!r} is only accepted for 'leaky_relu' (its negative "
            f"slope), not for {nonlinearity!r}."
        )
    slope = 0.01 if param is None else check_real(name, "param", param)
    return GAINS[nonlinearity](slope)
