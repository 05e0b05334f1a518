"""He et al. (2015): deep ReLU networks need Var(W) = 2/fan_in.

Two parts.

1. Forward signal at depth 100: a ReLU unit keeps half of the second moment,
   E[relu(z)^2] = Var(z)/2, so Var(W) = 2/n (He) keeps E[x^2] constant with
   depth while Var(W) = 1/n (LeCun, and Glorot for equal widths) halves it at
   every layer: after 100 layers the std is 2^-50 ~ 1e-15 of the input's.
2. Training: a 30-layer ReLU MLP on scikit-learn's digits with SGD + momentum
   (optax), same data order and learning rate. With He init the loss falls;
   with Glorot/LeCun the output is ~2^-15 of its He size, the gradients of all
   but the last layers are as small, and the loss stays at ln(10) -- the
   30-layer experiment of the paper's figure 3 at toy scale.

Run: ``python examples/he_2015.py [--out PATH] [--quick]``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import (
    accuracy,
    cross_entropy,
    load_digits_split,
    parse_args,
    pyplot,
    save_figure,
)

import jaxinit

SCHEMES = {
    "He normal (2/n)": jaxinit.he_normal,
    "LeCun normal (1/n)": jaxinit.lecun_normal,
    "Glorot uniform (2/(n_in+n_out))": jaxinit.glorot_uniform,
}


class DeepReLU(nn.Module):
    """``depth`` ReLU layers of equal width and a linear 10-way head.

    The ``depth - 1`` square hidden kernels are one stacked parameter of shape
    ``(depth - 1, width, width)``, drawn by ``make_init(batch_axis=0)`` (each
    slice gets the fans of a ``width x width`` layer) and applied with
    ``lax.scan``, so a deep network compiles as fast as a shallow one.
    ``make_init`` is a jaxinit factory such as ``jaxinit.he_normal``.
    """

    depth: int
    width: int
    make_init: Callable[..., jaxinit.Initializer]

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Returns the logits and the std of each ReLU layer's output (``depth`` values)."""
        h = jax.nn.relu(nn.Dense(self.width, kernel_init=self.make_init(), name="layer_0")(x))
        shape = (self.depth - 1, self.width, self.width)
        kernels = self.param("hidden_kernels", self.make_init(batch_axis=0), shape)
        biases = self.param("hidden_biases", nn.initializers.zeros, shape[:2])

        def layer(h, kernel_and_bias):
            kernel, bias = kernel_and_bias
            h = jax.nn.relu(h @ kernel + bias)
            return h, h.std()

        first_std = h.std()
        h, stds = jax.lax.scan(layer, h, (kernels, biases))
        logits = nn.Dense(10, kernel_init=self.make_init(), name="head")(h)
        return logits, jnp.concatenate([first_std[None], stds])


def forward_std(depth: int = 100, width: int = 256, n_examples: int = 256, seed: int = 0,
                schemes: dict | None = None) -> dict[str, np.ndarray]:
    """Std of each ReLU layer's output at init, per scheme; inputs N(0, 1) of dim ``width``."""
    x = jax.random.normal(jax.random.key(seed + 1), (n_examples, width))
    stds = {}
    for label, make_init in (SCHEMES if schemes is None else schemes).items():
        model = DeepReLU(depth, width, make_init)
        variables = jax.jit(model.init)(jax.random.key(seed), x)
        stds[label] = np.asarray(jax.jit(model.apply)(variables, x)[1], np.float64)
    return stds


def first_layer_grad_std(make_init, depth: int = 30, width: int = 64, seed: int = 0) -> float:
    """Std of the entries of d(mean loss)/d(first kernel) at init, on the digits training split."""
    x, y, _, _ = load_digits_split()
    model = DeepReLU(depth, width, make_init)
    params = jax.jit(model.init)(jax.random.key(seed), x)["params"]
    grads = jax.jit(jax.grad(lambda p: cross_entropy(model.apply({"params": p}, x)[0], y)))(params)
    return float(grads["layer_0"]["kernel"].std())


def train(make_init, depth: int = 30, width: int = 64, steps: int = 300, batch: int = 64,
          learning_rate: float = 0.003, seed: int = 0, eval_every: int = 25
          ) -> dict[str, np.ndarray]:
    """Trains a ``depth``-layer ReLU MLP on digits; returns the loss/accuracy history.

    SGD with momentum 0.9 (no adaptive per-parameter scaling, which would hide
    the init's scale); minibatches drawn with a fixed key, identical for every init.
    """
    x_train, y_train, x_test, y_test = load_digits_split()
    model = DeepReLU(depth, width, make_init)
    params = jax.jit(model.init)(jax.random.key(seed), x_train[:1])["params"]
    optimizer = optax.sgd(learning_rate, momentum=0.9)
    opt_state = optimizer.init(params)

    def loss_fn(params, x, y):
        return cross_entropy(model.apply({"params": params}, x)[0], y)

    def step(carry, key):
        params, opt_state = carry
        idx = jax.random.choice(key, x_train.shape[0], (batch,), replace=False)
        loss, grads = jax.value_and_grad(loss_fn)(params, x_train[idx], y_train[idx])
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    # One compiled program runs ``eval_every`` steps (a scan), so a run costs
    # one compilation rather than a Python round trip per step.
    run_chunk = jax.jit(lambda carry, keys: jax.lax.scan(step, carry, keys)[0])
    evaluate = jax.jit(lambda p: (loss_fn(p, x_train, y_train),
                                  model.apply({"params": p}, x_test)[0]))
    if steps % eval_every:
        raise ValueError(f"steps={steps} must be a multiple of eval_every={eval_every}")
    keys = jax.random.split(jax.random.key(seed + 1), steps).reshape(-1, eval_every)
    history: dict[str, list[float]] = {"step": [], "train_loss": [], "test_accuracy": []}
    carry = (params, opt_state)
    for chunk in range(steps // eval_every + 1):
        loss, logits = evaluate(carry[0])
        history["step"].append(chunk * eval_every)
        history["train_loss"].append(float(loss))
        history["test_accuracy"].append(accuracy(logits, y_test))
        if chunk < len(keys):
            carry = run_chunk(carry, keys[chunk])
    return {k: np.array(v) for k, v in history.items()}


def plot(stds: dict[str, np.ndarray], histories: dict[str, dict[str, np.ndarray]],
         train_depth: int, out: Path) -> None:
    plt = pyplot()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8))
    for label, s in stds.items():
        ax0.semilogy(np.arange(1, len(s) + 1), s, label=label)
    ax0.set_xlabel("layer")
    ax0.set_ylabel("std of ReLU output")
    ax0.set_title(f"forward signal at init, depth {len(next(iter(stds.values())))}")
    ax0.legend(fontsize=8)
    for label, h in histories.items():
        ax1.plot(h["step"], h["train_loss"], label=label)
    ax1.axhline(np.log(10), color="gray", ls=":", lw=1)
    ax1.set_xlabel("SGD step")
    ax1.set_ylabel("training loss (cross-entropy)")
    ax1.set_title(f"{train_depth}-layer ReLU MLP on digits")
    ax1.legend(fontsize=8)
    fig.suptitle("He et al. 2015: Var(W) = 2/fan_in for ReLU")
    save_figure(fig, out)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], "he_2015.png")
    depth, width, steps = (30, 32, 150) if args.quick else (30, 64, 500)
    stds = forward_std(depth=100, width=128 if args.quick else 256)
    print("depth-100 ReLU MLP at init, N(0,1) inputs: std of layer 1, 10, 50, 100")
    for label, s in stds.items():
        print(f"  {label:34s} {s[0]:.3g}  {s[9]:.3g}  {s[49]:.3g}  {s[99]:.3g}")
    print(f"\n{depth}-layer ReLU MLP at init, digits: std of the first layer's kernel gradient")
    for label, make_init in SCHEMES.items():
        print(f"  {label:34s} {first_layer_grad_std(make_init, depth, width):.3g}")
    histories = {}
    print(f"\n{depth}-layer ReLU MLP, width {width}, {steps} SGD steps (lr 0.003, momentum 0.9)")
    for label, make_init in SCHEMES.items():
        h = train(make_init, depth=depth, width=width, steps=steps)
        histories[label] = h
        print(f"  {label:34s} train loss {h['train_loss'][0]:.3f} -> {h['train_loss'][-1]:.3f}"
              f", test accuracy {h['test_accuracy'][-1]:.3f}")
    plot(stds, histories, depth, args.out)


if __name__ == "__main__":
    main()
