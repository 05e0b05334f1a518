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
from jaxinit.lsuv import LSUVLayer, LSUVReport, lsuv
from jaxinit.sharding import NonPartitionableRandomWarning, shardable
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
    "Initializer",
    "LSUVLayer",
    "LSUVReport",
    "LayerStats",
    "NonPartitionableRandomWarning",
    "calculate_gain",
    "compute_fans",
    "constant",
    "format_table",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "layer_statistics",
    "lecun_uniform",
    "lsuv",
    "normal",
    "ones",
    "plot_statistics",
    "shardable",
    "symmetric_uniform",
    "truncated_normal",
    "uniform",
    "uniform_range",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]
