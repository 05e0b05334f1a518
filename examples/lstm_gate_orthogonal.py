"""Orthogonal recurrent kernels per gate for Flax's fused LSTM and GRU cells.

``nnx.OptimizedLSTMCell`` keeps its recurrent kernel as one ``(h, 4h)`` array,
gates ``i, f, g, o`` side by side along the columns, and by default draws it as
one semi-orthogonal matrix: its rows are orthonormal, but no gate's ``(h, h)``
block is orthogonal. ``jaxinit.orthogonal(num_blocks=4)`` makes every gate block
an independent orthogonal matrix, as the unfused ``nnx.LSTMCell`` and the linen
cells (one ``(h, h)`` kernel per gate) get. ``nnx.GRUCell`` fuses ``r, z, n``:
``num_blocks=3``.

Run: ``python examples/lstm_gate_orthogonal.py``
"""

import jax.numpy as jnp
from flax import nnx

from jaxinit.orthogonal import orthogonal


def gate_block_errors(kernel: jnp.ndarray, gates: int) -> list[float]:
    """max|BᵀB - I| of each (h, h) gate block of an (h, gates·h) kernel."""
    h = kernel.shape[0]
    return [float(jnp.abs(kernel[:, g * h:(g + 1) * h].T @ kernel[:, g * h:(g + 1) * h]
                          - jnp.eye(h)).max()) for g in range(gates)]


def main() -> None:
    h = 128
    default = nnx.OptimizedLSTMCell(h, h, rngs=nnx.Rngs(0))
    per_gate = nnx.OptimizedLSTMCell(h, h, recurrent_kernel_init=orthogonal(num_blocks=4),
                                     rngs=nnx.Rngs(0))
    gru = nnx.GRUCell(h, h, recurrent_kernel_init=orthogonal(num_blocks=3), rngs=nnx.Rngs(0))
    print("max|BᵀB - I| per gate block (i, f, g, o / r, z, n):")
    print("  OptimizedLSTMCell, default  :",
          [f"{e:.2f}" for e in gate_block_errors(default.dense_h.kernel[...], 4)])
    print("  OptimizedLSTMCell, per gate :",
          [f"{e:.1e}" for e in gate_block_errors(per_gate.dense_h.kernel[...], 4)])
    print("  GRUCell, per gate           :",
          [f"{e:.1e}" for e in gate_block_errors(gru.dense_h.kernel[...], 3)])
    carry = per_gate.initialize_carry((2, h), nnx.Rngs(1))
    carry, y = per_gate(carry, jnp.ones((2, h)))
    print("one step of the per-gate LSTM:", y.shape)


if __name__ == "__main__":
    main()
