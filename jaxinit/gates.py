"""Fused gate weights of recurrent cells: gate-wise initializers and gate biases.

Flax's LSTM and GRU cells keep their gates either as separate parameters (one
``Dense``/``Linear`` per gate) or fused along the last axis (one kernel of
``num_gates * hidden`` columns). :func:`gate_blocks` initializes fused gates
block by block; :func:`gate_bias` sets chosen gate biases to constants, such
as the forget-gate bias of 1 of Jozefowicz et al. (2015) (:func:`lstm_bias`).
Cells with one parameter per gate are edited after ``init`` instead
(:func:`jaxinit.set_forget_bias`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinit.constant import zeros
from jaxinit.contract import base_default_dtype, initializer
from jaxinit.core import (
    Array,
    Initializer,
    check_callable,
    check_int,
    check_real,
)

__all__ = ["GATE_ORDERS", "gate_bias", "gate_blocks", "lstm_bias"]

#: Gate order along the last axis of the fused parameters of Flax cells that
#: take a ``bias_init`` for a fused bias (flax 0.12 source):
#: ``nnx.OptimizedLSTMCell``: ``dense_h`` kernel ``(h, 4h)`` and bias ``(4h,)``;
#: ``nnx.GRUCell``: ``dense_i`` bias ``(3h,)``, kernels ``(in, 3h)``/``(h, 3h)``;
#: ``linen.ConvLSTMCell``: kernels ``ih``/``hh`` of ``4h`` features (it takes no
#: initializer options and already adds 1 to the forget gate inside the cell).
#: ``linen.LSTMCell``, ``linen.OptimizedLSTMCell`` and ``nnx.LSTMCell`` have one
#: parameter per gate instead (``hi``, ``hf``, ``hg``, ``ho``) that all share one
#: ``bias_init``; for them use :func:`set_forget_bias` after ``init``.
#: PyTorch's ``nn.LSTM`` also uses ``i, f, g, o``.
GATE_ORDERS: dict[str, tuple[str, ...]] = {
    "nnx.OptimizedLSTMCell": ("i", "f", "g", "o"),
    "nnx.GRUCell": ("r", "z", "n"),
    "linen.ConvLSTMCell": ("i", "g", "f", "o"),
}

_SEPARATE_GATE_CELLS = ("linen.LSTMCell", "linen.OptimizedLSTMCell", "nnx.LSTMCell")


_SEPARATE_GATE_CELLS = ("linen.LSTMCell", "linen.OptimizedLSTMCell", "nnx.LSTMCell")


def _block_shape(name: str, dims: tuple[int, ...], axis: int, num_gates: int) -> tuple[int, ...]:
    if not dims:
        raise ValueError(f"{name}: shape=() has no gate axis; accepted: rank >= 1.")
    if not -len(dims) <= axis < len(dims):
        raise ValueError(f"{name}: axis={axis} is out of range for shape={dims}; accepted: "
                         f"an axis in [{-len(dims)}, {len(dims)}).")
    size = dims[axis]
    if size % num_gates:
        raise ValueError(
            f"{name}: shape={dims} has {size} entries along axis {axis}, not a multiple of "
            f"num_gates={num_gates}."
        )
    return dims[:axis % len(dims)] + (size // num_gates,) + dims[axis % len(dims) + 1:]


def gate_blocks(init: Initializer, num_gates: int, *, axis: int = -1) -> Initializer:
    """Builds an initializer applying ``init`` independently to each gate block of a fused weight.

    The weight's ``axis`` (the output axis, ``-1`` in Flax) is cut into
    ``num_gates`` equal blocks; block ``g`` is ``init(fold_in(key, g), block_shape)``.
    For a fused LSTM recurrent kernel ``(h, 4h)``,
    ``gate_blocks(orthogonal(), 4)`` gives four independent ``(h, h)``
    orthogonal blocks, whereas ``orthogonal()`` on the whole ``(h, 4h)`` kernel
    gives orthonormal rows, so each block alone has singular values in (0, 1), r.m.s. 1/2.
    Works for kernels and for fused biases alike.

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
        parts = [init(jax.random.fold_in(key, g), block, dtype) for g in range(num_gates)]
        return jnp.concatenate(parts, axis=axis)

    return blocks_init


def _resolve_order(name: str, gate_order: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(gate_order, str):
        if gate_order in GATE_ORDERS:
            return GATE_ORDERS[gate_order]
        hint = (" It keeps one bias parameter per gate: use jaxinit.set_forget_bias on its "
                "parameters after init." if gate_order in _SEPARATE_GATE_CELLS else "")
        raise ValueError(
            f"{name}: gate_order={gate_order!r} is not a known fused-gate cell; accepted: "
            + ", ".join(repr(c) for c in GATE_ORDERS)
            + " or a sequence of gate names such as ('i', 'f', 'g', 'o')." + hint
        )
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
    """Builds an initializer for a fused gate bias that sets chosen gates to constants.

    The bias's last axis holds ``len(gate_order)`` equal blocks in
    ``gate_order``; the block of each gate named in ``values`` is filled with
    its value, the other blocks come from ``base`` (zeros by default). Biases
    are "set to heuristically chosen constants" (Goodfellow et al. 2016, §8.4);
    the classic one is the LSTM forget-gate bias of 1 (Gers et al. 2000;
    Jozefowicz et al. 2015), so the cell remembers by default at the start.

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
    num_gates = len(order)

    def check(dims: tuple[int, ...]) -> None:
        _block_shape(name, dims, -1, num_gates)

    def bound(dims: tuple[int, ...]) -> tuple[Any, str]:
        return max(abs(v) for v in constants.values()), f"values={values!r}"

    @initializer(name, dtype=base_default_dtype(base), min_rank=1, check=check, bound=bound)
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        b = jnp.asarray(base(key, shape, dtype), dtype)
        gate_of_column = np.repeat(np.arange(num_gates), shape[-1] // num_gates)
        for g, gate in enumerate(order):
            if gate in constants:
                b = jnp.where(gate_of_column == g, jnp.asarray(constants[gate], dtype), b)
        return b

    return init


def lstm_bias(forget: float = 1.0, cell: str | Sequence[str] = "nnx.OptimizedLSTMCell"
              ) -> Initializer:
    """Builds the fused LSTM bias initializer: forget gate ``forget``, other gates 0.

    Jozefowicz et al. (2015) found a forget-gate bias of 1 closes most of
    the gap between the LSTM and the best architectures they searched.
    ``gate_bias({"f": forget}, cell)``. For Flax cells with one bias
    per gate (``linen.LSTMCell``, ``linen.OptimizedLSTMCell``,
    ``nnx.LSTMCell``) use :func:`set_forget_bias` instead.

    Example:
      >>> import jax
      >>> from jaxinit.gates import lstm_bias
      >>> lstm_bias()(jax.random.key(0), (8,)).tolist()
      [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    """
    return _gate_bias("jaxinit.lstm_bias", {"f": forget}, cell, zeros)
