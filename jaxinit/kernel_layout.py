"""How a kernel layer's output depends on its kernel: which axes are contracted with the
input, which become output features and which index independent matrices.

Known for the layers whose output is linear in the kernel: linen ``Dense``,
``DenseParams``, ``Conv``, ``ConvTranspose``, ``DenseGeneral``, ``Einsum`` and
nnx ``Linear``, ``Conv``, ``ConvTranspose``, ``LinearGeneral``, ``Einsum``.
LSUV rescales exactly these, and pre-initializes each kernel as the
orthonormal matrix (contracted axes, feature axes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
from flax import nnx
from flax.linen.recurrent import DenseParams

__all__ = ["KernelLayout", "kernel_layout"]


class KernelLayout(NamedTuple):
    """The kernel axes contracted with the input, those that become output features, and
    those along which the kernel holds independent matrices (einsum batch axes)."""

    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    batch: tuple[int, ...] = ()


def _einsum_layout(equation: str | None, ndim: int) -> KernelLayout | None:
    """``"BTD,NDH->BTNH"``: kernel axes in the input only are contracted (D), in the output
    only are features (N, H), in both are batch axes."""
    if not isinstance(equation, str) or "->" not in equation:
        return None
    lhs, out = equation.replace(" ", "").split("->")
    operands = lhs.split(",")
    if len(operands) != 2 or "." in operands[1] or len(operands[1]) != ndim:
        return None
    x, kernel = operands
    ins: list[int] = []
    outs: list[int] = []
    batch: list[int] = []
    for axis, letter in enumerate(kernel):
        (batch if letter in x and letter in out else outs if letter in out else ins).append(axis)
    return KernelLayout(tuple(ins), tuple(outs), tuple(batch)) if outs else None


def _general_layout(ndim: int, n_batch: int, n_features: int) -> KernelLayout:
    return KernelLayout(tuple(range(n_batch, ndim - n_features)),
                        tuple(range(ndim - n_features, ndim)), tuple(range(n_batch)))


def _count(axes: Any) -> int:
    return len(axes) if isinstance(axes, Sequence | Mapping) else 1


def kernel_layout(module: Any, ndim: int, call_kwargs: Mapping[str, Any]) -> KernelLayout | None:
    """How ``module``'s output depends on its kernel, for the layers whose output is linear
    in it; ``None`` for any other module."""
    if isinstance(module, nn.Dense | DenseParams | nnx.Linear) and ndim == 2:
        return KernelLayout((0,), (1,))
    if isinstance(module, nn.Conv | nn.ConvTranspose | nnx.Conv | nnx.ConvTranspose):
        return KernelLayout(tuple(range(ndim - 1)), (ndim - 1,))
    if isinstance(module, nn.DenseGeneral):
        return _general_layout(ndim, _count(module.batch_dims), _count(module.features))
    if isinstance(module, nnx.LinearGeneral):
        return _general_layout(ndim, len(module.batch_axis), len(module.out_features))
    if isinstance(module, nn.Einsum | nnx.Einsum):
        return _einsum_layout(call_kwargs.get("einsum_str") or module.einsum_str, ndim)
    return None
