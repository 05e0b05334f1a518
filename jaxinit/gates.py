"""Fused gate weights of recurrent cells: gate-wise initializers and gate biases.

Flax's LSTM and GRU cells keep their gates either as separate parameters (one
``Dense``/``Linear`` per gate) or fused along the last axis (one kernel of
``num_gates * hidden`` columns). :func:`gate_blocks` initializes fused gates
block by block; :func:`gate_bias` sets chosen gate biases to constants, such
as the forget-gate bias of 1 of Jozefowicz et al. (2015) (:func:`lstm_bias`).

Both recognize Flax's own cells when a cell calls them
(:func:`jaxinit.flax_cells.cell_site`) and follow that cell's layout: a fused
parameter is cut in the cell's gate order; in a linen cell with one parameter
per gate (``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``, ``MGUCell``) each
gate's parameter gets that gate's value; where nothing tells which gate is
being built (``nnx.LSTMCell``) a gate bias is refused with a pointer to
:func:`jaxinit.set_forget_bias`, so no gate ever gets a silently wrong value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxinit import threefry
from jaxinit.constant import zeros
from jaxinit.contract import base_default_dtype, initializer
from jaxinit.core import (
    Array,
    DTypeLike,
    Initializer,
    OutSharding,
    Shape,
    check_callable,
    check_int,
    check_real,
)
from jaxinit.flax_cells import CellSite, cell_site

__all__ = ["GATE_ORDERS", "gate_bias", "gate_blocks", "lstm_bias"]

#: Gate order along the last axis of the fused parameters of Flax cells
#: (flax 0.12 source): ``nnx.OptimizedLSTMCell``: ``dense_h`` kernel ``(h, 4h)``
#: and bias ``(4h,)``; ``nnx.GRUCell``: ``dense_i`` bias ``(3h,)``, kernels
#: ``(in, 3h)``/``(h, 3h)``; ``linen.ConvLSTMCell``: kernels and biases of ``ih``/``hh``
#: with ``4h`` features (it takes no initializer options and adds 1 to the forget
#: gate itself). ``linen.LSTMCell``, ``linen.OptimizedLSTMCell``, ``linen.GRUCell``
#: and ``nnx.LSTMCell`` have one parameter per gate instead (``hi``, ``hf``, ...).
#: PyTorch's ``nn.LSTM`` also uses ``i, f, g, o``.
GATE_ORDERS: dict[str, tuple[str, ...]] = {
    "nnx.OptimizedLSTMCell": ("i", "f", "g", "o"),
    "nnx.GRUCell": ("r", "z", "n"),
    "linen.ConvLSTMCell": ("i", "g", "f", "o"),
}

_SEPARATE_GATE_CELLS = ("linen.LSTMCell", "linen.OptimizedLSTMCell", "linen.GRUCell",
                        "nnx.LSTMCell")

_SET_FORGET_BIAS_HINT = (
    "Create the cell with its default bias_init and call jaxinit.set_forget_bias(cell, "
    "value) after construction, or use nnx.OptimizedLSTMCell, whose fused bias it can set."
)


def _block_shape(name: str, dims: tuple[int, ...], axis: int, num_gates: int) -> tuple[int, ...]:
    if not dims:
        raise ValueError(f"{name}: shape=() has no gate axis; accepted: rank >= 1.")
    if not -len(dims) <= axis < len(dims):
        raise ValueError(f"{name}: axis={axis} is out of range for shape={dims} (rank "
                         f"{len(dims)}); accepted: an axis in [{-len(dims)}, {len(dims) - 1}].")
    size = dims[axis]
    if size % num_gates:
        raise ValueError(
            f"{name}: shape={dims} has {size} entries along axis {axis}, not a multiple of "
            f"num_gates={num_gates}."
        )
    return dims[:axis % len(dims)] + (size // num_gates,) + dims[axis % len(dims) + 1:]


def _ungated_error(name: str, site: CellSite) -> ValueError:
    return ValueError(f"{name}: {site.cell} has no gates, so there is no gate layout to "
                      "follow; pass a plain initializer (e.g. jaxinit.zeros for its bias).")


def gate_blocks(init: Initializer, num_gates: int, *, axis: int = -1) -> Initializer:
    """Builds an initializer applying ``init`` independently to each gate block of a fused weight.

    The weight's ``axis`` (the output axis, ``-1`` in Flax) is cut into
    ``num_gates`` equal blocks; block ``g`` is ``init(fold_in(key, g), block_shape)``.
    For a fused LSTM recurrent kernel ``(h, 4h)``,
    ``gate_blocks(orthogonal(), 4)`` gives four independent ``(h, h)``
    orthogonal blocks, whereas ``orthogonal()`` on the whole ``(h, 4h)`` kernel
    gives orthonormal rows, so each block alone has singular values in (0, 1), r.m.s. 1/2.
    Works for kernels and for fused biases alike.

    Inside a Flax cell that keeps one parameter per gate (linen ``LSTMCell``,
    ``OptimizedLSTMCell``, ``GRUCell``, ``MGUCell``; ``nnx.LSTMCell``) each
    parameter already is one gate block, so ``init`` is applied to it whole;
    ``num_gates`` must then match the cell's number of gates (also in fused cells).

    Args:
      init: any initializer.
      num_gates: number of gate blocks (LSTM 4, GRU 3).
      axis: the axis the gates are concatenated along.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxinit.gates import gate_blocks
      >>> init = gate_blocks(jax.nn.initializers.orthogonal(), 4)
      >>> w = init(jax.random.key(0), (8, 32))
      >>> bool(jnp.allclose(w[:, 8:16].T @ w[:, 8:16], jnp.eye(8), atol=1e-5))
      True
    """
    name = "jaxinit.gate_blocks"
    check_callable(name, "init", init)
    num_gates = check_int(name, "num_gates", num_gates, minimum=1)
    axis = check_int(name, "axis", axis)
    base_dtype = base_default_dtype(init)

    def check(dims: tuple[int, ...]) -> None:
        _block_shape(name, dims, axis, num_gates)

    @initializer(name, dtype=base_dtype, check=check)
    def blocks_init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        block = _block_shape(name, shape, axis, num_gates)
        # A Python loop over the (few) gates keeps each factorization unbatched.
        parts = [init(threefry.fold_in(key, g), block, dtype) for g in range(num_gates)]
        return jnp.concatenate(parts, axis=axis)

    @initializer(name, dtype=base_dtype)
    def whole_init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        return init(key, shape, dtype)

    return follow_cell(name, "num_gates", num_gates, axis, blocks_init, whole_init)


def follow_cell(name: str, option: str, num_gates: int, axis: int, blocks_init: Initializer,
                whole_init: Initializer) -> Initializer:
    """The initializer that lays out gate blocks as the calling Flax cell does.

    ``blocks_init`` cuts ``axis`` into ``num_gates`` blocks, ``whole_init`` is one
    block's initializer. Outside a Flax cell, and in a fused cell with
    ``num_gates`` gates, ``blocks_init``; in a cell that keeps one parameter per
    gate, ``whole_init`` (the parameter is one block); any other cell refuses,
    naming ``option``, the factory's argument that gave ``num_gates``.
    """

    default_dtype = base_default_dtype(blocks_init)

    def cell_aware_init(key: Array, shape: Shape, dtype: DTypeLike | None = default_dtype,
                        out_sharding: OutSharding = None) -> Array:
        site = cell_site()
        if site is None:
            return blocks_init(key, shape, dtype, out_sharding)
        if site.layout == "ungated":
            if num_gates > 1:
                raise _ungated_error(name, site)
            return whole_init(key, shape, dtype, out_sharding)
        if num_gates != len(site.gates):
            raise ValueError(f"{name}: {option}={num_gates}, but {site.cell} has "
                             f"{len(site.gates)} gates {site.gates}.")
        if site.layout == "per_gate":
            return whole_init(key, shape, dtype, out_sharding)
        rank = len(shape) if isinstance(shape, Sequence) else 1
        if rank and axis % rank != rank - 1:
            raise ValueError(f"{name}: axis={axis}, but {site.cell} concatenates its gates "
                             "along the last axis; accepted: axis=-1.")
        return blocks_init(key, shape, dtype, out_sharding)

    return _as_initializer(cell_aware_init, blocks_init, name)


def _as_initializer(outer: Any, inner: Any, name: str) -> Initializer:
    outer.bound = inner.bound
    outer.__name__ = outer.__qualname__ = name.rpartition(".")[2]
    outer.__doc__ = inner.__doc__
    return outer  # type: ignore[no-any-return]


def _resolve_order(name: str, gate_order: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(gate_order, str):
        if gate_order in GATE_ORDERS:
            return GATE_ORDERS[gate_order]
        hint = (" It keeps one bias parameter per gate: pass the initializer as its "
                "bias_init with any gate_order naming its gates, or use "
                "jaxinit.set_forget_bias on its parameters after init."
                if gate_order in _SEPARATE_GATE_CELLS else "")
        raise ValueError(
            f"{name}: gate_order={gate_order!r} is not a known fused-gate cell; accepted: "
            + ", ".join(repr(c) for c in GATE_ORDERS)
            + " or a sequence of gate names such as ('i', 'f', 'g', 'o')." + hint
        )
    if not isinstance(gate_order, Sequence):
        raise TypeError(f"{name}: gate_order={gate_order!r} must be a cell name or a sequence "
                        "of gate names.")
    order = tuple(gate_order)
    if not order or not all(isinstance(g, str) for g in order) or len(set(order)) != len(order):
        raise ValueError(
            f"{name}: gate_order={gate_order!r} must be a non-empty sequence of distinct gate "
            "names or a cell name."
        )
    return order


def gate_bias(
    values: Mapping[str, float],
    gate_order: str | Sequence[str] = "nnx.OptimizedLSTMCell",
    *,
    base: Initializer = zeros,
) -> Initializer:
    """Builds an initializer for a gate bias that sets chosen gates to constants.

    The bias's last axis holds ``len(gate_order)`` equal blocks in
    ``gate_order``; the block of each gate named in ``values`` is filled with
    its value, the other blocks come from ``base`` (zeros by default). Biases
    are "set to heuristically chosen constants" (Goodfellow et al. 2016, §8.4);
    the classic one is the LSTM forget-gate bias of 1 (Gers et al. 2000;
    Jozefowicz et al. 2015), so the cell remembers by default at the start.

    Passed as ``bias_init`` of a Flax cell, the cell's own layout is used and
    ``values`` must name its gates (LSTM ``i, f, g, o``; GRU ``r, z, n``):

    * fused cells (``nnx.OptimizedLSTMCell``, ``nnx.GRUCell``): blocks in the
      cell's order, whatever ``gate_order`` says;
    * linen ``LSTMCell``/``OptimizedLSTMCell``/``GRUCell``/``MGUCell`` (one
      bias per gate): each gate's bias is its constant, or ``base``; the GRU's
      recurrent candidate bias ``hn`` (multiplied by the reset gate) gets ``base``;
    * ``nnx.LSTMCell`` (one ``Linear`` per gate, nothing saying which is being
      built) and cells without gates: ``ValueError``; use
      :func:`jaxinit.set_forget_bias` after construction.

    Args:
      values: gate name → constant, e.g. ``{"f": 1.0}``.
      gate_order: a key of :data:`GATE_ORDERS` (``"nnx.OptimizedLSTMCell"``,
        ``"nnx.GRUCell"``, ``"linen.ConvLSTMCell"``) or the gate names in
        order, e.g. ``("i", "f", "g", "o")``.
      base: initializer of the gates not named in ``values``.

    Example:
      >>> import jax
      >>> from flax import nnx
      >>> from jaxinit.gates import gate_bias
      >>> cell = nnx.OptimizedLSTMCell(2, 3, bias_init=gate_bias({"f": 1.0}), rngs=nnx.Rngs(0))
      >>> cell.dense_h.bias[...].tolist()
      [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    return _gate_bias("jaxinit.gate_bias", values, gate_order, base)


def _fused_bias(name: str, constants: Mapping[str, float], order: tuple[str, ...],
                base: Initializer) -> Initializer:
    num_gates = len(order)

    def check(dims: tuple[int, ...]) -> None:
        _block_shape(name, dims, -1, num_gates)

    def bound(dims: tuple[int, ...]) -> tuple[Any, str]:
        return max(abs(v) for v in constants.values()), f"values={dict(constants)!r}"

    @initializer(name, dtype=base_default_dtype(base), min_rank=1, check=check, bound=bound)
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        b = jnp.asarray(base(key, shape, dtype), dtype)
        gate_of_column = np.repeat(np.arange(num_gates), shape[-1] // num_gates)
        for g, gate in enumerate(order):
            if gate in constants:
                b = jnp.where(gate_of_column == g, jnp.asarray(constants[gate], dtype), b)
        return b

    return init


def _single_gate_bias(name: str, value: float | None, base: Initializer) -> Initializer:
    """One gate's own bias: the constant ``value``, or ``base`` when ``None``."""
    if value is None:
        @initializer(name, dtype=base_default_dtype(base))
        def base_init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
            return jnp.asarray(base(key, shape, dtype), dtype)

        return base_init

    @initializer(name, dtype=base_default_dtype(base), random=False, in_output_dtype=True,
                 bound=lambda dims: (abs(value), f"values[...]={value!r}"))
    def constant_init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        return jnp.full(shape, value, dtype)

    return constant_init


def _gate_bias(name: str, values: Any, gate_order: str | Sequence[str], base: Initializer
               ) -> Initializer:
    order = _resolve_order(name, gate_order)
    if not isinstance(values, Mapping) or not values:
        raise TypeError(f"{name}: values={values!r} must be a non-empty mapping gate -> value.")
    unknown = [g for g in values if g not in order]
    if unknown:
        raise ValueError(f"{name}: values names gates {unknown} not in gate_order={order}.")
    constants = {g: check_real(name, f"values[{g!r}]", v) for g, v in values.items()}
    check_callable(name, "base", base)
    fused = {order: _fused_bias(name, constants, order, base)}
    single: dict[str | None, Initializer] = {}
    base_dtype = base_default_dtype(base)

    def cell_aware_init(key: Array, shape: Shape, dtype: DTypeLike | None = base_dtype,
                        out_sharding: OutSharding = None) -> Array:
        site = cell_site()
        if site is None:
            return fused[order](key, shape, dtype, out_sharding)
        if site.layout == "ungated":
            raise _ungated_error(name, site)
        foreign = [g for g in constants if g not in site.gates]
        if foreign:
            raise ValueError(f"{name}: values names gates {foreign}, but this is the bias of "
                             f"{site.cell}, whose gates are {site.gates}.")
        if site.layout == "fused":
            if site.gates not in fused:
                fused[site.gates] = _fused_bias(name, constants, site.gates, base)
            return fused[site.gates](key, shape, dtype, out_sharding)
        if site.gate is None:
            raise ValueError(
                f"{name}: {site.cell} builds one Linear per gate, all with this bias_init, and "
                "nothing tells an initializer which gate it is building, so the gate "
                f"constants {constants} cannot be placed. " + _SET_FORGET_BIAS_HINT)
        gate = site.bias_gate
        if gate not in single:
            single[gate] = _single_gate_bias(name, constants.get(gate) if gate else None, base)
        return single[gate](key, shape, dtype, out_sharding)

    return _as_initializer(cell_aware_init, fused[order], name)


def lstm_bias(forget: float = 1.0, cell: str | Sequence[str] = "nnx.OptimizedLSTMCell"
              ) -> Initializer:
    """Builds the LSTM bias initializer: forget gate ``forget``, other gates 0.

    Jozefowicz et al. (2015) found a forget-gate bias of 1 closes most of
    the gap between the LSTM and the best architectures they searched.
    ``gate_bias({"f": forget}, cell)``: a fused bias ``(4h,)`` in ``cell``'s
    gate order, and, as ``bias_init`` of a linen ``LSTMCell``/``OptimizedLSTMCell``,
    the forget gate's own bias ``forget`` and the others 0. ``nnx.LSTMCell``
    refuses it: use :func:`set_forget_bias` after construction.

    Example:
      >>> import jax
      >>> from jaxinit.gates import lstm_bias
      >>> lstm_bias()(jax.random.key(0), (8,)).tolist()
      [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    """
    return _gate_bias("jaxinit.lstm_bias", {"f": forget}, cell, zeros)
