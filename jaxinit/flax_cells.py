"""Flax's recurrent cells: which one is building a parameter, and the forget-gate bias.

``linen.LSTMCell``, ``linen.OptimizedLSTMCell`` and ``nnx.LSTMCell`` keep one
``Dense``/``Linear`` per gate, all with the same ``bias_init``. In linen the
gate being built is known (the sub-module's name, e.g. ``hf``, under its cell),
so :func:`cell_site` lets the gate initializers of :mod:`jaxinit.gates` give
each gate its own value; ``nnx.LSTMCell`` gives no such clue, and
:func:`set_forget_bias` sets the forget gate in the constructed or initialized
parameters instead (Jozefowicz et al. 2015: a forget-gate bias of 1).
"""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp

from jaxinit.core import check_real

__all__ = ["CellSite", "cell_site", "set_forget_bias"]


def set_forget_bias(target: Any, value: float = 1.0) -> Any:
    """Sets the forget-gate bias of Flax LSTM cells that keep one bias per gate.

    ``linen.LSTMCell``/``linen.OptimizedLSTMCell`` (and ``nnx.LSTMCell``) give
    every gate its own ``Dense`` with the same ``bias_init``, so an initializer
    cannot tell the forget gate from the others; set it after ``init``:

    * a linen variable tree (``{"params": ...}`` or the params themselves, at
      any nesting, e.g. inside ``nn.RNN``): returns a new tree in which every
      ``{"hi", "hf", "hg", "ho"}`` group has ``hf["bias"]`` filled with ``value``;
    * an ``nnx.LSTMCell``: sets ``cell.hf.bias`` in place and returns the cell;
    * an ``nnx.OptimizedLSTMCell``: sets the ``f`` block of ``cell.dense_h.bias``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> import flax.linen as nn
      >>> from jaxinit.flax_cells import set_forget_bias
      >>> cell = nn.LSTMCell(3)
      >>> x = jnp.ones((1, 2))
      >>> carry = cell.initialize_carry(jax.random.key(1), x.shape)
      >>> variables = cell.init(jax.random.key(0), carry, x)
      >>> set_forget_bias(variables)["params"]["hf"]["bias"].tolist()
      [1.0, 1.0, 1.0]
    """
    name = "jaxinit.set_forget_bias"
    value = check_real(name, "value", value)
    hf = getattr(target, "hf", None)
    if hf is not None and hasattr(hf, "bias"):
        hf.bias[...] = jnp.full_like(hf.bias[...], value)
        return target
    dense_h = getattr(target, "dense_h", None)
    if dense_h is not None and getattr(dense_h, "bias", None) is not None:
        bias = dense_h.bias[...]
        if bias.shape[-1] % 4:
            raise ValueError(f"{name}: dense_h.bias of shape {bias.shape} is not a 4-gate bias.")
        h = bias.shape[-1] // 4
        dense_h.bias[...] = bias.at[..., h:2 * h].set(value)
        return target
    if isinstance(target, Mapping):
        found = [False]
        new = _set_in_tree(target, value, found)
        if not found[0]:
            raise ValueError(
                f"{name}: found no LSTM gate parameters (keys 'hi', 'hf', 'hg', 'ho' with a "
                "'bias' under 'hf') in the given tree."
            )
        return new
    raise TypeError(
        f"{name}: target of type {type(target).__name__} is not supported; accepted: a linen "
        "variable tree, an nnx.LSTMCell or an nnx.OptimizedLSTMCell."
    )


def _set_in_tree(tree: Mapping, value: float, found: list[bool]) -> dict:
    out: dict = {}
    is_lstm = {"hi", "hf", "hg", "ho"} <= set(tree) and isinstance(tree["hf"], Mapping) \
        and "bias" in tree["hf"]
    for k, v in tree.items():
        if is_lstm and k == "hf":
            out[k] = {**v, "bias": jnp.full_like(v["bias"], value)}
            found[0] = True
        elif isinstance(v, Mapping):
            out[k] = _set_in_tree(v, value, found)
        else:
            out[k] = v
    return out


# ------------------------------------------------------------------------------------------
# Which Flax cell is calling an initializer.


class CellSite(NamedTuple):
    """A Flax recurrent cell building one of its parameters with a gate initializer.

    ``layout``: ``"fused"`` (one parameter holds every gate, in ``gates`` order
    along the last axis), ``"per_gate"`` (one parameter per gate) or
    ``"ungated"`` (a cell without gates). For per-gate cells, ``gate`` is the
    gate of the parameter being built (``None`` when nothing tells it:
    ``nnx.LSTMCell``) and ``bias_gate`` the gate whose constant its bias takes
    (``None`` for the recurrent candidate bias of a GRU/MGU, ``hn``, which the
    reset gate multiplies and which the fused layout does not have).
    """

    cell: str
    layout: str
    gates: tuple[str, ...]
    gate: str | None = None
    bias_gate: str | None = None


_LSTM_GATES = ("i", "f", "g", "o")
_GRU_GATES = ("r", "z", "n")


def _linen_part(cell: str, gates: tuple[str, ...], part: str) -> CellSite | None:
    """The gate of a linen cell's sub-module: ``ii``/``hi`` -> ``i`` (flax 0.12 names)."""
    if len(part) != 2 or part[0] not in "ih" or part[1] not in gates:
        return None
    gate = part[1]
    recurrent_candidate = part == "hn"  # GRU/MGU: multiplied by the reset gate
    return CellSite(cell, "per_gate", gates, gate, None if recurrent_candidate else gate)


def _linen_site() -> CellSite | None:
    module_mod = sys.modules.get("flax.linen.module")
    recurrent = sys.modules.get("flax.linen.recurrent")
    if module_mod is None or recurrent is None:
        return None
    stack = getattr(getattr(module_mod, "_context", None), "module_stack", None)
    module = stack[-1] if stack else None
    parent = getattr(module, "parent", None)
    if module is None or parent is None:
        return None
    part = getattr(module, "name", None) or ""
    for cls_name, gates in (("LSTMCell", _LSTM_GATES), ("OptimizedLSTMCell", _LSTM_GATES),
                            ("GRUCell", _GRU_GATES), ("MGUCell", ("f", "n"))):
        if isinstance(parent, getattr(recurrent, cls_name)):
            return _linen_part(f"linen.{cls_name}", gates, part)
    if isinstance(parent, recurrent.SimpleCell):
        return CellSite("linen.SimpleCell", "ungated", ())
    return None


@functools.lru_cache(maxsize=4)
def _nnx_constructors(recurrent: Any) -> dict[Any, CellSite]:
    return {
        recurrent.LSTMCell.__init__.__code__: CellSite("nnx.LSTMCell", "per_gate", _LSTM_GATES),
        recurrent.OptimizedLSTMCell.__init__.__code__:
            CellSite("nnx.OptimizedLSTMCell", "fused", _LSTM_GATES),
        recurrent.GRUCell.__init__.__code__: CellSite("nnx.GRUCell", "fused", _GRU_GATES),
        recurrent.SimpleCell.__init__.__code__: CellSite("nnx.SimpleCell", "ungated", ()),
    }


def _nnx_site() -> CellSite | None:
    # nnx cells build their Linear layers in __init__: the constructor is on the call stack.
    recurrent = sys.modules.get("flax.nnx.nn.recurrent")
    if recurrent is None:
        return None
    constructors = _nnx_constructors(recurrent)
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        site = constructors.get(frame.f_code)
        if site is not None:
            return site
        frame = frame.f_back
    return None


def cell_site() -> CellSite | None:
    """The Flax recurrent cell whose parameter the calling initializer is building, if any.

    linen cells create their gate layers inside ``__call__`` during ``init``,
    so the module being initialized (a ``Dense``/``DenseParams`` named ``hf``,
    ``iz``, ...) and its parent cell are known; nnx cells create theirs in
    ``__init__``, which is then on the call stack. Only Flax's own cells are
    recognized; Flax not being imported means no cell is calling.
    """
    return _linen_site() or _nnx_site()
