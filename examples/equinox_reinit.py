"""Re-initializing Equinox models with jaxinit.reinit, then training them with optax.

Equinox layers take no initializer: ``eqx.nn.Linear`` and ``eqx.nn.Conv2d``
draw U(±1/sqrt(fan_in)). ``jaxinit.reinit`` redraws the weights by path --
``"layers/0/weight"`` for an ``eqx.nn.MLP``, ``"conv1/weight"`` for a field
of your own module -- and ``layout="torch"`` tells it that Equinox stores
weights as ``(out, in, *kernel)``, so He's fan-in is ``in · kh · kw``.

Here an MLP and a small CNN get He-normal hidden layers (for ReLU), a
Glorot-uniform head and zero biases, and are trained for a few Adam steps on
scikit-learn's 8x8 digits. The CNN is built with ``eqx.filter_eval_shape``
(shapes only): ``reinit`` then draws each weight once, skipping Equinox's own
draw. Run:

    python examples/equinox_reinit.py [--steps 100] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxinit

RULES_MLP = {
    r"layers/2/weight": jaxinit.glorot_uniform(),  # the head: linear output
    r"layers/\d+/weight": jaxinit.he_normal(),  # ReLU hidden layers
    r"layers/\d+/bias": jaxinit.zeros,
}
RULES_CNN = {
    r"conv\d/weight": jaxinit.he_normal(),
    r"head/weight": jaxinit.glorot_uniform(),
    r".*/bias": jaxinit.zeros,
}


class CNN(eqx.Module):
    conv1: eqx.nn.Conv2d
    conv2: eqx.nn.Conv2d
    head: eqx.nn.Linear

    def __init__(self, key: jax.Array, width: int = 16):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(1, width, 3, padding=1, key=k1)
        self.conv2 = eqx.nn.Conv2d(width, 2 * width, 3, padding=1, key=k2)
        self.head = eqx.nn.Linear(2 * width, 10, key=k3)

    def __call__(self, x: jax.Array) -> jax.Array:  # x: (1, 8, 8), channels first
        x = jax.nn.relu(self.conv1(x))
        x = jax.nn.relu(self.conv2(x)).mean(axis=(1, 2))
        return self.head(x)


def load_digits(n: int | None = None) -> tuple[jax.Array, jax.Array]:
    """scikit-learn's 8x8 digits (shipped with the package), standardized per pixel."""
    from sklearn.datasets import load_digits as sklearn_digits

    data = sklearn_digits()
    x = np.asarray(data.data[:n], np.float32)
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
    return jnp.asarray(x), jnp.asarray(data.target[:n], jnp.int32)


def train(model: Any, x: jax.Array, y: jax.Array, steps: int, lr: float = 1e-2,
          batch_size: int = 128) -> tuple[Any, list[float]]:
    """Adam on random minibatches; returns the model and the loss of every step."""
    optimizer = optax.adam(lr)
    opt_state = optimizer.init(eqx.filter(model, eqx.is_array))

    def loss_fn(model: Any, xb: jax.Array, yb: jax.Array) -> jax.Array:
        logits = jax.vmap(model)(xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    @eqx.filter_jit
    def step(model: Any, opt_state: Any, xb: jax.Array, yb: jax.Array
             ) -> tuple[Any, Any, jax.Array]:
        loss, grads = eqx.filter_value_and_grad(loss_fn)(model, xb, yb)
        updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), opt_state, loss

    rng = np.random.default_rng(0)
    losses = []
    for _ in range(steps):
        batch = rng.integers(0, len(x), batch_size)
        model, opt_state, loss = step(model, opt_state, x[batch], y[batch])
        losses.append(float(loss))
    return model, losses


def weight_stds(model: CNN) -> dict[str, tuple[float, float]]:
    """Measured std of each conv weight and He's target sqrt(2 / (in · kh · kw))."""
    out = {}
    for name in ("conv1", "conv2"):
        w = getattr(model, name).weight
        out[f"{name}/weight"] = (float(w.std()), math.sqrt(2 / math.prod(w.shape[1:])))
    return out


def build_models(key: jax.Array) -> dict[str, Any]:
    """The two models, re-initialized by the rules."""
    key_mlp, key_cnn, key_init = jax.random.split(key, 3)
    mlp = eqx.nn.MLP(64, 10, width_size=64, depth=2, activation=jax.nn.relu, key=key_mlp)
    mlp = jaxinit.reinit(key_init, mlp, RULES_MLP, layout="torch")
    # Built abstractly (shapes only), the CNN's weights are drawn once, by the rules.
    cnn = eqx.filter_eval_shape(CNN, key_cnn)
    cnn = jaxinit.reinit(key_init, cnn, RULES_CNN, layout="torch")
    return {"mlp": mlp, "cnn": cnn}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="Adam steps per model")
    parser.add_argument("--quick", action="store_true", help="train on 500 images only")
    parser.add_argument("--models", nargs="+", choices=("mlp", "cnn"), default=["mlp", "cnn"])
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)

    x, y = load_digits(500 if args.quick else None)
    models = build_models(jax.random.key(0))
    inputs = {"mlp": x, "cnn": x.reshape(-1, 1, 8, 8)}
    results: dict[str, Any] = {}
    for name in args.models:
        trained, losses = train(models[name], inputs[name], y, args.steps)
        accuracy = float((jax.vmap(trained)(inputs[name]).argmax(-1) == y).mean())
        results[name] = {"losses": losses, "train_accuracy": accuracy}
        print(f"{name}: loss {losses[0]:.3f} -> {losses[-1]:.3f} in {args.steps} steps, "
              f"train accuracy {accuracy:.3f}")
    results["cnn_weight_std"] = weight_stds(models["cnn"])
    for path, (measured, target) in results["cnn_weight_std"].items():
        print(f"  cnn {path}: std {measured:.4f} (He target {target:.4f})")
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
