"""Model inputs for tests, drawn with numpy: any values serve, and a JAX draw compiles a
program of its own for each new shape (0.5-1 s for 3- to 5-D shapes on a 2-core CPU)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def normal_input(shape: tuple[int, ...], seed: int = 0, scale: float = 1.0,
                 shift: float = 0.0) -> jax.Array:
    """``scale · N(0, 1) + shift`` float32 entries of ``shape``, on the default device."""
    x = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    return jnp.asarray((scale * x + shift).astype(np.float32))
