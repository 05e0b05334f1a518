"""Glorot & Bengio (2010): "standard" vs normalized initialization of a deep tanh MLP.

Five tanh hidden layers of equal width on the digits data, at initialization.
The "standard" heuristic draws W ~ U(-1/sqrt(n_in), 1/sqrt(n_in)), i.e.
Var(W) = 1/(3 n_in), so in the near-linear regime of tanh each layer multiplies
the forward variance by n_in Var(W) = 1/3 and each backward step multiplies the
variance of the back-propagated gradient by n_out Var(W) = 1/3: activations
shrink layer over layer and gradients shrink toward the input. The normalized
initialization U(+-sqrt(6 / (n_in + n_out))) has Var(W) = 2 / (n_in + n_out),
which keeps both variances (equal widths) -- the profiles are roughly flat.

Run: ``python examples/glorot_bengio_2010.py [--out PATH] [--quick]``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from _common import (
    ProbedMLP,
    layer_statistics,
    load_digits_split,
    parse_args,
    pyplot,
    save_figure,
)

import jaxinit


def standard_uniform() -> jaxinit.Initializer:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): uniform with variance 1/(3 fan_in)."""
    return jaxinit.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


SCHEMES = {
    "standard U(±1/√n)": standard_uniform,
    "normalized U(±√(6/(n_in+n_out)))": jaxinit.glorot_uniform,
}


def tanh_profiles(width: int = 256, depth: int = 5, seed: int = 0,
                  n_examples: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per-layer statistics at init of a ``depth``-layer tanh MLP, for each scheme.

    Same key and same data batch for every scheme; see
    ``_common.layer_statistics`` for the returned arrays.
    """
    x, y, _, _ = load_digits_split()
    if n_examples is not None:
        x, y = x[:n_examples], y[:n_examples]
    profiles = {}
    for label, make_init in SCHEMES.items():
        model = ProbedMLP(hidden=(width,) * depth, n_out=10, activation=jax.numpy.tanh,
                          kernel_init=make_init())
        variables = jax.jit(model.init)(jax.random.key(seed), x)
        profiles[label] = layer_statistics(model, variables, x, y)
    return profiles


def plot(profiles: dict[str, dict[str, np.ndarray]], out: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    titles = {"activation_std": "activation std (forward)",
              "backprop_std": "back-propagated gradient std",
              "weight_grad_std": "weight-gradient std"}
    for ax, (stat, title) in zip(axes, titles.items(), strict=True):
        for label, prof in profiles.items():
            layers = np.arange(1, len(prof[stat]) + 1)
            ax.semilogy(layers, prof[stat], "o-", label=label)
        ax.set_title(title)
        ax.set_xlabel("hidden layer (1 = input side)")
        ax.set_xticks(layers)
    axes[0].legend(fontsize=8)
    fig.suptitle("5-layer tanh MLP at initialization (digits), Glorot & Bengio 2010")
    save_figure(fig, out)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], "glorot_bengio_2010.png")
    width = 128 if args.quick else 1000
    profiles = tanh_profiles(width=width)
    print(f"tanh MLP, 5 hidden layers of width {width}, digits train split, key 0")
    for label, prof in profiles.items():
        print(f"\n{label}")
        print("layer  activation_std  backprop_std  weight_grad_std")
        for i in range(len(prof["activation_std"])):
            print(f"{i + 1:5d}  {prof['activation_std'][i]:14.4g}  {prof['backprop_std'][i]:12.4g}"
                  f"  {prof['weight_grad_std'][i]:15.4g}")
        act, back = prof["activation_std"], prof["backprop_std"]
        print(f"activation std layer5/layer1 = {act[-1] / act[0]:.3f}; "
              f"back-prop std layer1/layer5 = {back[0] / back[-1]:.3f}")
    plot(profiles, args.out)


if __name__ == "__main__":
    main()
