"""``python -m jaxinit``: the catalogue, with each scheme's target against what it measures.

``python -m jaxinit diagnose --help`` runs the signal-propagation diagnostics;
``python -m jaxinit --help`` lists the commands.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxinit
from jaxinit.testing import orthogonality_error

SHAPE = (3, 3, 64, 128)  # an HWIO conv kernel: fan_in = 576, fan_out = 1152
FAN_IN, FAN_OUT = jaxinit.compute_fans(SHAPE)


class Row(NamedTuple):
    name: str
    formula: str
    init: jaxinit.Initializer
    target: str
    measure: Callable[[np.ndarray], str]


# Relative standard error of a sample std over SHAPE's entries (Gaussian approximation).
STD_REL_SE = 1 / math.sqrt(2 * (math.prod(SHAPE) - 1))


def _std_row(name: str, formula: str, init: jaxinit.Initializer, std: float) -> Row:
    return Row(name, formula, init, f"std {std:.5f}",
               lambda w: f"std {w.std():.5f} ({(w.std() / std - 1) / STD_REL_SE:+.1f} s.e.)")


def _nonzeros_per_unit(w: np.ndarray) -> str:
    counts = np.count_nonzero(w.reshape(-1, w.shape[-1]), axis=0)
    return f"{counts.min()}..{counts.max()} non-zeros/unit"


def _centre_tap_error(w: np.ndarray) -> str:
    centre = w[tuple(k // 2 for k in w.shape[:-2])]
    off_centre = np.count_nonzero(w) - np.count_nonzero(centre)
    return f"max|WWᵀ-I| {orthogonality_error(centre):.1e}, {off_centre} off-centre non-zeros"


def catalogue() -> list[Row]:
    """One row per scheme, its formula and its target for ``SHAPE``."""
    avg = (FAN_IN + FAN_OUT) / 2
    rows = [
        Row("zeros", "0 (biases)", jaxinit.zeros, "all 0", lambda w: f"max|w| {abs(w).max():g}"),
        Row("ones", "1", jaxinit.ones, "all 1", lambda w: f"mean {w.mean():g}"),
        Row("constant(0.01)", "0.01 (ReLU biases)", jaxinit.constant(0.01), "all 0.01",
            lambda w: f"mean {w.mean():g}"),
        _std_row("normal(0.01)", "N(0, 0.01²): small random numbers", jaxinit.normal(0.01), 0.01),
        _std_row("normal(0.1)", "N(0, 0.1²): RBM weights (Hinton 2010)", jaxinit.normal(0.1), 0.1),
        _std_row("uniform(0.01)", "U[0, 0.01) (JAX's convention)", jaxinit.uniform(0.01),
                 0.01 / math.sqrt(12)),
        _std_row("symmetric_uniform(0.05)", "U(-0.05, 0.05)", jaxinit.symmetric_uniform(0.05),
                 0.05 / math.sqrt(3)),
        _std_row("truncated_normal(0.01)", "0.01·N(0,1) cut to (-2, 2)",
                 jaxinit.truncated_normal(0.01), 0.01 * 0.87962566103423978),
        _std_row("glorot_uniform", "U(±√(6/(fan_in+fan_out))): tanh", jaxinit.glorot_uniform(),
                 math.sqrt(1 / avg)),
        _std_row("glorot_uniform(gain=4)", "4·U(±√(6/(fan_in+fan_out))): sigmoid",
                 jaxinit.glorot_uniform(gain=4.0), 4 * math.sqrt(1 / avg)),
        _std_row("glorot_normal", "std √(2/(fan_in+fan_out))", jaxinit.glorot_normal(),
                 math.sqrt(1 / avg)),
        _std_row("he_normal", "std √(2/fan_in): ReLU", jaxinit.he_normal(),
                 math.sqrt(2 / FAN_IN)),
        _std_row("he_uniform", "U(±√(6/fan_in))", jaxinit.he_uniform(), math.sqrt(2 / FAN_IN)),
        _std_row("he_normal(negative_slope=0.2)", "std √(2/((1+a²)·fan_in)): leaky ReLU",
                 jaxinit.he_normal(negative_slope=0.2), math.sqrt(2 / (1.04 * FAN_IN))),
        _std_row("lecun_normal", "std 1/√fan_in: randn(n)/√n", jaxinit.lecun_normal(),
                 math.sqrt(1 / FAN_IN)),
        _std_row("lecun_uniform", "U(±√(3/fan_in))", jaxinit.lecun_uniform(),
                 math.sqrt(1 / FAN_IN)),
        _std_row("variance_scaling(1, fan_geo_avg)", "std 1/(fan_in·fan_out)^¼",
                 jaxinit.variance_scaling(1.0, "fan_geo_avg", "normal"),
                 (FAN_IN * FAN_OUT) ** -0.25),
        Row("orthogonal()", "Haar Q, rows flattened (Saxe et al. 2014)", jaxinit.orthogonal(),
            "max|QQᵀ-I| ~ 1e-6", lambda w: f"max|QQᵀ-I| {orthogonality_error(w):.1e}"),
        Row("orthogonal(batch_axis=(0, 1))", "9 independent 64x128 Haar matrices",
            jaxinit.orthogonal(batch_axis=(0, 1)), "max|QQᵀ-I| ~ 1e-6",
            lambda w: f"max|QQᵀ-I| {orthogonality_error(w, batch_axis=(0, 1)):.1e}"),
        Row("sparse(15, stddev=1)", "15 N(0,1) inputs per unit (Martens 2010)",
            jaxinit.sparse(15, stddev=1.0), "15 non-zeros/unit", _nonzeros_per_unit),
        Row("dirac()", "centre tap copies channel i to i", jaxinit.dirac(), "64 ones",
            lambda w: f"{int((w == 1).sum())} ones, sum {w.sum():g}"),
        Row("delta_orthogonal()", "orthogonal centre tap (Xiao et al. 2018)",
            jaxinit.delta_orthogonal(), "max|WWᵀ-I| ~ 1e-6", _centre_tap_error),
    ]
    return rows


def print_catalogue(seed: int = 0) -> None:
    print(f"jaxinit {jaxinit.__version__} on {jax.default_backend()}: every scheme for a "
          f"conv kernel of shape {SHAPE} (fan_in={FAN_IN}, fan_out={FAN_OUT}), float32\n")
    header = f"{'scheme':34} {'formula':42} {'target':22} measured"
    print(header)
    print("-" * len(header))
    key = jax.random.key(seed)
    for row in catalogue():
        key, sub = jax.random.split(key)
        w = np.asarray(row.init(sub, SHAPE, jnp.float32))
        print(f"{row.name:34} {row.formula:42} {row.target:22} {row.measure(w)}")


def signal_propagation(schemes: tuple[str, ...] = ("he_normal", "lecun_normal", "glorot_uniform"),
                       *, depth: int = 20, width: int = 128, batch: int = 256,
                       seed: int = 0) -> str:
    """The summary of ``python -m jaxinit diagnose`` for a deep ReLU MLP (zero biases).

    One jitted program serves every scheme (the kernels are its argument): the
    std of each hidden layer's activation, and of the gradient of
    ``sum(output * r)``, ``r ~ N(0, 1)``, w.r.t. each layer's output.
    """
    data_key, init_key = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(data_key, (batch, width))
    r = jax.random.normal(jax.random.fold_in(data_key, 1), (batch, width))

    @jax.jit
    def measure(kernels: jax.Array) -> tuple[jax.Array, jax.Array]:
        def loss(taps: jax.Array) -> tuple[jax.Array, jax.Array]:
            # taps: zeros added to each layer's output, so their gradient is the output's
            def hidden(h: jax.Array, layer: tuple[jax.Array, jax.Array]
                       ) -> tuple[jax.Array, jax.Array]:
                a = jax.nn.relu(h @ layer[0] + layer[1])
                return a, a

            h, activations = jax.lax.scan(hidden, x, (kernels[:-1], taps[:-1]))
            return jnp.sum((h @ kernels[-1] + taps[-1]) * r), activations

        grads, activations = jax.grad(loss, has_aux=True)(jnp.zeros((depth, batch, width)))
        return activations.std(axis=(1, 2)), grads.std(axis=(1, 2))

    mid = max(depth - 1, 1) // 2
    lines = [f"deep relu MLP, depth {depth}, width {width}:",
             f"{'scheme':<16} {'act std L1':>11} {'L' + str(mid + 1):>9} "
             f"{'L' + str(depth - 1):>9} {'grad L' + str(depth):>11} {'grad L1':>9}"]
    keys = jax.random.split(init_key, depth)
    for name in schemes:
        init = getattr(jaxinit, name)()
        act, grad = measure(jnp.stack([init(k, (width, width)) for k in keys]))
        lines.append(f"{name:<16} {act[0]:>11.3g} {act[mid]:>9.3g} {act[-1]:>9.3g} "
                     f"{grad[-1]:>11.3g} {grad[0]:>9.3g}")
    return "\n".join(lines)


USAGE = """usage: python -m jaxinit [-h] [catalogue | diagnose ...]

commands:
  catalogue   (the default) every scheme on a conv kernel: its formula, its target
              and what it measures, then the signal propagation of a deep ReLU MLP
              under three schemes
  diagnose    per-layer forward/backward statistics of a deep net (built-in MLP/CNN
              or your own model: --model package.module:factory) for several
              initializers, printed and drawn; see python -m jaxinit diagnose --help

options:
  -h, --help  show this message and exit"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m jaxinit``; returns the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if args and args[0] == "diagnose":
        from jaxinit.diagnose_cli import main as diagnose

        return diagnose(args[1:])
    if args and args[0] == "catalogue":
        args = args[1:]
    if args:
        print(USAGE, file=sys.stderr)
        print(f"\npython -m jaxinit: unknown command or option {args[0]!r}.", file=sys.stderr)
        return 2
    start = time.perf_counter()
    print_catalogue()
    print("\nSignal propagation at init (python -m jaxinit diagnose draws it):")
    print(signal_propagation())
    print(f"\ndone in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
