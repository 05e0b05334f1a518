"""PyTorch's ``torch.nn.init`` schemes as jaxinit initializers: names, defaults and laws.

Each function is a factory named after ``torch.nn.init``'s in-place function
(without the trailing underscore) with the same options and defaults; it
returns an initializer ``init(key, shape, dtype=None, out_sharding=None)``.
The values follow the same distribution as PyTorch's for the same shape
(not the same random stream: keys are JAX's).

Layout: like PyTorch, the schemes that read fans or axes read the shape as
``(out, in, *kernel)`` (``fan_in = in · prod(kernel)``, ``fan_out = out ·
prod(kernel)``): the layout of PyTorch and Equinox weights. Their ``layout``
attribute is ``"torch"``, so :func:`jaxinit.reinit` applies them correctly to
Flax-layout trees too (``layout="flax"``, the weight is drawn as
``(out, in, *k)`` and transposed), and :func:`jaxinit.layout.for_layout`
turns one into a Flax ``kernel_init``::

    nn.Dense(64, kernel_init=for_layout(jaxinit.torch.kaiming_uniform(a=5 ** 0.5), "flax"))

:func:`linear_default` gives the rules of PyTorch's default ``nn.Linear`` and
``nn.Conv*`` init for :func:`jaxinit.reinit`. Facts from PyTorch's
``torch/nn/init.py`` and ``torch/nn/modules/{linear,conv}.py`` (2.x).

Differences, all stricter: an option PyTorch would ignore or turn into a
degenerate draw (a negative slope ``a != 0`` with ``nonlinearity="relu"``,
``std <= 0``, ``a >= b``, a sparsity that zeroes whole columns) is an error.
16-bit dtypes are sampled in float32 and cast once.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxinit import draws
from jaxinit.constant import filled
from jaxinit.contract import initializer, scale_samples
from jaxinit.core import (
    Array,
    DTypeLike,
    Initializer,
    check_choice,
    check_int,
    check_real,
    normal_max_abs,
)
from jaxinit.distributions import _uniform_range, normal_named, truncated_standard_normal
from jaxinit.layout import with_layout
from jaxinit.orthogonal import orthogonal as _orthogonal
from jaxinit.reinit import FromSibling, from_sibling
from jaxinit.sparse import sparse as _sparse

__all__ = [
    "GAINS",
    "calculate_gain",
    "constant",
    "dirac",
    "eye",
    "fans",
    "kaiming_normal",
    "kaiming_uniform",
    "linear_default",
    "normal",
    "ones",
    "orthogonal",
    "sparse",
    "trunc_normal",
    "uniform",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]

_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
           "conv_transpose3d")

#: ``torch.nn.init.calculate_gain``'s table; ``leaky_relu`` takes the negative slope.
GAINS: dict[str, Any] = {
    **{name: 1.0 for name in (*_LINEAR, "sigmoid")},
    "tanh": 5.0 / 3.0,
    "relu": math.sqrt(2.0),
    "leaky_relu": lambda slope: math.sqrt(2.0 / (1.0 + slope * slope)),
    "selu": 3.0 / 4.0,
}


def _name(function: str) -> str:
    return f"jaxinit.torch.{function}"


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Returns PyTorch's recommended gain for a nonlinearity (``torch.nn.init.calculate_gain``).

    ============================================  ==============================================
    nonlinearity                                  gain
    ============================================  ==============================================
    linear, conv{1,2,3}d, conv_transpose{1,2,3}d  1
    sigmoid                                       1
    tanh                                          5/3
    relu                                          sqrt(2)
    leaky_relu                                    sqrt(2 / (1 + param²)), param default 0.01
    selu                                          3/4
    ============================================  ==============================================

    ``param`` is the negative slope of ``leaky_relu`` (an int or float, not a
    bool); PyTorch ignores it for the other names, here it is an error.

    Example:
      >>> import jaxinit.torch
      >>> round(jaxinit.torch.calculate_gain("leaky_relu", 5 ** 0.5), 6)  # sqrt(1/3)
      0.57735
    """
    name = _name("calculate_gain")
    check_choice(name, "nonlinearity", nonlinearity, tuple(GAINS))
    if nonlinearity != "leaky_relu":
        if param is not None:
            raise ValueError(f"{name}: param={param!r} is the negative slope of 'leaky_relu'; "
                             f"{nonlinearity!r} takes none.")
        return float(GAINS[nonlinearity])
    slope = 0.01 if param is None else check_real(name, "param", param)
    return float(GAINS["leaky_relu"](slope))


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """PyTorch's ``(fan_in, fan_out)`` of a weight ``(out, in, *kernel)``.

    ``fan_in = in · prod(kernel)``, ``fan_out = out · prod(kernel)``; rank >= 2.

    Example:
      >>> import jaxinit.torch
      >>> jaxinit.torch.fans((64, 3, 5, 5))
      (75, 1600)
    """
    return _fans(_name("fans"), tuple(shape))


def _fans(name: str, dims: tuple[int, ...]) -> tuple[int, int]:
    if len(dims) < 2:
        raise ValueError(f"{name}: shape={dims} has rank {len(dims)}; fans need rank >= 2, "
                         "read as (out, in, *kernel) as in PyTorch.")
    receptive = math.prod(dims[2:])
    return dims[1] * receptive, dims[0] * receptive


def _fan_scaled(name: str, std_of: Any, distribution: str, dtype: DTypeLike | None,
                options: str, cache_key: tuple[Any, ...]) -> Initializer:
    """Zero-mean ``distribution`` ("uniform" or "normal") with std ``std_of(fan_in, fan_out)``."""
    reach = math.sqrt(3.0) if distribution == "uniform" else normal_max_abs(np.dtype(np.float64))

    def std(dims: tuple[int, ...]) -> float:
        return float(std_of(*_fans(name, dims)))

    @initializer(name, dtype=dtype, allow_complex=False, check=lambda d: _fans(name, d),
                 bound=lambda d: (reach * std(d), options), cache_key=cache_key)
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        if distribution == "uniform":
            return draws.uniform(key, shape, dtype, -1.0, 1.0,
                                 factor=math.sqrt(3.0) * std(shape))
        return draws.normal(key, shape, dtype, factor=std(shape))

    return with_layout(init, "torch")


# ------------------------------------------------------------------------------ elementwise


def uniform(a: float = 0.0, b: float = 1.0, *, dtype: DTypeLike | None = None) -> Initializer:
    """Builds ``torch.nn.init.uniform_``: U(a, b).

    Example:
      >>> import jax, jaxinit.torch
      >>> w = jaxinit.torch.uniform(-0.1, 0.1)(jax.random.key(0), (1000,))
      >>> bool(w.min() >= -0.1 and w.max() < 0.1)
      True
    """
    name = _name("uniform")
    a = check_real(name, "a", a)
    b = check_real(name, "b", b)
    if not a < b:
        raise ValueError(f"{name}: a={a!r} must be < b={b!r} (for a constant use "
                         "jaxinit.torch.constant).")
    return with_layout(_uniform_range(name, a, b, dtype), None)


def normal(mean: float = 0.0, std: float = 1.0, *, dtype: DTypeLike | None = None
           ) -> Initializer:
    """Builds ``torch.nn.init.normal_``: N(mean, std²); PyTorch's default std is 1.

    Example:
      >>> import jax, jaxinit.torch
      >>> w = jaxinit.torch.normal(std=0.02)(jax.random.key(0), (256, 256))
      >>> round(float(w.std()), 3)
      0.02
    """
    name = _name("normal")
    mean = check_real(name, "mean", mean)
    std = check_real(name, "std", std, positive=True)
    return with_layout(normal_named(name, std, mean, dtype), None)


def trunc_normal(mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, *,
                 dtype: DTypeLike | None = None) -> Initializer:
    """Builds ``torch.nn.init.trunc_normal_``: N(mean, std²) conditioned on ``a <= w <= b``.

    ``a`` and ``b`` are absolute bounds, not multiples of ``std`` (unlike
    ``jaxinit.truncated_normal``): the ``trunc_normal_(std=.02)`` of ViT/timm
    code keeps PyTorch's default ``a=-2, b=2``, which truncates nothing in
    practice. ``std`` is the std of the normal before truncation. Sampled by
    inverting the CDF, exactly, also when ``[a, b]`` lies far in a tail of
    the normal (where PyTorch warns); values are clipped to ``[a, b]``
    against rounding.

    Example:
      >>> import jax, jaxinit.torch
      >>> w = jaxinit.torch.trunc_normal(mean=1.0, std=1.0, a=0.5, b=1.5)(
      ...     jax.random.key(0), (1000,))
      >>> bool(w.min() >= 0.5 and w.max() <= 1.5)
      True
    """
    name = _name("trunc_normal")
    mean = check_real(name, "mean", mean)
    std = check_real(name, "std", std, positive=True)
    a = check_real(name, "a", a)
    b = check_real(name, "b", b)
    if not a < b:
        raise ValueError(f"{name}: a={a!r} must be < b={b!r}.")
    lower, upper = (a - mean) / std, (b - mean) / std  # the bounds in standard units

    @initializer(name, dtype=dtype, allow_complex=False,
                 bound=lambda _: (max(abs(a), abs(b)), f"a={a!r}, b={b!r}"),
                 cache_key=("trunc_normal", mean, std, a, b))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        return _trunc_normal(key, mean, std, a, b, lower, upper, shape, dtype)

    return with_layout(init, None)


# One compiled program: the far-tail sampler's Newton steps run op by op when eager.
@functools.partial(jax.jit, static_argnums=tuple(range(1, 9)))
def _trunc_normal(key: Array, mean: float, std: float, a: float, b: float, lower: float,
                  upper: float, shape: tuple[int, ...], dtype: np.dtype) -> Array:
    z = truncated_standard_normal(key, lower, upper, shape, dtype)
    return jnp.clip(scale_samples(z, std) + jnp.asarray(mean, dtype), a, b)


def constant(val: float, *, dtype: DTypeLike | None = None) -> Initializer:
    """Builds ``torch.nn.init.constant_``: every entry ``val``.

    Example:
      >>> import jax, jaxinit.torch
      >>> jaxinit.torch.constant(0.5)(jax.random.key(0), (2,))
      Array([0.5, 0.5], dtype=float32)
    """
    return with_layout(filled(_name("constant"), val, dtype), None)


def ones(*, dtype: DTypeLike | None = None) -> Initializer:
    """Builds ``torch.nn.init.ones_``.

    Example:
      >>> import jax, jaxinit.torch
      >>> jaxinit.torch.ones()(jax.random.key(0), (2,))
      Array([1., 1.], dtype=float32)
    """
    return with_layout(filled(_name("ones"), 1.0, dtype), None)


def zeros(*, dtype: DTypeLike | None = None) -> Initializer:
    """Builds ``torch.nn.init.zeros_``.

    Example:
      >>> import jax, jaxinit.torch
      >>> jaxinit.torch.zeros()(jax.random.key(0), (2,))
      Array([0., 0.], dtype=float32)
    """
    return with_layout(filled(_name("zeros"), 0.0, dtype), None)


# ------------------------------------------------------------------------------ structured


def eye(*, dtype: DTypeLike | None = None) -> Initializer:
    """Builds ``torch.nn.init.eye_``: the ``(rows, cols)`` identity, ``W[i, i] = 1``; rank 2 only.

    Example:
      >>> import jax, jaxinit.torch
      >>> jaxinit.torch.eye()(jax.random.key(0), (2, 3)).tolist()
      [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    name = _name("eye")

    def check(dims: tuple[int, ...]) -> None:
        if len(dims) != 2:
            raise ValueError(f"{name}: shape={dims} has rank {len(dims)}; accepted: rank 2.")

    @initializer(name, dtype=dtype, random=False, check=check, in_output_dtype=True,
                 cache_key=("eye",))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        return jnp.eye(shape[0], shape[1], dtype=dtype)

    return with_layout(init, "torch")


def dirac(groups: int = 1, *, dtype: DTypeLike | None = None) -> Initializer:
    """Builds ``torch.nn.init.dirac_``: the identity convolution, per group.

    For a weight ``(out, in, *k)`` of rank 3, 4 or 5 with ``out`` divisible by
    ``groups``: ``p = out // groups`` output channels per group, and
    ``W[g·p + d, d, k₁//2, k₂//2, …] = 1`` for every group ``g`` and
    ``d < min(p, in)``, 0 elsewhere. The centre tap is ``k // 2`` as in
    PyTorch (``jaxinit.dirac``, for Flax's ``"SAME"`` padding, uses
    ``(k - 1) // 2``; they differ for even kernel sizes).

    Example:
      >>> import jax, jaxinit.torch
      >>> w = jaxinit.torch.dirac()(jax.random.key(0), (2, 2, 3))
      >>> w[:, :, 1].tolist()
      [[1.0, 0.0], [0.0, 1.0]]
    """
    name = _name("dirac")
    groups = check_int(name, "groups", groups, minimum=1)

    def check(dims: tuple[int, ...]) -> None:
        if len(dims) not in (3, 4, 5):
            raise ValueError(f"{name}: shape={dims} has rank {len(dims)}; accepted: rank 3, 4 "
                             "or 5, a convolution weight (out, in, *kernel).")
        if dims[0] % groups:
            raise ValueError(f"{name}: shape={dims} has {dims[0]} output channels (axis 0), "
                             f"not divisible by groups={groups}.")

    @initializer(name, dtype=dtype, random=False, check=check, in_output_dtype=True,
                 cache_key=("dirac", groups))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        per_group = shape[0] // groups
        out_in_group = lax.broadcasted_iota(jnp.int32, shape, 0) % per_group
        taps = out_in_group == lax.broadcasted_iota(jnp.int32, shape, 1)
        for axis in range(2, len(shape)):
            taps = taps & (lax.broadcasted_iota(jnp.int32, shape, axis) == shape[axis] // 2)
        return taps.astype(dtype)

    return with_layout(init, "torch")


def orthogonal(gain: float = 1.0, *, dtype: DTypeLike | None = None) -> Initializer:
    """Builds ``torch.nn.init.orthogonal_``: a Haar (semi-)orthogonal matrix times ``gain``.

    The weight ``(out, in, *k)`` is read as the matrix ``(out, in · prod(k))``:
    orthonormal rows if ``out <= in · prod(k)``, orthonormal columns
    otherwise (Saxe et al. 2014), Haar-distributed (QR of a Gaussian matrix
    with the sign correction, as PyTorch; drawn by :func:`jaxinit.orthogonal`).

    Example:
      >>> import jax, jax.numpy as jnp, jaxinit.torch
      >>> w = jaxinit.torch.orthogonal()(jax.random.key(0), (16, 4, 3, 3)).reshape(16, -1)
      >>> bool(jnp.allclose(w @ w.T, jnp.eye(16), atol=1e-5))
      True
    """
    name = _name("orthogonal")
    gain = check_real(name, "gain", gain)
    base = _orthogonal(gain, column_axis=0)  # columns: the out axis; rows: in and the kernel

    @initializer(name, dtype=dtype, min_rank=2, bound=lambda _: (abs(gain), f"gain={gain!r}"),
                 cache_key=("orthogonal", gain))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        return base(key, shape, dtype)

    return with_layout(init, "torch")


def sparse(sparsity: float, std: float = 0.01, *, dtype: DTypeLike | None = None
           ) -> Initializer:
    """Builds ``torch.nn.init.sparse_``: N(0, std²) with ``ceil(sparsity · rows)`` zeros per column.

    For a 2-D weight ``(rows, cols)`` = ``(out, in)``, every column gets
    exactly ``ceil(sparsity · rows)`` zeros at uniformly random rows,
    independently per column; the other entries are N(0, std²) (Martens
    2010). Note that PyTorch counts the zeros along dim 0, the outputs: each
    *input* keeps a fixed number of outgoing weights (``jaxinit.sparse``
    fixes the incoming ones). ``sparsity`` in [0, 1); a count that would zero
    a whole column is an error.

    Example:
      >>> import jax, jaxinit.torch
      >>> w = jaxinit.torch.sparse(0.9)(jax.random.key(0), (100, 30))
      >>> ((w == 0).sum(axis=0) == 90).all().item()
      True
    """
    name = _name("sparse")
    sparsity = check_real(name, "sparsity", sparsity)
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"{name}: sparsity={sparsity!r} is outside [0, 1).")
    std = check_real(name, "std", std, positive=True)
    base = normal_named(name, std, 0.0, None) if sparsity == 0 else _sparse(
        zero_fraction=sparsity, stddev=std, in_axis=0, out_axis=1)

    def check(dims: tuple[int, ...]) -> None:
        if len(dims) != 2:
            raise ValueError(f"{name}: shape={dims} has rank {len(dims)}; accepted: rank 2.")
        if dims[0] and math.ceil(sparsity * dims[0]) >= dims[0]:
            raise ValueError(f"{name}: sparsity={sparsity!r} zeroes all {dims[0]} rows of "
                             f"every column of shape={dims}.")

    @initializer(name, dtype=dtype, allow_complex=False, check=check,
                 bound=lambda _: (std * normal_max_abs(np.dtype(np.float64)), f"std={std!r}"),
                 cache_key=("sparse", sparsity, std))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        return base(key, shape, dtype)

    return with_layout(init, "torch")


# ------------------------------------------------------------------------------ fan-scaled


def _gain(name: str, gain: float) -> float:
    return check_real(name, "gain", gain, positive=True)


def xavier_uniform(gain: float = 1.0, *, dtype: DTypeLike | None = None) -> Initializer:
    """Builds ``torch.nn.init.xavier_uniform_``: U(±gain·sqrt(6 / (fan_in + fan_out))).

    Fans of ``(out, in, *k)`` (:func:`fans`); Glorot & Bengio (2010).

    Example:
      >>> import jax, jaxinit.torch
      >>> w = jaxinit.torch.xavier_uniform()(jax.random.key(0), (20, 10, 3))
      >>> bool(abs(w).max() <= (6 / 90) ** 0.5)
      True
    """
    name = _name("xavier_uniform")
    gain = _gain(name, gain)
    return _fan_scaled(name, lambda fi, fo: gain * math.sqrt(2.0 / (fi + fo)), "uniform", dtype,
                       f"gain={gain!r}", ("xavier_uniform", gain))


def xavier_normal(gain: float = 1.0, *, dtype: DTypeLike | None = None) -> Initializer:
    """Builds ``torch.nn.init.xavier_normal_``: N(0, gain² · 2 / (fan_in + fan_out)).

    A plain normal, not truncated (``jaxinit.glorot_normal``, like JAX's, is
    a truncated normal with the same std).

    Example:
      >>> import jax, jaxinit.torch
      >>> w = jaxinit.torch.xavier_normal()(jax.random.key(0), (400, 400))
      >>> round(float(w.std()), 3)  # sqrt(2 / 800)
      0.05
    """
    name = _name("xavier_normal")
    gain = _gain(name, gain)
    return _fan_scaled(name, lambda fi, fo: gain * math.sqrt(2.0 / (fi + fo)), "normal", dtype,
                       f"gain={gain!r}", ("xavier_normal", gain))


def _kaiming_std(name: str, a: float, mode: str, nonlinearity: str) -> Any:
    a = check_real(name, "a", a)
    check_choice(name, "mode", mode, ("fan_in", "fan_out"))
    check_choice(name, "nonlinearity", nonlinearity, tuple(GAINS))
    if nonlinearity == "leaky_relu":
        gain = calculate_gain("leaky_relu", a)
    elif a != 0:
        raise ValueError(f"{name}: a={a!r} is the negative slope of 'leaky_relu', but "
                         f"nonlinearity={nonlinearity!r} (PyTorch would ignore it); pass a=0 "
                         "or nonlinearity='leaky_relu'.")
    else:
        gain = calculate_gain(nonlinearity)
    index = 0 if mode == "fan_in" else 1
    return lambda fi, fo: gain / math.sqrt((fi, fo)[index]), \
        f"a={a!r}, mode={mode!r}, nonlinearity={nonlinearity!r}"


def kaiming_uniform(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", *,
                    dtype: DTypeLike | None = None) -> Initializer:
    """Builds ``torch.nn.init.kaiming_uniform_``: U(±gain·sqrt(3 / fan)).

    ``gain = calculate_gain(nonlinearity, a)``, ``fan`` the fan-in or fan-out
    of ``(out, in, *k)`` (He et al. 2015). The defaults ``a=0``,
    ``nonlinearity="leaky_relu"`` give gain sqrt(2); ``a=sqrt(5)`` gives
    U(±1/sqrt(fan_in)), PyTorch's default ``nn.Linear``/``nn.Conv*`` weight.

    Example:
      >>> import jax, jaxinit.torch
      >>> w = jaxinit.torch.kaiming_uniform(a=5 ** 0.5)(jax.random.key(0), (64, 100))
      >>> bool(abs(w).max() <= 0.1)
      True
    """
    name = _name("kaiming_uniform")
    std_of, options = _kaiming_std(name, a, mode, nonlinearity)
    return _fan_scaled(name, std_of, "uniform", dtype, options,
                       ("kaiming_uniform", a, mode, nonlinearity))


def kaiming_normal(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", *,
                   dtype: DTypeLike | None = None) -> Initializer:
    """Builds ``torch.nn.init.kaiming_normal_``: N(0, gain² / fan), not truncated.

    ``kaiming_normal(mode="fan_out", nonlinearity="relu")`` is torchvision's
    ResNet convolution init.

    Example:
      >>> import jax, jaxinit.torch
      >>> w = jaxinit.torch.kaiming_normal(mode="fan_out", nonlinearity="relu")(
      ...     jax.random.key(0), (64, 32, 3, 3))
      >>> round(float(w.std()), 3)  # sqrt(2 / (64 * 9))
      0.059
    """
    name = _name("kaiming_normal")
    std_of, options = _kaiming_std(name, a, mode, nonlinearity)
    return _fan_scaled(name, std_of, "normal", dtype, options,
                       ("kaiming_normal", a, mode, nonlinearity))


# ------------------------------------------------------------------------------ layer defaults


def _default_bias(weight_shape: tuple[int, ...]) -> Initializer:
    name = _name("linear_default")
    if len(weight_shape) < 2:
        raise ValueError(f"{name}: the sibling weight of shape {weight_shape} is not a linear "
                         "or convolution weight (rank < 2; a norm layer's?); exempt the layer "
                         "with an earlier rule mapping its paths to None.")
    fan_in = _fans(name, weight_shape)[0]
    if fan_in == 0:
        return with_layout(filled(name, 0.0, None), None)
    bound = 1.0 / math.sqrt(fan_in)
    return with_layout(_uniform_range(name, -bound, bound, None), None)


def linear_default(module: str | None = None) -> dict[str, Initializer | FromSibling]:
    r"""The :func:`jaxinit.reinit` rules of PyTorch's default ``nn.Linear``/``nn.Conv*`` init.

    PyTorch initializes these layers' weights with ``kaiming_uniform(a=sqrt(5))``,
    i.e. U(±1/sqrt(fan_in)), and their biases with U(±1/sqrt(fan_in)) where
    ``fan_in`` is the *weight's* (``in · prod(kernel)``; a zero fan-in gives
    zero biases). The rules match leaves named ``weight`` or ``kernel``
    (Equinox, PyTorch, Flax) and ``bias``, whose fan-in is read from the
    sibling ``weight``/``kernel``; they work for trees in either layout::

      jaxinit.reinit(key, eqx_model, jaxinit.torch.linear_default(), layout="torch")
      jaxinit.reinit(key, linen_variables, jaxinit.torch.linear_default())   # layout="flax"

    Norm layers (1-D ``weight``, or a ``bias`` without a weight sibling) are
    not linear layers: keep them with an earlier rule,
    ``{r".*norm.*": None, **linear_default()}``.

    Args:
      module: a regular expression for the paths of the layers to cover
        (``r"layers/\d+"``); default: every layer.

    Example:
      >>> import jax, jax.numpy as jnp, jaxinit, jaxinit.torch
      >>> params = {"fc": {"weight": jnp.zeros((10, 400)), "bias": jnp.zeros(10)}}
      >>> new = jaxinit.reinit(jax.random.key(0), params, jaxinit.torch.linear_default(),
      ...                      layout="torch")
      >>> bool(abs(new["fc"]["bias"]).max() <= 0.05)   # 1 / sqrt(400)
      True
    """
    if module is not None and not isinstance(module, str):
        raise TypeError(f"{_name('linear_default')}: module={module!r} must be a str (a "
                        "regular expression) or None.")
    prefix = r"(?:.*/)?" if module is None else f"(?:{module})/"
    return {
        prefix + "(?:weight|kernel)": kaiming_uniform(a=math.sqrt(5.0)),
        prefix + "bias": from_sibling(_default_bias, ("weight", "kernel"), layout="torch"),
    }
