"""The initializer contract: the `Initializer` protocol and the checks every scheme shares.

An initializer is a pure function ``init(key, shape, dtype=None, out_sharding=None)``
returning a ``jax.Array`` -- the protocol of ``jax.nn.initializers`` -- so any
jaxinit initializer plugs into Flax ``kernel_init``/``bias_init``.

The helpers here turn user arguments into canonical values or raise an error
that names the initializer, the argument, the value given and what is accepted.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

Array: TypeAlias = jax.Array
ArrayLike: TypeAlias = jax.typing.ArrayLike
DTypeLike: TypeAlias = Any
Shape: TypeAlias = Sequence[int]
OutSharding: TypeAlias = NamedSharding | PartitionSpec | None
AxisLike: TypeAlias = int | Sequence[int]

__all__ = [
    "Array",
    "ArrayLike",
    "AxisLike",
    "DTypeLike",
    "Initializer",
    "OutSharding",
    "Shape",
]


@runtime_checkable
class Initializer(Protocol):
    """A pure function from a key, a shape and a dtype to an array.

    Same protocol as ``jax.nn.initializers.Initializer``: same key, shape and
    dtype always give the same array, eager or under ``jax.jit``.
    """

    def __call__(
        self,
        key: Array,
        shape: Shape,
        dtype: DTypeLike | None = None,
        out_sharding: OutSharding = None,
    ) -> Array: ...


def resolve_dtype(name: str, dtype: DTypeLike | None, *, allow_complex: bool = True) -> np.dtype:
    """Returns the canonical dtype an initializer produces, or raises ``TypeError``.

    ``None`` means JAX's default float dtype (float32, or float64 with x64).
    Integer and boolean dtypes are refused: an integer weight cannot carry a
    variance-scaled distribution.
    """
    if dtype is None:
        return np.dtype(jnp.zeros((), dtype=float).dtype)
    try:
        canonical = np.dtype(jax.dtypes.canonicalize_dtype(dtype))
    except TypeError as err:
        raise TypeError(f"{name}: dtype={dtype!r} is not a dtype.") from err
    accepted = "a floating dtype (e.g. float32, bfloat16)" + (
        " or a complex dtype (complex64, complex128)" if allow_complex else ""
    )
    if jnp.issubdtype(canonical, jnp.floating):
        return canonical
    if allow_complex and jnp.issubdtype(canonical, jnp.complexfloating):
        return canonical
    raise TypeError(f"{name}: dtype={canonical.name} is not supported; accepted: {accepted}.")


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype to sample and compute in: float32 for floats narrower than 32 bits.

    bfloat16/float16/float8 samples drawn natively have only a few mantissa
    bits, which biases variances and breaks orthogonality; computing in float32
    and casting once at the end keeps both to the precision of the target.
    """
    if jnp.issubdtype(dtype, jnp.floating) and dtype.itemsize < 4:
        return np.dtype(np.float32)
    return dtype


def real_dtype(dtype: np.dtype) -> np.dtype:
    """The real counterpart of a complex dtype (identity for real dtypes)."""
    return np.dtype(np.zeros((), dtype).real.dtype)


def is_complex(dtype: np.dtype) -> bool:
    return bool(jnp.issubdtype(dtype, jnp.complexfloating))


def check_shape(name: str, shape: Shape, *, min_rank: int = 0) -> tuple[int, ...]:
    """Returns ``shape`` as a tuple of non-negative ints, or raises ``ValueError``."""
    try:
        dims = tuple(operator.index(d) for d in shape)
    except TypeError as err:
        raise TypeError(
            f"{name}: shape={shape!r} must be a sequence of non-negative ints."
        ) from err
    if any(d < 0 for d in dims):
        raise ValueError(
            f"{name}: shape={dims} has a negative dimension; accepted: non-negative ints."
        )
    if len(dims) < min_rank:
        raise ValueError(
            f"{name}: shape={dims} has rank {len(dims)}; this initializer needs rank >= {min_rank}."
        )
    return dims


def normalize_axes(name: str, arg_name: str, axes: AxisLike, ndim: int) -> tuple[int, ...]:
    """Returns ``axes`` (an int or a sequence of ints) as non-negative axes.

    Raises ``ValueError`` for an axis outside ``[-ndim, ndim)`` or a repeated axis.
    """
    if isinstance(axes, numbers.Integral):
        items: tuple[object, ...] = (axes,)
    elif isinstance(axes, Sequence) and not isinstance(axes, str):
        items = tuple(axes)
    else:
        raise TypeError(f"{name}: {arg_name}={axes!r} must be an int or a sequence of ints.")
    out = []
    for axis in items:
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"{name}: {arg_name}={axes!r} must be an int or a sequence of ints.")
        axis = int(axis)
        if not -ndim <= axis < ndim:
            raise ValueError(
                f"{name}: {arg_name}={axes!r} is out of range for a rank-{ndim} shape; "
                f"accepted: axes in [{-ndim}, {ndim})."
            )
        out.append(axis % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: {arg_name}={axes!r} repeats an axis.")
    return tuple(out)


def check_disjoint(name: str, **axes: tuple[int, ...]) -> None:
    """Raises ``ValueError`` if two of the named (normalized) axis groups share an axis."""
    seen: dict[int, str] = {}
    for arg_name, group in axes.items():
        for axis in group:
            if axis in seen:
                raise ValueError(
                    f"{name}: {seen[axis]} and {arg_name} both contain axis {axis}; "
                    "they must be disjoint."
                )
            seen[axis] = arg_name


def check_key(name: str, key: Any) -> None:
    """Raises ``TypeError`` unless ``key`` is a typed key or a legacy uint32 key array."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and (
        jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) or dtype == np.uint32
    ):
        return
    raise TypeError(
        f"{name}: key={key!r} is not a PRNG key; accepted: jax.random.key(seed) "
        "or jax.random.PRNGKey(seed)."
    )


def check_real_scalar(
    name: str, arg_name: str, value: Any, *, positive: bool = False, nonnegative: bool = False
) -> float:
    """Returns ``value`` as a finite Python float, or raises."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real | np.ndarray | jax.Array):
        raise TypeError(f"{name}: {arg_name}={value!r} must be a real number.")
    if isinstance(value, np.ndarray | jax.Array):
        if np.ndim(value) != 0 or not jnp.issubdtype(value.dtype, jnp.number):
            raise TypeError(f"{name}: {arg_name}={value!r} must be a real scalar.")
        if isinstance(value, jax.core.Tracer):
            return value  # type: ignore[return-value]  # traced options are checked by the caller
    as_float = float(value)
    if not math.isfinite(as_float):
        raise ValueError(f"{name}: {arg_name}={value!r} must be finite.")
    if positive and not as_float > 0:
        raise ValueError(f"{name}: {arg_name}={value!r} must be > 0.")
    if nonnegative and not as_float >= 0:
        raise ValueError(f"{name}: {arg_name}={value!r} must be >= 0.")
    return as_float


def check_choice(name: str, arg_name: str, value: Any, choices: Sequence[str]) -> str:
    """Returns ``value`` if it is one of ``choices``, else raises ``ValueError``."""
    if value not in choices:
        raise ValueError(
            f"{name}: {arg_name}={value!r} is not supported; accepted: "
            + ", ".join(repr(c) for c in choices)
            + "."
        )
    return value


def empty(shape: tuple[int, ...], dtype: np.dtype, out_sharding: OutSharding) -> Array:
    """The result for a zero-size shape: nothing to sample."""
    return jnp.zeros(shape, dtype, out_sharding=out_sharding)
