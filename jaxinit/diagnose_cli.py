"""``python -m jaxinit diagnose``: signal propagation of built-in deep nets, per initializer.

Builds a deep MLP or CNN (linen) once per scheme, with that scheme as every
layer's ``kernel_init`` and zero biases, runs :func:`jaxinit.diagnostics.layer_statistics`
on a Gaussian batch, prints a short summary per scheme and writes one figure
with all schemes (forward and backward std against depth).

Example::

    python -m jaxinit diagnose --schemes he_normal,lecun_normal,glorot_uniform,normal \\
        --depth 30 --width 256 --activation relu --out diagnostics.png
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

import jaxinit
from jaxinit.diagnostics import LayerStats, format_table, layer_statistics, plot_statistics

__all__ = ["main", "run_schemes", "summary_table"]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu, "tanh": jnp.tanh, "sigmoid": nn.sigmoid, "linear": lambda x: x,
    "gelu": nn.gelu, "selu": nn.selu, "leaky_relu": nn.leaky_relu,
}


def resolve_scheme(spec: str) -> Callable[..., jax.Array]:
    """An initializer from ``"name"`` or ``"name:arg"`` (e.g. ``normal:0.05``):
    a jaxinit factory, called with the optional float argument."""
    name, _, arg = spec.partition(":")
    factory = getattr(jaxinit, name, None)
    if factory is None or not callable(factory) or name.startswith("_"):
        raise ValueError(f"jaxinit diagnose: unknown scheme {name!r}; accepted: a jaxinit "
                         "initializer name such as he_normal, glorot_uniform, lecun_normal, "
                         "normal, orthogonal (optionally name:number).")
    if name in ("zeros", "ones"):
        return factory  # type: ignore[no-any-return]
    try:
        return factory(float(arg)) if arg else factory()  # type: ignore[no-any-return]
    except ValueError as err:
        raise ValueError(f"jaxinit diagnose: scheme {spec!r}: {err}") from err


class DeepMLP(nn.Module):
    """``depth`` Dense layers of ``width`` units, the activation after each but the last."""

    depth: int
    width: int
    activation: Callable[[jax.Array], jax.Array]
    kernel_init: Callable[..., jax.Array]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.depth):
            x = nn.Dense(self.width, kernel_init=self.kernel_init, name=f"dense{i + 1}")(x)
            if i + 1 < self.depth:
                x = self.activation(x)
        return x


class DeepCNN(nn.Module):
    """``depth`` 3x3 SAME convolutions of ``width`` channels, the activation after each
    but the last (no pooling, so every layer sees the same spatial size)."""

    depth: int
    width: int
    activation: Callable[[jax.Array], jax.Array]
    kernel_init: Callable[..., jax.Array]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.depth):
            x = nn.Conv(self.width, (3, 3), kernel_init=self.kernel_init, name=f"conv{i + 1}")(x)
            if i + 1 < self.depth:
                x = self.activation(x)
        return x


def run_schemes(schemes: Sequence[str], *, model: str = "mlp", depth: int = 20,
                width: int = 256, activation: str = "relu", batch: int = 256, seed: int = 0,
                progress: bool = False) -> dict[str, list[LayerStats]]:
    """Layer statistics of the built-in ``model`` ("mlp" or "cnn") for each scheme."""
    if model not in ("mlp", "cnn"):
        raise ValueError(f"jaxinit diagnose: model={model!r}; accepted: 'mlp', 'cnn'.")
    if activation not in ACTIVATIONS:
        raise ValueError(f"jaxinit diagnose: activation={activation!r}; accepted: "
                         + ", ".join(ACTIVATIONS) + ".")
    for arg, value in (("depth", depth), ("width", width), ("batch", batch)):
        if value < 1:
            raise ValueError(f"jaxinit diagnose: {arg}={value} must be >= 1.")
    inits = {spec: resolve_scheme(spec) for spec in schemes}  # fail before any work
    data_key, init_key = jax.random.split(jax.random.key(seed))
    shape = (batch, width) if model == "mlp" else (max(1, batch // 32), 16, 16, width)
    x = jax.random.normal(data_key, shape)
    cls = DeepMLP if model == "mlp" else DeepCNN
    runs = {}
    start = time.monotonic()
    for i, (spec, init) in enumerate(inits.items()):
        if progress:
            _progress(i, len(inits), spec, time.monotonic() - start)
        net = cls(depth, width, ACTIVATIONS[activation], init)
        runs[spec] = layer_statistics(net, net.init(init_key, x), x)
    if progress:
        _progress(len(inits), len(inits), "done", time.monotonic() - start)
    return runs


def _progress(done: int, total: int, label: str, elapsed: float) -> None:
    bar = "#" * (20 * done // total) + "." * (20 - 20 * done // total)
    end = "\n" if done == total or not sys.stderr.isatty() else ""
    print(f"\r[{bar}] {done}/{total} {label:<24.24} {elapsed:6.1f}s", end=end, file=sys.stderr,
          flush=True)


def summary_table(schemes: Sequence[str] = ("he_normal", "lecun_normal", "glorot_uniform"),
                  *, depth: int = 20, width: int = 256, activation: str = "relu",
                  model: str = "mlp", runs: dict[str, list[LayerStats]] | None = None) -> str:
    """One line per scheme for a deep MLP (or CNN): activation std at the first, middle and last
    hidden layer, and the output-gradient std at the last and first layer."""
    runs = runs or run_schemes(schemes, model=model, depth=depth, width=width,
                               activation=activation)
    some = next(iter(runs.values()))
    mid = max(len(some) - 1, 1) // 2  # index of the middle hidden layer
    header = (f"{'scheme':<16} {'act std L1':>11} {'L' + str(mid + 1):>9} "
              f"{'L' + str(len(some) - 1):>9} {'grad L' + str(len(some)):>11} {'grad L1':>9}")
    lines = [f"deep {activation} {model.upper()}, depth {len(some)}, width {width}:", header]
    for spec, stats in runs.items():
        hidden = stats[:-1] or stats
        middle = hidden[min(mid, len(hidden) - 1)]
        lines.append(f"{spec:<16.16} {hidden[0].act_std:>11.3g} {middle.act_std:>9.3g} "
                     f"{hidden[-1].act_std:>9.3g} {stats[-1].grad_out_std:>11.3g} "
                     f"{stats[0].grad_out_std:>9.3g}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m jaxinit diagnose``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m jaxinit diagnose",
        description="Per-layer forward/backward std of a deep net for several initializers.")
    parser.add_argument("--schemes", default="he_normal,lecun_normal,glorot_uniform,normal",
                        help="comma-separated jaxinit initializers, e.g. he_normal,normal:0.05")
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--width", type=int, default=256, help="units (mlp) or channels (cnn)")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="diagnostics.png", help="PNG file to write")
    parser.add_argument("--table", action="store_true", help="also print the full tables")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    if not schemes:
        print("jaxinit diagnose: --schemes is empty.", file=sys.stderr)
        return 2
    try:
        runs = run_schemes(schemes, model=args.model, depth=args.depth, width=args.width,
                           activation=args.activation, batch=args.batch, seed=args.seed,
                           progress=True)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    if args.table:
        for spec, stats in runs.items():
            print(format_table(stats, title=f"\n{spec}"))
    print(summary_table(runs=runs, width=args.width, activation=args.activation,
                        model=args.model))
    title = f"{args.model} depth {args.depth} width {args.width}, {args.activation}"
    print(f"wrote {plot_statistics(runs, args.out, title=title)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
