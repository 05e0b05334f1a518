"""Named presets from the source texts: the RBM weight init and the ReLU bias.

* RBM weights: a zero-mean Gaussian with a small std, "around 0.1 or 0.01"
  (Hinton 2010, "A Practical Guide to Training Restricted Boltzmann Machines",
  §8: std 0.01). ``rbm_normal()`` is ``normal(0.01)``.
* ReLU biases: 0.01, "so that all ReLU units fire in the beginning and
  therefore obtain and propagate some gradient"; 0 is as common and not
  clearly worse. ``relu_bias()`` is ``constant(0.01)``.
"""

from __future__ import annotations

from jaxinit.constant import constant
from jaxinit.core import DTypeLike, Initializer, check_real_scalar
from jaxinit.distributions import normal

__all__ = ["rbm_normal", "relu_bias"]


def rbm_normal(stddev: float = 0.01, dtype: DTypeLike | None = None) -> Initializer:
    """Builds the RBM weight initializer: N(0, stddev²), stddev 0.01 (or 0.1).

    Hinton (2010) recommends weights from a zero-mean Gaussian with std
    about 0.01; the source texts give "0.1 or 0.01". Same as ``normal(stddev)``.

    Example:
      >>> import jax
      >>> from jaxinit.presets import rbm_normal
      >>> w = rbm_normal()(jax.random.key(0), (784, 500))
      >>> round(float(w.std()), 3)
      0.01
    """
    stddev = check_real_scalar("jaxinit.rbm_normal", "stddev", stddev, positive=True)
    return normal(stddev, dtype)


def relu_bias(value: float = 0.01, dtype: DTypeLike | None = None) -> Initializer:
    """Builds the small positive ReLU bias initializer: every bias ``value`` (0.01).

    Example:
      >>> import jax
      >>> from jaxinit.presets import relu_bias
      >>> relu_bias()(jax.random.key(0), (3,))
      Array([0.01, 0.01, 0.01], dtype=float32)
    """
    value = check_real_scalar("jaxinit.relu_bias", "value", value)
    return constant(value, dtype)
