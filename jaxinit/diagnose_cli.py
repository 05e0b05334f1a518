"""``python -m jaxinit diagnose``: signal propagation of a deep net, per initializer.

Builds a model once per scheme, runs :func:`jaxinit.diagnostics.layer_statistics`
on a random batch, prints a summary (or the full per-layer tables) and writes
one figure with all schemes (forward and backward std against depth).

The model is a built-in deep MLP or CNN (linen; the scheme is every layer's
``kernel_init``, biases zero) or the user's own, ``--model package.module:factory``:
a callable returning a linen or nnx ``Module``. It is called with
``kernel_init=<scheme>`` when it takes that argument (once per scheme), else
once, and the model is measured as the factory initializes it; with
``rngs=nnx.Rngs(seed)`` when it takes ``rngs``. A linen model is initialized
on the batch; the batch has shape ``--input-shape`` (batch axis first).

Examples::

    python -m jaxinit diagnose --schemes he_normal,lecun_normal,glorot_uniform,normal \\
        --depth 30 --width 256 --activation relu --out diagnostics.png
    python -m jaxinit diagnose --model my_project.models:make_resnet \\
        --input-shape 16,32,32,3 --schemes he_normal,lecun_normal
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxinit
from jaxinit import draws
from jaxinit.diagnostics import LayerStats, format_table, layer_statistics, plot_statistics

__all__ = ["load_factory", "main", "run_schemes", "summary_table"]

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu, "tanh": jnp.tanh, "sigmoid": nn.sigmoid, "linear": lambda x: x,
    "gelu": nn.gelu, "selu": nn.selu, "leaky_relu": nn.leaky_relu,
}
BUILT_IN = ("mlp", "cnn")
FACTORY_DEFAULTS = "model defaults"  # the label of a factory's own initialization
_NAME = "jaxinit diagnose"


def resolve_scheme(spec: str) -> Callable[..., jax.Array]:
    """An initializer from ``"name"`` or ``"name:arg"`` (e.g. ``normal:0.05``):
    a jaxinit factory, called with the optional float argument."""
    name, _, arg = spec.partition(":")
    factory = getattr(jaxinit, name, None)
    if factory is None or not callable(factory) or name.startswith("_"):
        raise ValueError(f"{_NAME}: unknown scheme {name!r}; accepted: a jaxinit "
                         "initializer name such as he_normal, glorot_uniform, lecun_normal, "
                         "normal, orthogonal (optionally name:number).")
    if name in ("zeros", "ones"):
        return factory  # type: ignore[no-any-return]
    try:
        return factory(float(arg)) if arg else factory()  # type: ignore[no-any-return]
    except ValueError as err:
        raise ValueError(f"{_NAME}: scheme {spec!r}: {err}") from err


def load_factory(spec: str) -> Callable[..., Any]:
    """The callable named by ``"package.module:factory"`` (``factory`` may be dotted)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{_NAME}: --model {spec!r}; accepted: {', '.join(BUILT_IN)} or "
                         "package.module:factory.")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"{_NAME}: --model {spec!r}: cannot import {module_name!r} ({err}); "
                         "is its package on PYTHONPATH?") from err
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ValueError(f"{_NAME}: --model {spec!r}: {module_name!r} has no {attr!r}.")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"{_NAME}: --model {spec!r}: {attr!r} is not callable.")
    return target  # type: ignore[no-any-return]


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


def _takes(factory: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def _user_runs(spec: str, schemes: Sequence[str] | None, x: jax.Array, seed: int,
               init_key: jax.Array) -> dict[str, tuple[Any, Any]]:
    """label -> (model, params) for a user factory: one per scheme, or its own init."""
    factory = load_factory(spec)
    if schemes and not _takes(factory, "kernel_init"):
        raise ValueError(f"{_NAME}: --model {spec!r} takes no kernel_init argument, so "
                         "--schemes cannot be applied; drop --schemes to measure the model "
                         "as the factory initializes it.")
    inits = {s: resolve_scheme(s) for s in schemes} if schemes else {FACTORY_DEFAULTS: None}
    runs: dict[str, tuple[Any, Any]] = {}
    for label, init in inits.items():
        kwargs: dict[str, Any] = {} if init is None else {"kernel_init": init}
        if _takes(factory, "rngs"):
            kwargs["rngs"] = nnx.Rngs(seed)
        model = factory(**kwargs)
        if isinstance(model, nnx.Module):
            runs[label] = (model, None)
        elif isinstance(model, nn.Module):
            runs[label] = (model, jax.jit(model.init)(init_key, x))
        else:
            raise ValueError(f"{_NAME}: --model {spec!r} returned {type(model).__name__}; "
                             "accepted: a flax.linen or flax.nnx Module.")
    return runs


def run_schemes(schemes: Sequence[str] | None, *, model: str = "mlp", depth: int = 20,
                width: int = 256, activation: str = "relu", batch: int = 256, seed: int = 0,
                input_shape: Sequence[int] | None = None, input_dtype: str = "float32",
                progress: bool = False) -> dict[str, list[LayerStats]]:
    """Layer statistics for each scheme, of the built-in ``model`` ("mlp" or "cnn") or of a
    user's ``"package.module:factory"`` on a batch of ``input_shape``."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"{_NAME}: activation={activation!r}; accepted: "
                         + ", ".join(ACTIVATIONS) + ".")
    for arg, value in (("depth", depth), ("width", width), ("batch", batch)):
        if value < 1:
            raise ValueError(f"{_NAME}: {arg}={value} must be >= 1.")
    data_key, init_key = jax.random.split(jax.random.key(seed))
    if model in BUILT_IN:
        inits = {spec: resolve_scheme(spec) for spec in schemes or ()}  # fail before any work
        shape = input_shape or ((batch, width) if model == "mlp"
                                else (max(1, batch // 32), 16, 16, width))
        x = _batch(data_key, shape, input_dtype)
        cls = DeepMLP if model == "mlp" else DeepCNN
        built: dict[str, tuple[Any, Any]] = {}
        for spec, init in inits.items():
            net = cls(depth, width, ACTIVATIONS[activation], init)
            built[spec] = (net, jax.jit(net.init)(init_key, x))
    else:
        if input_shape is None:
            raise ValueError(f"{_NAME}: --model {model!r} needs --input-shape (the shape of "
                             "one batch, batch axis first, e.g. 32,784).")
        x = _batch(data_key, input_shape, input_dtype)
        built = _user_runs(model, schemes, x, seed, init_key)
    runs = {}
    start = time.monotonic()
    for i, (label, (net, params)) in enumerate(built.items()):
        if progress:
            _progress(i, len(built), label, time.monotonic() - start)
        runs[label] = layer_statistics(net, params, x)
    if progress:
        _progress(len(built), len(built), "done", time.monotonic() - start)
    return runs


def _batch(key: jax.Array, shape: Sequence[int], dtype: str) -> jax.Array:
    """Standard normal inputs, or tokens 0/1 for integer inputs (valid for any vocabulary)."""
    if any(d < 1 for d in shape) or not shape:
        raise ValueError(f"{_NAME}: input shape {tuple(shape)}; accepted: positive sizes, "
                         "batch axis first.")
    if dtype == "int32":
        return jax.random.randint(key, tuple(shape), 0, 2)
    # jax.random.normal's numbers, from a program shared with other sizes
    return draws.normal(key, tuple(shape), np.dtype(np.float32))


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


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a shape; accepted: sizes separated by commas, e.g. 32,784") from err


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m jaxinit diagnose",
        description="Per-layer forward/backward std of a deep net for several initializers: "
                    "prints a summary (or full tables) and writes one figure.",
        epilog="A user model: --model package.module:factory, a callable returning a linen or "
               "nnx Module, called with kernel_init=<scheme> if it takes it (else measured as "
               "it initializes itself) and rngs=nnx.Rngs(seed) if it takes rngs.")
    parser.add_argument("--schemes", default=None,
                        help="comma-separated jaxinit initializers, e.g. he_normal,normal:0.05 "
                             "(default for the built-in models: he_normal,lecun_normal,"
                             "glorot_uniform,normal)")
    parser.add_argument("--model", default="mlp",
                        help="mlp, cnn, or package.module:factory (default: %(default)s)")
    parser.add_argument("--input-shape", type=_shape, default=None,
                        help="batch shape, batch axis first, e.g. 32,784 (needed for a factory)")
    parser.add_argument("--input-dtype", choices=("float32", "int32"), default="float32",
                        help="float32: standard normal inputs; int32: tokens 0/1")
    parser.add_argument("--depth", type=int, default=None, help="built-in models (default 20)")
    parser.add_argument("--width", type=int, default=None,
                        help="units (mlp) or channels (cnn) of the built-in models (default 256)")
    parser.add_argument("--activation", choices=sorted(ACTIVATIONS), default=None,
                        help="built-in models (default relu)")
    parser.add_argument("--batch", type=int, default=256, help="batch size of the built-in models")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="diagnostics.png", help="PNG file to write")
    parser.add_argument("--no-plot", action="store_true", help="print only, write no figure")
    parser.add_argument("--table", action="store_true", help="also print the full tables")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m jaxinit diagnose``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    built_in = args.model in BUILT_IN
    schemes = None if args.schemes is None else [
        s.strip() for s in args.schemes.split(",") if s.strip()]
    try:
        if schemes == []:
            raise ValueError(f"{_NAME}: --schemes is empty.")
        if not built_in and any(v is not None for v in (args.depth, args.width,
                                                        args.activation)):
            raise ValueError(f"{_NAME}: --depth, --width and --activation apply to the built-in "
                             "models only, not to --model " + repr(args.model) + ".")
        if built_in and schemes is None:
            schemes = ["he_normal", "lecun_normal", "glorot_uniform", "normal"]
        depth = 20 if args.depth is None else args.depth
        width = 256 if args.width is None else args.width
        activation = args.activation or "relu"
        runs = run_schemes(schemes, model=args.model, depth=depth, width=width,
                           activation=activation, batch=args.batch, seed=args.seed,
                           input_shape=args.input_shape, input_dtype=args.input_dtype,
                           progress=True)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    if args.table or not built_in:
        for label, stats in runs.items():
            print(format_table(stats, title=f"\n{label}"))
    if built_in:
        print(summary_table(runs=runs, width=width, activation=activation, model=args.model))
    if args.no_plot:
        return 0
    title = f"{args.model} depth {depth} width {width}, {activation}" if built_in else args.model
    try:
        print(f"wrote {plot_statistics(runs, args.out, title=title)}")
    except ImportError:
        print(f"{_NAME}: no figure written: the plot needs matplotlib "
              "(pip install 'jaxinit[plot]'); the tables above hold the same numbers.",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
