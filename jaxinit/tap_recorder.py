"""Recording kernel-layer calls during a forward pass, including those inside ``jax.lax.scan``.

Values computed inside a traced loop body cannot be taken out of it by Python
side effects (they would be tracers of a finished trace). Deep stacks are
usually built with ``nn.scan``/``nnx.scan`` (scan over layers) and recurrent
nets with ``nn.RNN``/``nn.scan`` (scan over time), all of which call
``jax.lax.scan``. While :func:`recording` is active, ``jax.lax.scan`` is
replaced by a version that returns, as extra stacked outputs, what the layers
called in the body recorded, and that feeds each iteration its slice of the
perturbation (see :mod:`jaxinit.layer_taps`). The replacement is installed
only while some thread records, acts only for the thread that records and
only at the trace that recording started in, and otherwise calls the
original, so concurrent or nested code sees ``jax.lax.scan`` unchanged.

A call seen in any other trace (the constancy pre-trace of linen's scan, or
a ``remat``/``jit``/``vmap`` inside the model) is not recorded but noted, so
that a layer observable nowhere can be reported.

:func:`expand` turns what was recorded into one record per layer call: a
scan whose kernels carry a leading axis of the scan's length (scan over
layers) gives one record per iteration, sliced; a scan whose kernels are
shared by every iteration (scan over time) gives one record per layer with
the iterations stacked in front, so its statistics cover every step.
:func:`collapse` is its inverse for the perturbation.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.extend.core import get_opaque_trace_state

__all__ = ["Record", "ScanMeta", "TapMeta", "collapse", "expand", "record", "recording"]


class TapMeta(NamedTuple):
    """What is known of one kernel-layer call at trace time."""

    path: tuple[Any, ...]  # module path
    kind: str  # class name of the module
    kernel_shape: tuple[int, ...]  # as the call sees it (one slice of a stacked kernel)
    layout: Any  # a layer_taps.KernelLayout, or None: output not linear in the kernel
    perturbable: bool  # the observed output is what the module returns


class ScanMeta(NamedTuple):
    length: int
    reverse: bool
    body: list[Any]  # TapMeta / ScanMeta of the body, in call order


class Record(NamedTuple):
    """One layer call after :func:`expand`."""

    meta: TapMeta
    name: str
    stack_index: tuple[int, ...]  # slice of the stacked kernel this call used; () if none
    inputs: Any
    output: Any


class _Recorder:
    def __init__(self, perturb: list[Any] | None, root: _Recorder | None = None):
        self.trace = get_opaque_trace_state()
        self.perturb = perturb
        self.metas: list[Any] = []
        self.values: list[Any] = []
        self.root = root or self
        self.unobserved: set[tuple[Any, ...]] = set()


_local = threading.local()
_install_lock = threading.Lock()
_installed: list[Any] = [0, None]  # number of active recordings, the original jax.lax.scan


def _current() -> _Recorder | None:
    stack = getattr(_local, "stack", None)
    if not stack:
        return None
    return stack[-1]  # type: ignore[no-any-return]


def record(meta: TapMeta, inputs: Any, output: Any,
           reinsert: Callable[[Any], Any] | None) -> Any:
    """Notes one layer call; returns ``reinsert(output + perturbation)`` when perturbing.

    ``output`` is the array observed as the layer's output; ``reinsert`` turns a
    changed output back into what the module returns (``None``: the perturbation
    cannot be applied, e.g. a module that returns its own parameters).
    """
    rec = _current()
    if rec is None:
        return None
    if get_opaque_trace_state() != rec.trace:
        rec.root.unobserved.add(meta.path)
        return None
    result = None
    if rec.perturb is not None and reinsert is not None:
        output = output + rec.perturb[len(rec.metas)]
        result = reinsert(output)
    rec.metas.append(meta)
    rec.values.append((inputs, output))
    return result


def _scan(original: Callable[..., Any]) -> Callable[..., Any]:
    def scan(f: Callable[..., Any], init: Any, xs: Any = None, length: int | None = None,
             reverse: bool = False, unroll: int | bool = 1, **kwargs: Any) -> Any:
        outer = _current()
        if outer is None or get_opaque_trace_state() != outer.trace:
            return original(f, init, xs, length, reverse, unroll, **kwargs)
        eps = None if outer.perturb is None else outer.perturb[len(outer.metas)]
        body_metas: list[Any] = []

        def body(carry: Any, x: Any) -> Any:
            x, e = x if eps is not None else (x, None)
            inner = _Recorder(e, outer.root)
            _local.stack.append(inner)
            try:
                carry, y = f(carry, x)
            finally:
                _local.stack.pop()
            body_metas[:] = inner.metas  # a body traced twice records twice: keep the last
            return carry, (y, inner.values)

        carry, (ys, values) = original(body, init, xs if eps is None else (xs, eps), length,
                                       reverse, unroll, **kwargs)
        steps = length if length is not None else jax.tree_util.tree_leaves(xs)[0].shape[0]
        outer.metas.append(ScanMeta(int(steps), bool(reverse), list(body_metas)))
        outer.values.append(values)
        return carry, ys

    return scan


@contextlib.contextmanager
def recording(perturb: list[Any] | None) -> Iterator[_Recorder]:
    """Records the kernel-layer calls made in this trace (see the module docstring)."""
    with _install_lock:
        if _installed[0] == 0:
            _installed[1] = jax.lax.scan
            jax.lax.scan = _scan(jax.lax.scan)
        _installed[0] += 1
    if not hasattr(_local, "stack"):
        _local.stack = []
    root = _Recorder(perturb)
    _local.stack.append(root)
    try:
        yield root
    finally:
        _local.stack.pop()
        with _install_lock:
            _installed[0] -= 1
            if _installed[0] == 0:
                jax.lax.scan = _installed[1]  # type: ignore[assignment]


# ----------------------------------------------------------------------------------------
# One record per layer call.


class _Level(NamedTuple):
    stacked: int  # enclosing scans over layers (kernel index length)
    kept: int  # enclosing scans over time (leading axes kept in the values)
    stack_index: tuple[int, ...]
    names: tuple[tuple[int, int], ...]  # (position in the module path, layer number) to insert


def _is_layer_scan(meta: ScanMeta, level: _Level, shapes: Mapping[tuple[Any, ...], Any]
                   ) -> bool:
    """Whether the body's kernels carry a leading axis per iteration (scan over layers)."""
    def stacked(m: Any) -> bool:
        if isinstance(m, ScanMeta):
            return any(stacked(b) for b in m.body)
        outer = shapes.get((*m.path, "kernel"))
        return outer is not None and len(outer) - len(m.kernel_shape) > level.stacked
    return any(stacked(m) for m in meta.body)


def _owner_length(path: tuple[Any, ...], axis: int, steps: int,
                  shapes: Mapping[tuple[Any, ...], Any]) -> int:
    """How much of ``path`` names the scanned module: its shortest non-empty prefix under
    which every parameter has ``steps`` entries on ``axis`` (the scan's stacking axis)."""
    for n in range(1, len(path) + 1):
        under = [s for p, s in shapes.items() if p[:n] == path[:n]]
        if under and all(len(s) > axis and s[axis] == steps for s in under):
            return n
    return len(path)


def _name(path: tuple[Any, ...], inserts: tuple[tuple[int, int], ...]) -> str:
    parts = [str(p) for p in path]
    for position, number in sorted(inserts, reverse=True):
        parts.insert(position, str(number))
    return "/".join(parts) or "<root>"


def expand(metas: list[Any], values: list[Any], shapes: Mapping[tuple[Any, ...], Any]
           ) -> list[Record]:
    """One :class:`Record` per layer call, in call order (see the module docstring).

    ``shapes`` maps each parameter path to its shape in the model's parameters.
    """
    records: list[Record] = []

    def visit(metas: Sequence[Any], values: list[Any], level: _Level) -> None:
        for meta, value in zip(metas, values, strict=True):
            if isinstance(meta, TapMeta):
                _check_slice(meta, level, shapes)
                name = _name(meta.path, level.names)
                records.append(Record(meta, name, level.stack_index, *value))
            elif not _is_layer_scan(meta, level, shapes):
                visit(meta.body, value, level._replace(kept=level.kept + 1))
            else:
                order = range(meta.length - 1, -1, -1) if meta.reverse else range(meta.length)
                for step in order:
                    sliced = jax.tree_util.tree_map(
                        lambda v, step=step: v[(slice(None),) * level.kept + (step,)], value)
                    visit(meta.body, sliced, _enter(meta, level, step, shapes))

    visit(metas, values, _Level(0, 0, (), ()))
    return records


def _enter(meta: ScanMeta, level: _Level, step: int, shapes: Mapping[tuple[Any, ...], Any]
           ) -> _Level:
    first = _first_tap(meta)
    position = 0 if first is None else _owner_length(first.path, level.stacked, meta.length,
                                                     shapes)
    return _Level(level.stacked + 1, level.kept, (*level.stack_index, step),
                  (*level.names, (position, step)))


def _first_tap(meta: ScanMeta) -> TapMeta | None:
    for m in meta.body:
        found = m if isinstance(m, TapMeta) else _first_tap(m)
        if found is not None:
            return found
    return None


def _check_slice(meta: TapMeta, level: _Level, shapes: Mapping[tuple[Any, ...], Any]) -> None:
    outer = shapes.get((*meta.path, "kernel"))
    if outer is not None and tuple(outer[len(level.stack_index):]) != tuple(meta.kernel_shape):
        raise ValueError(
            f"the kernel of {_name(meta.path, level.names)} has shape {tuple(outer)} in the "
            f"parameters but {tuple(meta.kernel_shape)} in the call, which is not one slice "
            f"per enclosing scan over layers ({level.stacked}); scans over time must sit "
            "inside scans over layers."
        )


def collapse(metas: list[Any], flat: Sequence[Any], shapes: Mapping[tuple[Any, ...], Any]
             ) -> list[Any]:
    """The inverse of :func:`expand` for one array per record: the nested, stacked layout
    the recorder consumes (used for the perturbation)."""
    items = iter(flat)

    def build(metas: Sequence[Any], level: _Level) -> list[Any]:
        nested: list[Any] = []
        for meta in metas:
            if isinstance(meta, TapMeta):
                nested.append(next(items))
            elif not _is_layer_scan(meta, level, shapes):
                nested.append(build(meta.body, level._replace(kept=level.kept + 1)))
            else:
                order = range(meta.length - 1, -1, -1) if meta.reverse else range(meta.length)
                steps = {s: build(meta.body, _enter(meta, level, s, shapes)) for s in order}
                layers = [steps[s] for s in range(meta.length)]
                nested.append(jax.tree_util.tree_map(
                    lambda *xs: jnp.stack(xs, axis=level.kept), *layers) if layers else [])
        return nested

    return build(metas, _Level(0, 0, (), ()))
