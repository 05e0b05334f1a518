"""Running a Flax model with its kernel layers observed, for linen and nnx alike.

A *kernel layer* is a module call whose module owns a ``kernel`` parameter
(Dense/Linear, Conv, DenseGeneral/LinearGeneral, Einsum, linen's
``DenseParams`` inside ``OptimizedLSTMCell``, ...). :func:`prepare_model`
turns a linen model + variables, or an nnx model, into a pure
``run(params, aux, batch, perturb)`` (``aux``: the non-parameter state, e.g.
batch statistics and RNG counters, passed in so that models which update it
can be traced) that returns the model output and one :class:`LayerTap`
(input, output, where the kernel lives) per kernel-layer call, in call order;
``perturb`` adds a given array to each tapped output, so gradients with
respect to layer outputs are gradients with respect to ``perturb``.

The output of a layer is what its module returns; for a module returning a
tuple, its first array; for a module returning its own kernel (and bias),
as ``DenseParams`` does for the cell that applies them, ``inputs @ kernel +
bias``, which is then observed but cannot be perturbed.

linen calls are seen through ``flax.linen.intercept_methods``; for nnx, the
kernel layers of a private copy of the model (``nnx.merge`` of its state) get
a wrapping subclass. Neither touches the caller's model or params. Layers
inside ``jax.lax.scan`` (``nn.scan``, ``nnx.scan``, ``nn.RNN``) are observed
through :mod:`jaxinit.tap_recorder`: one tap per scanned layer for a scan over
layers (stacked kernels), one tap covering every step for a scan over time.
Values computed inside other lifted transforms (``nn.remat``, ``nn.jit``,
``nn.vmap``...) cannot be observed from outside them; that case raises a clear error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax.core import meta as flax_meta
from flax.linen.recurrent import DenseParams

from jaxinit.core import Array
from jaxinit.kernel_layout import KernelLayout, kernel_layout
from jaxinit.tap_recorder import TapMeta, collapse, expand, record, recording

__all__ = [
    "LayerTap",
    "PreparedModel",
    "UnobservableLayerError",
    "check_batch",
    "get_at",
    "join_path",
    "path_names",
    "prepare_model",
    "probe_layers",
    "replace_at",
]


class LayerTap(NamedTuple):
    """One call of a kernel layer during a forward pass."""

    name: str  # module path, "/"-joined, with the layer number of scanned stacks
    kind: str  # class name of the module
    kernel_path: tuple[Any, ...]  # where the kernel lives in the params pytree
    stack_index: tuple[int, ...]  # the slice of a stacked kernel (scan over layers) it used
    layout: KernelLayout | None  # None: the output is not known to be linear in the kernel
    grad_observable: bool  # the perturbation reaches the output (False: DenseParams)
    inputs: Any
    output: Any


#: ``run(params, aux, batch, perturb) -> (model_output, taps)``; ``perturb``, when
#: given, is added to the i-th tapped output (zeros: used to differentiate).
Runner = Callable[[Any, Any, Any, Sequence[Array] | None], tuple[Any, list[LayerTap]]]


class PreparedModel(NamedTuple):
    params: Any  # the differentiable pytree: linen params dict or nnx Param state
    aux: Any  # everything else: other linen collections, or the nnx non-Param state
    run: Runner
    # every module that owns parameters: name -> class name (complete once traced)
    owners: Callable[[], dict[str, str]]
    rebuild: Callable[[Any], Any]  # new params -> what to hand back to the caller


class UnobservableLayerError(ValueError):
    """A kernel layer ran only inside a transform whose values cannot be observed."""


def path_names(path: Sequence[Any]) -> tuple[Any, ...]:
    """A pytree key path as plain names, without the ``.value`` of boxed leaves."""
    names = []
    for entry in path:
        if isinstance(entry, jax.tree_util.DictKey):
            names.append(entry.key)
        elif isinstance(entry, jax.tree_util.GetAttrKey):
            if entry.name != "value":
                names.append(entry.name)
        elif isinstance(entry, jax.tree_util.SequenceKey):
            names.append(entry.idx)
        else:
            names.append(str(entry))
    return tuple(names)


def get_at(tree: Any, path: tuple[Any, ...]) -> Array:
    """The leaf of ``tree`` at ``path`` (as given by :func:`path_names`)."""
    for leaf_path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if path_names(leaf_path) == path:
            return leaf
    raise KeyError(path)


def replace_at(tree: Any, updates: Mapping[tuple[Any, ...], Array]) -> Any:
    """A copy of ``tree`` with the leaves at the given paths replaced."""
    return jax.tree_util.tree_map_with_path(
        lambda p, leaf: updates.get(path_names(p), leaf), tree
    )


def join_path(path: Sequence[Any]) -> str:
    return "/".join(str(p) for p in path) or "<root>"


# ----------------------------------------------------------------------------------------
# What a kernel layer's output is.


def _observe(module: Any, path: tuple[Any, ...], inputs: Any, out: Any, kernel: Array,
             call_kwargs: Mapping[str, Any]) -> tuple[TapMeta, Array, Any] | None:
    """(meta, observed output, reinsert) of one kernel-layer call, or None (no array out)."""
    layout = kernel_layout(module, jnp.ndim(kernel), call_kwargs)
    kind = type(module).__name__
    if hasattr(out, "shape") and hasattr(out, "dtype"):
        return TapMeta(path, kind, jnp.shape(kernel), layout, True), out, lambda o: o
    leaves, treedef = jax.tree_util.tree_flatten(out)
    if leaves and (leaves[0] is kernel or isinstance(module, DenseParams)) and \
            jnp.ndim(leaves[0]) == 2 and hasattr(inputs, "shape"):
        # The module hands its kernel (and bias) to its parent, which applies them.
        z = jnp.dot(inputs, leaves[0])
        if len(leaves) > 1:
            z = z + leaves[1]
        meta = TapMeta(path, kind, jnp.shape(kernel), KernelLayout((0,), (1,)), False)
        return meta, z, None
    arrays = [i for i, leaf in enumerate(leaves) if hasattr(leaf, "shape")]
    if not arrays:
        return None
    first = arrays[0]

    def reinsert(o: Array) -> Any:
        return jax.tree_util.tree_unflatten(treedef, [*leaves[:first], o, *leaves[first + 1:]])

    return TapMeta(path, kind, jnp.shape(kernel), None, True), leaves[first], reinsert


def _tap(module: Any, path: tuple[Any, ...], args: tuple, kwargs: Mapping[str, Any], out: Any,
         kernel: Array) -> Any:
    """Records one call; returns what the module should return (perturbed or not)."""
    observed = _observe(module, path, args[0], out, kernel, kwargs)
    if observed is None:
        return out
    meta, output, reinsert = observed
    result = record(meta, args[0], output, reinsert)
    return out if result is None else result


# ----------------------------------------------------------------------------------------
# linen and nnx models behind one runner.


def _recorded_paths(metas: Sequence[Any]) -> set[tuple[Any, ...]]:
    found: set[tuple[Any, ...]] = set()
    for m in metas:
        found |= {m.path} if isinstance(m, TapMeta) else _recorded_paths(m.body)
    return found


class _Plan:
    """The recorded structure of the last probe and the parameter shapes: what turns the
    flat list of per-tap perturbations into the recorder's nested one."""

    def __init__(self, name: str, params: Any):
        self.name = name
        self.shapes = {path_names(p): tuple(np.shape(leaf))
                       for p, leaf in jax.tree_util.tree_leaves_with_path(params)}
        self.metas: list[Any] | None = None

    def nested(self, perturb: Sequence[Array] | None) -> list[Any] | None:
        if perturb is None:
            return None
        if self.metas is None:
            raise RuntimeError("probe_layers must run before a perturbed run")
        return collapse(self.metas, perturb, self.shapes)

    def finish(self, root: Any, perturbed: bool) -> list[LayerTap]:
        missing = root.unobserved - _recorded_paths(root.metas)
        if missing:
            raise UnobservableLayerError(
                f"{self.name}: the kernel layer(s) {', '.join(sorted(map(join_path, missing)))} "
                "run inside a lifted transform (nn.remat, nn.jit, nn.vmap or their nnx forms; "
                "jax.lax.scan, nn.scan and nnx.scan are supported), whose values cannot be "
                "observed from outside; build the model without that transform to measure it."
            )
        if not perturbed:
            self.metas = root.metas
        try:
            records = expand(root.metas, root.values, self.shapes)
        except ValueError as err:
            raise UnobservableLayerError(f"{self.name}: {err}") from err
        return [LayerTap(r.name, r.meta.kind, (*r.meta.path, "kernel"), r.stack_index,
                         r.meta.layout, r.meta.perturbable, r.inputs, r.output) for r in records]


def _linen_model(name: str, model: nn.Module, variables: Any,
                 apply_kwargs: Mapping[str, Any]) -> PreparedModel:
    if not isinstance(variables, Mapping):
        raise TypeError(
            f"{name}: params={type(variables).__name__} must be the variables dict of the "
            "linen model (the result of model.init) or its 'params' collection."
        )
    wrapped = "params" not in variables
    variables = {"params": variables} if wrapped else dict(variables)
    others = {k: v for k, v in variables.items() if k != "params"}
    mutable = list(others)  # e.g. batch_stats of a BatchNorm in training mode
    seen: dict[str, str] = {}
    plan = _Plan(name, variables["params"])

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name != "__call__" or module.scope is None:
            return out
        path = tuple(module.path)
        seen[join_path(path)] = type(module).__name__
        if not args or not module.has_variable("params", "kernel"):
            return out
        kernel = flax_meta.unbox(module.get_variable("params", "kernel"))  # nn.Partitioned etc.
        return _tap(module, path, args, kwargs, out, kernel)

    def run(params: Any, aux: Any, batch: Any, perturb: Sequence[Array] | None):
        with recording(plan.nested(perturb)) as root, nn.intercept_methods(interceptor):
            out = model.apply({**aux, "params": params}, batch, mutable=mutable or False,
                              **apply_kwargs)
        return (out[0] if mutable else out), plan.finish(root, perturb is not None)

    def owners() -> dict[str, str]:
        found: dict[str, str] = {}
        for leaf_path, _ in jax.tree_util.tree_leaves_with_path(variables["params"]):
            owner = join_path(path_names(leaf_path)[:-1])
            found.setdefault(owner, seen.get(owner, "?"))
        return found

    def rebuild(params: Any) -> Any:
        return params if wrapped else {**variables, "params": params}

    return PreparedModel(variables["params"], others, run, owners, rebuild)


def _tapped_class(cls: type, path: tuple[Any, ...]) -> type:
    def __call__(self, *args, **kwargs):
        out = cls.__call__(self, *args, **kwargs)
        if not args:
            return out
        return _tap(self, path, args, kwargs, out, self.kernel[...])

    return type(cls)(cls.__name__, (cls,), {"__call__": __call__})


def _nnx_model(name: str, model: nnx.Module, params: Any,
               apply_kwargs: Mapping[str, Any]) -> PreparedModel:
    if params is not None:
        raise TypeError(
            f"{name}: params must be None for an nnx model (its parameters are in the "
            f"model); got {type(params).__name__}."
        )
    graphdef, state, rest = nnx.split(model, nnx.Param, ...)  # type: ignore[misc]
    owners: dict[str, str] = {}
    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Param) and path:
            owners.setdefault(join_path(path[:-1]), "?")
    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Module) and join_path(path) in owners:
            owners[join_path(path)] = type(node).__name__
    plan = _Plan(name, state)

    def run(params: Any, aux: Any, batch: Any, perturb: Sequence[Array] | None):
        # Fresh Variable objects, created at the current trace level, so that a model that
        # updates its state (BatchNorm statistics, RNG counters) may do so under jax.grad.
        params, aux = jax.tree_util.tree_map(lambda leaf: leaf, (params, aux))
        copy = nnx.merge(graphdef, params, aux)
        for path, node in nnx.iter_graph(copy):
            if isinstance(node, nnx.Module) and isinstance(getattr(node, "kernel", None),
                                                           nnx.Param):
                # The copy is private to this call, so changing its class touches nothing
                # else; copies made inside nnx.scan keep the subclass, hence the path.
                object.__setattr__(node, "__class__", _tapped_class(type(node), tuple(path)))
        with recording(plan.nested(perturb)) as root:
            out = copy(batch, **apply_kwargs)
        return out, plan.finish(root, perturb is not None)

    def rebuild(params: Any) -> Any:
        return nnx.merge(graphdef, params, rest)

    return PreparedModel(state, rest, run, lambda: dict(owners), rebuild)


def prepare_model(name: str, model: Any, params: Any,
                  apply_kwargs: Mapping[str, Any] | None = None) -> PreparedModel:
    """Wraps a linen model + variables, or an nnx model, into a uniform runner."""
    kwargs = dict(apply_kwargs or {})
    if isinstance(model, nnx.Module):
        return _nnx_model(name, model, params, kwargs)
    if isinstance(model, nn.Module):
        if params is None:
            raise TypeError(f"{name}: a linen model needs its params (from model.init).")
        return _linen_model(name, model, params, kwargs)
    raise TypeError(
        f"{name}: model={type(model).__name__} is not a Flax linen or nnx Module."
    )


def check_batch(name: str, batch: Any) -> None:
    """Raises ``ValueError`` for an empty batch, a batch without a batch axis or one
    holding NaN/inf."""
    leaves = jax.tree_util.tree_leaves(batch)
    if not leaves:
        raise ValueError(f"{name}: batch is empty (no arrays); accepted: an array of inputs.")
    for leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                f"{name}: batch has shape (); accepted: an array with a leading batch axis."
            )
        if math.prod(shape) == 0:
            raise ValueError(
                f"{name}: batch of shape {shape} is empty; accepted: at least one example."
            )
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            bad = int(np.size(leaf) - np.count_nonzero(np.isfinite(np.asarray(leaf))))
            if bad:
                raise ValueError(
                    f"{name}: batch of shape {shape} has {bad} non-finite value(s) (NaN/inf); "
                    "accepted: finite inputs."
                )


def probe_layers(name: str, prepared: PreparedModel, batch: Any) -> tuple[list[LayerTap], Any]:
    """Traces the model once (no compute): the kernel-layer calls, with output shapes.

    Raises ``ValueError`` when the model fails on this batch or calls no kernel layer.
    """
    meta: list[LayerTap] = []

    def probe(params, aux, x):
        out, taps = prepared.run(params, aux, x, None)
        meta[:] = taps
        return out, [t.output for t in taps]

    try:
        out_shape, tap_shapes = jax.eval_shape(probe, prepared.params, prepared.aux, batch)
    except UnobservableLayerError:
        raise
    except Exception as err:  # the model's own error, re-raised with what was given
        shapes = jax.tree_util.tree_map(np.shape, batch)
        raise ValueError(
            f"{name}: running the model on a batch of shape {shapes} failed "
            f"(does the batch fit the model's input?): {type(err).__name__}: {err}"
        ) from err
    if not meta:
        raise ValueError(
            f"{name}: the model called no layer with a 'kernel' parameter (Dense, Conv, ...) "
            "on this batch; there is nothing to measure."
        )
    taps = [t._replace(inputs=None, output=s) for t, s in zip(meta, tap_shapes, strict=True)]
    return taps, out_shape
