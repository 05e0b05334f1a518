"""Every public initializer factory with a call that builds it and a shape it accepts.

Table-driven tests (``test_contract.py``) run each class of hostile input over
all of them; ``test_every_public_name_is_covered`` fails when a public factory
is added without a row here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

import jaxinit


class Row(NamedTuple):
    build: Callable[..., Any]  # (**options) -> initializer; options may include dtype=
    shape: tuple[int, ...]
    random: bool = True
    complex_ok: bool = True


def _fixed(init: Any) -> Callable[..., Any]:
    def build(**options: Any) -> Any:
        if options:
            raise TypeError("no options")
        return init
    return build


DENSE = (6, 8)
# A realistic kernel; XLA compiles (traced) draws of small inner dims slowly: 1 s at (3, 3, 4, 8).
CONV = (3, 3, 16, 32)

#: name -> Row. ``build(dtype=...)`` passes the factory's dtype option where it has one.
FACTORIES: dict[str, Row] = {
    "zeros": Row(_fixed(jaxinit.zeros), DENSE, random=False),
    "ones": Row(_fixed(jaxinit.ones), DENSE, random=False),
    "zeros_init": Row(lambda **o: jaxinit.zeros_init(**o), DENSE, random=False),
    "ones_init": Row(lambda **o: jaxinit.ones_init(**o), DENSE, random=False),
    "constant": Row(lambda **o: jaxinit.constant(0.3, **o), DENSE, random=False),
    "normal": Row(lambda **o: jaxinit.normal(0.1, **o), DENSE),
    "uniform": Row(lambda **o: jaxinit.uniform(0.1, **o), DENSE, complex_ok=False),
    "uniform_range": Row(lambda **o: jaxinit.uniform_range(-0.2, 0.1, **o), DENSE,
                         complex_ok=False),
    "symmetric_uniform": Row(lambda **o: jaxinit.symmetric_uniform(0.1, **o), DENSE,
                             complex_ok=False),
    "truncated_normal": Row(lambda **o: jaxinit.truncated_normal(0.1, **o), DENSE,
                            complex_ok=False),
    "variance_scaling": Row(lambda **o: jaxinit.variance_scaling(2.0, "fan_avg", "normal", **o),
                            CONV),
    "glorot_uniform": Row(lambda **o: jaxinit.glorot_uniform(**o), CONV),
    "glorot_normal": Row(lambda **o: jaxinit.glorot_normal(**o), CONV),
    "xavier_uniform": Row(lambda **o: jaxinit.xavier_uniform(**o), CONV),
    "xavier_normal": Row(lambda **o: jaxinit.xavier_normal(**o), CONV),
    "he_uniform": Row(lambda **o: jaxinit.he_uniform(**o), CONV),
    "he_normal": Row(lambda **o: jaxinit.he_normal(**o), CONV),
    "kaiming_uniform": Row(lambda **o: jaxinit.kaiming_uniform(**o), CONV),
    "kaiming_normal": Row(lambda **o: jaxinit.kaiming_normal(**o), CONV),
    "lecun_uniform": Row(lambda **o: jaxinit.lecun_uniform(**o), CONV),
    "lecun_normal": Row(lambda **o: jaxinit.lecun_normal(**o), CONV),
    "orthogonal": Row(lambda **o: jaxinit.orthogonal(**o), DENSE),
    "identity": Row(lambda **o: jaxinit.identity(0.5, **o), DENSE, random=False),
    "eye": Row(lambda **o: jaxinit.eye(**o), DENSE, random=False),
    "dirac": Row(lambda **o: jaxinit.dirac(**o), CONV, random=False),
    "delta_orthogonal": Row(lambda **o: jaxinit.delta_orthogonal(**o), CONV),
    "sparse": Row(lambda **o: jaxinit.sparse(3, **o), DENSE, complex_ok=False),
    "gate_blocks": Row(lambda **o: jaxinit.gate_blocks(jaxinit.orthogonal(), 2, **o), DENSE),
    "gate_bias": Row(lambda **o: jaxinit.gate_bias({"f": 1.0}, **o), (8,), random=False),
    "lstm_bias": Row(lambda **o: jaxinit.lstm_bias(1.0, **o), (8,), random=False),
    "irnn": Row(lambda **o: jaxinit.irnn(**o), (6, 6), random=False),
    "spectral_radius": Row(lambda **o: jaxinit.spectral_radius(0.9, **o), (6, 6),
                           complex_ok=False),
    "spectral_radius_normal": Row(lambda **o: jaxinit.spectral_radius(0.9, "normal", **o),
                                  (6, 6), complex_ok=False),
    "rbm_normal": Row(lambda **o: jaxinit.rbm_normal(**o), DENSE),
    "relu_bias": Row(lambda **o: jaxinit.relu_bias(**o), (8,), random=False),
    "residual_zero": Row(lambda **o: jaxinit.residual_zero(**o), DENSE, random=False),
    "residual_projection": Row(lambda **o: jaxinit.residual_projection(4, **o), DENSE),
    "scaled": Row(lambda **o: jaxinit.scaled(jaxinit.he_normal(**o), 0.5), CONV),
}

#: Public names bound to the same function as another row's: checked to be that function,
#: not run through every table again.
ALIASES = {"xavier_uniform": "glorot_uniform", "xavier_normal": "glorot_normal",
           "kaiming_uniform": "he_uniform", "kaiming_normal": "he_normal", "eye": "identity"}

#: Factories without a ``dtype=`` option (their dtype comes from the call or a base).
NO_DTYPE_OPTION = {"zeros", "ones", "zeros_init", "ones_init", "gate_blocks", "gate_bias",
                   "lstm_bias", "residual_projection"}

#: Public names that are not initializer factories, each tested in its own module.
HELPERS = {
    "GATE_ORDERS", "Initializer", "LSUVLayer", "LSUVReport", "LayerStats",
    "NonPartitionableRandomWarning", "calculate_gain", "compute_fans", "estimate_spectral_radius",
    "format_table", "layer_statistics", "lsuv", "plot_statistics", "set_forget_bias",
    "shardable", "testing", "threefry", "torch", "reinit", "from_sibling", "for_layout",
}

KEY = jax.random.key(0)
