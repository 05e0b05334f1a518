"""Per-layer signal-propagation statistics of a Flax model at initialization.

:func:`layer_statistics` runs a linen or nnx model on a batch and returns one
:class:`LayerStats` record per *kernel layer* (every module call whose module
owns a ``kernel`` parameter: Dense/Linear, Conv, DenseGeneral, Einsum, ...),
in call order. Layers of a stack built with ``nn.scan``/``nnx.scan`` (stacked
kernels, one slice per layer) give one record per scanned layer, named with
the layer number after the scanned module (``layers/3/Dense_0``); layers of a
scan over time (``nn.RNN``, shared kernels) give one record whose statistics
cover every step. Definitions used throughout:

* **pre-activation** of a layer: the output of the kernel layer itself
  (``x @ kernel + bias`` for Dense, the convolution for Conv; the first array
  of a module that returns a tuple; ``x @ kernel + bias`` for a module that
  returns its kernel and bias for its parent to apply, such as the
  ``DenseParams`` of linen's ``OptimizedLSTMCell``).
* **activation** of a layer: what the *next* kernel layer called receives as
  its input (after the nonlinearity, the residual addition, pooling, ...);
  for the last kernel layer, the model's output (when it is one array).
* **backward**: the gradient of a scalar loss with respect to each layer's
  pre-activation and kernel. The default loss is a fixed random projection of
  the output, ``sum(output * r)`` with ``r ~ N(0, 1)`` drawn from ``key``, so
  the gradient reaching the last layer has unit variance and what the table
  shows is purely how the network propagates it back.

Layers are found without changing the model: linen module calls are seen
through ``flax.linen.intercept_methods``; for nnx, the kernel layers of a
private copy of the model (``nnx.merge`` of its state) are wrapped. The
caller's model and params are never modified. The forward and backward pass
runs under ``jax.jit`` unless ``jit=False`` (for models that are not
traceable); the statistics are reduced in NumPy, in float64.

:func:`format_table` prints the records and :func:`plot_statistics` draws std
against depth for several runs (e.g. several initializers) on one figure.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinit import threefry
from jaxinit.core import Array, check_key, check_real
from jaxinit.layer_taps import check_batch, get_at, prepare_model, probe_layers

__all__ = [
    "LayerStats",
    "format_table",
    "layer_statistics",
    "plot_statistics",
]

_NAME = "jaxinit.layer_statistics"


# ----------------------------------------------------------------------------------------
# Statistics.


@dataclasses.dataclass(frozen=True)
class LayerStats:
    """Statistics of one kernel-layer call at initialization (all plain floats).

    ``dead`` fractions count *units* (entries of the last axis, i.e. features
    or channels): a unit is dead when it is zero (activation) or ``<= 0``
    (pre-activation: a ReLU would zero it) for every example and position of
    the batch. ``pre_saturated`` is the fraction of pre-activation entries
    where a tanh would be saturated, ``|tanh(z)| >= 1 - margin``.
    ``act_saturated`` is the fraction of activation entries within
    ``margin * (high - low) / 2`` of the activation's bounds: the ``bounds``
    given, or ``(-1, 1)`` / ``(0, 1)`` when the activation is recognizably
    ``tanh`` / ``sigmoid`` of the pre-activation; NaN otherwise (ReLU,
    pooling or a residual sum in between, ...). ``grad_out_std`` is NaN for
    a layer whose output is computed by its parent (``DenseParams``), where
    no gradient with respect to it exists to observe.
    """

    depth: int
    name: str
    kind: str
    shape: tuple[int, ...]
    pre_mean: float
    pre_std: float
    pre_dead: float
    pre_saturated: float
    act_mean: float
    act_std: float
    act_mean_sq: float
    act_dead: float
    act_saturated: float
    grad_out_std: float
    grad_kernel_std: float


def _check_margin(margin: Any) -> float:
    value = check_real(_NAME, "margin", margin)
    if not 0 < value < 1:
        raise ValueError(f"{_NAME}: margin={margin!r} must be in (0, 1).")
    return float(value)


def _check_bounds(bounds: Any) -> tuple[float, float] | None:
    if bounds is None:
        return None
    if isinstance(bounds, str | bytes) or not isinstance(bounds, Sequence) or len(bounds) != 2:
        raise TypeError(f"{_NAME}: bounds={bounds!r} must be None or a pair (low, high) of "
                        "real numbers.")
    low, high = (check_real(_NAME, f"bounds[{i}]", b) for i, b in enumerate(bounds))
    if not low < high:
        raise ValueError(f"{_NAME}: bounds={bounds!r} must be (low, high) with low < high.")
    return float(low), float(high)


def _float64(x: Any) -> np.ndarray:
    return np.asarray(x).astype(np.float64)


def _unit_all(mask: np.ndarray) -> float:
    """Fraction of units (last axis) for which ``mask`` holds on every other entry."""
    return float(np.mean(np.all(mask.reshape(-1, mask.shape[-1]), axis=0)))


def _saturation(z: np.ndarray, tanh_z: np.ndarray, a: np.ndarray,
                bounds: tuple[float, float] | None, margin: float) -> float:
    """Fraction of ``a`` within ``margin * (high - low) / 2`` of its bounds.

    Without ``bounds``, a layer's activation is recognized as ``tanh(z)`` or
    ``sigmoid(z)`` of its pre-activation (same shape, equal to float32
    rounding); anything else gives NaN. Since sigmoid(z) = (1 + tanh(z/2))/2,
    the zone starts at the same point of the curve for both. ``tanh_z`` is
    ``tanh(z)``, computed once by the caller.
    """

    def near_bounds(low: float, high: float) -> float:
        width = (high - low) * margin / 2
        return float(np.mean((a <= low + width) | (a >= high - width)))

    if bounds is not None:
        return near_bounds(*bounds)
    if z.shape != a.shape:
        return math.nan
    if np.max(np.abs(a - tanh_z)) <= 1e-5:
        return near_bounds(-1.0, 1.0)
    if np.max(np.abs(a - 0.5 * (1 + np.tanh(z / 2)))) <= 1e-5:
        return near_bounds(0.0, 1.0)
    return math.nan


def _row(layer: tuple[Any, Any, Any, Any], bounds: tuple[float, float] | None,
         margin: float) -> list[float]:
    """One layer's statistics, in float64, in the order of :class:`LayerStats`' fields, from
    its ``(pre-activation, activation or None, output gradient or None, kernel gradient)``."""
    pre, received, grad_out, grad_kernel = layer
    z = _float64(pre)
    act = np.full((1,), np.nan) if received is None else _float64(received)
    tanh_z = np.tanh(z)
    return [float(z.mean()), float(z.std()), _unit_all(z <= 0),
            float(np.mean(np.abs(tanh_z) >= 1 - margin)),
            float(act.mean()), float(act.std()), float(np.mean(act**2)), _unit_all(act == 0),
            _saturation(z, tanh_z, act, bounds, margin),
            math.nan if grad_out is None else float(_float64(grad_out).std()),
            float(_float64(grad_kernel).std())]


def _projection_loss(key: Array) -> Callable[[Any], Array]:
    def loss(output: Any) -> Array:
        leaves = jax.tree_util.tree_leaves(output)
        total = jnp.zeros((), jnp.float32)
        for i, leaf in enumerate(leaves):
            r = threefry.normal(threefry.fold_in(key, i), jnp.shape(leaf), jnp.float32)
            total = total + jnp.sum(jnp.asarray(leaf, jnp.float32) * r)
        return total

    return loss


def layer_statistics(
    model: Any,
    params: Any,
    batch: Any,
    *,
    loss_fn: Callable[[Any], Array] | None = None,
    key: Array | None = None,
    bounds: tuple[float, float] | None = None,
    margin: float = 0.01,
    apply_kwargs: Mapping[str, Any] | None = None,
    jit: bool = True,
) -> list[LayerStats]:
    """Forward and backward statistics of every kernel layer of ``model`` on ``batch``.

    Args:
      model: a ``flax.linen.Module`` or a ``flax.nnx.Module``.
      params: the linen variables (``model.init(...)``, or its ``"params"``);
        ``None`` for an nnx model.
      batch: the model's input, with a leading batch axis; finite, not empty.
      loss_fn: scalar loss of the model output for the backward statistics;
        default ``sum(output * r)``, ``r ~ N(0, 1)`` fixed by ``key``.
      key: key of that projection (default ``jax.random.key(0)``).
      bounds: ``(low, high)`` of every activation for ``act_saturated``; by
        default recognized per layer: tanh ``(-1, 1)``, sigmoid ``(0, 1)``,
        otherwise NaN.
      margin: width of the saturated zone, as a fraction of half the bounds'
        range (0.01: ``|tanh| >= 0.99``, sigmoid outside ``[0.005, 0.995]``).
      apply_kwargs: extra keyword arguments of the model call (``train=False``,
        linen ``rngs=``, ...).
      jit: compile the forward and backward pass (default); ``False`` for
        untraceable models.

    Returns:
      One :class:`LayerStats` per kernel-layer call, in call order.

    Example::

      >>> import jax, jax.numpy as jnp, flax.linen as nn
      >>> model = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(8)])
      >>> x = jnp.ones((4, 3))
      >>> stats = layer_statistics(model, model.init(jax.random.key(0), x), x)
      >>> [s.name for s in stats]
      ['layers_0', 'layers_2']
    """
    margin = _check_margin(margin)
    bounds = _check_bounds(bounds)
    if key is not None:
        check_key(_NAME, key)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"{_NAME}: loss_fn={loss_fn!r} must be a callable output -> scalar.")
    if apply_kwargs is not None and not isinstance(apply_kwargs, Mapping):
        raise TypeError(f"{_NAME}: apply_kwargs={apply_kwargs!r} must be a mapping of keyword "
                        "arguments of the model call, or None.")
    if not isinstance(jit, bool | np.bool_):
        raise TypeError(f"{_NAME}: jit={jit!r} must be True or False.")
    check_batch(_NAME, batch)
    prepared = prepare_model(_NAME, model, params, apply_kwargs)
    taps_meta, _ = probe_layers(_NAME, prepared, batch)
    loss = loss_fn or _projection_loss(jax.random.key(0) if key is None else key)
    zeros = [jnp.zeros(t.output.shape, t.output.dtype) for t in taps_meta]

    def compute(params: Any, aux: Any, x: Any, perturb: list[Array]) -> list[tuple]:
        def scalar_loss(p, eps):
            out, taps = prepared.run(p, aux, x, eps)
            return loss(out), (out, taps)

        grads, (out, taps) = jax.grad(scalar_loss, argnums=(0, 1), has_aux=True)(params, perturb)
        grad_params, grad_out = grads
        layers = []
        for i, tap in enumerate(taps):
            received = jax.tree_util.tree_leaves(taps[i + 1].inputs if i + 1 < len(taps) else out)
            layers.append((tap.output, received[0] if len(received) == 1 else None,
                           grad_out[i] if tap.grad_observable else None,
                           get_at(grad_params, tap.kernel_path)[tap.stack_index]))
        return layers

    # The program returns the arrays and NumPy reduces them (in float64): a compiled
    # program of a dozen reductions per layer took several times the model's own time
    # to compile.
    fn = jax.jit(compute) if jit else compute
    layers = jax.device_get(fn(prepared.params, prepared.aux, batch, zeros))
    return [
        LayerStats(i + 1, t.name, t.kind, tuple(t.output.shape),
                   *_row(layer, bounds, margin))
        for i, (t, layer) in enumerate(zip(taps_meta, layers, strict=True))
    ]


# ----------------------------------------------------------------------------------------
# Presentation.

_COLUMNS = (
    ("#", "depth", "{:>3d}"), ("layer", "name", "{:<s}"), ("kind", "kind", "{:<s}"),
    ("pre mean", "pre_mean", "{:>9.2e}"), ("pre std", "pre_std", "{:>9.2e}"),
    ("act mean", "act_mean", "{:>9.2e}"), ("act std", "act_std", "{:>9.2e}"),
    ("dead", "act_dead", "{:>5.1%}"), ("sat", "act_saturated", "{:>5.1%}"),
    ("grad out", "grad_out_std", "{:>9.2e}"), ("grad W", "grad_kernel_std", "{:>9.2e}"),
)


def format_table(stats: Sequence[LayerStats], title: str | None = None) -> str:
    """The records as a text table (``-`` where a value is NaN); the layer and kind columns
    are as wide as the longest name, so full module paths are shown."""
    longest = {attr: max([len(getattr(s, attr)) for s in stats], default=0)
               for attr in ("name", "kind")}
    columns = [(h, attr, fmt if attr not in longest else f"{{:<{max(longest[attr], len(h))}s}}")
               for h, attr, fmt in _COLUMNS]
    widths = [len(fmt.format(0 if attr == "depth" else ("" if attr in longest else 0.0)))
              for _, attr, fmt in columns]
    header = " ".join(h.rjust(w) if i > 2 else h.ljust(w)
                      for i, ((h, _, _), w) in enumerate(zip(columns, widths, strict=True)))
    lines = ([title] if title else []) + [header, "-" * len(header)]
    for s in stats:
        cells = []
        for (_, attr, fmt), w in zip(columns, widths, strict=True):
            value = getattr(s, attr)
            missing = isinstance(value, float) and not math.isfinite(value)
            cells.append("-".rjust(w) if missing else fmt.format(value))
        lines.append(" ".join(cells))
    return "\n".join(lines)


def plot_statistics(runs: Mapping[str, Sequence[LayerStats]], path: str,
                    title: str | None = None) -> str:
    """Draws std against depth, forward and backward, one line per run; saves a PNG.

    ``runs`` maps a label (e.g. the initializer's name) to its records. Left:
    std of the activations (solid) and pre-activations (dotted); right: std of
    the gradient w.r.t. each layer's output (solid) and kernel (dotted); log
    scale. Needs matplotlib (``pip install jaxinit[plot]``); the Agg canvas is
    used directly, so no GUI and no change to the global backend.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "jaxinit.plot_statistics needs matplotlib: pip install 'jaxinit[plot]'."
        ) from err
    if not runs:
        raise ValueError("jaxinit.plot_statistics: runs is empty; give at least one.")
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax_fwd, ax_bwd = fig.subplots(1, 2)
    for i, (label, stats) in enumerate(runs.items()):
        color = f"C{i % 10}"
        depth = [s.depth for s in stats]
        ax_fwd.plot(depth, [s.act_std for s in stats], "-o", ms=3, color=color, label=label)
        ax_fwd.plot(depth, [s.pre_std for s in stats], ":", color=color)
        ax_bwd.plot(depth, [s.grad_out_std for s in stats], "-o", ms=3, color=color, label=label)
        ax_bwd.plot(depth, [s.grad_kernel_std for s in stats], ":", color=color)
    ax_fwd.set(title="forward: activation std (solid), pre-activation std (dotted)",
               xlabel="layer", ylabel="std", yscale="log")
    ax_bwd.set(title="backward: grad std w.r.t. output (solid), kernel (dotted)",
               xlabel="layer", ylabel="std", yscale="log")
    for ax in (ax_fwd, ax_bwd):
        ax.title.set_fontsize(9)
        ax.grid(True, which="major", alpha=0.3)
    ax_fwd.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    return path
