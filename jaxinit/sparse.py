"""Sparse initialization: every unit gets a fixed number of non-zero incoming weights.

Martens (2010), "Deep learning via Hessian-free optimization": each unit is
connected to k = 15 randomly chosen inputs, the other weights are zero. The
total input of a unit then does not grow with the size of the layer below, so
units saturate less, and their responses stay diverse.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxinit.contract import initializer, scale_samples
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


def _check_fraction(arg_name: str, value: float) -> float:
    fraction = check_real(_NAME, arg_name, value)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"{_NAME}: {arg_name}={value!r} is outside (0, 1); accepted: 0 < f < 1.")
    return fraction


def _floyd_subsets(key: Array, num_rows: int, n: int, m: int) -> Array:
    """``(num_rows, m)`` distinct indices in ``[0, n)``: an independent uniform m-subset per row.

    Floyd's algorithm, vectorized over rows: for ``j = n-m, …, n-1`` draw
    ``t ~ U{0..j}`` and take ``t``, or ``j`` if ``t`` was already taken. Every
    m-subset comes out with probability ``1 / C(n, m)`` exactly. Cost
    O(num_rows · m²), so it is used only for small ``m``.
    """

    upper = jnp.arange(n - m + 1, n + 1, dtype=jnp.int32)  # step i draws from {0..n-m+i}
    draws = jax.random.randint(key, (m, num_rows), 0, upper[:, None], dtype=jnp.int32)

    def step(i: Array, chosen: Array) -> Array:
        t = draws[i]
        taken = jnp.any(chosen == t[:, None], axis=1)
        return chosen.at[:, i].set(jnp.where(taken, n - m + i, t))

    start = jnp.full((num_rows, m), -1, jnp.int32)
    return jax.lax.fori_loop(0, m, step, start)


def _sorted_permutations(key: Array, num_rows: int, n: int) -> Array:
    """``(num_rows, n)``: an independent uniform permutation of ``range(n)`` per row.

    Sorts 64 random bits per entry (two 32-bit sort keys): a tie, which would
    favour the lower index, has probability below ``n² / 2⁶⁵`` per row.
    """
    key_hi, key_lo = jax.random.split(key)
    hi = jax.random.bits(key_hi, (num_rows, n), jnp.uint32)
    lo = jax.random.bits(key_lo, (num_rows, n), jnp.uint32)
    iota = jax.lax.broadcasted_iota(jnp.int32, (num_rows, n), 1)
    return jax.lax.sort((hi, lo, iota), dimension=1, num_keys=2)[2]


def _uses_floyd(n: int, m: int) -> bool:
    # Floyd costs ~m² compares per row, a sort ~n·log2(n) (with a larger constant).
    return m * m <= 8 * n * max(math.log2(n), 1.0)


def _sampling_method(n: int, k: int) -> str:
    """How to place k non-zeros among n: all of them, Floyd on the kept or zero set, or a sort."""
    if k >= n:
        return "dense"
    if k <= n - k:
        return "floyd_kept" if _uses_floyd(n, k) else "sort"
    return "floyd_zeros" if _uses_floyd(n, n - k) else "sort"


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _sparse_rows(key: Array, num_rows: int, n: int, k: int, dtype: np.dtype, method: str
                 ) -> Array:
    """``(num_rows, n)`` with exactly k N(0, 1) entries per row at uniform random positions."""
    key_values, key_positions = jax.random.split(key)
    if method == "dense":
        return jax.random.normal(key_values, (num_rows, n), dtype)
    rows = jnp.arange(num_rows)[:, None]
    if method == "floyd_kept":
        positions = _floyd_subsets(key_positions, num_rows, n, k)
        values = jax.random.normal(key_values, (num_rows, k), dtype)
        return jnp.zeros((num_rows, n), dtype).at[rows, positions].set(values)
    if method == "floyd_zeros":
        zeros_at = _floyd_subsets(key_positions, num_rows, n, n - k)
        keep = jnp.ones((num_rows, n), bool).at[rows, zeros_at].set(False)
    else:
        ranks = _sorted_permutations(key_positions, num_rows, n)
        keep = jnp.zeros((num_rows, n), bool).at[rows, ranks[:, :k]].set(True)
    dense = jax.random.normal(key_values, (num_rows, n), dtype)
    return jnp.where(keep, dense, jnp.zeros((), dtype))


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
        return (*batch, *outs, *receptive, *ins), fan_in, k

    def check(dims: tuple[int, ...]) -> None:
        plan(dims)

    @initializer(_NAME, dtype=dtype, allow_complex=False, check=check,
                 bound=lambda _: (stddev * normal_max_abs(np.dtype(np.float64)),
                                  f"stddev={stddev!r}"),
                 cache_key=("sparse", num_nonzero, zero_fraction, nonzero_fraction, stddev,
                            tuple(axes.values())))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        # Work on a (units, fan_in) matrix: units are batch × out positions.
        order, fan_in, k = plan(shape)
        num_units = math.prod(shape) // fan_in
        method = _sampling_method(fan_in, k)
        rows = scale_samples(_sparse_rows(key, num_units, fan_in, k, dtype, method), stddev)
        return rows.reshape([shape[a] for a in order]).transpose(np.argsort(order))

    return init
