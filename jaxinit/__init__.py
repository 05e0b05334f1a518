"""jaxinit: functional weight initializers for JAX and Flax.

Every scheme is a factory returning an initializer
``init(key, shape, dtype=None, out_sharding=None) -> jax.Array``, the protocol
of ``jax.nn.initializers``: pass it as ``kernel_init=``/``bias_init=`` to Flax
linen or nnx modules. ``zeros`` and ``ones`` are initializers themselves.
"""

from jaxinit.constant import constant, ones, zeros
from jaxinit.core import Initializer
from jaxinit.diagnostics import LayerStats, format_table, layer_statistics, plot_statistics
from jaxinit.distributions import (
    normal,
    symmetric_uniform,
    truncated_normal,
    uniform,
    uniform_range,
)
from jaxinit.fans import calculate_gain, compute_fans
from jaxinit.identity import delta_orthogonal, dirac, eye, identity
from jaxinit.lsuv import LSUVLayer, LSUVReport, lsuv
from jaxinit.orthogonal import orthogonal
from jaxinit.presets import rbm_normal, relu_bias
from jaxinit.recurrent import (
    GATE_ORDERS,
    estimate_spectral_radius,
    gate_bias,
    gate_blocks,
    irnn,
    lstm_bias,
    set_forget_bias,
    spectral_radius,
)
from jaxinit.residual import residual_projection, residual_zero, scaled
from jaxinit.sharding import NonPartitionableRandomWarning, shardable
from jaxinit.sparse import sparse
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

__version__ = "0.1.0"

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
    "format_table",
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
    "orthogonal",
    "plot_statistics",
    "rbm_normal",
    "relu_bias",
    "residual_projection",
    "residual_zero",
    "scaled",
    "set_forget_bias",
    "shardable",
    "sparse",
    "spectral_radius",
    "symmetric_uniform",
    "truncated_normal",
    "uniform",
    "uniform_range",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]
