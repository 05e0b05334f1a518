"""The one set-up step of every initializer: :func:`initializer` (and :func:`shardable`).

A scheme is written as a *sampler* ``sample(key, shape, dtype) -> Array``: it
may assume a single valid key, a shape of non-negative ints that its own
checks accepted, a non-empty array, and ``dtype`` the dtype to compute in
(float32 for 16-bit and float8 outputs). :func:`initializer` turns it into an
initializer with the protocol of ``jax.nn.initializers`` and owns everything
else, in this order:

1. the key, the shape (an int or a sequence) and the dtype are checked, with
   errors naming the factory the user called;
2. the scheme's shape checks run (``check``), then its overflow bound
   (``bound``): options whose values would not fit the dtype are refused;
3. a zero-size shape returns an empty array;
4. the sampler runs in the compute dtype and the result is cast once;
5. with ``out_sharding``, the computation is compiled with that output
   sharding (:func:`jaxinit.sharding.shard_output`), so each device makes
   its own shard and the values equal the unsharded ones.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Hashable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from jaxinit.core import (
    Array,
    DTypeLike,
    Initializer,
    OutSharding,
    Shape,
    check_callable,
    check_dtype_option,
    check_key,
    check_magnitude,
    check_shape,
    compute_dtype,
    resolve_dtype,
)
from jaxinit.sharding import check_out_sharding, shard_output, warn_if_not_partitionable

__all__ = [
    "Bound",
    "base_default_dtype",
    "initializer",
    "runtime_value",
    "scale_samples",
    "shardable",
]

#: ``bound(shape) -> (max_abs, options)``: the largest magnitude the scheme can produce for
#: a shape, and the options responsible, for the overflow error message.
Bound = Callable[[tuple[int, ...]], tuple[Any, str]]


def initializer(
    name: str,
    *,
    dtype: DTypeLike | None = None,
    random: bool = True,
    allow_complex: bool = True,
    min_rank: int = 0,
    check: Callable[[tuple[int, ...]], object] | None = None,
    bound: Bound | None = None,
    cache_key: Hashable | None = None,
    structured: bool = False,
    in_output_dtype: bool = False,
) -> Callable[[Callable[..., Array]], Initializer]:
    """Decorator: turns a sampler into a checked, shardable initializer.

    Args:
      name: what errors call the initializer: the public factory the user
        called, e.g. ``"jaxinit.he_normal"``.
      dtype: the factory's ``dtype=`` option (checked now), the default dtype.
      random: whether the scheme draws random numbers (a sharded draw warns
        when ``jax_threefry_partitionable`` is off).
      allow_complex: whether complex dtypes are accepted.
      min_rank: the smallest rank accepted.
      check: ``check(shape)`` raises for shapes the scheme cannot use.
      bound: see :data:`Bound`; ``None`` when values cannot overflow (e.g. orthogonal
        matrices times a checked scale).
      cache_key: a hashable summary of every option, when all are concrete:
        initializers with equal keys share their compiled sharded programs
        (a fresh factory with the same options does not recompile).
      structured: the sampler takes a fourth argument, the ``NamedSharding`` of
        the output (or ``None``), to lay out its intermediate results.
      in_output_dtype: the sampler gets the output dtype instead of the compute
        dtype (for values that are exact there, such as constants).
    """
    default_dtype = check_dtype_option(name, dtype, allow_complex=allow_complex)

    def decorate(sample: Callable[..., Array]) -> Initializer:
        token: Hashable = (name, cache_key) if cache_key is not None else sample
        compiled = not random and cache_key is not None

        def init(key: Array, shape: Shape, dtype: DTypeLike | None = default_dtype,
                 out_sharding: OutSharding = None) -> Array:
            check_key(name, key)
            dims = check_shape(name, shape, min_rank=min_rank)
            out_dtype = resolve_dtype(name, dtype, allow_complex=allow_complex)
            if check is not None:
                check(dims)
            sharding = check_out_sharding(name, dims, out_sharding)
            if math.prod(dims) == 0:
                return _empty(dims, out_dtype, sharding, key)
            if bound is not None:
                max_abs, options = bound(dims)
                check_magnitude(name, options, max_abs, out_dtype)
            compute = _computation(token, sample, structured, in_output_dtype, dims, out_dtype,
                                   sharding, compiled)
            if sharding is None:
                return compute(key)
            if random:
                warn_if_not_partitionable(name)
            return shard_output(compute, key, sharding)

        init.bound = bound  # type: ignore[attr-defined]  # for wrappers such as scaled()
        init.__name__ = init.__qualname__ = name.rpartition(".")[2]
        init.__doc__ = f"Initializer made by ``{name}``: ``init(key, shape, dtype, out_sharding)``."
        return init

    return decorate


def _computation(token: Hashable, sample: Callable[..., Array], structured: bool,
                 in_output_dtype: bool, dims: tuple[int, ...], out_dtype: np.dtype,
                 sharding: NamedSharding | None, compiled: bool) -> Callable[[Array], Array]:
    """The computation of one call; ``compiled``: jit it even without a sharding."""
    cdt = out_dtype if in_output_dtype else compute_dtype(out_dtype)
    if sharding is None and not compiled:
        return _bind(sample, structured, dims, cdt, out_dtype, None)
    # The same function object for the same token, shape, dtype and sharding lets JAX's
    # compilation cache hit on repeated (eager) calls. Sharded calls compile; so do
    # deterministic schemes with concrete options (identity, dirac, gate biases): run
    # eagerly, each of their operations would compile a program of its own.
    slot = _cached(token, structured, dims, cdt, out_dtype, sharding)
    if not slot:
        compute = _bind(sample, structured, dims, cdt, out_dtype, sharding)
        slot.append(compute if sharding is not None else jax.jit(compute))
    return slot[0]


def _bind(sample: Callable[..., Array], structured: bool, dims: tuple[int, ...],
          cdt: np.dtype, out_dtype: np.dtype, sharding: NamedSharding | None
          ) -> Callable[[Array], Array]:

    def compute(key: Array) -> Array:
        w = sample(key, dims, cdt, sharding) if structured else sample(key, dims, cdt)
        return jnp.asarray(w).astype(out_dtype)

    return compute


@functools.lru_cache(maxsize=512)
def _cached(token: Hashable, structured: bool, dims: tuple[int, ...], cdt: np.dtype,
            out_dtype: np.dtype, sharding: NamedSharding | None
            ) -> list[Callable[[Array], Array]]:
    del token, structured, dims, cdt, out_dtype, sharding  # the cache key
    return []


def _empty(dims: tuple[int, ...], dtype: np.dtype, sharding: NamedSharding | None,
           key: Array) -> Array:
    if sharding is None:
        return jnp.zeros(dims, dtype)
    return shard_output(lambda _: jnp.zeros(dims, dtype), key, sharding)


def base_default_dtype(init: Callable[..., Any]) -> DTypeLike | None:
    """The default of ``init``'s ``dtype`` parameter (``None`` when it has none)."""
    try:
        parameter = inspect.signature(init).parameters.get("dtype")
    except (TypeError, ValueError):
        return None
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    return parameter.default


def shardable(name: str, *, random: bool = True) -> Callable[[Callable[..., Array]], Initializer]:
    """Decorator: gives any initializer ``out_sharding``, in every setting.

    The wrapped initializer calls the original unchanged without
    ``out_sharding``; with it, it checks ``key``, ``shape`` and ``out_sharding``
    (errors name ``name``) and compiles the original's computation with that
    output sharding, so each device computes its own shard when the
    computation is elementwise (every random sampler) and the values are those
    of the unsharded call under ``jax.jit``::

      init = jaxinit.shardable("he_normal")(jax.nn.initializers.he_normal())
      w = init(key, (4096, 4096), out_sharding=NamedSharding(mesh, P("data")))

    A computation that mixes the sharded axis (e.g. the QR of one matrix split
    by rows) is still correct, but the partitioner may gather or replicate it.
    The wrapped initializer keeps the original's default dtype.

    Args:
      name: the initializer's name for error messages, e.g. ``"he_normal"``.
      random: whether it draws random numbers (``False`` for constants: no
        warning about ``jax_threefry_partitionable``).
    """
    if not isinstance(name, str):
        raise TypeError(f"jaxinit.shardable: name={name!r} must be a str.")

    def decorate(base: Callable[..., Array]) -> Initializer:
        check_callable(f"jaxinit.shardable({name!r})", "init", base)
        base_dtype = base_default_dtype(base)

        def init(key: Array, shape: Shape, dtype: DTypeLike | None = base_dtype,
                 out_sharding: OutSharding = None) -> Array:
            if out_sharding is None:
                return base(key, shape, dtype)
            check_key(name, key)
            dims = check_shape(name, shape)
            sharding = check_out_sharding(name, dims, out_sharding)
            if sharding is None:
                return base(key, dims, dtype)
            if random:
                warn_if_not_partitionable(name)
            try:
                hash(dtype)
            except TypeError as err:
                raise TypeError(f"{name}: dtype={dtype!r} is not a dtype.") from err
            return shard_output(_bound_base(base, dims, dtype), key, sharding)

        functools.update_wrapper(init, base, assigned=("__module__", "__name__", "__qualname__",
                                                       "__doc__"))
        return init

    return decorate


@functools.lru_cache(maxsize=512)
def _bound_base(base: Callable[..., Array], dims: tuple[int, ...], dtype: Any
                ) -> Callable[[Array], Array]:
    return functools.partial(_call_base, base, dims, dtype)


def _call_base(base: Callable[..., Array], dims: tuple[int, ...], dtype: Any, key: Array
               ) -> Array:
    return base(key, dims, dtype)


def runtime_value(value: Any, dtype: Any) -> Array:
    """``value`` as an array XLA cannot constant-fold.

    Compile-time folding evaluates transcendental functions (``erf`` of a
    truncation bound, ``expm1(-4)``) with other code than the runtime kernels,
    so a constant bound would round differently in a jitted program than in an
    eager call (which passes it at runtime) and than in a sharded one; behind
    the barrier every context computes it at runtime, as eager JAX does.
    """
    return jax.lax.optimization_barrier(jnp.asarray(value, dtype))


def scale_samples(samples: Array, factor: Any) -> Array:
    """``samples * factor``, rounded the same eager, under ``jax.jit`` and sharded.

    Without the barrier XLA may fold a constant ``factor`` into the sampler's
    own last multiplication (``(z·√2)·σ`` becomes ``z·(√2·σ)``) in some
    programs and not others, so the last bit would depend on jit and on the
    sharding; with it, every context rounds ``z·√2`` then ``·σ``, as eager JAX does.
    """
    return jax.lax.optimization_barrier(samples) * jnp.asarray(factor, samples.dtype)
