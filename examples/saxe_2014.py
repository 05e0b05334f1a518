"""Saxe, McClelland & Ganguli (2014): orthogonal init makes deep linear networks depth-independent.

A deep linear network ``x -> x W_1 W_2 ... W_D`` (Flax ``Dense`` layers without
bias) computes the product of its kernels. With random orthogonal kernels the
product is itself orthogonal: all its singular values are 1 at any depth
(dynamical isometry). With scaled Gaussian kernels (Var = 1/n) the product's
singular values spread out exponentially with depth -- the smallest ones
decay like exp(-c D) -- so the modes they carry are learned ever more slowly.

Learning experiment (the paper's setting: whitened inputs, a linear teacher):
full-batch gradient descent on ``0.5 ||W_1 ... W_D - A||_F^2``, the learning
rate chosen per depth and init from a grid ``c / D`` (the best of the grid is
kept, as in the paper's depth sweep); the learning time is the first step at
which the relative error ``||W_1...W_D - A||_F^2 / ||A||_F^2`` falls below 1e-2.
A scheme that misses the criterion within the step budget at some depth is
not run at larger depths (it only gets slower with depth).

The orthogonal initializer is a parameter (default ``jaxinit.orthogonal()``).

Run: ``python examples/saxe_2014.py [--out PATH] [--quick]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import parse_args, pyplot, save_figure

import jaxinit

LR_GRID = (0.05, 0.1, 0.2, 0.4, 0.8)  # learning rate = c / depth, c from this grid
CRITERION = 1e-2  # relative squared error that counts as "learned"


def scaled_gaussian() -> jaxinit.Initializer:
    """N(0, 1/fan_in): Saxe et al.'s "scaled random Gaussian" initialization."""
    return jaxinit.variance_scaling(1.0, "fan_in", "normal")


def default_schemes() -> dict[str, Callable[[], jaxinit.Initializer]]:
    return {"orthogonal": jaxinit.orthogonal,
            "scaled Gaussian N(0, 1/n)": scaled_gaussian}


def linear_net(depth: int, width: int, kernel_init) -> nn.Module:
    return nn.Sequential([nn.Dense(width, use_bias=False, kernel_init=kernel_init)
                          for _ in range(depth)])


def init_kernels(depth: int, width: int, kernel_init, seed: int = 0):
    """Flax parameters of the linear net (initialized eagerly, not jitted, on purpose:
    one program holding many LAPACK factorizations can stall on CPU)."""
    model = linear_net(depth, width, kernel_init)
    return model, model.init(jax.random.key(seed), jnp.zeros((1, width)))["params"]


def end_to_end_singular_values(depth: int, width: int, kernel_init, seed: int = 0
                               ) -> np.ndarray:
    """Singular values of the map the network computes at init (its kernels' product)."""
    model, params = init_kernels(depth, width, kernel_init, seed)
    product = model.apply({"params": params}, jnp.eye(width))
    return np.linalg.svd(np.asarray(product, np.float64), compute_uv=False)


def teacher(width: int, seed: int = 1) -> jax.Array:
    """Target map A = U diag(s) V^T, s log-spaced in [0.3, 3], U and V Haar-orthogonal."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((width, width)))
    v, _ = np.linalg.qr(rng.standard_normal((width, width)))
    s = np.geomspace(0.3, 3.0, width)
    return jnp.asarray((u * s) @ v.T, jnp.float32)


def learning_curves(depth: int, width: int, kernel_init, target: jax.Array, steps: int,
                    lr_grid: Sequence[float] = LR_GRID, seed: int = 0,
                    stop_below: float | None = None, chunk: int = 250) -> np.ndarray:
    """Relative error before each GD step, shape ``(len(lr_grid), n)`` with ``n <= steps + 1``.

    All learning rates run in one compiled program (``vmap`` over the rate), in
    chunks of ``chunk`` steps. With ``stop_below``, the run ends after the first
    chunk in which some rate's error falls below it (the earliest crossing over
    the grid is then known) or once every rate has diverged.
    """
    model, params = init_kernels(depth, width, kernel_init, seed)
    eye = jnp.eye(width)
    scale = float(jnp.sum(target**2))

    def rel_error(p):
        return jnp.sum((model.apply({"params": p}, eye) - target) ** 2) / scale

    def run_chunk(p, lr, length):
        optimizer = optax.sgd(lr)  # stateless: no optimizer state to carry

        def step(p, _):
            err, grads = jax.value_and_grad(rel_error)(p)
            # gradient of 0.5 ||W_1...W_D - A||_F^2 (rel_error is that / (scale / 2))
            updates, _ = optimizer.update(jax.tree.map(lambda g: g * scale / 2, grads),
                                          optimizer.init(p))
            return optax.apply_updates(p, updates), err

        return jax.lax.scan(step, p, None, length=length)

    rates = jnp.asarray(lr_grid, jnp.float32) / depth
    batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(lr_grid), *x.shape)), params)
    run = jax.jit(jax.vmap(run_chunk, in_axes=(0, 0, None)), static_argnums=2)
    pieces = []
    done = 0
    while done < steps:
        length = min(chunk, steps - done)
        batched, errs = run(batched, rates, length)
        pieces.append(np.asarray(errs))
        done += length
        if stop_below is not None and (np.any(errs < stop_below) or
                                       not np.any(np.isfinite(errs[:, -1]))):
            break
    final = np.asarray(jax.jit(jax.vmap(rel_error))(batched))[:, None]
    return np.concatenate([*pieces, final], axis=1)


def learning_time(curves: np.ndarray, criterion: float = CRITERION) -> int | None:
    """First step (best over the learning-rate grid) with error < criterion; None if never."""
    times = []
    for curve in curves:
        ok = np.isfinite(curve) & (curve < criterion)
        if ok.any():
            times.append(int(np.argmax(ok)))
    return min(times) if times else None


def plot(spectra: dict[str, dict[int, np.ndarray]], times: dict[str, dict[int, int | None]],
         max_steps: int, out: Path) -> None:
    plt = pyplot()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8))
    styles = {"orthogonal": "-", "scaled Gaussian N(0, 1/n)": "--"}
    for label, by_depth in spectra.items():
        for depth, s in by_depth.items():
            ax0.semilogy(np.arange(1, len(s) + 1), s, styles.get(label, ":"),
                         label=f"{label}, depth {depth}")
    ax0.axhspan(1e-12, 1e-6, color="gray", alpha=0.15, lw=0)
    ax0.text(1, 2e-7, "float32 rounding level", fontsize=7, color="gray", va="top")
    ax0.set_xlabel("index (descending)")
    ax0.set_ylabel("singular value of W_1 ... W_D")
    ax0.set_title("end-to-end map at init")
    ax0.legend(fontsize=7)
    for label, by_depth in times.items():
        depths = list(by_depth)
        t = [max_steps if v is None else v for v in by_depth.values()]
        ax1.plot(depths, t, "o" + styles.get(label, ":"), label=label)
    ax1.axhline(max_steps, color="gray", ls=":", lw=1)
    ax1.set_xscale("log")
    ax1.set_xlabel("depth D")
    ax1.set_ylabel(f"GD steps to rel. error < {CRITERION:g}")
    ax1.set_yscale("log")
    ax1.set_title("learning time (best lr c/D); dotted: budget, not reached")
    ax1.legend(fontsize=8)
    fig.suptitle("Saxe et al. 2014: deep linear networks")
    save_figure(fig, out)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], "saxe_2014.png")
    width, depths, max_steps = (16, (1, 2, 4, 8, 16), 1000) if args.quick else (
        32, (1, 2, 4, 8, 16, 32, 64), 10000)
    schemes = default_schemes()
    spectra: dict[str, dict[int, np.ndarray]] = {}
    print(f"end-to-end singular values at init, width {width}")
    for label, make_init in schemes.items():
        spectra[label] = {}
        for depth in (10, 100):
            s = end_to_end_singular_values(depth, width, make_init())
            spectra[label][depth] = s
            print(f"  {label:26s} depth {depth:3d}: max {s[0]:.3g}, min {s[-1]:.3g},"
                  f" max|s-1| {np.abs(s - 1).max():.2g}")
    target = teacher(width)
    times: dict[str, dict[int, int | None]] = {label: {} for label in schemes}
    print(f"\nGD steps to relative error < {CRITERION:g} (best of lr = c/D, c in {LR_GRID})")
    missed: set[str] = set()  # a scheme that misses at depth D is not run deeper
    for depth in depths:
        row = []
        for label, make_init in schemes.items():
            t = None
            if label not in missed:
                curves = learning_curves(depth, width, make_init(), target, max_steps,
                                         stop_below=CRITERION)
                t = learning_time(curves)
            if t is None:
                missed.add(label)
            times[label][depth] = t
            row.append(f"{label}: {'>' + str(max_steps) if t is None else t}")
        print(f"  depth {depth:3d}  " + "   ".join(row))
    plot(spectra, times, max_steps, args.out)


if __name__ == "__main__":
    main()
