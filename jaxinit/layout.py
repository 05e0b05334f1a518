"""Weight layouts: Flax's ``(*kernel, in, out)`` and PyTorch's ``(out, in, *kernel)``.

An initializer reads the fans, the orthogonal columns and the gate blocks of
a weight from the positions of its axes, so it must be given the shape in
the layout it was written for -- its *native* layout:

* ``"flax"``: ``(in, out)`` dense kernels and ``(*spatial, in, out)``
  convolution kernels (HWIO in 2D). Flax linen and nnx, Haiku (``hk.Linear``
  stores ``w`` as ``(in, out)`` and ``hk.ConvND`` as ``(*spatial, in, out)``)
  and every ``jax.nn.initializers`` / jaxinit scheme use it.
* ``"torch"``: ``(out, in)`` linear weights and ``(out, in, *spatial)``
  convolution weights (OIHW in 2D): PyTorch, Equinox (``eqx.nn.Linear`` and
  ``eqx.nn.Conv*``) and checkpoints converted from PyTorch. The
  :mod:`jaxinit.torch` initializers use it.

The two are axis permutations of each other: ``(out, in, *k)`` holds the same
weights as ``(*k, in, out)``. :func:`for_layout` makes an initializer written
for one layout produce weights stored in the other: it draws the weight in
its native layout and transposes it, so every scheme -- variance scaling,
orthogonal (rows and columns), fused gate blocks, dirac -- sees the axes it
expects. Arrays of rank 0 and 1 (biases, norm scales) have no in/out axes and
are the same in both layouts.

An initializer's native layout is its ``layout`` attribute: ``"torch"`` for
:mod:`jaxinit.torch`'s fan-reading schemes, ``None`` for elementwise ones whose
values do not depend on the layout, and ``"flax"`` when absent.

Two cases follow neither rule for rank > 2, and are left to the initializer's
own axis options: kernels with several input or output axes (Flax's
``nn.DenseGeneral``, attention kernels ``(embed, heads, head_dim)``: use
``layout="flax"`` and e.g. ``variance_scaling(..., in_axis=0, out_axis=(1, 2))``),
and PyTorch's transposed convolutions, stored ``(in, out // groups, *k)``:
PyTorch itself reads their dim 0 as "out" for the fans, and so does
:mod:`jaxinit.torch`, which therefore reproduces PyTorch's init for them.
(Equinox stores its ``ConvTranspose`` weights ``(out, in, *k)``.)
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxinit.contract import base_default_dtype, initializer
from jaxinit.core import Array, Initializer, check_callable, check_choice

__all__ = ["LAYOUTS", "for_layout", "native_layout", "permute_shape", "with_layout"]

LAYOUTS = ("flax", "torch")


def native_layout(init: Any) -> str | None:
    """The layout ``init`` reads its shape in: its ``layout`` attribute, ``"flax"`` by default."""
    return getattr(init, "layout", "flax")


def with_layout(init: Initializer, layout: str | None) -> Initializer:
    """Marks ``init`` as reading shapes in ``layout`` (``None``: any layout); returns ``init``."""
    init.layout = layout  # type: ignore[attr-defined]
    return init


def _permutation(ndim: int, source: str, target: str) -> tuple[int, ...]:
    """The axes of a ``source``-layout array, in the order of the ``target`` layout."""
    if ndim < 2 or source == target:
        return tuple(range(ndim))
    if source == "torch":  # (out, in, *k) -> (*k, in, out)
        return (*range(2, ndim), 1, 0)
    return (ndim - 1, ndim - 2, *range(ndim - 2))  # (*k, in, out) -> (out, in, *k)


def permute_shape(shape: tuple[int, ...], source: str, target: str) -> tuple[int, ...]:
    """``shape`` of a weight stored in the ``source`` layout, written in the ``target`` layout.

    Example:
      >>> from jaxinit.layout import permute_shape
      >>> permute_shape((64, 3, 5, 5), "torch", "flax")
      (5, 5, 3, 64)
    """
    return tuple(shape[a] for a in _permutation(len(shape), source, target))


def for_layout(init: Initializer, layout: str) -> Initializer:
    """Builds an initializer for weights stored in ``layout`` from one written for another.

    If ``init`` reads ``layout`` already (or any layout), it is returned as is.
    Otherwise the result draws ``init`` on the shape written in ``init``'s own
    layout and transposes the draw back, so for a PyTorch weight ``(out, in,
    kh, kw)`` a Flax-layout scheme sees ``(kh, kw, in, out)``: fans,
    orthogonal columns and gate blocks are read where the scheme expects
    them. The transposition is exact: the result has the distribution the
    scheme defines for that weight. With ``out_sharding`` each device still
    computes only its shard (the transposition moves no data between devices).

    Args:
      init: an initializer; its native layout is :func:`native_layout`.
      layout: how the weights to initialize are stored, ``"flax"`` or ``"torch"``.

    Example:
      >>> import jax, jaxinit
      >>> from jaxinit.layout import for_layout
      >>> init = for_layout(jaxinit.he_normal(), "torch")   # Equinox/PyTorch (out, in)
      >>> w = init(jax.random.key(0), (64, 4096))
      >>> round(float(w.std()), 3)  # sqrt(2 / 4096): the fan-in is the last axis here
      0.022
    """
    name = "jaxinit.for_layout"
    check_callable(name, "init", init)
    check_choice(name, "layout", layout, LAYOUTS)
    source = native_layout(init)
    if source is None or source == layout:
        return init
    check_choice(name, "the initializer's layout attribute", source, LAYOUTS)
    base_bound = getattr(init, "bound", None)

    def bound(dims: tuple[int, ...]) -> tuple[Any, str]:
        assert base_bound is not None
        return base_bound(permute_shape(dims, layout, source))

    cache_key: tuple[Any, ...] | None = (init, layout)
    try:
        hash(cache_key)
    except TypeError:  # an unhashable callable object: no shared compiled programs
        cache_key = None

    @initializer(name, dtype=base_default_dtype(init), bound=None if base_bound is None else bound,
                 cache_key=cache_key)
    def relaid(key: Array, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        native = init(key, permute_shape(shape, layout, source), dtype)
        # Back to the stored layout: the inverse of the permutation that wrote the shape.
        inverse = tuple(int(a) for a in np.argsort(_permutation(len(shape), layout, source)))
        return jnp.transpose(native, inverse)

    return with_layout(relaid, layout)
