"""A deep tanh MLP: sparse initialization (Martens 2010) vs dense Gaussian initializations.

Martens' sparse init gives every unit exactly k = 15 non-zero incoming
weights (unit Gaussian, as Sutskever et al. 2013 describe it), so a unit's total input does not grow
with the width of the layer below. Compared here with the classic dense schemes:
"small random numbers" N(0, 0.01²) (activations vanish with
depth), N(0, 1) (tanh units saturate) and LeCun N(0, 1/fan_in) as a reference.
Sparse is shown with Martens' unit Gaussian and with std 1/sqrt(15), which
gives a unit's pre-activation the variance of one input (unit gain).

Left panel: mean |activation| per layer at initialization. Right panel:
training loss on a synthetic 10-class task (labels from a random tanh
teacher network), Adam with gradients clipped by global norm 1.

Run: ``python examples/sparse_tanh_mlp.py --out sparse.png`` (well under a minute on CPU).
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxinit.sparse import sparse

Init = Callable[..., jax.Array]


def schemes() -> dict[str, Init]:
    return {
        "sparse k=15, N(0, 1)": sparse(15, stddev=1.0),
        "sparse k=15, N(0, 1/15)": sparse(15, stddev=15**-0.5),
        "dense N(0, 0.01²)": jax.nn.initializers.normal(0.01),
        "dense N(0, 1)": jax.nn.initializers.normal(1.0),
        "dense LeCun N(0, 1/fan_in)": jax.nn.initializers.lecun_normal(),
    }


def init_mlp(init: Init, key: jax.Array, sizes: list[int]) -> list[tuple[jax.Array, jax.Array]]:
    keys = jax.random.split(key, len(sizes) - 1)
    layers = zip(keys, sizes[:-1], sizes[1:], strict=True)
    return [(init(k, (m, n)), jnp.zeros(n)) for k, m, n in layers]


def hidden_activations(params, x: jax.Array) -> list[jax.Array]:
    acts = []
    for w, b in params[:-1]:
        x = jnp.tanh(x @ w + b)
        acts.append(x)
    return acts


def logits(params, x: jax.Array) -> jax.Array:
    h = hidden_activations(params, x)[-1]
    w, b = params[-1]
    return h @ w + b


def make_data(key: jax.Array, n: int, dim: int, classes: int) -> tuple[jax.Array, jax.Array]:
    """Inputs N(0, I) and labels from a random two-layer tanh teacher."""
    kx, k1, k2 = jax.random.split(key, 3)
    x = jax.random.normal(kx, (n, dim))
    w1 = jax.random.normal(k1, (dim, 64)) / jnp.sqrt(dim)
    w2 = jax.random.normal(k2, (64, classes))
    return x, jnp.argmax(jnp.tanh(2 * x @ w1) @ w2, axis=1)


@functools.partial(jax.jit, static_argnames=("steps", "batch", "lr"))
def train(params, x, y, *, steps: int, batch: int, lr: float):
    """Adam with clipping, ``steps`` minibatch steps in one compiled scan; returns (losses, params).

    Jitted at module level so every scheme (same shapes) reuses one compiled program.
    """
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))

    def loss_fn(params, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(logits(params, xb), yb).mean()

    def step(carry, i):
        params, opt_state = carry
        idx = jax.random.randint(jax.random.fold_in(jax.random.key(1), i), (batch,), 0, len(x))
        loss, grads = jax.value_and_grad(loss_fn)(params, x[idx], y[idx])
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
    return losses, params


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="sparse_tanh_mlp.png", help="PNG plot path")
    parser.add_argument("--depth", type=int, default=10, help="hidden layers")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)

    dim, classes = 32, 10
    x, y = make_data(jax.random.key(0), 8192, dim, classes)
    x_test, y_test = make_data(jax.random.key(0), 8192 + 2048, dim, classes)
    x_test, y_test = x_test[8192:], y_test[8192:]
    sizes = [dim] + [args.width] * args.depth + [classes]

    results: dict[str, dict[str, float]] = {}
    profiles, curves = {}, {}
    for name, init in schemes().items():
        start = time.perf_counter()
        params = init_mlp(init, jax.random.key(2), sizes)
        profiles[name] = [float(jnp.mean(jnp.abs(a))) for a in hidden_activations(params, x[:512])]
        losses, params = train(params, x, y, steps=args.steps, batch=args.batch, lr=args.lr)
        curves[name] = np.asarray(losses)
        accuracy = float(jnp.mean(jnp.argmax(logits(params, x_test), 1) == y_test))
        results[name] = {"last_layer_mean_abs": profiles[name][-1],
                         "final_loss": float(curves[name][-30:].mean()), "test_accuracy": accuracy}
        print(f"{name:28s} mean|h| at init, last hidden layer {profiles[name][-1]:.3g}; "
              f"final loss {results[name]['final_loss']:.3f}; test accuracy {accuracy:.3f}  "
              f"({time.perf_counter() - start:.1f}s)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name in schemes():
        left.plot(range(1, args.depth + 1), profiles[name], marker="o", label=name)
        window = 10
        smooth = np.convolve(curves[name], np.ones(window) / window, mode="valid")
        right.plot(np.arange(window - 1, len(curves[name])), smooth, label=name)
    left.set_yscale("log")
    left.set_xlabel("hidden layer")
    left.set_ylabel("mean |tanh activation| at init")
    right.set_yscale("log")
    right.axhline(np.log(classes), color="gray", ls="--", label="chance (log 10)")
    right.set_xlabel("training step")
    right.set_ylabel("cross-entropy (10-step moving average)")
    right.legend(fontsize=8)
    fig.suptitle(f"tanh MLP, {args.depth} hidden layers of {args.width}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
