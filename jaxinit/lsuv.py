"""Layer-sequential unit-variance (LSUV) initialization for Flax linen and nnx models.

Mishkin & Matas, "All you need is a good init", ICLR 2016: start from
orthonormal kernels, then, going through the layers in the order the model
calls them, divide each kernel by the standard deviation of that layer's
output on a batch of real data, until the output variance is within ``tol``
of the target. Earlier layers are final when a later one is scaled, so one
pass suffices; a layer usually needs one or two rounds (exactly one would do
without a bias, since the output is then linear in the kernel).

The layer's output is its pre-activation (the output of the Dense/Conv call,
bias included), as in the paper. Only ``Dense``/``Conv`` (linen) and
``Linear``/``Conv`` (nnx) layers called once per forward pass are rescaled;
every other module that owns parameters is listed in the report's
``unhandled`` with the reason, and a warning names the ones that have a
weight matrix (rank >= 2 parameters), so nothing is skipped silently.
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

from jaxinit.core import Array, check_callable, check_int, check_key, check_real
from jaxinit.layer_taps import (
    check_batch,
    get_at,
    join_path,
    lifted_transform_error,
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
        lines = [f"{'layer':<16} {'kind':<8} {'var before':>11} {'orthogonal':>11} "
                 f"{'var after':>11} {'rounds':>6}"]
        for r in self.layers:
            flag = "" if r.converged else "  (not converged)"
            lines.append(f"{r.name:<16.16} {r.kind:<8.8} {r.var_before:>11.4g} "
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
    """LSUV-initializes the Dense/Conv kernels of ``model`` on ``batch``.

    Each handled kernel ``W`` is replaced by ``orthogonal_init(key_i, W.shape)``,
    then, in call order, multiplied by ``sqrt(target / Var(output))`` until
    ``|Var(output) - target| < tol`` or ``max_rounds`` rescalings were made.
    Biases and all other parameters are kept.

    Args:
      model: a ``flax.linen.Module`` or a ``flax.nnx.Module``.
      params: linen variables (or their ``"params"``); ``None`` for nnx.
      batch: a batch of real inputs with a leading batch axis (finite, non-empty).
      key: PRNG key of the orthonormal pre-init.
      target: output variance to reach (> 0).
      tol: accepted absolute deviation from ``target`` (> 0).
      max_rounds: most rescalings per layer (>= 1).
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
    check_batch(_NAME, batch)
    prepared = prepare_model(_NAME, model, params, apply_kwargs)
    taps, _ = probe_layers(_NAME, prepared, batch)

    calls = Counter(t.kernel_path for t in taps)
    handled: dict[tuple[Any, ...], int] = {}  # kernel path -> index of its call
    unhandled: dict[str, str] = {}
    for i, tap in enumerate(taps):
        if not tap.standard:
            unhandled[tap.name] = f"{tap.kind} is not a Dense/Conv layer"
        elif calls[tap.kernel_path] > 1:
            unhandled[tap.name] = (f"its kernel is used by {calls[tap.kernel_path]} calls; "
                                   "one scale cannot set each call's variance")
        else:
            handled[tap.kernel_path] = i
    tapped = {t.name for t in taps}
    owned: dict[str, list[str]] = {}
    for leaf_path, _ in jax.tree_util.tree_leaves_with_path(prepared.params):
        names = path_names(leaf_path)
        owned.setdefault(join_path(names[:-1]), []).append(str(names[-1]))
    for name, kind in prepared.owners().items():
        if name not in tapped:
            unhandled[name] = (f"{kind} with parameters {', '.join(owned.get(name, []))}: "
                               "not a Dense/Conv kernel called on this batch")

    @jax.jit
    def variances(p: Any, aux: Any) -> Array:
        _, run_taps = prepared.run(p, aux, batch, None)
        return jnp.stack([jnp.var(jnp.asarray(t.output, jnp.float32)) for t in run_taps])

    def output_variances(p: Any) -> Array:
        return variances(p, prepared.aux)

    try:
        var_before = output_variances(prepared.params)
    except jax.errors.UnexpectedTracerError as err:
        raise lifted_transform_error(_NAME) from err
    keys = jax.random.split(key, max(len(handled), 1))
    new = replace_at(prepared.params, {
        path: ortho(k, get_at(prepared.params, path).shape, get_at(prepared.params, path).dtype)
        for k, path in zip(keys, handled, strict=False)
    })
    var_ortho = output_variances(new)

    results = []
    for path, i in handled.items():  # dicts keep insertion order: the call order
        variance, rounds = float(output_variances(new)[i]), 0
        while abs(variance - target) >= tol and rounds < max_rounds:
            if not (math.isfinite(variance) and variance > 0):
                break
            kernel = get_at(new, path)
            new = replace_at(new, {path: kernel * jnp.sqrt(target / variance).astype(kernel.dtype)})
            variance, rounds = float(output_variances(new)[i]), rounds + 1
        converged = abs(variance - target) < tol
        if not converged and not (math.isfinite(variance) and variance > 0):
            unhandled[taps[i].name] = (f"its output variance is {variance} on this batch "
                                       "(e.g. all inputs dead), so it cannot be rescaled")
        results.append((i, rounds, converged))

    var_after = output_variances(new)
    layers = [LSUVLayer(taps[i].name, taps[i].kind, float(var_before[i]), float(var_ortho[i]),
                        float(var_after[i]), rounds, converged)
              for i, rounds, converged in results]
    _warn(prepared.params, unhandled, layers, tol)
    return prepared.rebuild(new), LSUVReport(layers, sorted(unhandled.items()))


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
