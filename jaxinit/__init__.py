"""jaxinit: functional weight initializers for JAX and Flax.

Every scheme is a factory returning an initializer
``init(key, shape, dtype=None, out_sharding=None) -> jax.Array``, the protocol
of ``jax.nn.initializers``: pass it as ``kernel_init=``/``bias_init=`` to Flax
linen or nnx modules. ``zeros`` and ``ones`` are initializers themselves.

Models that take no initializer (Equinox, converted checkpoints) are
re-initialized by path with ``jaxinit.reinit``; ``jaxinit.torch`` has
PyTorch's ``torch.nn.init`` schemes, reading PyTorch's ``(out, in, *kernel)`` layout.
``jaxinit.threefry`` has ``jax.random``'s normal, uniform and truncated normal draws,
bit for bit, from one fused program (the draws of every scheme here).

``import jaxinit`` loads jax only; the tools that need Flax (diagnostics,
LSUV), the statistical assertions (``jaxinit.testing``, which needs scipy)
and ``jaxinit.torch`` load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from jaxinit import threefry
from jaxinit.constant import constant, ones, ones_init, zeros, zeros_init
from jaxinit.contract import shardable
from jaxinit.core import Initializer
from jaxinit.distributions import (
    normal,
    symmetric_uniform,
    truncated_normal,
    uniform,
    uniform_range,
)
from jaxinit.fans import calculate_gain, compute_fans
from jaxinit.flax_cells import set_forget_bias
from jaxinit.gates import GATE_ORDERS, gate_bias, gate_blocks, lstm_bias
from jaxinit.identity import delta_orthogonal, dirac, eye, identity
from jaxinit.layout import for_layout
from jaxinit.orthogonal import orthogonal
from jaxinit.presets import irnn, rbm_normal, relu_bias, residual_projection, residual_zero
from jaxinit.reinit import from_sibling, reinit
from jaxinit.scaled import scaled
from jaxinit.sharding import NonPartitionableRandomWarning
from jaxinit.sparse import sparse
from jaxinit.spectral import estimate_spectral_radius, spectral_radius
from jaxinit.variance_scaling import (
    glorot_normal,
    glorot_uniform,
    he_normal,
    he_uniform,
    kaiming_normal,
    kaiming_uniform,
    lecun_normal,
    lecun_uniform,
    variance_scaling,
    xavier_normal,
    xavier_uniform,
)

if TYPE_CHECKING:
    from jaxinit import testing, torch
    from jaxinit.diagnostics import LayerStats, format_table, layer_statistics, plot_statistics
    from jaxinit.unit_variance import LSUVLayer, LSUVReport, lsuv

__version__ = "0.2.0"

#: Public names loaded on first use: name -> module.
_LAZY = {
    "LayerStats": "jaxinit.diagnostics",
    "format_table": "jaxinit.diagnostics",
    "layer_statistics": "jaxinit.diagnostics",
    "plot_statistics": "jaxinit.diagnostics",
    "LSUVLayer": "jaxinit.unit_variance",
    "LSUVReport": "jaxinit.unit_variance",
    "lsuv": "jaxinit.unit_variance",
}
_LAZY_MODULES = ("testing", "torch")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _LAZY_MODULES:
        value = importlib.import_module(f"jaxinit.{name}")
    else:
        raise AttributeError(f"module 'jaxinit' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_LAZY_MODULES))


__all__ = [
    "GATE_ORDERS",
    "Initializer",
    "LSUVLayer",
    "LSUVReport",
    "LayerStats",
    "NonPartitionableRandomWarning",
    "calculate_gain",
    "compute_fans",
    "constant",
    "delta_orthogonal",
    "dirac",
    "estimate_spectral_radius",
    "eye",
    "for_layout",
    "format_table",
    "from_sibling",
    "gate_bias",
    "gate_blocks",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "identity",
    "irnn",
    "kaiming_normal",
    "kaiming_uniform",
    "layer_statistics",
    "lecun_normal",
    "lecun_uniform",
    "lstm_bias",
    "lsuv",
    "normal",
    "ones",
    "ones_init",
    "orthogonal",
    "plot_statistics",
    "rbm_normal",
    "reinit",
    "relu_bias",
    "residual_projection",
    "residual_zero",
    "scaled",
    "set_forget_bias",
    "shardable",
    "sparse",
    "spectral_radius",
    "symmetric_uniform",
    "testing",
    "threefry",
    "torch",
    "truncated_normal",
    "uniform",
    "uniform_range",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
    "zeros_init",
]
