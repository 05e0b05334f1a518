"""Layer-sequential unit-variance (LSUV) initialization for Flax linen and nnx models.

Mishkin & Matas, "All you need is a good init", ICLR 2016: start from
orthonormal kernels, then, going through the layers in the order the model
calls them, divide each kernel by the standard deviation of that layer's
output on a batch of real data, until the output variance is within ``tol``
of the target. In a feedforward net earlier layers are final when a later
one is scaled, so one pass suffices; a layer usually needs one or two rounds
(exactly one would do without a bias, since the output is then linear in the
kernel). In a recurrent net a layer's input also depends on layers called
after it (the next step sees every gate), so passes repeat until every layer
is within ``tol`` (or has used ``max_rounds`` rescalings).

The layer's output is its pre-activation (the output of the kernel layer,
bias included), as in the paper. Rescaled are the layers whose output is
linear in their kernel: ``Dense``/``Linear``, ``Conv``/``ConvTranspose``,
``DenseGeneral``/``LinearGeneral``, ``Einsum`` (linen and nnx) and the
``DenseParams`` of linen's ``OptimizedLSTMCell``, each kernel (or, in a stack
built with ``nn.scan``/``nnx.scan``, each layer's slice of the stacked kernel)
used by one call per forward pass; in a scan over time the variance is over
every step. Every other module that owns parameters is listed in the
report's ``unhandled`` with the reason, and a warning names the ones that
have a weight matrix (rank >= 2 parameters), so nothing is skipped silently.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinit import threefry
from jaxinit.core import Array, check_callable, check_int, check_key, check_real
from jaxinit.kernel_layout import KernelLayout
from jaxinit.layer_taps import (
    check_batch,
    get_at,
    join_path,
    path_names,
    prepare_model,
    probe_layers,
    replace_at,
)
from jaxinit.orthogonal import orthogonal

__all__ = ["LSUVLayer", "LSUVReport", "lsuv"]

_NAME = "jaxinit.lsuv"


@dataclasses.dataclass(frozen=True)
class LSUVLayer:
    """What LSUV did to one layer: output variance with the caller's params
    (``var_before``), after the orthonormal pre-init (``var_orthogonal``) and at
    the end (``var_after``), the rounds used and whether it reached the target."""

    name: str
    kind: str
    var_before: float
    var_orthogonal: float
    var_after: float
    rounds: int
    converged: bool


@dataclasses.dataclass(frozen=True)
class LSUVReport:
    """Per-layer results and the modules left as they were, with the reason."""

    layers: list[LSUVLayer]
    unhandled: list[tuple[str, str]]

    def format(self) -> str:
        """A text table of the per-layer variances, then the unhandled modules."""
        name_width = max([len("layer"), *(len(r.name) for r in self.layers)])
        kind_width = max([len("kind"), *(len(r.kind) for r in self.layers)])
        lines = [f"{'layer':<{name_width}} {'kind':<{kind_width}} {'var before':>11} "
                 f"{'orthogonal':>11} {'var after':>11} {'rounds':>6}"]
        for r in self.layers:
            flag = "" if r.converged else "  (not converged)"
            lines.append(f"{r.name:<{name_width}} {r.kind:<{kind_width}} {r.var_before:>11.4g} "
                         f"{r.var_orthogonal:>11.4g} {r.var_after:>11.4g} {r.rounds:>6d}{flag}")
        lines += [f"unhandled: {name} ({reason})" for name, reason in self.unhandled]
        return "\n".join(lines)


def lsuv(
    model: Any,
    params: Any,
    batch: Any,
    *,
    key: Array,
    target: float = 1.0,
    tol: float = 0.1,
    max_rounds: int = 10,
    orthogonal_init: Callable[..., Array] | None = None,
    apply_kwargs: Mapping[str, Any] | None = None,
) -> tuple[Any, LSUVReport]:
    """LSUV-initializes the kernels of ``model``'s linear layers on ``batch``.

    Each handled kernel ``W`` is replaced by ``orthogonal_init(key_i, W.shape)``
    (a Dense or Conv kernel as it is; a DenseGeneral/Einsum kernel as the matrix
    (contracted axes, feature axes), one per einsum batch index; a scanned
    stack one layer slice at a time), then, in call order, multiplied by
    ``sqrt(target / Var(output))`` until ``|Var(output) - target| < tol`` or
    ``max_rounds`` rescalings were made.
    Biases and all other parameters are kept.

    Args:
      model: a ``flax.linen.Module`` or a ``flax.nnx.Module``.
      params: linen variables (or their ``"params"``); ``None`` for nnx.
      batch: a batch of real inputs with a leading batch axis (finite, non-empty).
      key: PRNG key of the orthonormal pre-init.
      target: output variance to reach (> 0).
      tol: accepted absolute deviation from ``target`` (> 0).
      max_rounds: most rescalings per layer, over all passes (>= 1).
      orthogonal_init: the pre-init, an initializer ``(key, shape, dtype)``;
        default ``jaxinit.orthogonal()``.
      apply_kwargs: extra keyword arguments of the model call.

    Returns:
      ``(new_params, report)`` for linen (same structure as ``params``), or
      ``(new_model, report)`` for nnx: a new model; the one passed in is left
      unchanged, as are the caller's params.

    Example::

      >>> import jax, flax.linen as nn
      >>> model = nn.Sequential([nn.Dense(32), nn.relu, nn.Dense(32)])
      >>> x = jax.random.normal(jax.random.key(0), (64, 16))
      >>> params = model.init(jax.random.key(1), x)
      >>> params, report = lsuv(model, params, x, key=jax.random.key(2))
      >>> all(abs(r.var_after - 1) < 0.1 for r in report.layers)
      True
    """
    check_key(_NAME, key)
    target = check_real(_NAME, "target", target, positive=True)
    tol = check_real(_NAME, "tol", tol, positive=True)
    max_rounds = check_int(_NAME, "max_rounds", max_rounds, minimum=1)
    ortho = orthogonal() if orthogonal_init is None else check_callable(
        _NAME, "orthogonal_init", orthogonal_init)
    if apply_kwargs is not None and not isinstance(apply_kwargs, Mapping):
        raise TypeError(f"{_NAME}: apply_kwargs={apply_kwargs!r} must be a mapping of keyword "
                        "arguments of the model call, or None.")
    check_batch(_NAME, batch)
    prepared = prepare_model(_NAME, model, params, apply_kwargs)
    taps, _ = probe_layers(_NAME, prepared, batch)

    calls = Counter((t.kernel_path, t.stack_index) for t in taps)
    handled: dict[_Slot, int] = {}  # (kernel path, layer slice) -> index of its call
    unhandled: dict[str, str] = {}
    for i, tap in enumerate(taps):
        slot = (tap.kernel_path, tap.stack_index)
        if tap.layout is None:
            unhandled[tap.name] = (f"{tap.kind}: its output is not known to be linear in its "
                                   "kernel (handled: Dense/Linear, Conv, DenseGeneral/"
                                   "LinearGeneral, Einsum)")
        elif calls[slot] > 1:
            unhandled[tap.name] = (f"its kernel is used by {calls[slot]} calls; "
                                   "one scale cannot set each call's variance")
        else:
            handled[slot] = i
    tapped = {join_path(t.kernel_path[:-1]) for t in taps}
    owned: dict[str, list[str]] = {}
    for leaf_path, _ in jax.tree_util.tree_leaves_with_path(prepared.params):
        names = path_names(leaf_path)
        owned.setdefault(join_path(names[:-1]), []).append(str(names[-1]))
    for name, kind in prepared.owners().items():
        if name not in tapped:
            unhandled[name] = (f"{kind} with parameters {', '.join(owned.get(name, []))}: "
                               "not a kernel layer called on this batch")

    @jax.jit
    def variances(p: Any, aux: Any) -> Array:
        _, run_taps = prepared.run(p, aux, batch, None)
        return jnp.stack([jnp.var(jnp.asarray(t.output, jnp.float32)) for t in run_taps])

    def output_variances(p: Any) -> Array:
        return variances(p, prepared.aux)

    var_before = output_variances(prepared.params)
    kernels = {path: get_at(prepared.params, path) for path, _ in handled}
    keys = jax.random.split(key, max(len(handled), 1))
    for k, ((path, index), i) in zip(keys, handled.items(), strict=False):
        part = kernels[path][index]
        layout = taps[i].layout
        assert layout is not None  # handled layers have one
        fresh = _orthonormal(ortho, k, part.shape, part.dtype, layout)
        kernels[path] = kernels[path].at[index].set(fresh) if index else fresh
    new = replace_at(prepared.params, kernels)
    var_ortho = output_variances(new)

    # In call order, each layer is rescaled until its variance is within tol; a layer whose
    # input depends on later ones (the recurrent input of an RNN, whose next step sees every
    # gate) may be moved again afterwards, so sweeps repeat until all are within tol.
    rounds = dict.fromkeys(handled, 0)

    def movable(slot: _Slot, variance: float) -> bool:
        return (abs(variance - target) >= tol and rounds[slot] < max_rounds
                and math.isfinite(variance) and variance > 0)

    for _ in range(max_rounds):
        current = output_variances(new)
        if not any(movable(slot, float(current[i])) for slot, i in handled.items()):
            break
        for (path, index), i in handled.items():  # dicts keep insertion order: the call order
            variance = float(output_variances(new)[i])
            while movable((path, index), variance):
                kernel = get_at(new, path)
                factor = jnp.sqrt(target / variance).astype(kernel.dtype)
                kernel = kernel.at[index].multiply(factor) if index else kernel * factor
                new = replace_at(new, {path: kernel})
                variance = float(output_variances(new)[i])
                rounds[(path, index)] += 1

    var_after = output_variances(new)
    layers = []
    for slot, i in handled.items():
        variance = float(var_after[i])
        if not (math.isfinite(variance) and variance > 0):
            unhandled[taps[i].name] = (f"its output variance is {variance} on this batch "
                                       "(e.g. all inputs dead), so it cannot be rescaled")
        layers.append(LSUVLayer(taps[i].name, taps[i].kind, float(var_before[i]),
                                float(var_ortho[i]), variance, rounds[slot],
                                abs(variance - target) < tol))
    _warn(prepared.params, unhandled, layers, tol)
    return prepared.rebuild(new), LSUVReport(layers, sorted(unhandled.items()))


_Slot = tuple[tuple[Any, ...], tuple[int, ...]]


def _orthonormal(ortho: Callable[..., Array], key: Array, shape: tuple[int, ...], dtype: Any,
                 layout: KernelLayout) -> Array:
    """``ortho`` on the kernel seen as the matrix (contracted axes, feature axes): the shape
    itself for Dense/Conv kernels (``(..., in, out)``), so conv-aware initializers such as
    ``delta_orthogonal`` apply; otherwise one matrix per einsum batch index."""
    ndim = len(shape)
    if not layout.batch and layout.outputs == (ndim - 1,):
        return _checked(ortho(key, shape, dtype), shape)
    order = (*layout.batch, *layout.inputs, *layout.outputs)
    rows = math.prod(shape[a] for a in layout.inputs)
    cols = math.prod(shape[a] for a in layout.outputs)
    count = math.prod(shape[a] for a in layout.batch)
    mats = [_checked(ortho(threefry.fold_in(key, b), (rows, cols), dtype), (rows, cols))
            for b in range(count)]  # unbatched: one factorization per matrix
    stacked = jnp.stack(mats).reshape(tuple(shape[a] for a in order))
    return jnp.transpose(stacked, tuple(int(a) for a in np.argsort(order)))


def _checked(w: Any, shape: tuple[int, ...]) -> Array:
    if tuple(jnp.shape(w)) != tuple(shape):
        raise ValueError(f"{_NAME}: orthogonal_init returned shape {jnp.shape(w)} for shape "
                         f"{shape}; accepted: an initializer returning the shape it is given.")
    return jnp.asarray(w)


def _warn(params: Any, unhandled: Mapping[str, str],
          layers: list[LSUVLayer], tol: float) -> None:
    """Warns about weight-carrying modules left out and layers that missed the target."""
    weighty = {join_path(path_names(p)[:-1])
               for p, leaf in jax.tree_util.tree_leaves_with_path(params) if jnp.ndim(leaf) >= 2}
    skipped = [n for n in unhandled if n in weighty]
    if skipped:
        warnings.warn(f"{_NAME}: left unchanged: " + "; ".join(
            f"{n} ({unhandled[n]})" for n in skipped), stacklevel=3)
    missed = [r.name for r in layers if not r.converged]
    if missed:
        warnings.warn(f"{_NAME}: output variance not within tol={tol} of the target after "
                      f"the allowed rounds: {', '.join(missed)}", stacklevel=3)
