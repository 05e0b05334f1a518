"""The initializer contract: the `Initializer` protocol and the checks every scheme shares.

An initializer is a pure function ``init(key, shape, dtype=None, out_sharding=None)``
returning a ``jax.Array`` -- the protocol of ``jax.nn.initializers`` -- so any
jaxinit initializer plugs into Flax ``kernel_init``/``bias_init``.

The helpers here turn user arguments into canonical values or raise an error
that names the initializer, the argument, the value given and what is accepted:
``TypeError`` for a value of the wrong kind, ``ValueError`` for a value of the
right kind outside what is accepted.
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

Array: TypeAlias = jax.Array
ArrayLike: TypeAlias = jax.typing.ArrayLike
DTypeLike: TypeAlias = Any
Shape: TypeAlias = Sequence[int] | int
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


# ------------------------------------------------------------------------------ numbers


def is_traced(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


def check_int(name: str, arg_name: str, value: Any, *, minimum: int | None = None) -> int:
    """Returns ``value`` as a Python int (numpy integers accepted; bools refused)."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        accepted = "an int" if minimum is None else f"an int >= {minimum}"
        raise TypeError(f"{name}: {arg_name}={value!r} must be {accepted}.")
    as_int = int(value)
    if minimum is not None and as_int < minimum:
        raise ValueError(f"{name}: {arg_name}={value!r} must be an int >= {minimum}.")
    return as_int


def runtime_check(condition: Any, message: str, *values: Any) -> None:
    """Raises ``ValueError(message.format(*values))`` when the program runs, if ``condition``
    is false anywhere.

    For options that are traced (an argument of the user's ``jax.jit``), whose
    values are known only when the program runs: the check is a host callback,
    so the error surfaces as a JAX runtime error carrying this message.
    """

    def check(ok: Any, *vals: Any) -> None:
        if not np.all(np.asarray(ok)):
            shown = [np.asarray(v).tolist() for v in vals]
            raise ValueError(message.format(*shown))

    jax.debug.callback(check, condition, *values)


def show(value: Any) -> str:
    """``repr(value)`` for messages, shortened (an int of 400 digits prints as ``1.000e+400``)."""
    text = repr(value)
    if len(text) <= 40:
        return text
    if isinstance(value, numbers.Integral):
        digits = str(abs(int(value)))
        return f"{'-' if value < 0 else ''}{digits[0]}.{digits[1:4]}e+{len(digits) - 1}"
    return text[:37] + "..."


def check_real(
    name: str,
    arg_name: str,
    value: Any,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    traced: bool = False,
) -> Any:
    """Returns ``value`` as a finite Python float, or raises.

    With ``traced=True`` a traced scalar (an option computed under the user's
    ``jax.jit``) is accepted and returned as is; its sign and finiteness are
    checked when the program runs (:func:`runtime_check`).
    """
    if isinstance(value, np.ndarray | jax.Array) and not isinstance(value, bool):
        if np.ndim(value) != 0:
            raise TypeError(
                f"{name}: {arg_name} has shape {np.shape(value)}; accepted: a real scalar."
            )
        if not (jnp.issubdtype(value.dtype, jnp.integer)
                or jnp.issubdtype(value.dtype, jnp.floating)):
            raise TypeError(f"{name}: {arg_name}={value!r} must be a real number, not "
                            f"{np.dtype(value.dtype).name}.")
        if is_traced(value):
            if not traced:
                raise TypeError(
                    f"{name}: {arg_name} is a traced value; accepted: a concrete number "
                    "(a Python or numpy scalar), since it decides the computation."
                )
            ok = jnp.isfinite(value)
            if positive:
                ok = ok & (value > 0)
            if nonnegative:
                ok = ok & (value >= 0)
            bound = " and > 0" if positive else " and >= 0" if nonnegative else ""
            runtime_check(ok, f"{name}: {arg_name}={{}} must be finite{bound}.", value)
            return value
    elif isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: {arg_name}={show(value)} must be a real number.")
    try:
        as_float = float(value)
    except OverflowError:
        as_float = math.inf
    if not math.isfinite(as_float):
        raise ValueError(f"{name}: {arg_name}={show(value)} must be finite (not NaN or inf) and "
                         "fit a float64.")
    if positive and not as_float > 0:
        raise ValueError(f"{name}: {arg_name}={show(value)} must be > 0.")
    if nonnegative and not as_float >= 0:
        raise ValueError(f"{name}: {arg_name}={show(value)} must be >= 0.")
    return as_float


def check_choice(name: str, arg_name: str, value: Any, choices: Sequence[str]) -> str:
    """Returns ``value`` if it is one of ``choices``, else raises ``ValueError``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{name}: {arg_name}={value!r} is not supported; accepted: "
            + ", ".join(repr(c) for c in choices)
            + "."
        )
    return value


def check_callable(name: str, arg_name: str, value: Any) -> Callable[..., Any]:
    if not callable(value):
        raise TypeError(
            f"{name}: {arg_name}={value!r} must be an initializer, a callable "
            "(key, shape, dtype) -> array."
        )
    return value


# ------------------------------------------------------------------------------ shapes, axes


def check_shape(name: str, shape: Any, *, min_rank: int = 0) -> tuple[int, ...]:
    """Returns ``shape`` (an int or a sequence of ints) as a tuple of non-negative ints."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool | np.bool_):
        shape = (shape,)
    try:
        if isinstance(shape, str) or any(isinstance(d, bool | np.bool_) for d in shape):
            raise TypeError
        dims = tuple(operator.index(d) for d in shape)
    except TypeError as err:
        raise TypeError(
            f"{name}: shape={shape!r} must be an int or a sequence of non-negative ints."
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


def check_axes(name: str, arg_name: str, axes: Any) -> tuple[int, ...]:
    """Checks an axis argument (an int or a sequence of ints) before the rank is known.

    Returns the axes as a tuple of ints; raises for other types and for an axis
    written twice. The range is checked by :func:`normalize_axes` once the rank
    is known.
    """
    items = (axes,) if isinstance(axes, numbers.Integral) else axes
    if isinstance(items, str) or not isinstance(items, Sequence):
        raise TypeError(f"{name}: {arg_name}={axes!r} must be an int or a sequence of ints.")
    for axis in items:
        if isinstance(axis, bool | np.bool_) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"{name}: {arg_name}={axes!r} must be an int or a sequence of ints.")
    out = tuple(int(a) for a in items)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: {arg_name}={axes!r} repeats an axis.")
    return out


def normalize_axes(name: str, arg_name: str, axes: AxisLike, ndim: int) -> tuple[int, ...]:
    """Returns ``axes`` (an int or a sequence of ints) as non-negative axes of a rank-``ndim``
    shape; raises ``ValueError`` for an axis outside ``[-ndim, ndim)`` or a repeated axis."""
    out = []
    for axis in check_axes(name, arg_name, axes):
        if not -ndim <= axis < ndim:
            raise ValueError(
                f"{name}: {arg_name}={axes!r} is out of range for a rank-{ndim} shape; "
                f"accepted: axes in [{-ndim}, {ndim})."
            )
        out.append(axis % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: {arg_name}={axes!r} names one axis twice for a rank-{ndim} "
                         "shape.")
    return tuple(out)


def check_disjoint(name: str, **axes: tuple[int, ...]) -> None:
    """Raises ``ValueError`` if two of the named axis groups share an axis."""
    seen: dict[int, str] = {}
    for arg_name, group in axes.items():
        for axis in group:
            if axis in seen:
                raise ValueError(
                    f"{name}: {seen[axis]} and {arg_name} both contain axis {axis}; "
                    "they must be disjoint."
                )
            seen[axis] = arg_name


# ------------------------------------------------------------------------------ keys


@functools.lru_cache(maxsize=8)
def _raw_key_shape(impl: str) -> tuple[int, ...]:
    del impl  # the cache key: the shape follows the configured implementation
    return tuple(jax.eval_shape(jax.random.PRNGKey, 0).shape)


def check_key(name: str, key: Any) -> None:
    """Raises ``TypeError`` unless ``key`` is one PRNG key: a typed key of shape ``()``
    or a legacy raw ``uint32`` key array of the configured implementation."""
    dtype = getattr(key, "dtype", None)
    shape = tuple(getattr(key, "shape", ()))
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        expected: tuple[int, ...] = ()
    elif dtype == np.uint32:
        expected = _raw_key_shape(str(jax.config.jax_default_prng_impl))  # type: ignore[attr-defined]
    else:
        raise TypeError(
            f"{name}: key={key!r} is not a PRNG key; accepted: jax.random.key(seed) "
            "or jax.random.PRNGKey(seed)."
        )
    if shape == expected:
        return
    if shape[len(shape) - len(expected):] == expected and len(shape) > len(expected):
        raise TypeError(
            f"{name}: key has shape {shape}, a batch of keys; accepted: a single key. For one "
            "array per key, map the initializer over the keys: "
            "jax.vmap(lambda k: init(k, shape))(keys)."
        )
    raise TypeError(
        f"{name}: key of dtype {dtype} has shape {shape}; accepted: a single key "
        f"(jax.random.key(seed), or raw uint32 key data of shape {expected})."
    )


# ------------------------------------------------------------------------------ dtypes


def default_float_dtype() -> np.dtype:
    """JAX's default float dtype: float32, or float64 with x64 enabled."""
    return np.dtype(jax.dtypes.canonicalize_dtype(float))


def resolve_dtype(name: str, dtype: DTypeLike | None, *, allow_complex: bool = True) -> np.dtype:
    """Returns the canonical dtype an initializer produces, or raises ``TypeError``.

    ``None`` means JAX's default float dtype. Integer and boolean dtypes are
    refused (an integer weight cannot carry a scaled distribution), and so are
    floating dtypes without a sign or a zero (float8_e8m0fnu). A 64-bit dtype
    without x64 becomes its 32-bit counterpart, with a warning as JAX gives.
    """
    if dtype is None:
        return default_float_dtype()
    try:
        requested = np.dtype(dtype)
        canonical = np.dtype(jax.dtypes.canonicalize_dtype(requested))
    except TypeError as err:
        raise TypeError(f"{name}: dtype={dtype!r} is not a dtype.") from err
    accepted = "a floating dtype (e.g. float32, bfloat16)" + (
        " or a complex dtype (complex64, complex128)" if allow_complex else ""
    )
    if jnp.issubdtype(canonical, jnp.floating):
        if float(jnp.finfo(canonical).min) >= 0:
            raise TypeError(
                f"{name}: dtype={canonical.name} cannot hold negative values or zero; "
                f"accepted: {accepted}."
            )
    elif not (allow_complex and jnp.issubdtype(canonical, jnp.complexfloating)):
        raise TypeError(f"{name}: dtype={canonical.name} is not supported; accepted: {accepted}.")
    if canonical != requested:
        warnings.warn(
            f"{name}: dtype={requested.name} is not available without x64 and is truncated to "
            f"{canonical.name}; enable it with jax.config.update('jax_enable_x64', True).",
            UserWarning,
            stacklevel=3,
        )
    return canonical


def check_dtype_option(name: str, dtype: DTypeLike | None, *, allow_complex: bool = True
                       ) -> DTypeLike | None:
    """Checks a factory's ``dtype=`` option now; returns it unchanged (``None`` stays ``None``,
    so that the default keeps following x64 at call time)."""
    if dtype is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # warned again when used
            resolve_dtype(name, dtype, allow_complex=allow_complex)
    return dtype


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


def largest_finite(dtype: np.dtype) -> float:
    """The largest finite magnitude of ``dtype`` (of its real part, for complex)."""
    return float(jnp.finfo(real_dtype(dtype)).max)


#: The largest |z| ``jax.random.normal`` can return in float32 (|z| <= 5.42) and float64
#: (<= 8.3): its uniform draw is at least one float32 (float64) step away from ±1.
NORMAL_MAX_ABS = {4: 5.5, 8: 8.5}


def normal_max_abs(dtype: np.dtype) -> float:
    return NORMAL_MAX_ABS[real_dtype(compute_dtype(dtype)).itemsize]


def check_magnitude(name: str, what: str, max_abs: Any, dtype: np.dtype) -> None:
    """Refuses options whose values would overflow ``dtype`` (inf, or NaN in float8).

    ``max_abs`` is the largest magnitude the scheme can produce; a traced one
    is checked when the program runs.
    """
    limit = largest_finite(dtype)
    if is_traced(max_abs):
        runtime_check(jnp.abs(max_abs) <= limit,
                      f"{name}: {what} reaches |w| = {{}}, which overflows {dtype.name} "
                      f"(largest finite {limit:g}).", max_abs)
        return
    if not float(max_abs) <= limit:
        raise ValueError(
            f"{name}: {what} reaches |w| = {float(max_abs):.4g}, which overflows "
            f"{dtype.name} (largest finite {limit:g}); accepted: options whose values fit "
            "the dtype, or a wider dtype."
        )
