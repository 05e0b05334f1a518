"""Named presets: published recipes expressed with the general schemes.

* RBM weights: a zero-mean Gaussian with a small std, "around 0.1 or 0.01"
  (Hinton 2010, "A Practical Guide to Training Restricted Boltzmann Machines",
  §8: std 0.01). ``rbm_normal()`` is ``normal(0.01)``.
* ReLU biases: 0.01, "so that all ReLU units fire in the beginning and
  therefore obtain and propagate some gradient"; 0 is as common and not
  clearly worse. ``relu_bias()`` is ``constant(0.01)``.
* IRNN recurrent kernels: the identity (Le, Jaitly & Hinton 2015).
* Residual branches: start them at zero (Goyal et al. 2017; Zhang et al. 2019,
  "Fixup"), or shrink their output projections by ``1/sqrt(2·L)`` when each of
  L layers adds two branches (Radford et al. 2019, GPT-2), so the variance of
  the residual stream ``x ← x + F(x)`` stays O(1) in depth.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from jaxinit.constant import filled
from jaxinit.contract import initializer
from jaxinit.core import Array, DTypeLike, Initializer, check_int, check_real
from jaxinit.distributions import normal_named
from jaxinit.scaled import scaled
from jaxinit.variance_scaling import lecun_normal

__all__ = ["irnn", "rbm_normal", "relu_bias", "residual_projection", "residual_zero"]


def rbm_normal(stddev: float = 0.01, dtype: DTypeLike | None = None) -> Initializer:
    """Builds the RBM weight initializer: N(0, stddev²), stddev 0.01 (or 0.1).

    Hinton (2010) recommends weights from a zero-mean Gaussian with std
    about 0.01 ("0.1 or 0.01" in common practice). Same as ``normal(stddev)``.

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.rbm_normal()(jax.random.key(0), (784, 500))
      >>> round(float(w.std()), 3)
      0.01
    """
    return normal_named("jaxinit.rbm_normal", stddev, 0.0, dtype)


def relu_bias(value: float = 0.01, dtype: DTypeLike | None = None) -> Initializer:
    """Builds the small positive ReLU bias initializer: every bias ``value`` (0.01).

    Example:
      >>> import jax, jaxinit
      >>> jaxinit.relu_bias()(jax.random.key(0), (3,))
      Array([0.01, 0.01, 0.01], dtype=float32)
    """
    return filled("jaxinit.relu_bias", check_real("jaxinit.relu_bias", "value", value), dtype)


def irnn(scale: float = 1.0, dtype: DTypeLike | None = None) -> Initializer:
    """Builds the IRNN recurrent kernel initializer: ``scale · I``.

    Le, Jaitly & Hinton (2015), "A Simple Way to Initialize Recurrent Networks
    of Rectified Linear Units": a ReLU RNN whose recurrent matrix starts as the
    identity and whose biases start at 0 copies its state forward unchanged
    when the input is zero, so neither the state nor the gradient explodes or
    vanishes at the start; ``scale`` < 1 (e.g. 0.01, their "np-RNN" variant)
    for tasks with long noisy sequences. Input kernels: small Gaussian
    (the paper uses N(0, 0.001²)). Leading axes are stacked kernels
    ``(..., n, n)``, each the identity. Use it as::

        nnx.SimpleCell(d, n, activation_fn=nnx.relu,
                       recurrent_kernel_init=irnn(), bias_init=jaxinit.zeros, rngs=...)

    Example:
      >>> import jax, jaxinit
      >>> jaxinit.irnn(0.5)(jax.random.key(0), (2, 2)).tolist()
      [[0.5, 0.0], [0.0, 0.5]]
    """
    name = "jaxinit.irnn"
    scale = check_real(name, "scale", scale, positive=True)

    def check(dims: tuple[int, ...]) -> None:
        if dims[-1] != dims[-2]:
            raise ValueError(
                f"{name}: shape={dims} is not square in its last two axes; accepted: "
                "recurrent kernels (..., n, n)."
            )

    @initializer(name, dtype=dtype, random=False, min_rank=2, check=check, in_output_dtype=True,
                 bound=lambda _: (scale, f"scale={scale!r}"), cache_key=("irnn", scale))
    def init(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        eye = jnp.eye(shape[-1], dtype=bool)
        return jnp.broadcast_to(jnp.where(eye, jnp.asarray(scale, dtype), 0), shape)

    return init


def residual_projection(num_layers: int, base: Initializer | None = None, *,
                        branches_per_layer: int = 2) -> Initializer:
    """Builds an init for residual output projections: ``base`` scaled by ``1/sqrt(b·L)``.

    With ``L = num_layers`` blocks of ``b = branches_per_layer`` residual
    branches each (2 for a transformer: attention and MLP), the residual
    stream receives ``b·L`` independent additions; scaling each branch's
    output projection by ``1/sqrt(b·L)`` keeps their summed variance equal to
    that of one unscaled branch (Radford et al. 2019, GPT-2).

    Args:
      num_layers: L, an int >= 1.
      base: the unscaled initializer (default ``jaxinit.lecun_normal()``).
      branches_per_layer: b, an int >= 1.

    Example:
      >>> import jax, jaxinit
      >>> w = jaxinit.residual_projection(8, jaxinit.normal(0.02))(jax.random.key(0), (512, 512))
      >>> round(float(w.std()), 4)  # 0.02 / sqrt(16)
      0.005
    """
    name = "jaxinit.residual_projection"
    num_layers = check_int(name, "num_layers", num_layers, minimum=1)
    branches_per_layer = check_int(name, "branches_per_layer", branches_per_layer, minimum=1)
    return scaled(lecun_normal() if base is None else base,
                  1.0 / math.sqrt(branches_per_layer * num_layers), name=name)


def residual_zero(dtype: DTypeLike | None = None) -> Initializer:
    """Builds the zero initializer for the last layer of a residual branch.

    With the branch's last kernel (or the scale of its last norm) at zero,
    every block ``x + F(x)`` is the identity at initialization; gradients
    still reach it, since the layer's input is non-zero (Goyal et al. 2017;
    Zhang et al. 2019). Only for the *last* layer of a branch: a zero kernel
    earlier in the branch would give zero gradients to the layers before it.

    Example:
      >>> import jax, jaxinit
      >>> jaxinit.residual_zero()(jax.random.key(0), (2, 2)).tolist()
      [[0.0, 0.0], [0.0, 0.0]]
    """
    return filled("jaxinit.residual_zero", 0.0, dtype)
