"""Variance scaling: Glorot/Xavier, He/Kaiming and LeCun.

Each weight is drawn with variance ``sigma² = scale / n`` where ``n`` is a fan
of the weight's shape (see :func:`jaxinit.compute_fans`). For the same key,
shape and float32/float64 dtype the values equal ``jax.nn.initializers``'.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxinit.core import (
    Array,
    AxisLike,
    DTypeLike,
    Initializer,
    OutSharding,
    Shape,
    check_choice,
    check_key,
    check_real_scalar,
    check_shape,
    compute_dtype,
    empty,
    is_complex,
    real_dtype,
    resolve_dtype,
)
from jaxinit.fans import fan_axes
from jaxinit.sharding import shardable

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
    r = jnp.sqrt(2 * jax.random.uniform(key_r, shape, rdt))
    u = jax.random.uniform(key_theta, shape, rdt)
    return r.astype(dtype) * jnp.exp(1j * (2 * np.pi * u.astype(dtype)))


def _complex_truncated_normal(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
    """Complex normal with E|z|² = 1 before truncation, modulus truncated at 2.

    |z|² is Exp(1) restricted to (0, 4), drawn by inverting its CDF; the phase
    is uniform. Same sampler as JAX, so only the std correction differs.
    """
    key_r, key_theta = jax.random.split(key)
    rdt = real_dtype(dtype)
    t = -jnp.expm1(jnp.array(-4.0, rdt)) * jax.random.uniform(key_r, shape, rdt)
    r = jnp.sqrt(-jnp.log1p(-t))
    u = jax.random.uniform(key_theta, shape, rdt)
    return r.astype(dtype) * jnp.exp(1j * (2 * np.pi * u.astype(dtype)))


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
    name = "jaxinit.variance_scaling"
    scale = check_real_scalar(name, "scale", scale, positive=True)
    check_choice(name, "mode", mode, MODES)
    check_choice(name, "distribution", distribution, DISTRIBUTIONS)
    default_dtype = dtype

    @shardable(name)
    def init(key: Array, shape: Shape, dtype: DTypeLike | None = default_dtype,
             out_sharding: OutSharding = None) -> Array:  # handled by @shardable
        check_key(name, key)
        dims = check_shape(name, shape)
        out_dtype = resolve_dtype(name, dtype)
        cdt = compute_dtype(out_dtype)
        ins, outs, _, receptive = fan_axes(name, dims, in_axis, out_axis, batch_axis)
        if 0 in dims:
            return empty(dims, out_dtype, None)
        receptive_size = math.prod(dims[a] for a in receptive)
        fan_in = math.prod(dims[a] for a in ins) * receptive_size
        fan_out = math.prod(dims[a] for a in outs) * receptive_size
        denominator = {
            "fan_in": fan_in,
            "fan_out": fan_out,
            "fan_avg": (fan_in + fan_out) / 2,
            "fan_geo_avg": (fan_in * fan_out) ** 0.5,
        }[mode]
        variance = jnp.array(scale / denominator, dtype=cdt)
        complex_out = is_complex(cdt)
        if distribution == "truncated_normal":
            if complex_out:
                std = jnp.sqrt(variance) / jnp.array(COMPLEX_TRUNCATED_NORMAL_STD, cdt)
                w = _complex_truncated_normal(key, dims, cdt) * std
            else:
                std = jnp.sqrt(variance) / jnp.array(TRUNCATED_NORMAL_STD, cdt)
                w = jax.random.truncated_normal(key, -2, 2, dims, cdt) * std
        elif distribution == "normal":
            w = jax.random.normal(key, dims, cdt) * jnp.sqrt(variance)
        elif complex_out:
            w = _complex_uniform_disk(key, dims, cdt) * jnp.sqrt(variance)
        else:
            w = jax.random.uniform(key, dims, cdt, -1) * jnp.sqrt(3 * variance)
        return w.astype(out_dtype)

    return init


def _gain_scale(name: str, gain: float) -> float:
    return check_real_scalar(name, "gain", gain, positive=True) ** 2


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
    return variance_scaling(_gain_scale("jaxinit.glorot_uniform", gain), "fan_avg", "uniform",
                            in_axis, out_axis, batch_axis, dtype)


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
    return variance_scaling(_gain_scale("jaxinit.glorot_normal", gain), "fan_avg",
                            "truncated_normal", in_axis, out_axis, batch_axis, dtype)


def _he_scale(name: str, negative_slope: float) -> float:
    slope = check_real_scalar(name, "negative_slope", negative_slope)
    return 2.0 / (1.0 + slope**2)


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
    return variance_scaling(_he_scale(name, negative_slope), "fan_in", "uniform",
                            in_axis, out_axis, batch_axis, dtype)


def he_normal(in_axis: AxisLike = -2, out_axis: AxisLike = -1, batch_axis: AxisLike = (),
              dtype: DTypeLike | None = None, *, negative_slope: float = 0.0) -> Initializer:
    """Builds a He (Kaiming) normal initializer: std √(2 / ((1 + a²)·fan_in)).

    The seeds' ``randn(n) * sqrt(2 / n)`` for ReLU (He et al. 2015); truncated
    and std-corrected as in JAX. For a conv kernel ``(kh, kw, c_in, c_out)``
    the std is ``√(2 / (kh·kw·c_in))``.

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.he_normal()(jax.random.key(0), (3, 3, 64, 64))
      >>> bool(abs(w.std() - (2 / 576) ** 0.5) < 0.001)
      True
    """
    name = "jaxinit.he_normal"
    return variance_scaling(_he_scale(name, negative_slope), "fan_in", "truncated_normal",
                            in_axis, out_axis, batch_axis, dtype)


def lecun_uniform(in_axis: AxisLike = -2, out_axis: AxisLike = -1, batch_axis: AxisLike = (),
                  dtype: DTypeLike | None = None) -> Initializer:
    """Builds a LeCun uniform initializer: U(±√(3 / fan_in)), variance 1/fan_in.

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.lecun_uniform()(jax.random.key(0), (300, 10))
      >>> bool(abs(w).max() <= 0.1)
      True
    """
    return variance_scaling(1.0, "fan_in", "uniform", in_axis, out_axis, batch_axis, dtype)


def lecun_normal(in_axis: AxisLike = -2, out_axis: AxisLike = -1, batch_axis: AxisLike = (),
                 dtype: DTypeLike | None = None) -> Initializer:
    """Builds a LeCun normal initializer: std 1/√fan_in -- the seeds' ``randn(n) / sqrt(n)``.

    LeCun et al. (1998), "Efficient BackProp"; truncated and std-corrected as in JAX.

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.lecun_normal()(jax.random.key(0), (400, 400))
      >>> bool(abs(w.std() - 0.05) < 0.001)
      True
    """
    return variance_scaling(1.0, "fan_in", "truncated_normal", in_axis, out_axis, batch_axis,
                            dtype)


xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
kaiming_uniform = he_uniform
kaiming_normal = he_normal
