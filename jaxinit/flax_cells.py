"""Editing the parameters of Flax LSTM cells after ``init``: the forget-gate bias.

``linen.LSTMCell``, ``linen.OptimizedLSTMCell`` and ``nnx.LSTMCell`` keep one
``Dense``/``Linear`` per gate, all with the same ``bias_init``, so no
initializer can set the forget gate alone; :func:`set_forget_bias` sets it in
the initialized parameters (Jozefowicz et al. 2015: a forget-gate bias of 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from jaxinit.core import check_real

__all__ = ["set_forget_bias"]


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
