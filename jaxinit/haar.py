"""Haar matrices from a batch of keys: the kernel shared by every orthogonal method.

A *sampler* is ``sampler(keys, n, m, dtype) -> Array`` (:data:`Sampler`): for
a batch of keys of any shape (``()`` for one matrix) it returns
``(*keys.shape, n, m)`` matrices with ``n >= m``, the one at index ``i``
depending on ``keys[i]`` alone and distributed as the ``Q`` of the QR of an
``n × m`` Gaussian matrix with positive ``diag(R)``: Haar on the Stiefel
manifold (unitary for complex dtypes; Mezzadri 2007, "How to generate random
matrices from the classical compact groups", Notices AMS 54(5)). ``dtype`` is
the compute dtype: float32, float64, complex64 or complex128.

:func:`haar_matrices` is the one entry point: it runs a sampler with a
``jax.custom_batching.custom_vmap`` rule, so that under a user's ``jax.vmap``
(nested or not) the call becomes the sampler's own batched call on the
stacked keys. The batched path of every sampler walks LAPACK calls one matrix
at a time on CPU (:func:`map_matrices`): a batched LAPACK call can deadlock
with others in one program on CPU (jaxlib 0.10), and a plain ``vmap`` would
turn an unbatched LAPACK call into a batched one.

Also here, so that no module keeps a copy: :func:`matmul` at full precision,
:func:`sign_corrected_qr` (the ``"qr"`` method's kernel) and
:func:`slice_keys`, the keys of the matrices of a stack.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import TypeAlias

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxinit import threefry
from jaxinit.core import Array
from jaxinit.draws import fit, power_of_two, shares_draws, size_class
from jaxinit.threefry import typed_keys

__all__ = [
    "PER_KEY_DRAWS",
    "DrawSampler",
    "Sampler",
    "eager_gaussians",
    "gaussian",
    "haar_matrices",
    "map_matrices",
    "matmul",
    "matrix_shape",
    "qr_sampler",
    "sign_corrected_qr",
    "slice_keys",
    "take_gaussians",
]

#: ``sampler(keys, n, m, dtype) -> (*keys.shape, n, m)`` Haar matrices, ``n >= m``.
Sampler: TypeAlias = Callable[[Array, int, int, np.dtype], Array]

HIGHEST = lax.Precision.HIGHEST


def matmul(a: Array, b: Array) -> Array:
    """``a @ b`` at full precision: TPUs default to bf16 passes and GPUs to TF32,
    which would cost orthogonality; on CPU it changes nothing."""
    return jnp.matmul(a, b, precision=HIGHEST)


def conj_t(x: Array) -> Array:
    """The conjugate transpose of the last two axes."""
    return jnp.conj(jnp.swapaxes(x, -1, -2))


def gram(x: Array) -> Array:
    """``XᴴX`` for a stack of matrices."""
    return matmul(conj_t(x), x)


def slice_keys(key: Array, batch_shape: tuple[int, ...]) -> Array:
    """The keys of a stack of matrices: ``fold_in(key, i)`` for the flat index ``i``.

    Matrix ``i`` of a stack depends on its index alone, not on the stack's size,
    so the first slices of a larger stack (or of a sharded one) are the same
    matrices.
    """
    count = math.prod(batch_shape)
    return threefry.fold_in(key, jnp.arange(count, dtype=jnp.uint32)).reshape(batch_shape)


def gaussian(keys: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
    """``jax.random.normal(keys[i], shape, dtype)`` for every key: ``(*keys.shape, *shape)``.

    Each key's numbers are drawn as a flat vector: the same bits (see
    :mod:`jaxinit.draws`), and XLA compiles a flat draw faster than one of a
    matrix with a short row (0.34 s against 0.1 s for the packed reflectors of
    a 24 × 16 matrix).
    """
    size = math.prod(shape)
    if keys.ndim == 0:
        return threefry.normal(keys, (size,), dtype).reshape(shape)
    flat = jax.vmap(lambda k: threefry.normal(k, (size,), dtype))(keys.reshape(-1))
    return flat.reshape(*keys.shape, *shape)


def map_matrices(fn: Callable[[Array], Array], x: Array) -> Array:
    """Applies ``fn`` (written for one matrix or a stack) to ``x`` of shape ``(..., n, m)``.

    On CPU a batch is walked one matrix at a time (``lax.map``), so a LAPACK
    call inside ``fn`` is never batched; elsewhere ``fn`` gets the whole batch.
    """
    batch_shape = x.shape[:-2]
    if not batch_shape or jax.default_backend() != "cpu":
        return fn(x)
    out = lax.map(fn, x.reshape((-1, *x.shape[-2:])))
    return out.reshape((*batch_shape, *out.shape[1:]))


def sign_corrected_qr(z: Array) -> Array:
    """``Q`` of the QR of ``z`` with each column times the sign (phase) of ``R_kk``.

    Mezzadri's correction makes ``Q`` the factor of the QR with positive
    ``diag(R)``, which is Haar; the same arithmetic as ``jax.random.orthogonal``
    (same bits), except that a zero ``R_kk`` (probability zero) keeps its
    column instead of zeroing it.
    """
    q, r = jnp.linalg.qr(z)
    d = jnp.diagonal(r, axis1=-2, axis2=-1)
    phase = jnp.where(d == 0, jnp.ones((), d.dtype), jnp.sign(d))
    return q * jnp.expand_dims(phase, -2)


@dataclasses.dataclass(frozen=True)
class DrawSampler:
    """A sampler that transforms one standard Gaussian draw per key.

    ``sampler(keys, n, m, dtype) = transform(gaussian(keys, draw_shape(n, m),
    dtype), n, m)``. Knowing the draw lets an eager call take its numbers from
    a program shared by many shapes (:func:`eager_gaussians`).
    """

    draw_shape: Callable[[int, int], tuple[int, ...]]
    transform: Callable[[Array, int, int], Array]

    def __call__(self, keys: Array, n: int, m: int, dtype: np.dtype) -> Array:
        return self.from_draws(gaussian(keys, self.draw_shape(n, m), np.dtype(dtype)), n, m)

    def from_draws(self, z: Array, n: int, m: int) -> Array:
        """The matrices from their draws ``z`` (..., *draw_shape(n, m))."""
        # The barrier keeps XLA from fusing the draw into the transform, which it
        # may do differently where the draw is a program input: same bits either way.
        return self.transform(jax.lax.optimization_barrier(z), n, m)


def matrix_shape(n: int, m: int) -> tuple[int, int]:
    """The draw of the samplers that transform a Gaussian ``n × m`` matrix."""
    return (n, m)


def _sign_corrected_qrs(z: Array, n: int, m: int) -> Array:
    del n, m
    return map_matrices(sign_corrected_qr, z)


#: QR of a Gaussian ``n × m`` matrix per key, with the sign correction. For one
#: key this is the computation of ``jax.random.orthogonal(key, n, m=m)`` (same
#: bits); for a batch, the same per matrix, one QR at a time on CPU.
qr_sampler = DrawSampler(matrix_shape, _sign_corrected_qrs)


#: An eager stack of at most this many matrices draws each matrix's numbers on its own
#: (one dispatch each, ~0.1 ms) from the programs single matrices use; a larger one
#: compiles a batched draw (0.2-0.3 s on a 2-core CPU) per power-of-two count and size.
PER_KEY_DRAWS = 16


def eager_gaussians(key: Array, batch_shape: tuple[int, ...], shape: tuple[int, ...],
                    dtype: np.dtype) -> Array | tuple[Array, ...] | None:
    """The Gaussians of an eager call, from a program compiled once per size class.

    Returns ``gaussian(keys, shape, dtype)`` for ``keys = key`` (no batch) or
    ``slice_keys(key, batch_shape)``, drawn for a larger size (and count) and
    flattened: ``(size',)`` or ``(count', size')``, or for a stack of at
    most :data:`PER_KEY_DRAWS` matrices a tuple of ``count`` draws ``(size',)``;
    :func:`take_gaussians` cuts the draw out inside the caller's program.
    Threefry's numbers depend only on the key and an element's flat index
    (``jax_threefry_partitionable``), so these are the same bits as the exact
    draw. ``None`` where that does not hold (another key type, the flag off),
    for a traced key, or above :data:`jaxinit.draws.SHARED_DRAW_LIMIT` numbers.
    """
    count, size = math.prod(batch_shape), math.prod(shape)
    if not shares_draws(key, count * size):
        return None
    key, dtype = typed_keys(key), np.dtype(dtype)
    # JAX's normal draw (jaxinit.threefry), the program the normal schemes' eager draws use.
    single = functools.partial(threefry.normal, shape=(size_class(size),), dtype=dtype)
    if not batch_shape:
        return single(key)
    if count <= PER_KEY_DRAWS:
        # Each matrix's numbers from the single matrices' program (with ``slice_keys``'s
        # key for it), so that a small stack or a fused gate kernel compiles no draw.
        return tuple(single(threefry.fold_in(key, i)) for i in range(count))
    # Many matrices: no smallest size, which would multiply a small matrix's numbers.
    return _batched_draw(dtype, power_of_two(count), power_of_two(size))(key)


@functools.cache
def _batched_draw(dtype: np.dtype, count: int, size: int) -> Callable[[Array], Array]:
    return jax.jit(lambda key: gaussian(slice_keys(key, (count,)), (size,), dtype))


def take_gaussians(flat: Array | tuple[Array, ...], batch_shape: tuple[int, ...],
                   shape: tuple[int, ...]) -> Array:
    """The ``(*batch_shape, *shape)`` draw inside an :func:`eager_gaussians` result."""
    count, size = math.prod(batch_shape), math.prod(shape)
    if isinstance(flat, tuple):
        flat = jnp.stack(flat)
    if not batch_shape:
        return fit(flat, shape)
    return flat[:count, :size].reshape(*batch_shape, *shape)


def haar_matrices(sampler: Sampler, keys: Array, n: int, m: int, dtype: np.dtype) -> Array:
    """``sampler(keys, n, m, dtype)``, and the same batched call under ``jax.vmap``.

    Under a user's ``vmap`` over the keys, the ``custom_vmap`` rule calls the
    sampler once on the stacked keys ``(axis_size, *keys.shape)``: the values
    are those of that explicit batched call, whatever the vmap nesting. A
    stack of keys is flattened first, so only its size matters.
    """
    return _vmappable(sampler, n, m, np.dtype(dtype))(typed_keys(keys))


@functools.lru_cache(maxsize=256)
def _vmappable(sampler: Sampler, n: int, m: int, dtype: np.dtype) -> Callable[[Array], Array]:
    @jax.custom_batching.custom_vmap
    def draw(keys: Array) -> Array:
        if keys.ndim <= 1:
            return sampler(keys, n, m, dtype)
        # One flat batch: the same program (and bits) for a stack of any shape.
        return sampler(keys.reshape(-1), n, m, dtype).reshape(*keys.shape, n, m)

    @draw.def_vmap
    def rule(axis_size: int, in_batched: list[bool], keys: Array) -> tuple[Array, bool]:
        del axis_size
        return draw(keys), bool(in_batched[0])

    return draw
