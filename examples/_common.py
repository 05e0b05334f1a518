"""Shared pieces of the paper examples: data, a probed Flax MLP, per-layer statistics, plotting.

The per-layer statistics are computed here with a few lines of plain JAX so
that each example is self-contained: the forward activations are recorded
with ``Module.sow`` and the back-propagated gradient with respect to each
layer's pre-activation is obtained by differentiating with respect to a zero
perturbation added to it (``Module.perturb``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"


def parse_args(description: str, figure_name: str) -> argparse.Namespace:
    """The examples' common command line: ``--out PATH`` and ``--quick``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=Path(figure_name),
                        help="where to write the PNG figure (default: %(default)s in the "
                             f"current folder; the committed one is {FIGURES.name}/{figure_name})")
    parser.add_argument("--quick", action="store_true",
                        help="a smaller, faster run (same qualitative result)")
    return parser.parse_args()


def load_digits_split(test_fraction: float = 0.25, seed: int = 0
                      ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """scikit-learn's 8x8 digits (1797 images, ships with the package), standardized.

    Returns ``(x_train, y_train, x_test, y_test)``; features are centred and
    scaled with the training split's mean and std (constant pixels left at 0).
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = np.asarray(data.data, np.float32)
    y = np.asarray(data.target, np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    mean = x[train].mean(0)
    std = x[train].std(0)
    std[std == 0] = 1.0
    x = (x - mean) / std
    return jnp.asarray(x[train]), jnp.asarray(y[train]), jnp.asarray(x[test]), jnp.asarray(y[test])


class ProbedMLP(nn.Module):
    """Dense stack whose pre-activations can be differentiated and activations recorded."""

    hidden: Sequence[int]
    n_out: int
    activation: Callable[[jax.Array], jax.Array]
    kernel_init: Callable[..., jax.Array]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.hidden):
            z = nn.Dense(width, kernel_init=self.kernel_init, name=f"dense_{i}")(x)
            z = self.perturb(f"pre_{i}", z)
            x = self.activation(z)
            self.sow("intermediates", f"act_{i}", x)
        return nn.Dense(self.n_out, kernel_init=self.kernel_init, name="head")(x)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> float:
    return float((logits.argmax(-1) == labels).mean())


def layer_statistics(model: ProbedMLP, variables: Any, x: jax.Array, y: jax.Array
                     ) -> dict[str, np.ndarray]:
    """Per hidden layer, at the given parameters, on the batch ``(x, y)``.

    Returns arrays indexed by hidden layer (input side first):
    ``activation_std`` (std of the layer's outputs over batch and units),
    ``backprop_std`` (std of d loss_i / d pre-activation, per example ``i``:
    the loss is summed over the batch so the 1/B of a mean does not enter) and
    ``weight_grad_std`` (std of the entries of d loss / d kernel, summed loss).
    """
    perturbations = jax.tree.map(jnp.zeros_like, variables["perturbations"])

    def summed_loss(params: Any, perturbations: Any) -> tuple[jax.Array, Any]:
        logits, state = model.apply({"params": params, "perturbations": perturbations}, x,
                                    mutable=["intermediates"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()
        return loss, state["intermediates"]

    grad_fn = jax.jit(jax.grad(summed_loss, argnums=(0, 1), has_aux=True))
    (param_grads, pre_grads), acts = grad_fn(variables["params"], perturbations)
    depth = len(model.hidden)
    return {
        "activation_std": np.array([float(acts[f"act_{i}"][0].std()) for i in range(depth)]),
        "backprop_std": np.array([float(pre_grads[f"pre_{i}"].std()) for i in range(depth)]),
        "weight_grad_std": np.array(
            [float(param_grads[f"dense_{i}"]["kernel"].std()) for i in range(depth)]),
    }


def pyplot():
    """matplotlib.pyplot with the non-interactive Agg backend, imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out: Path) -> None:
    """Writes a small PNG (dpi 80) and closes the figure."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    pyplot().close(fig)
    print(f"figure written to {out} ({out.stat().st_size // 1024} KB)")
