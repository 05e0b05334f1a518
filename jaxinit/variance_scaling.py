"""Variance scaling: Glorot/Xavier, He/Kaiming and LeCun.

Each weight is drawn with variance ``sigma² = scale / n`` where ``n`` is a fan
of the weight's shape (see :func:`jaxinit.compute_fans`). For the same key,
shape and float32/float64 dtype the values equal ``jax.nn.initializers``'.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinit import draws
from jaxinit.contract import initializer, runtime_value, scale_samples
from jaxinit.core import (
    Array,
    AxisLike,
    DTypeLike,
    Initializer,
    check_axes,
    check_choice,
    check_real,
    is_complex,
    is_traced,
    largest_finite,
    normal_max_abs,
    normalize_axes,
    real_dtype,
)

__all__ = [
    "COMPLEX_TRUNCATED_NORMAL_STD",
    "TRUNCATED_NORMAL_STD",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "lecun_uniform",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
]

MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")

# Std of N(0, 1) truncated to (-2, 2): sqrt(1 - 4 phi(2) / (2 Phi(2) - 1)).
TRUNCATED_NORMAL_STD = 0.87962566103423978
# Std of the complex normal with E|z|² = 1 whose modulus is truncated at 2:
# |z|² ~ Exp(1) conditioned on |z|² < 4 has mean 1 - 4 / (e⁴ - 1).
# (jax.nn.initializers uses 0.95311164380491208, which makes its variance 1.87% high.)
COMPLEX_TRUNCATED_NORMAL_STD = math.sqrt(1.0 - 4.0 / math.expm1(4.0))


def _complex_uniform_disk(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
    """Uniform on the disk of radius sqrt(2): zero mean, E|z|² = 1 (JAX's sampler)."""
    key_r, key_theta = jax.random.split(key)
    rdt = real_dtype(dtype)
    r = jnp.sqrt(2 * draws.uniform(key_r, shape, rdt))
    u = draws.uniform(key_theta, shape, rdt)
    return r.astype(dtype) * jnp.exp(1j * (2 * np.pi * u.astype(dtype)))


def _complex_truncated_normal(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
    """Complex normal with E|z|² = 1 before truncation, modulus truncated at 2.

    |z|² is Exp(1) restricted to (0, 4), drawn by inverting its CDF; the phase
    is uniform. Same sampler as JAX, so only the std correction differs.
    """
    key_r, key_theta = jax.random.split(key)
    rdt = real_dtype(dtype)
    t = -jnp.expm1(runtime_value(-4.0, rdt)) * draws.uniform(key_r, shape, rdt)
    r = jnp.sqrt(-jnp.log1p(-t))
    u = draws.uniform(key_theta, shape, rdt)
    return r.astype(dtype) * jnp.exp(1j * (2 * np.pi * u.astype(dtype)))


def _fans(shape: tuple[int, ...], ins: tuple[int, ...], outs: tuple[int, ...],
          batch: tuple[int, ...]) -> tuple[float, float]:
    """JAX's fan arithmetic (``jax.nn.initializers``), operation for operation.

    ``receptive = prod(shape) / in_size / out_size / batch_size``; equal to
    :func:`jaxinit.compute_fans` when the axis groups are disjoint. Overlapping
    groups are accepted as JAX accepts them: Flax's ``nn.Embed`` default
    ``variance_scaling(1, "fan_in", "normal", out_axis=0)`` on a
    ``(num_embeddings, features)`` table gives ``fan_in = features``.
    """
    in_size = math.prod(shape[a] for a in ins)
    out_size = math.prod(shape[a] for a in outs)
    batch_size = math.prod(shape[a] for a in batch)
    receptive = math.prod(shape) / in_size / out_size / batch_size
    return in_size * receptive, out_size * receptive


def _variance_scaling(name: str, scale: float, mode: str, distribution: str,
                      in_axis: AxisLike, out_axis: AxisLike, batch_axis: AxisLike,
                      dtype: DTypeLike | None, *, options: str) -> Initializer:
    """:func:`variance_scaling` with errors naming ``name`` (the factory the user called)."""
    scale = check_real(name, "scale", scale, positive=True, traced=True)
    check_choice(name, "mode", mode, MODES)
    check_choice(name, "distribution", distribution, DISTRIBUTIONS)
    axes = {"in_axis": in_axis, "out_axis": out_axis, "batch_axis": batch_axis}
    written = tuple(check_axes(name, arg, value) for arg, value in axes.items())
    default_layout = in_axis == -2 and out_axis == -1

    def layout(dims: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
        if len(dims) < 2 and default_layout:
            raise ValueError(
                f"{name}: shape={dims} has rank {len(dims)}; the default in_axis=-2, "
                "out_axis=-1 need rank >= 2 (pass in_axis/out_axis for other layouts)."
            )
        return tuple(normalize_axes(name, arg, value, len(dims)) for arg, value in axes.items())

    def fans(dims: tuple[int, ...]) -> tuple[float, float]:
        return _fans(dims, *layout(dims))

    def std(dims: tuple[int, ...]) -> Any:
        fan_in, fan_out = fans(dims)
        return (scale / _denominator(mode, fan_in, fan_out)) ** 0.5

    def bound(dims: tuple[int, ...]) -> tuple[Any, str]:
        reach = {"normal": normal_max_abs(np.dtype(np.float64)), "uniform": 3**0.5,
                 "truncated_normal": 2 / TRUNCATED_NORMAL_STD}[distribution]
        return std(dims) * reach, options

    @initializer(name, dtype=dtype, check=layout, bound=bound,
                 cache_key=None if is_traced(scale) else ("variance_scaling", scale, mode,
                                                         distribution, written))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        fan_in, fan_out = fans(shape)
        variance = scale / _denominator(mode, fan_in, fan_out)
        if is_traced(variance):
            in_dtype = jnp.asarray(variance, dtype)
            return _sample(key, shape, dtype, distribution, lambda c: jnp.sqrt(c * in_dtype))
        real = np.dtype(real_dtype(dtype)).type
        if variance > largest_finite(dtype):
            # The std fits the dtype (the bound checked it) but the variance does not:
            # take square roots in float64 first.
            return _sample(key, shape, dtype, distribution,
                           lambda c: real((c * variance) ** 0.5))
        # As JAX does it eagerly: the variance rounded to the dtype, then IEEE operations in
        # the dtype -- done here with numpy scalars, so that no program is left with
        # arithmetic on constants for XLA to rewrite (x / c as x * (1/c)) in some programs.
        return _sample(key, shape, dtype, distribution,
                       lambda c: np.sqrt(real(c) * real(variance)))

    return init


def _sample(key: Array, shape: tuple[int, ...], dtype: np.dtype, distribution: str,
            root: Callable[[float], Array]) -> Array:
    """Draws ``distribution`` with variance σ²; ``root(c)`` is ``sqrt(c·σ²)`` (a real scalar)."""
    if distribution == "truncated_normal":
        correction = COMPLEX_TRUNCATED_NORMAL_STD if is_complex(dtype) else TRUNCATED_NORMAL_STD
        root_1 = root(1)
        stddev = root_1 / type(root_1)(correction) if isinstance(root_1, np.generic) else \
            root_1 / jnp.asarray(correction, root_1.dtype)
        if is_complex(dtype):
            return scale_samples(_complex_truncated_normal(key, shape, dtype), stddev)
        bound = runtime_value(2, dtype)
        return draws.truncated_normal(key, -bound, bound, shape, dtype, factor=stddev)
    if distribution == "normal":
        return draws.normal(key, shape, dtype, factor=root(1))
    if is_complex(dtype):
        return scale_samples(_complex_uniform_disk(key, shape, dtype), root(1))
    return draws.uniform(key, shape, dtype, -1, factor=root(3))


def _denominator(mode: str, fan_in: float, fan_out: float) -> float:
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    if mode == "fan_avg":
        return (fan_in + fan_out) / 2
    return (fan_in * fan_out) ** 0.5


def variance_scaling(
    scale: float,
    mode: str,
    distribution: str,
    in_axis: AxisLike = -2,
    out_axis: AxisLike = -1,
    batch_axis: AxisLike = (),
    dtype: DTypeLike | None = None,
) -> Initializer:
    r"""Builds an initializer whose variance adapts to the weight's fans.

    Every entry has mean 0 and variance :math:`\sigma^2 = \mathrm{scale} / n`, where
    ``n`` is ``fan_in``, ``fan_out``, ``(fan_in + fan_out) / 2`` (``"fan_avg"``)
    or ``sqrt(fan_in * fan_out)`` (``"fan_geo_avg"``), with fans from
    :func:`jaxinit.compute_fans` (``batch_axis`` axes count for neither).

    Distributions:

    * ``"normal"``: N(0, σ²).
    * ``"truncated_normal"``: N(0, 1) truncated to (−2, 2), scaled by
      ``σ / 0.87962566103423978`` (the truncated std) so the std is exactly σ.
      Complex: modulus truncated at 2, corrected by
      :data:`COMPLEX_TRUNCATED_NORMAL_STD` (= sqrt(1 − 4/(e⁴−1)) ≈ 0.961962;
      this differs from JAX, whose constant leaves the variance 1.87% high).
    * ``"uniform"``: U(−√(3σ²), √(3σ²)); complex: uniform on a disk.

    Derivation (LeCun et al. 1998; Glorot & Bengio 2010): for
    ``s = Σᵢ wᵢ xᵢ`` with independent zero-mean terms,
    ``Var(s) = fan_in · Var(w) · Var(x)``, so ``Var(w) = 1/fan_in`` keeps the
    forward variance; ``1/fan_out`` keeps the backward one.

    Axis groups that overlap are accepted with JAX's arithmetic (see ``_fans``):
    Flax's ``nn.Embed`` uses ``out_axis=0`` with the default ``in_axis=-2``.

    Args:
      scale: the variance multiplier, > 0 (a gain ``g`` is ``scale = g²``).
      mode: ``"fan_in"``, ``"fan_out"``, ``"fan_avg"`` or ``"fan_geo_avg"``.
      distribution: ``"truncated_normal"``, ``"normal"`` or ``"uniform"``.
      in_axis: axis or axes of the inputs.
      out_axis: axis or axes of the outputs.
      batch_axis: axis or axes ignored by the fans (stacked independent weights).
      dtype: the initializer's default dtype.

    Example:
      >>> import jax, jaxinit
      >>> init = jaxinit.variance_scaling(2.0, "fan_in", "normal")
      >>> w = init(jax.random.key(0), (512, 256))
      >>> bool(abs(w.std() - (2 / 512) ** 0.5) < 0.001)
      True
    """
    return _variance_scaling("jaxinit.variance_scaling", scale, mode, distribution, in_axis,
                             out_axis, batch_axis, dtype, options=f"scale={scale!r}")


def _gain_scale(name: str, gain: float) -> float:
    gain = check_real(name, "gain", gain, positive=True)
    scale = gain * gain
    if not 0 < scale < math.inf:
        raise ValueError(f"{name}: gain={gain!r} is out of range: gain² is not a positive "
                         "finite float; accepted: 1e-150 < gain < 1e150.")
    return scale


def glorot_uniform(in_axis: AxisLike = -2, out_axis: AxisLike = -1, batch_axis: AxisLike = (),
                   dtype: DTypeLike | None = None, *, gain: float = 1.0) -> Initializer:
    """Builds a Glorot (Xavier) uniform initializer: U(±gain·√(6 / (fan_in + fan_out))).

    The normalized initialization of Glorot & Bengio (2010) for tanh units;
    ``gain=4`` is the sigmoid variant of the Deep Learning Tutorials, and
    ``gain=jaxinit.calculate_gain(...)`` gives the PyTorch convention.
    ``variance_scaling(gain², "fan_avg", "uniform")``.

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.glorot_uniform()(jax.random.key(0), (300, 300))
      >>> bool(abs(w).max() <= (6 / 600) ** 0.5)
      True
    """
    name = "jaxinit.glorot_uniform"
    return _variance_scaling(name, _gain_scale(name, gain), "fan_avg", "uniform", in_axis,
                             out_axis, batch_axis, dtype, options=f"gain={gain!r}")


def glorot_normal(in_axis: AxisLike = -2, out_axis: AxisLike = -1, batch_axis: AxisLike = (),
                  dtype: DTypeLike | None = None, *, gain: float = 1.0) -> Initializer:
    """Builds a Glorot (Xavier) normal initializer: std gain·√(2 / (fan_in + fan_out)).

    Truncated at two standard deviations and std-corrected, as in JAX:
    ``variance_scaling(gain², "fan_avg", "truncated_normal")`` (Glorot & Bengio 2010).

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.glorot_normal()(jax.random.key(0), (400, 400))
      >>> bool(abs(w.std() - (2 / 800) ** 0.5) < 0.001)
      True
    """
    name = "jaxinit.glorot_normal"
    return _variance_scaling(name, _gain_scale(name, gain), "fan_avg", "truncated_normal",
                             in_axis, out_axis, batch_axis, dtype, options=f"gain={gain!r}")


def _he_scale(name: str, negative_slope: float) -> float:
    slope = check_real(name, "negative_slope", negative_slope)
    scale = 2.0 / (1.0 + slope * slope)
    if not scale > 0:
        raise ValueError(f"{name}: negative_slope={negative_slope!r} is out of range: the "
                         "variance 2/(1 + a²) underflows to 0; accepted: |a| < 1e150.")
    return scale


def he_uniform(in_axis: AxisLike = -2, out_axis: AxisLike = -1, batch_axis: AxisLike = (),
               dtype: DTypeLike | None = None, *, negative_slope: float = 0.0) -> Initializer:
    """Builds a He (Kaiming) uniform initializer: U(±√(6 / ((1 + a²)·fan_in))).

    He et al. (2015): variance ``2 / ((1 + a²) fan_in)`` keeps the forward
    signal of ReLU (a = 0) and leaky ReLU/PReLU (slope a) nets constant with depth.

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.he_uniform()(jax.random.key(0), (600, 100))
      >>> bool(abs(w).max() <= (6 / 600) ** 0.5)
      True
    """
    name = "jaxinit.he_uniform"
    return _variance_scaling(name, _he_scale(name, negative_slope), "fan_in", "uniform",
                             in_axis, out_axis, batch_axis, dtype,
                             options=f"negative_slope={negative_slope!r}")


def he_normal(in_axis: AxisLike = -2, out_axis: AxisLike = -1, batch_axis: AxisLike = (),
              dtype: DTypeLike | None = None, *, negative_slope: float = 0.0) -> Initializer:
    """Builds a He (Kaiming) normal initializer: std √(2 / ((1 + a²)·fan_in)).

    ``randn(n) * sqrt(2 / n)`` for ReLU (He et al. 2015); truncated
    and std-corrected as in JAX. For a conv kernel ``(kh, kw, c_in, c_out)``
    the std is ``√(2 / (kh·kw·c_in))``.

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.he_normal()(jax.random.key(0), (3, 3, 64, 64))
      >>> bool(abs(w.std() - (2 / 576) ** 0.5) < 0.001)
      True
    """
    name = "jaxinit.he_normal"
    return _variance_scaling(name, _he_scale(name, negative_slope), "fan_in", "truncated_normal",
                             in_axis, out_axis, batch_axis, dtype,
                             options=f"negative_slope={negative_slope!r}")


def lecun_uniform(in_axis: AxisLike = -2, out_axis: AxisLike = -1, batch_axis: AxisLike = (),
                  dtype: DTypeLike | None = None) -> Initializer:
    """Builds a LeCun uniform initializer: U(±√(3 / fan_in)), variance 1/fan_in.

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.lecun_uniform()(jax.random.key(0), (300, 10))
      >>> bool(abs(w).max() <= 0.1)
      True
    """
    return _variance_scaling("jaxinit.lecun_uniform", 1.0, "fan_in", "uniform", in_axis,
                             out_axis, batch_axis, dtype, options="the shape")


def lecun_normal(in_axis: AxisLike = -2, out_axis: AxisLike = -1, batch_axis: AxisLike = (),
                 dtype: DTypeLike | None = None) -> Initializer:
    """Builds a LeCun normal initializer: std 1/√fan_in -- ``randn(n) / sqrt(n)``.

    LeCun et al. (1998), "Efficient BackProp"; truncated and std-corrected as in JAX.

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.lecun_normal()(jax.random.key(0), (400, 400))
      >>> bool(abs(w.std() - 0.05) < 0.001)
      True
    """
    return _variance_scaling("jaxinit.lecun_normal", 1.0, "fan_in", "truncated_normal", in_axis,
                             out_axis, batch_axis, dtype, options="the shape")


xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
kaiming_uniform = he_uniform
kaiming_normal = he_normal
