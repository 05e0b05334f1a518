"""LSUV (Mishkin & Matas 2016) on a small CNN, with real data: scikit-learn's digits.

The CNN is built with Flax's default initializers and fed the raw 8x8 images
(pixel values 0..16, not standardized), so its layer outputs start far from
unit variance. LSUV makes every Conv/Dense output variance 1 on one batch.
Prints the per-layer output variance with the default init, after the
orthonormal pre-init and after LSUV, and draws them (log scale) to a PNG.

    python examples/lsuv_cnn.py --out docs/figures/lsuv_cnn.png

Runs in a few seconds on a CPU.
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits

from jaxinit.unit_variance import LSUVReport, lsuv


class SmallCNN(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Conv(16, (3, 3), name="conv1")(x))
        x = nn.relu(nn.Conv(32, (3, 3), name="conv2")(x))
        x = nn.relu(nn.Conv(32, (3, 3), strides=2, name="conv3")(x))
        x = x.mean(axis=(1, 2))
        x = nn.relu(nn.Dense(64, name="fc1")(x))
        return nn.Dense(10, name="fc2")(x)


def plot_report(report: LSUVReport, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    names = [r.name for r in report.layers]
    pos = np.arange(len(names))
    for offset, label, values in (
        (-0.27, "default init (lecun_normal)", [r.var_before for r in report.layers]),
        (0.0, "orthonormal pre-init", [r.var_orthogonal for r in report.layers]),
        (0.27, "after LSUV", [r.var_after for r in report.layers]),
    ):
        ax.bar(pos + offset, values, width=0.27, label=label)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set(xticks=pos, xticklabels=names, yscale="log", ylabel="output variance",
           title="LSUV on a CNN (digits, raw pixels): per-layer output variance")
    ax.title.set_fontsize(10)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="lsuv_cnn.png")
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()

    images = load_digits().images.astype(np.float32)[:, :, :, None]  # (1797, 8, 8, 1)
    batch = jnp.asarray(images[: args.batch])
    model = SmallCNN()
    params = model.init(jax.random.key(0), batch)
    new_params, report = lsuv(model, params, batch, key=jax.random.key(1))
    print(report.format())
    assert all(abs(r.var_after - 1.0) < 0.1 for r in report.layers)
    plot_report(report, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
