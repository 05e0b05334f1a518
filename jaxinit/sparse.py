"""Sparse initialization: every unit gets a fixed number of non-zero incoming weights.

Martens (2010), "Deep learning via Hessian-free optimization": each unit is
connected to k = 15 randomly chosen inputs, the other weights are zero. The
total input of a unit then does not grow with the size of the layer below, so
units saturate less, and their responses stay diverse.

The sampler works on a ``(G, F, O)`` array: ``F`` the fan-in, and one unit per
``(g, o)`` (``G`` the batch, ``O`` the output positions), so that a unit's
weights lie along the middle axis and every step is vectorized over the units
without mixing them (sharding along the units needs no communication). It
picks the positions of each unit's k non-zeros in one of three ways, all exact
(every k-subset equally likely), by cost:

* ``"kept"`` / ``"zeros"``: Floyd's subset algorithm on the smaller of the kept
  and zeroed sets (m = min(k, F - k) steps, each one gather and one scatter per
  unit into a bit set of the unit's inputs);
* ``"keys"``: every weight gets a random key of b = ceil(log2 F) - 3 bits (the
  low bits of its normal draw, which the float conversion leaves unused); a
  bitwise binary search (b counting passes) finds each unit's k-th smallest key
  t; the keys below t are kept, and among the keys equal to t (about 4 to 8
  per unit) a uniform subset of the right size is drawn by Floyd's algorithm.

Random words come two per threefry block (both halves of the 64-bit output,
where ``jax.random.bits`` keeps their xor), so the values cost half the hashing
of a ``jax.random.normal`` draw of the same shape.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry2x32_p

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

__all__ = ["nonzero_count", "sparse"]

_NAME = "jaxinit.sparse"
_TIE_BITS = 64  # a unit's tied keys are chosen among by a 64-bit set (two words)


def _check_fraction(arg_name: str, value: float) -> float:
    fraction = check_real(_NAME, arg_name, value)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"{_NAME}: {arg_name}={value!r} is outside (0, 1); accepted: 0 < f < 1.")
    return fraction

# ----------------------------------------------------------------------------- random words


def _typed_key(key: Array) -> Array:
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)


def _words(key: Array, shape: tuple[int, int, int]) -> tuple[Array, Array]:
    """Two independent arrays of uniform uint32 words of a ``(G, F, O)`` shape.

    For threefry keys, the two halves of the block whose counter is
    ``(f, g·O + o)``: a pure function of each element's logical position, so
    the partitioner splits it along any axis without communication.
    """
    if str(jax.random.key_impl(key)) != "threefry2x32":
        bits = jax.random.bits(key, (2, *shape), jnp.uint32)
        return bits[0], bits[1]
    data = jax.random.key_data(key)
    position = jax.lax.broadcasted_iota(jnp.uint32, shape, 1)
    unit = (jax.lax.broadcasted_iota(jnp.uint32, shape, 0) * np.uint32(shape[2])
            + jax.lax.broadcasted_iota(jnp.uint32, shape, 2))
    first, second = threefry2x32_p.bind(data[0], data[1], position, unit)
    return first, second


def _mulhi(a: Array, b: Array) -> Array:
    """The high 32 bits of the 64-bit product of two uint32 arrays (16-bit limbs)."""
    a1, a0 = a >> 16, a & 0xFFFF
    b1, b0 = b >> 16, b & 0xFFFF
    low = a0 * b0
    middle = a1 * b0 + (low >> 16)
    cross = a0 * b1 + (middle & 0xFFFF)
    return a1 * b1 + (middle >> 16) + (cross >> 16)


def _uniform_below(hi: Array, lo: Array, bound: Array) -> Array:
    """``floor(x · bound / 2⁶⁴)`` for the 64-bit word ``x = hi·2³² + lo``: uniform on
    ``[0, bound)`` up to 2⁻⁶⁴ per value (total variation <= bound / 2⁶⁵), as int32."""
    bound = bound.astype(jnp.uint32)
    top_low = hi * bound  # wraps: the low word of hi·bound
    carry = (top_low + _mulhi(lo, bound)) < top_low
    return (_mulhi(hi, bound) + carry.astype(jnp.uint32)).astype(jnp.int32)


def _normals(key: Array, shape: tuple[int, int, int], dtype: np.dtype, scale: Array
             ) -> tuple[Array, Array, int]:
    """``(z, free, bits)``: N(0, stddev²) values of ``shape`` and, per value, the ``bits`` low
    bits of its random word that the conversion does not use (independent of ``z``).

    ``scale = √2·stddev`` (rounded once from float64) is one runtime multiplication, so no
    constant can be folded into it differently eager, under ``jax.jit`` or sharded.
    """
    g, f, o = shape
    if dtype == np.float64:  # one 64-bit block per value: 52 mantissa bits, 12 free
        hi, lo = _words(key, shape)
        mantissa = (hi.astype(jnp.uint64) << 20) | (lo >> 12).astype(jnp.uint64)
        steps, free, bits = 52, lo & 0xFFF, 12
        odd = (mantissa << 1) | 1
    else:  # two float32 values per block (23 mantissa bits each, 9 free)
        first, second = _words(key, (g, (f + 1) // 2, o))
        word = jnp.concatenate([first, second], axis=1)[:, :f]
        steps, free, bits = 23, word & 0x1FF, 9
        odd = ((word >> 9) << 1) | 1
    # u = (2m + 1)/2^steps - 1 for the mantissa m: symmetric, never ±1, so erf_inv is finite.
    signed = odd.astype(jnp.int64 if dtype == np.float64 else jnp.int32) - (1 << steps)
    u = signed.astype(dtype) * dtype.type(2.0 ** -steps)
    return jax.lax.erf_inv(u) * scale, free, bits


# ----------------------------------------------------------------------------- bit sets


def _along_f(dims: tuple[int, ...]) -> tuple[jax.lax.GatherDimensionNumbers,
                                             jax.lax.ScatterDimensionNumbers]:
    """One element per unit along axis 1 of a ``(G, W, O)`` array, units as batch dims."""
    del dims
    gather = jax.lax.GatherDimensionNumbers(
        offset_dims=(), collapsed_slice_dims=(1,), start_index_map=(1,),
        operand_batching_dims=(0, 2), start_indices_batching_dims=(0, 1))
    scatter = jax.lax.ScatterDimensionNumbers(
        update_window_dims=(), inserted_window_dims=(1,), scatter_dims_to_operand_dims=(1,),
        operand_batching_dims=(0, 2), scatter_indices_batching_dims=(0, 1))
    return gather, scatter


def _get(words: Array, index: Array) -> Array:
    gather, _ = _along_f(words.shape)
    return jax.lax.gather(words, index[..., None], gather, (1, 1, 1),
                          mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS)


def _put(words: Array, index: Array, values: Array) -> Array:
    _, scatter = _along_f(words.shape)
    return jax.lax.scatter(words, index[..., None], values, scatter, indices_are_sorted=True,
                           unique_indices=True,
                           mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS)


def _floyd(key: Array, n: Array | int, m: Array | int, steps: int, num_words: int,
           units: tuple[int, int]) -> tuple[Array, Array]:
    """A uniform m-subset of ``[0, n)`` per unit, as a bit set ``(G, num_words, O)`` and the
    ``(G, steps, O)`` chosen elements (the first ``steps - m`` are unused).

    Floyd's algorithm: for ``j = n - m, …, n - 1`` draw ``x`` uniform on ``[0, j]`` and add
    ``x``, or ``j`` if ``x`` is already in. Run as ``steps >= max(m)`` steps, step ``i``
    doing ``j = n - steps + i`` for the units with ``i >= steps - m``.
    """
    g, o = units
    hi, lo = _words(key, (g, steps, o))
    step_index = jax.lax.broadcasted_iota(jnp.int32, (1, steps, 1), 1)
    top = jnp.broadcast_to(n - steps + step_index, (g, steps, o))
    active = jnp.broadcast_to(step_index >= steps - m, (g, steps, o))
    draws = jnp.where(active, _uniform_below(hi, lo, jnp.maximum(top + 1, 1)), 0)

    def step(i: Array, state: tuple[Array, Array]) -> tuple[Array, Array]:
        bits, chosen = state
        x, j, on = draws[:, i], top[:, i], active[:, i]
        taken = (_get(bits, x >> 5) >> (x & 31).astype(jnp.uint32)) & 1
        c = jnp.where(on, jnp.where(taken == 1, j, x), 0)
        new_bit = jnp.where(on, jnp.uint32(1) << (c & 31).astype(jnp.uint32), 0)
        bits = _put(bits, c >> 5, _get(bits, c >> 5) | new_bit)
        return bits, jax.lax.dynamic_update_index_in_dim(chosen, c, i, 1)

    start = (jnp.zeros((g, num_words, o), jnp.uint32), jnp.zeros((g, steps, o), jnp.int32))
    return jax.lax.fori_loop(0, steps, step, start)


def _unpack(bits: Array, f: int) -> Array:
    """``(G, W, O)`` bit sets -> ``(G, f, O)`` bools (bit ``i`` of word ``w`` is input 32w+i)."""
    g, w, o = bits.shape
    shift = jax.lax.broadcasted_iota(jnp.uint32, (1, 1, 32, 1), 2)
    return (((bits[:, :, None, :] >> shift) & 1) == 1).reshape(g, 32 * w, o)[:, :f]


def _pack(mask: Array) -> Array:
    """``(G, F, O)`` bools -> ``(G, ceil(F/32), O)`` uint32 bit sets."""
    g, f, o = mask.shape
    w = -(-f // 32)
    padded = jnp.pad(mask, ((0, 0), (0, 32 * w - f), (0, 0))).reshape(g, w, 32, o)
    shift = jax.lax.broadcasted_iota(jnp.uint32, (1, 1, 32, 1), 2)
    return jnp.sum(padded.astype(jnp.uint32) << shift, axis=2, dtype=jnp.uint32)


# ----------------------------------------------------------------------------- samplers


def _key_bits(f: int) -> int:
    # 2^b >= F/8: at most 8 keys per value on average, so a tie set above 64 has probability
    # below 2^-100 (Chernoff bound on Binomial(F, 2^-b), over the 2^b values).
    return max(1, math.ceil(math.log2(f)) - 3)


def _kth_smallest(keys: Array, k: int, bits: int) -> tuple[Array, Array]:
    """Per unit, ``t`` = the k-th smallest key and ``count(keys < t)``, as ``(G, 1, O)``."""
    t = jnp.zeros((keys.shape[0], 1, keys.shape[2]), jnp.int32)
    below = jnp.zeros_like(t)
    for b in reversed(range(bits)):  # t = the largest value with fewer than k keys below
        candidate = t + (1 << b)
        count = jnp.sum(keys < candidate.astype(keys.dtype), axis=1, keepdims=True,
                        dtype=jnp.int32)
        fewer = count < k
        t, below = jnp.where(fewer, candidate, t), jnp.where(fewer, count, below)
    return t, below


def _keep_by_keys(key: Array, free: Array, free_bits: int, k: int) -> Array:
    g, f, o = free.shape
    bits = _key_bits(f)
    key_ties, key_extra = jax.random.split(key)
    if bits <= free_bits:
        keys = free >> (free_bits - bits)
    else:  # fan-ins above 2^(free_bits+3): the missing low bits from extra words
        extra, _ = _words(key_extra, free.shape)
        keys = (free << (bits - free_bits)) | (extra >> (32 - bits + free_bits))
    keys = keys.astype(jnp.uint16 if bits <= 16 else jnp.uint32)
    t, below = _kth_smallest(keys, k, bits)
    tie = keys == t.astype(keys.dtype)
    tie_words = _pack(tie)
    per_word = jax.lax.population_count(tie_words).astype(jnp.int32)
    ties = jnp.sum(per_word, axis=1, keepdims=True)
    needed = k - below  # >= 1, <= ties
    subset, _ = _floyd(key_ties, ties, needed, _TIE_BITS, _TIE_BITS // 32, (g, o))
    # rank of each tied input among its unit's ties: ties in earlier words, then earlier bits
    earlier = jnp.cumsum(per_word, axis=1) - per_word
    shift = jax.lax.broadcasted_iota(jnp.uint32, (1, 1, 32, 1), 2)
    low_bits = tie_words[:, :, None, :] & ((jnp.uint32(1) << shift) - 1)
    rank = (earlier[:, :, None, :] + jax.lax.population_count(low_bits).astype(jnp.int32)
            ).reshape(g, -1, o)[:, :f]
    word = jnp.where(rank < 32, subset[:, :1], subset[:, 1:2])
    in_subset = ((word >> (rank & 31).astype(jnp.uint32)) & 1) == 1
    # A unit with more than 64 ties (probability < 2^-100) keeps its first ones instead.
    chosen_tie = jnp.where(ties <= _TIE_BITS, in_subset, rank < needed)
    return (keys < t.astype(keys.dtype)) | (tie & chosen_tie)


def _uses_floyd(n: int, m: int) -> bool:
    # Floyd takes m sequential steps over the units; the keys take ~log2(n) passes over
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
    key_values, key_positions = jax.random.split(_typed_key(key))
    if method == "kept":  # only k values, put at the chosen inputs
        _, inputs = _floyd(key_positions, f, k, k, -(-f // 32), units)
        values, _, _ = _normals(key_values, (g, k, o), dtype, scale)
        rows = jax.lax.broadcasted_iota(jnp.int32, (g, k, o), 0)
        cols = jax.lax.broadcasted_iota(jnp.int32, (g, k, o), 2)
        return jnp.zeros((g, f, o), dtype).at[rows, inputs, cols].set(
            values, unique_indices=True)
    z, free, free_bits = _normals(key_values, (g, f, o), dtype, scale)
    if method == "dense":
        return z
    if method == "zeros":
        zeroed, _ = _floyd(key_positions, f, f - k, f - k, -(-f // 32), units)
        keep = ~_unpack(zeroed, f)
    else:
        keep = _keep_by_keys(key_positions, free, free_bits, k)
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

    Sampling is vectorized over units (no loop over units): the positions are
    drawn by Floyd's subset algorithm (O(k²) per unit, exact) when k, or the
    number of zeros, is small, else by sorting 64 random bits per entry.

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

    def plan(dims: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
        """``(axis order units-first, fan_in, k)``, or raises for an unusable shape."""
        ins, outs, batch, receptive = fan_axes(_NAME, dims, in_axis, out_axis, batch_axis)
        fan_in = int(math.prod(dims[a] for a in (*receptive, *ins)))
        k = nonzero_count(fan_in, num_nonzero, zero_fraction=zero_fraction,
                          nonzero_fraction=nonzero_fraction)
        if k < 1 and 0 not in dims:
            raise ValueError(
                f"{_NAME}: {count_name}={count_value!r} leaves no non-zero input for "
                f"fan_in={fan_in} (shape={dims}); every unit needs at least one."
            )
        return (*batch, *sorted((*receptive, *ins)), *outs), fan_in, k

    def check(dims: tuple[int, ...]) -> None:
        plan(dims)

    @initializer(_NAME, dtype=dtype, allow_complex=False, check=check,
                 bound=lambda _: (stddev * normal_max_abs(np.dtype(np.float64)),
                                  f"stddev={stddev!r}"),
                 cache_key=("sparse", num_nonzero, zero_fraction, nonzero_fraction, stddev,
                            tuple(axes.values())))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        # Work on a (G, fan_in, O) array: one unit per (batch, out) position.
        order, fan_in, k = plan(shape)
        ins, outs, batch, _ = fan_axes(_NAME, shape, in_axis, out_axis, batch_axis)
        units = (math.prod(shape[a] for a in batch), math.prod(shape[a] for a in outs))
        method = _sampling_method(fan_in, k)
        scale = np.asarray(math.sqrt(2.0) * stddev, dtype)
        w = _sparse_matrix(key, units, fan_in, k, dtype, method, scale)
        return w.reshape([shape[a] for a in order]).transpose(np.argsort(order))

    return init
