"""Long-memory recurrent nets: default LSTM init vs gate-wise orthogonal + forget bias 1 vs IRNN.

Task (Hochreiter & Schmidhuber 1997; Le et al. 2015): each sequence has T
steps of two channels: a value U(0, 1) and a marker. ``--task adding``: two
steps are marked (one in each half), the target is the sum of the two marked
values; ``--task copy``: one step in the first tenth is marked, the target is
its value, to be recalled T steps later. Predicting the mean scores the
variance of the target (1/6 for adding, 1/12 for copy); beating it needs
memory over up to T steps.

Three models, trained the same way (Adam, gradients clipped by global norm 1,
``optax.clip_by_global_norm``, the usual remedy for exploding gradients):

* ``flax default``: ``nnx.OptimizedLSTMCell`` as Flax builds it: the fused
  ``(h, 4h)`` recurrent kernel is one semi-orthogonal matrix (each gate block
  has singular values in (0, 1), r.m.s. 1/2) and every bias is 0 (forget gate at 1/2).
* ``gate-wise orthogonal + forget 1``: same cell with
  ``gate_blocks(orthogonal(), 4)`` (each gate block orthogonal) and
  ``lstm_bias(1.0)`` (Jozefowicz et al. 2015).
* ``IRNN``: a ReLU ``nnx.SimpleCell`` with ``irnn()`` recurrent kernel,
  N(0, 0.001²) input kernel and zero bias (Le et al. 2015).

Run: ``python examples/lstm_copy_task.py --out lstm.png`` (about a minute on CPU).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxinit
from jaxinit import irnn, lstm_bias
from jaxinit.constant import zeros


def make_batch(key: jax.Array, batch: int, steps: int, task: str) -> tuple[jax.Array, jax.Array]:
    """Inputs ``(batch, steps, 2)`` and targets ``(batch,)`` of the adding or copy task."""
    key_values, key_a, key_b = jax.random.split(key, 3)
    values = jax.random.uniform(key_values, (batch, steps))
    if task == "adding":
        first = jax.random.randint(key_a, (batch,), 0, steps // 2)
        second = jax.random.randint(key_b, (batch,), steps // 2, steps)
        markers = jax.nn.one_hot(first, steps) + jax.nn.one_hot(second, steps)
    else:
        first = jax.random.randint(key_a, (batch,), 0, max(steps // 10, 1))
        markers = jax.nn.one_hot(first, steps)
    targets = jnp.sum(values * markers, axis=1)
    return jnp.stack([values, markers], axis=-1), targets


class Recurrent(nnx.Module):
    """A recurrent cell scanned over time from a zero state, then a linear readout."""

    def __init__(self, cell: nnx.Module, hidden: int, lstm: bool, rngs: nnx.Rngs):
        self.cell = cell
        self.hidden = hidden
        self.lstm = lstm
        self.readout = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h0 = jnp.zeros((x.shape[0], self.hidden), x.dtype)
        carry = (h0, h0) if self.lstm else h0

        def step(carry, x_t):
            carry, _ = self.cell(carry, x_t)
            return carry, None

        carry, _ = jax.lax.scan(step, carry, jnp.swapaxes(x, 0, 1))
        h = carry[1] if self.lstm else carry
        return self.readout(h)[:, 0]


def build(name: str, hidden: int, seed: int) -> Recurrent:
    rngs = nnx.Rngs(seed)
    if name == "flax default":
        cell: nnx.Module = nnx.OptimizedLSTMCell(2, hidden, rngs=rngs)
    elif name == "gate-wise orthogonal + forget 1":
        cell = nnx.OptimizedLSTMCell(
            2, hidden, rngs=rngs,
            recurrent_kernel_init=jaxinit.orthogonal(num_blocks=4),
            bias_init=lstm_bias(1.0))
    elif name == "IRNN":
        cell = nnx.SimpleCell(2, hidden, rngs=rngs, activation_fn=nnx.relu,
                              recurrent_kernel_init=irnn(),
                              kernel_init=jax.nn.initializers.normal(1e-3), bias_init=zeros)
    else:
        raise ValueError(name)
    return Recurrent(cell, hidden, name != "IRNN", rngs)


MODELS = ("flax default", "gate-wise orthogonal + forget 1", "IRNN")


def train(name: str, *, steps: int, seq_len: int, hidden: int, batch: int, lr: float,
          task: str, seed: int = 0) -> np.ndarray:
    """Returns the training MSE after every step."""
    model = build(name, hidden, seed)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))
    opt_state = tx.init(params)

    def loss_fn(params: nnx.State, x: jax.Array, y: jax.Array) -> jax.Array:
        return jnp.mean((nnx.merge(graphdef, params, rest)(x) - y) ** 2)

    @jax.jit
    def step(params: nnx.State, opt_state: optax.OptState, key: jax.Array):
        x, y = make_batch(key, batch, seq_len, task)
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for i in range(steps):
        params, opt_state, loss = step(params, opt_state, jax.random.key(1000 + i))
        losses.append(loss)
    return np.asarray(jax.device_get(losses))


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="lstm_copy_task.png", help="PNG plot path")
    parser.add_argument("--task", choices=("adding", "copy"), default="adding")
    parser.add_argument("--steps", type=int, default=400, help="training steps per model")
    parser.add_argument("--seq-len", type=int, default=50)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0, help="parameter init seed")
    args = parser.parse_args(argv)

    baseline = 1 / 6 if args.task == "adding" else 1 / 12
    curves = {}
    for name in MODELS:
        start = time.perf_counter()
        curves[name] = train(name, steps=args.steps, seq_len=args.seq_len, hidden=args.hidden,
                             batch=args.batch, lr=args.lr, task=args.task,
                             seed=args.seed)
        tail = float(curves[name][-50:].mean())
        print(f"{name:32s} final MSE (mean of last 50 steps) {tail:.4f}  "
              f"[predict-the-mean baseline {baseline:.4f}]  {time.perf_counter() - start:.1f}s")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    window = 20
    for name, curve in curves.items():
        smooth = np.convolve(curve, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window - 1, len(curve)), smooth, label=name)
    ax.axhline(baseline, color="gray", ls="--", label="predict the mean")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"MSE ({window}-step moving average)")
    ax.set_title(f"{args.task} problem, T = {args.seq_len}, hidden {args.hidden}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")
    return {name: float(curve[-50:].mean()) for name, curve in curves.items()}


if __name__ == "__main__":
    main()
