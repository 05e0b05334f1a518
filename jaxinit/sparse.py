"""Sparse initialization: every unit gets a fixed number of non-zero incoming weights.

Martens (2010), "Deep learning via Hessian-free optimization": each unit is
connected to k = 15 randomly chosen inputs, the other weights are zero. The
total input of a unit then does not grow with the size of the layer below, so
units saturate less, and their responses stay diverse.

How it is sampled. The weight is viewed as ``(G, F, O)``: ``F`` the fan-in and
one unit per ``(g, o)``. Every step is vectorized over the units and never
mixes two of them, so sharding along the units needs no communication. The
inputs each unit keeps are a bit set of ``ceil(F/32)`` words, drawn in one of
two ways, whichever is cheaper:

* Floyd's subset algorithm on the smaller of the kept and zeroed sets
  (m = min(k, F - k) <= F/4 sequential steps, vectorized over the units);
* random keys: every input gets a key of b = ceil(log2 F) - 5 bits, a bitwise
  binary search (b counting passes) finds each unit's k-th smallest key t,
  the inputs with keys below t are kept, and among those equal to t (up to 32
  on average) a uniform subset of the right size is drawn by Floyd's algorithm.

Both give every k-subset the probability 1/C(F, k), up to the 2⁻⁶⁴ resolution of
the integer draws (a total variation below F²·2⁻⁶⁷ + 2⁻⁵¹ per unit: 2⁻⁴³ for
F = 4096) and a fallback that keeps the first of more than 128 tied inputs
(probability below 2⁻⁹⁸ for fan-ins up to 2³⁰). A last pass draws the
N(0, stddev²) values and keeps those the bit sets name (with few non-zeros,
only those are drawn, and each is put in place as Floyd's algorithm picks it).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinit.contract import initializer
from jaxinit.core import (
    Array,
    AxisLike,
    DTypeLike,
    Initializer,
    check_axes,
    check_disjoint,
    check_int,
    check_real,
    normal_max_abs,
)
from jaxinit.fans import fan_axes
from jaxinit.threefry import is_threefry, threefry2x32, typed_keys

__all__ = ["nonzero_count", "sparse"]

_NAME = "jaxinit.sparse"
_STREAM_SHIFT = 30  # a stream's index sits above the positions in the first counter word
_TIE_BITS = 128  # the ties of a unit are chosen among by a 128-bit set (four words)

# A threefry key's two words and the counter offset of a stream, or a key of another kind.
Stream = tuple[Array, Array, np.uint32] | Array


def _check_fraction(arg_name: str, value: float) -> float:
    fraction = check_real(_NAME, arg_name, value)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"{_NAME}: {arg_name}={value!r} is outside (0, 1); accepted: 0 < f < 1.")
    return fraction


# ----------------------------------------------------------------------------- random words


def _root(key: Array) -> Stream:
    """A threefry key as its two words (hashed by :func:`~jaxinit.threefry.threefry2x32`)
    and offset 0, or a key of any other kind as a typed key (drawn from with ``jax.random``)."""
    key = typed_keys(key)
    if not is_threefry(key):
        return key
    data = jax.random.key_data(key)
    return data[0], data[1], np.uint32(0)


def _substreams(stream: Stream, count: int) -> list[Stream]:
    """``count`` independent random streams of a root stream (the role of
    ``jax.random.fold_in``). For threefry, disjoint counter ranges of the same key: stream
    ``i`` adds ``i·2³⁰`` to the position word of its counters. Hashing the key into
    sub-keys instead made the programs compile up to 3x slower (their scalar results
    enter every later hash)."""
    if not isinstance(stream, tuple):
        return [jax.random.fold_in(stream, i) for i in range(count)]
    assert count <= 1 << (32 - _STREAM_SHIFT) and int(stream[2]) == 0
    return [(stream[0], stream[1], np.uint32(i << _STREAM_SHIFT)) for i in range(count)]


def _words(stream: Stream, shape: tuple[int, int, int], axis: int) -> tuple[Array, Array]:
    """Two independent arrays of uniform uint32 words of ``shape``, whose ``axis`` counts
    positions and whose two other axes are ``(g, o)`` of the units.

    For threefry, the two halves of the block whose counter is ``(offset + position,
    g·O + o)`` (JAX's partitionable ``jax.random.bits`` keeps only their xor, at the same
    cost): a pure function of each element's logical position, so the partitioner splits
    it along any axis without communication. Assumes fewer than 2³² units and 2³⁰
    positions.
    """
    if not isinstance(stream, tuple):
        bits = jax.random.bits(stream, (2, *shape), jnp.uint32)
        return bits[0], bits[1]
    position = jax.lax.broadcasted_iota(jnp.uint32, shape, axis) + stream[2]
    g_axis, o_axis = (a for a in range(3) if a != axis)
    unit = (jax.lax.broadcasted_iota(jnp.uint32, shape, g_axis) * np.uint32(shape[o_axis])
            + jax.lax.broadcasted_iota(jnp.uint32, shape, o_axis))
    return threefry2x32(stream[0], stream[1], position, unit)


def _in_memory(x: Array, axis: int) -> Array:
    """``x``, copied into a buffer by a two-step loop, so that XLA computes it once.

    XLA fuses a chain of cheap integer operations such as the hash into every pass that
    reads its result, recomputing it each time; the operand of a loop is computed once.
    """
    size = -(-x.shape[axis] // 2)
    padded = jnp.pad(x, [(0, 2 * size - d if a == axis else 0) for a, d in enumerate(x.shape)])

    def copy(c: Array, buffer: Array) -> Array:
        part = jax.lax.dynamic_slice_in_dim(padded, c * size, size, axis)
        return jax.lax.dynamic_update_slice_in_dim(buffer, part, c * size, axis)

    buffer = jax.lax.fori_loop(0, 2, copy, jnp.zeros_like(padded))
    return jax.lax.slice_in_dim(buffer, 0, x.shape[axis], axis=axis)


def _mulhi(a: Array, b: Array) -> Array:
    """The high 32 bits of the 64-bit product of two uint32 arrays (16-bit limbs)."""
    a1, a0 = a >> 16, a & 0xFFFF
    b1, b0 = b >> 16, b & 0xFFFF
    low = a0 * b0
    middle = a1 * b0 + (low >> 16)
    cross = a0 * b1 + (middle & 0xFFFF)
    return a1 * b1 + (middle >> 16) + (cross >> 16)


def _uniform_below(hi: Array, lo: Array, bound: Array) -> Array:
    """``floor(x · bound / 2⁶⁴)`` for the 64-bit word ``x = hi·2³² + lo``, as int32: uniform
    on ``[0, bound)`` but for 2⁻⁶⁴ per value (total variation below ``bound / 2⁶⁵``)."""
    bound = bound.astype(jnp.uint32)
    top_low = hi * bound  # the low word of hi·bound (wraps)
    carry = (top_low + _mulhi(lo, bound)) < top_low
    return (_mulhi(hi, bound) + carry.astype(jnp.uint32)).astype(jnp.int32)


def _normal(stream: Stream, shape: tuple[int, int, int], dtype: np.dtype, scale: Array
            ) -> Array:
    """N(0, scale²/2) values of ``(G, F, O)``: one threefry block each, erf_inv of a uniform
    from the top 23 bits of a word (float32, as ``jax.random.normal``) or 52 of two.

    ``scale = √2·stddev`` (rounded once from float64) is one runtime multiplication, so no
    constant can be folded into it differently eager, under ``jax.jit`` or sharded.
    """
    hi, lo = _words(stream, shape, 1)
    if dtype == np.float64:
        steps = 52
        mantissa = (hi.astype(jnp.uint64) << 20) | (lo >> 12).astype(jnp.uint64)
    else:
        steps, mantissa = 23, hi >> 9
    # u = (2m + 1)/2^steps - 1 for the mantissa m: symmetric, never ±1, so erf_inv is finite.
    signed = ((mantissa << 1) | 1).astype(jnp.int64 if steps == 52 else jnp.int32) - (1 << steps)
    u = signed.astype(dtype) * dtype.type(2.0 ** -steps)
    return jax.lax.erf_inv(u) * scale


# ----------------------------------------------------------------------------- bit sets


def _get(words: Array, index: Array, axis: int) -> Array:
    """``words[..., index, ...]`` along ``axis`` of a 3-d array, one element per unit."""
    batch = tuple(a for a in range(3) if a != axis)
    numbers = jax.lax.GatherDimensionNumbers(
        offset_dims=(), collapsed_slice_dims=(axis,), start_index_map=(axis,),
        operand_batching_dims=batch, start_indices_batching_dims=(0, 1))
    return jax.lax.gather(words, index[..., None], numbers, (1, 1, 1),
                          mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS)


def _put(words: Array, index: Array, values: Array, axis: int) -> Array:
    """``words`` with ``values`` written at ``index`` along ``axis``, one element per unit."""
    batch = tuple(a for a in range(3) if a != axis)
    numbers = jax.lax.ScatterDimensionNumbers(
        update_window_dims=(), inserted_window_dims=(axis,), scatter_dims_to_operand_dims=(axis,),
        operand_batching_dims=batch, scatter_indices_batching_dims=(0, 1))
    return jax.lax.scatter(words, index[..., None], values, numbers, unique_indices=True,
                           mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS)


Visit = Callable[[Array, Array, Any], Any]
_FEW_WORDS = 4  # bit sets of up to 4 words per unit are read and written by selects


def _word_index(num_words: int) -> Array:
    return jax.lax.broadcasted_iota(jnp.int32, (1, num_words, 1), 1)


def _word(bits: Array, index: Array) -> Array:
    """Word ``index`` (``(G, O)``) of each unit's bit set ``(G, W, O)``: a select over few
    words (faster to compile and run than a gather), else a gather."""
    if bits.shape[1] <= _FEW_WORDS:
        return jnp.sum(jnp.where(_word_index(bits.shape[1]) == index[:, None], bits, 0),
                       axis=1, dtype=jnp.uint32)
    return _get(bits, index, 1)


def _floyd(stream: Stream, n: Array | int, m: Array | int, steps: int, num_words: int,
           units: tuple[int, int], visit: Visit | None = None, carry: Any = None
           ) -> tuple[Array, Any]:
    """A uniform m-subset of ``[0, n)`` per unit, as a bit set ``(G, num_words, O)``; with
    ``visit``, also ``carry = visit(i, c, carry)`` for each step's added elements ``c``.

    Floyd's algorithm: for ``j = n - m, …, n - 1`` draw ``x`` uniform on ``[0, j]`` and
    add ``x``, or ``j`` if ``x`` is in already. Run as ``steps >= max(m)`` steps, step
    ``i`` doing ``j = n - steps + i`` for the units with ``i >= steps - m``.
    """
    g, o = units
    # The draws in bulk: a loop body that hashes takes XLA several times longer to compile.
    hi, lo = _words(stream, (g, steps, o), 1)
    top = n - steps + jax.lax.broadcasted_iota(jnp.int32, (1, steps, 1), 1)
    draws = _uniform_below(hi, lo, jnp.maximum(top + 1, 1))

    def add(i: Array, state: tuple[Array, Any]) -> tuple[Array, Any]:
        bits, extra = state
        j = jnp.broadcast_to(n - steps + i, (g, 1, o))[:, 0]
        on = jnp.broadcast_to(i >= steps - m, (g, 1, o))[:, 0]
        x = jnp.where(on, draws[:, i], 0)
        taken = (_word(bits, x >> 5) >> (x & 31).astype(jnp.uint32)) & 1
        c = jnp.where(on, jnp.where(taken == 1, j, x), 0)
        new_bit = jnp.where(on, jnp.uint32(1) << (c & 31).astype(jnp.uint32), 0)
        if num_words <= _FEW_WORDS:
            in_word = _word_index(num_words) == (c >> 5)[:, None]
            bits = bits | jnp.where(in_word, new_bit[:, None], np.uint32(0))
        else:
            bits = _put(bits, c >> 5, _get(bits, c >> 5, 1) | new_bit, 1)
        return bits, None if visit is None else visit(i, c, extra)

    start = (jnp.zeros((g, num_words, o), jnp.uint32), carry)
    return jax.lax.fori_loop(0, steps, add, start)


def _pack(mask: Array) -> Array:
    """``(G, O, F)`` bools -> ``(G, O, ceil(F/32))`` uint32 bit sets (bit i of word w is
    input 32w + i), reducing the last axis, which XLA does fast."""
    g, o, f = mask.shape
    w = -(-f // 32)
    padded = jnp.pad(mask, ((0, 0), (0, 0), (0, 32 * w - f))).reshape(g, o, w, 32)
    shift = jax.lax.broadcasted_iota(jnp.uint32, (1, 1, 1, 32), 3)
    return jax.lax.reduce(padded.astype(jnp.uint32) << shift, np.uint32(0),
                          jax.lax.bitwise_or, (3,))


def _unpack(bits: Array, f: int) -> Array:
    """``(G, W, O)`` bit sets -> ``(G, f, O)`` bools."""
    g, w, o = bits.shape
    shift = jax.lax.broadcasted_iota(jnp.uint32, (1, 1, 32, 1), 2)
    return (((bits[:, :, None, :] >> shift) & 1) == 1).reshape(g, 32 * w, o)[:, :f]


# ----------------------------------------------------------------------------- random keys


def _key_bits(f: int) -> int:
    # 2^b >= F/32: at most 32 inputs per key value on average.
    return max(1, math.ceil(math.log2(f)) - 5)


def _keys(stream: Stream, units: tuple[int, int], f: int, bits: int) -> Array:
    """``(G, O, F)`` uniform keys of ``bits`` bits, units-major: ``32 // bits`` per stored
    word, so the hashing is a fraction of a pass, and the passes over the keys reduce
    along the last axis, which XLA does fast."""
    g, o = units
    per_word = 32 // bits
    words = _in_memory(_words(stream, (g, o, -(-f // per_word)), 2)[0], 2)
    shift = jax.lax.broadcasted_iota(jnp.uint32, (1, 1, 1, per_word), 3) * np.uint32(bits)
    keys = (words[..., None] >> shift) & np.uint32((1 << bits) - 1)
    kind = jnp.uint8 if bits <= 8 else jnp.uint16 if bits <= 16 else jnp.uint32
    return keys.reshape(g, o, -1)[:, :, :f].astype(kind)


def _count_below(keys: Array, limit: Array) -> Array:
    """``sum(keys < limit)`` along the last axis, as ``(G, O, 1)`` int32."""
    g, o, f = keys.shape
    w = -(-f // 32)
    below = jnp.pad(keys < limit, ((0, 0), (0, 0), (0, 32 * w - f))).reshape(g, o, w, 32)
    # int8 sums of 32 then int32: measured several times faster than int32 throughout.
    return jnp.sum(jnp.sum(below, axis=3, dtype=jnp.int8), axis=2, keepdims=True,
                   dtype=jnp.int32)


def _kth_smallest(keys: Array, k: int, bits: int) -> tuple[Array, Array]:
    """Per unit, ``t`` = the k-th smallest key and ``count(keys < t)``, as ``(G, O, 1)``:
    ``t`` is the largest value with fewer than k keys below it, found bit by bit."""

    def bit(i: Array, state: tuple[Array, Array]) -> tuple[Array, Array]:
        t, below = state
        candidate = t + (jnp.uint32(1) << (bits - 1 - i).astype(jnp.uint32))
        count = _count_below(keys, candidate.astype(keys.dtype))
        fewer = count < k
        return jnp.where(fewer, candidate, t), jnp.where(fewer, count, below)

    g, o, _ = keys.shape
    start = (jnp.zeros((g, o, 1), jnp.uint32), jnp.zeros((g, o, 1), jnp.int32))
    t, below = jax.lax.fori_loop(0, bits, bit, start)
    return t.astype(keys.dtype), below


def _kept_by_keys(keys_stream: Stream, ties_stream: Stream, units: tuple[int, int], f: int,
                  k: int) -> Array:
    """``(G, O, ceil(F/32))`` bit sets of the k inputs of each unit with the smallest keys,
    ties at the k-th broken by a uniform subset: each k-subset equally likely.

    With ``2^bits >= F/32`` a key value has at most 32 inputs on average, and more than
    128 tied inputs has probability below 2⁻⁹⁸ for F <= 2³⁰ (2⁻¹¹⁸ at F = 4096: the
    Binomial(F, 2^-bits) tail times the 2^bits values); such a unit keeps its first
    tied inputs instead.
    """
    g, o = units
    bits = _key_bits(f)
    keys = _keys(keys_stream, units, f, bits)
    t, below = _kth_smallest(keys, k, bits)
    below_words, tie_words = _pack(keys < t), _pack(keys == t)
    per_word = jax.lax.population_count(tie_words).astype(jnp.int32)
    ties = jnp.sum(per_word, axis=2, keepdims=True)
    needed = k - below  # >= 1, <= ties
    subset, _ = _floyd(ties_stream, ties[:, None, :, 0], needed[:, None, :, 0],
                       _TIE_BITS, _TIE_BITS // 32, (g, o))
    # Bit i of word w, if tied, has rank (ties in earlier words) + (ties in earlier bits).
    shift = jax.lax.broadcasted_iota(jnp.uint32, (1, 1, 1, 32), 3)
    words = tie_words[..., None]
    earlier_bits = jax.lax.population_count(words & ((jnp.uint32(1) << shift) - 1))
    rank = ((jnp.cumsum(per_word, axis=2) - per_word)[..., None]
            + earlier_bits.astype(jnp.int32))
    subset_word = sum(jnp.where(rank >> 5 == i, subset[:, i, :, None, None], np.uint32(0))
                      for i in range(_TIE_BITS // 32))  # the word holding bit ``rank``
    in_subset = (subset_word >> (rank & 31).astype(jnp.uint32)) & 1
    chosen = jnp.where(ties[..., None] <= _TIE_BITS, in_subset,
                       (rank < needed[..., None]).astype(jnp.uint32))
    chosen_words = jax.lax.reduce((chosen & (words >> shift)) << shift, np.uint32(0),
                                  jax.lax.bitwise_or, (3,))
    return below_words | chosen_words


# ----------------------------------------------------------------------------- assembly


def _uses_floyd(n: int, m: int) -> bool:
    # Floyd takes m sequential steps over the units, the keys about log2(n) passes over
    # the whole array (measured crossover on a 2-core CPU, 4096 x 4096: m ~ n/4).
    return 4 * m <= n


def _sampling_method(n: int, k: int) -> str:
    """How to place k non-zeros among n: all, Floyd on the kept or zero set, or by keys."""
    if k >= n:
        return "dense"
    if k <= n - k:
        return "kept" if _uses_floyd(n, k) else "keys"
    return "zeros" if _uses_floyd(n, n - k) else "keys"


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _sparse_matrix(key: Array, units: tuple[int, int], f: int, k: int, dtype: np.dtype,
                   method: str, scale: Array) -> Array:
    """``(G, f, O)``: exactly k N(0, scale²/2) entries along axis 1 per unit, uniformly placed."""
    g, o = units
    values, positions, keys, ties = _substreams(_root(key), 4)
    num_words = -(-f // 32)
    if method == "kept":  # only k values, each put at its input as Floyd chooses it
        nonzeros = _normal(values, (g, k, o), dtype, scale)

        def put_value(i: Array, c: Array, out: Array) -> Array:
            return _put(out, c, nonzeros[:, i], 1)

        _, w = _floyd(positions, f, k, k, num_words, units, put_value,
                      jnp.zeros((g, f, o), dtype))
        return w
    z = _normal(values, (g, f, o), dtype, scale)
    if method == "dense":
        return z
    if method == "zeros":
        zeroed, _ = _floyd(positions, f, f - k, f - k, num_words, units)
        keep = ~_unpack(zeroed, f)
    else:
        keep = _unpack(jnp.swapaxes(_kept_by_keys(keys, ties, units, f, k), 1, 2), f)
    return jnp.where(keep, z, jnp.zeros((), dtype))


def nonzero_count(
    fan_in: int,
    num_nonzero: int | None = None,
    *,
    zero_fraction: float | None = None,
    nonzero_fraction: float | None = None,
) -> int:
    """The number of non-zero incoming weights per unit for a given fan-in.

    ``min(k, fan_in)`` for ``num_nonzero=k``; ``fan_in - ceil(f·fan_in)`` for
    ``zero_fraction=f``; ``int(f·fan_in)`` for ``nonzero_fraction=f``.

    Example:
      >>> from jaxinit.sparse import nonzero_count
      >>> nonzero_count(100, zero_fraction=0.9), nonzero_count(100, nonzero_fraction=0.1)
      (10, 10)
    """
    if num_nonzero is not None:
        return min(num_nonzero, fan_in)
    if zero_fraction is not None:
        return fan_in - math.ceil(zero_fraction * fan_in)
    assert nonzero_fraction is not None
    return int(nonzero_fraction * fan_in)



def sparse(
    num_nonzero: int | None = None,
    *,
    zero_fraction: float | None = None,
    nonzero_fraction: float | None = None,
    stddev: float = 0.01,
    in_axis: AxisLike = -2,
    out_axis: AxisLike = -1,
    batch_axis: AxisLike = (),
    dtype: DTypeLike | None = None,
) -> Initializer:
    r"""Builds a sparse initializer: k non-zero N(0, stddev²) incoming weights per unit.

    Every output unit (each index of ``out_axis``, separately for each index of
    ``batch_axis``) gets exactly ``k`` non-zero incoming weights, at positions
    drawn uniformly at random without replacement among its ``fan_in``
    incoming connections, independently for every unit; the values are
    i.i.d. N(0, stddev²) and every other weight is 0. For a convolution kernel
    the incoming connections of a unit are all ``receptive × in`` positions
    (e.g. ``kh·kw·c_in`` for HWIO). Exactly one way to give ``k``:

    * ``num_nonzero=k`` (Martens 2010; k = 15 in the paper, "as few as 10"
      in common practice). If ``fan_in <= k`` every weight is non-zero.
    * ``zero_fraction=f``: ``ceil(f·fan_in)`` weights of each unit are zero
      (the rounding of PyTorch's ``sparse_``; note that PyTorch counts the
      zeros along dim 0 of its ``(out, in)`` weight, here they are counted
      over each unit's fan-in).
    * ``nonzero_fraction=f``: ``int(f·fan_in)`` weights of each unit are kept
      (Lasagne's ``Sparse(sparsity=f)``).

    Both products are rounded in float64 as those libraries do, so e.g.
    ``zero_fraction=0.28`` with ``fan_in=25`` zeroes ceil(7.000000000000001) = 8.

    With inputs of second moment E[x²], a unit's pre-activation
    :math:`s = \sum_i w_i x_i` has variance :math:`k\,\mathrm{stddev}^2\,E[x^2]`,
    independent of the fan-in: that is the point of the scheme.

    The default ``stddev=0.01`` is the "small Gaussian" of the sparse recipes
    in the source texts and Lasagne's default. Sutskever et al. (2013) describe
    Martens' scheme with unit-Gaussian non-zeros (``stddev=1.0``);
    ``stddev=1/sqrt(k)`` makes the pre-activation variance equal to E[x²]
    (unit gain). Biases are usually 0 (``jaxinit.zeros``).

    Sampling is vectorized over the units (no loop over units, and sharding
    ``out_sharding`` along the units needs no communication). The positions
    are drawn by Floyd's subset algorithm when k, or the number of zeros, is
    at most a quarter of the fan-in, else by the k smallest of random keys of
    about log2(fan_in) bits with a uniform choice among the keys tied at the
    k-th: each k-subset has probability 1/C(fan_in, k), up to a total variation
    below fan_in²·2⁻⁶⁷ + 2⁻⁵¹ per unit. Either way the cost is about that of
    one ``jax.random.normal`` draw of the shape or less.

    Args:
      num_nonzero: k, an int >= 1.
      zero_fraction: fraction of each unit's inputs set to zero, in (0, 1).
      nonzero_fraction: fraction of each unit's inputs kept, in (0, 1).
      stddev: std of the non-zero weights, > 0.
      in_axis: axis or axes of the inputs.
      out_axis: axis or axes of the outputs (the units).
      batch_axis: axes of independent weights (stacked layers).
      dtype: the initializer's default dtype (real floating).

    Raises:
      ValueError: when called, if the count rounds to 0 non-zeros for the
        shape's fan-in (a unit without inputs).

    Example:
      >>> import jax
      >>> from jaxinit.sparse import sparse
      >>> w = sparse(15)(jax.random.key(0), (784, 500))
      >>> bool(((w != 0).sum(axis=0) == 15).all())
      True
    """
    given = {
        name: value
        for name, value in (
            ("num_nonzero", num_nonzero),
            ("zero_fraction", zero_fraction),
            ("nonzero_fraction", nonzero_fraction),
        )
        if value is not None
    }
    if len(given) != 1:
        raise ValueError(
            f"{_NAME}: exactly one of num_nonzero, zero_fraction, nonzero_fraction must be "
            f"given; got {given or 'none'}."
        )
    if num_nonzero is not None:
        num_nonzero = check_int(_NAME, "num_nonzero", num_nonzero, minimum=1)
    if zero_fraction is not None:
        zero_fraction = _check_fraction("zero_fraction", zero_fraction)
    if nonzero_fraction is not None:
        nonzero_fraction = _check_fraction("nonzero_fraction", nonzero_fraction)
    stddev = check_real(_NAME, "stddev", stddev, positive=True)
    (count_name, count_value), = given.items()
    axes = {"in_axis": check_axes(_NAME, "in_axis", in_axis),
            "out_axis": check_axes(_NAME, "out_axis", out_axis),
            "batch_axis": check_axes(_NAME, "batch_axis", batch_axis)}
    check_disjoint(_NAME, **axes)  # as written; again once negative axes are resolved

    def plan(dims: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, int], int, int]:
        """``(axis order batch-fan-out, (G, O), fan_in, k)``, or raises for an unusable
        shape."""
        ins, outs, batch, receptive = fan_axes(_NAME, dims, in_axis, out_axis, batch_axis)
        fan_in = int(math.prod(dims[a] for a in (*receptive, *ins)))
        units = (math.prod(dims[a] for a in batch), math.prod(dims[a] for a in outs))
        k = nonzero_count(fan_in, num_nonzero, zero_fraction=zero_fraction,
                          nonzero_fraction=nonzero_fraction)
        if k < 1 and 0 not in dims:
            raise ValueError(
                f"{_NAME}: {count_name}={count_value!r} leaves no non-zero input for "
                f"fan_in={fan_in} (shape={dims}); every unit needs at least one."
            )
        # int32 inputs; uint32 counters whose top two bits name the stream
        if fan_in >= 2**_STREAM_SHIFT or units[0] * units[1] >= 2**32:
            raise ValueError(
                f"{_NAME}: shape={dims} has fan_in={fan_in} and {units[0] * units[1]} units; "
                f"accepted: a fan-in below 2^{_STREAM_SHIFT} and fewer than 2^32 units."
            )
        return (*batch, *sorted((*receptive, *ins)), *outs), units, fan_in, k

    def check(dims: tuple[int, ...]) -> None:
        plan(dims)

    @initializer(_NAME, dtype=dtype, allow_complex=False, check=check,
                 bound=lambda _: (stddev * normal_max_abs(np.dtype(np.float64)),
                                  f"stddev={stddev!r}"),
                 cache_key=("sparse", num_nonzero, zero_fraction, nonzero_fraction, stddev,
                            tuple(axes.values())))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        # Work on a (G, fan_in, O) array: one unit per (batch, out) position.
        order, units, fan_in, k = plan(shape)
        method = _sampling_method(fan_in, k)
        scale = np.asarray(math.sqrt(2.0) * stddev, dtype)
        w = _sparse_matrix(key, units, fan_in, k, dtype, method, scale)
        return w.reshape([shape[a] for a in order]).transpose(np.argsort(order))

    return init
