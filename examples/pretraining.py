"""Unsupervised pre-training as an initialization (Hinton et al. 2006; Bengio et al. 2007).

Greedy layer-wise pre-training: each sigmoid hidden layer is first trained,
without labels, as the encoder of an autoencoder that reconstructs the
previous layer's representation of the training inputs (Adam, squared error,
linear decoder); the trained encoders then initialize a deep sigmoid MLP, whose
output layer is drawn at random, and the whole network is fine-tuned with
labels. The baseline is the same network with random (Glorot uniform)
initialization, fine-tuned with the same optimizer, steps and minibatches, on
the same data (scikit-learn's digits). The comparison is repeated over seeds.

Run: ``python examples/pretraining.py [--out PATH] [--quick]``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import (
    ProbedMLP,
    accuracy,
    cross_entropy,
    load_digits_split,
    parse_args,
    pyplot,
    save_figure,
)

import jaxinit


class Autoencoder(nn.Module):
    """One sigmoid encoder layer and a linear decoder back to the input width."""

    width: int
    n_in: int
    kernel_init: Callable[..., jax.Array]

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        code = jax.nn.sigmoid(nn.Dense(self.width, kernel_init=self.kernel_init,
                                       name="encoder")(x))
        return nn.Dense(self.n_in, kernel_init=self.kernel_init, name="decoder")(code), code


def _minibatch_scan(step_fn, carry, key, steps: int, n: int, batch: int):
    """Runs ``steps`` minibatch steps in one compiled scan; returns (carry, losses)."""
    keys = jax.random.split(key, steps)

    def body(carry, k):
        idx = jax.random.choice(k, n, (batch,), replace=False)
        return step_fn(carry, idx)

    return jax.lax.scan(body, carry, keys)


def pretrain_layers(x: jax.Array, hidden: tuple[int, ...], key: jax.Array, steps: int = 400,
                    batch: int = 64, learning_rate: float = 3e-3
                    ) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Greedy layer-wise autoencoder training; returns each layer's encoder params and
    its reconstruction-error curve (mean squared error per minibatch)."""
    encoders, curves = [], []
    representation = x
    for width in hidden:
        key, init_key, data_key = jax.random.split(key, 3)
        model = Autoencoder(width, representation.shape[1], jaxinit.glorot_uniform())
        params = jax.jit(model.init)(init_key, representation[:1])["params"]
        optimizer = optax.adam(learning_rate)

        def step(carry, idx, model=model, optimizer=optimizer, data=representation):
            params, state = carry

            def loss_fn(p):
                recon, _ = model.apply({"params": p}, data[idx])
                return jnp.mean((recon - data[idx]) ** 2)

            loss, grads = jax.value_and_grad(loss_fn)(params)
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        run = jax.jit(lambda c, k, step=step, n=representation.shape[0]:
                      _minibatch_scan(step, c, k, steps, n, batch))
        (params, _), losses = run((params, optimizer.init(params)), data_key)
        encoders.append(params["encoder"])
        curves.append(np.asarray(losses))
        representation = model.apply({"params": params}, representation)[1]
    return encoders, curves


def finetune(params: Any, model: ProbedMLP, data, key: jax.Array, steps: int = 400,
             batch: int = 64, learning_rate: float = 0.1, eval_every: int = 20
             ) -> dict[str, np.ndarray]:
    """Supervised training of the whole network (SGD, momentum 0.9); returns the
    train-loss / test-loss / test-accuracy history every ``eval_every`` steps."""
    x_train, y_train, x_test, y_test = data
    optimizer = optax.sgd(learning_rate, momentum=0.9)

    def loss_fn(p, x, y):
        return cross_entropy(model.apply({"params": p}, x), y)

    def step(carry, idx):
        p, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(p, x_train[idx], y_train[idx])
        updates, state = optimizer.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), loss

    run = jax.jit(lambda c, k: _minibatch_scan(step, c, k, eval_every, x_train.shape[0],
                                               batch)[0])
    evaluate = jax.jit(lambda p: (loss_fn(p, x_train, y_train), loss_fn(p, x_test, y_test),
                                  model.apply({"params": p}, x_test)))
    history: dict[str, list[float]] = {"step": [], "train_loss": [], "test_loss": [],
                                       "test_accuracy": []}
    carry = (params, optimizer.init(params))
    keys = jax.random.split(key, steps // eval_every)
    for chunk in range(len(keys) + 1):
        train_loss, test_loss, logits = evaluate(carry[0])
        history["step"].append(chunk * eval_every)
        history["train_loss"].append(float(train_loss))
        history["test_loss"].append(float(test_loss))
        history["test_accuracy"].append(accuracy(logits, y_test))
        if chunk < len(keys):
            carry = run(carry, keys[chunk])
    return {k: np.array(v) for k, v in history.items()}


def compare(seed: int = 0, hidden: tuple[int, ...] = (128, 64, 32), pretrain_steps: int = 400,
            finetune_steps: int = 400) -> dict[str, Any]:
    """Pre-trained vs random init for one seed: both fine-tuned on identical minibatches."""
    data = load_digits_split()
    model = ProbedMLP(hidden=hidden, n_out=10, activation=jax.nn.sigmoid,
                      kernel_init=jaxinit.glorot_uniform())
    init_key, pre_key, tune_key = jax.random.split(jax.random.key(seed), 3)
    random_params = jax.jit(model.init)(init_key, data[0][:1])["params"]
    encoders, recon_curves = pretrain_layers(data[0], hidden, pre_key, steps=pretrain_steps)
    pretrained = dict(random_params)  # the output layer keeps its random draw
    for i, enc in enumerate(encoders):
        pretrained[f"dense_{i}"] = enc
    return {
        "reconstruction": recon_curves,
        "random": finetune(random_params, model, data, tune_key, steps=finetune_steps),
        "pretrained": finetune(pretrained, model, data, tune_key, steps=finetune_steps),
    }


def plot(results: list[dict[str, Any]], out: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    window = 10  # minibatch losses are noisy: plot their running mean
    for i, curve in enumerate(results[0]["reconstruction"]):
        smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
        axes[0].semilogy(np.arange(window, len(curve) + 1), smooth, label=f"layer {i + 1}")
    axes[0].set_xlabel("Adam step")
    axes[0].set_title(f"pre-training: reconstruction MSE (seed 0, mean of {window})")
    axes[0].legend(fontsize=8)
    colors = {"random": "C0", "pretrained": "C3"}
    for r in results:
        for name in ("random", "pretrained"):
            h = r[name]
            axes[1].semilogy(h["step"], h["train_loss"], color=colors[name], alpha=0.6, lw=1)
            axes[2].plot(h["step"], h["test_accuracy"], color=colors[name], alpha=0.6, lw=1)
    for name, c in colors.items():
        axes[1].plot([], [], color=c, label=f"{name} init")
    axes[1].legend(fontsize=8)
    axes[1].set_title(f"fine-tuning: training loss ({len(results)} seeds)")
    axes[2].set_title("fine-tuning: test accuracy")
    for ax in axes[1:]:
        ax.set_xlabel("SGD step")
    fig.suptitle("Greedy layer-wise autoencoder pre-training vs random init, digits")
    save_figure(fig, out)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], "pretraining.png")
    seeds = range(2) if args.quick else range(5)
    pretrain_steps, finetune_steps = (200, 200) if args.quick else (400, 1000)
    checkpoints = sorted({100, finetune_steps // 2, finetune_steps})
    hidden = (128, 64, 32)
    print(f"sigmoid MLP {hidden}, {pretrain_steps} Adam steps per pre-trained layer, "
          f"{finetune_steps} SGD fine-tuning steps (lr 0.1, momentum 0.9)")
    results = []
    for seed in seeds:
        r = compare(seed, hidden, pretrain_steps=pretrain_steps, finetune_steps=finetune_steps)
        results.append(r)
        recon = ", ".join(f"{c[:10].mean():.3f}->{c[-10:].mean():.3f}" for c in r["reconstruction"])
        print(f"seed {seed}: reconstruction MSE per layer {recon}")
        for name in ("random", "pretrained"):
            h = r[name]
            cells = []
            for t in checkpoints:
                i = int(np.searchsorted(h["step"], t))
                cells.append(f"step {t}: train {h['train_loss'][i]:.3f} "
                             f"test {h['test_loss'][i]:.3f} acc {h['test_accuracy'][i]:.3f}")
            print(f"  {name:10s} " + " | ".join(cells))
    for t in checkpoints:
        for name in ("random", "pretrained"):
            i = int(np.searchsorted(results[0][name]["step"], t))
            acc = np.array([r[name]["test_accuracy"][i] for r in results])
            loss = np.array([r[name]["test_loss"][i] for r in results])
            print(f"step {t:5d} {name:10s} test accuracy mean {acc.mean():.3f} "
                  f"(min {acc.min():.3f}, max {acc.max():.3f}), test loss mean {loss.mean():.3f}")
    plot(results, args.out)


if __name__ == "__main__":
    main()
