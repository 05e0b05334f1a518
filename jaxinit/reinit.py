"""Re-initializing any JAX model by path: :func:`reinit`.

Flax passes an initializer to each layer (``kernel_init=``); other libraries
(Equinox, converted checkpoints, models built elsewhere) take none. ``reinit``
works on the parameters themselves: it redraws every array leaf whose path
matches a rule and returns a tree of the same type and structure.

Paths
-----
A leaf's path is its sequence of keys from the root, joined with ``/``:

* dict keys as written (``str(key)``): a linen variable dict (``dict`` or
  ``FrozenDict``) gives ``"params/h_3/c_proj/kernel"``; a flat dict of a
  PyTorch ``state_dict`` keeps its dotted keys, ``"h.3.c_proj.weight"``;
* list and tuple positions as integers: ``"layers/0/weight"``;
* attribute names of an Equinox module (``eqx.Module`` fields) or any
  other pytree registered with attribute keys: ``"conv1/weight"``,
  ``"mlp/layers/2/bias"``;
* an ``nnx.State`` (``nnx.state(model)`` or ``nnx.state(model, nnx.Param)``)
  gives the attribute path of each variable, without the variable's
  ``.value``: ``"layers/0/kernel"``, ``"blocks/1/attn/c_proj/bias"``. So does
  a linen leaf boxed with metadata (``nn.Partitioned``): ``"params/dense/kernel"``.

Only array leaves (``jax.Array``, ``numpy.ndarray``) and abstract arrays
(``jax.ShapeDtypeStruct``) have paths; other leaves (an Equinox module's
activation function, Python numbers) are never matched and always returned as
they are. The path of the root array itself is ``""``.

Abstract arrays let a model be initialized once instead of twice: build it
with ``jax.eval_shape(model.init, key, x)`` (linen), ``eqx.filter_eval_shape``
(Equinox) or ``nnx.eval_shape`` (nnx), which allocates nothing, and let the
rules draw every leaf (each abstract leaf must be drawn by some rule).

Rules
-----
``rules`` maps regular expressions to what to do with the leaves they match,
as a mapping or a sequence of ``(pattern, target)`` pairs. A pattern is
matched against the *whole* path (``re.fullmatch``), so ``"c_proj/kernel"``
matches only that top-level path; write ``".*/c_proj/kernel"`` for every
block's. The first rule that matches a leaf decides it; a leaf that no rule
matches is returned unchanged (the same object). A target is:

* an initializer ``init(key, shape, dtype, out_sharding)``, or
* ``None``: keep the leaf (to exempt some paths from a later, broader rule), or
* :func:`from_sibling`: an initializer built from the shape of a sibling
  leaf, such as a bias drawn from its weight's fan-in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from jaxinit import threefry
from jaxinit.contract import shardable
from jaxinit.core import (
    Array,
    Initializer,
    check_callable,
    check_choice,
    check_key,
    is_traced,
)
from jaxinit.layout import LAYOUTS, for_layout, permute_shape

__all__ = ["FromSibling", "Rules", "from_sibling", "leaf_paths", "reinit"]

_NAME = "jaxinit.reinit"


@dataclasses.dataclass(frozen=True)
class FromSibling:
    """A rule target building its initializer from a sibling leaf's shape (:func:`from_sibling`)."""

    build: Callable[[tuple[int, ...]], Initializer]
    names: tuple[str, ...]
    layout: str


def from_sibling(build: Callable[[tuple[int, ...]], Initializer],
                 names: Sequence[str] = ("weight", "kernel"), *,
                 layout: str = "flax") -> FromSibling:
    """A rule target whose initializer depends on the shape of a sibling leaf.

    For a leaf at ``"a/b/bias"``, the sibling is the first of ``"a/b/<name>"``
    for ``name`` in ``names`` that the tree has; ``build(shape)`` receives that
    sibling's shape written in ``layout`` (converted from the tree's layout if
    they differ) and returns the initializer for the leaf. PyTorch's default
    bias ``U(±1/sqrt(fan_in))``, with the fan-in of the layer's weight, is
    written this way (:func:`jaxinit.torch.linear_default`).

    Args:
      build: ``shape -> initializer``.
      names: the sibling's last path component, tried in order.
      layout: the layout ``build`` reads the sibling's shape in.

    Example:
      >>> import jax, jax.numpy as jnp, jaxinit
      >>> fan_in_bias = jaxinit.from_sibling(lambda w: jaxinit.constant(1 / w[0]))  # w: (in, out)
      >>> params = {"dense": {"kernel": jnp.zeros((4, 3)), "bias": jnp.zeros(3)}}
      >>> jaxinit.reinit(jax.random.key(0), params, {".*/bias": fan_in_bias})["dense"]["bias"]
      Array([0.25, 0.25, 0.25], dtype=float32)
    """
    name = "jaxinit.from_sibling"
    check_callable(name, "build", build)
    if isinstance(names, str) or not all(isinstance(n, str) for n in names) or not names:
        raise TypeError(f"{name}: names={names!r} must be a non-empty sequence of str.")
    check_choice(name, "layout", layout, LAYOUTS)
    return FromSibling(build, tuple(names), layout)


Target: TypeAlias = "Initializer | FromSibling | None"
Pattern: TypeAlias = "str | re.Pattern[str]"
Rules: TypeAlias = "Mapping[Pattern, Target] | Sequence[tuple[Pattern, Target]]"


@dataclasses.dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    target: Any

    @property
    def text(self) -> str:
        return self.pattern.pattern


def _parse_rules(rules: Any) -> list[_Rule]:
    if isinstance(rules, Mapping):
        pairs = list(rules.items())
    elif isinstance(rules, Sequence) and not isinstance(rules, str):
        pairs = list(rules)
        for pair in pairs:
            if not (isinstance(pair, tuple | list) and len(pair) == 2):
                raise TypeError(f"{_NAME}: rules contains {pair!r}; accepted: (pattern, "
                                "initializer) pairs.")
    else:
        raise TypeError(f"{_NAME}: rules={rules!r} must be a mapping or a sequence of "
                        "(pattern, initializer) pairs.")
    parsed = []
    for pattern, target in pairs:
        if isinstance(pattern, str):
            try:
                compiled = re.compile(pattern)
            except re.error as err:
                raise ValueError(f"{_NAME}: pattern {pattern!r} is not a valid regular "
                                 f"expression: {err}.") from err
        elif isinstance(pattern, re.Pattern) and isinstance(pattern.pattern, str):
            compiled = pattern
        else:
            raise TypeError(f"{_NAME}: pattern {pattern!r} must be a str or a compiled "
                            "regular expression.")
        if target is not None and not isinstance(target, FromSibling) and not callable(target):
            raise TypeError(f"{_NAME}: the target of pattern {compiled.pattern!r} is "
                            f"{target!r}; accepted: an initializer (key, shape, dtype) -> "
                            "array, None (keep the leaf) or jaxinit.from_sibling(...).")
        parsed.append(_Rule(compiled, target))
    return parsed


# ------------------------------------------------------------------------------ paths


def _boxed_types() -> tuple[type, ...]:
    """Flax's metadata boxes, if Flax is loaded: they are unboxed to their array."""
    types: list[type] = []
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None:
        types.append(nnx.Variable)
    meta = sys.modules.get("flax.core.meta")
    if meta is not None:
        types.append(meta.AxisMetadata)
    return tuple(types)


def _unbox(leaf: Any, boxed: tuple[type, ...]) -> Any:
    if not (boxed and isinstance(leaf, boxed)):
        return leaf
    box: Any = leaf
    return box.unbox() if hasattr(box, "replace_boxed") else box.get_value()


def _rebox(leaf: Any, value: Array, boxed: tuple[type, ...]) -> Any:
    if not (boxed and isinstance(leaf, boxed)):
        return value
    box: Any = leaf
    # linen boxes (AxisMetadata) keep their metadata with replace_boxed, nnx Variables with replace.
    return box.replace_boxed(value) if hasattr(box, "replace_boxed") else box.replace(value)


def _entry(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _is_array(x: Any) -> bool:
    return isinstance(x, jax.Array | np.ndarray | jax.ShapeDtypeStruct)


def _flatten(tree: Any) -> tuple[list[Any], Any, dict[str, int], tuple[type, ...]]:
    """``(leaves, treedef, {path: index of an array leaf}, box types)``."""
    boxed = _boxed_types()
    flat, treedef = jax.tree_util.tree_flatten_with_path(
        tree, is_leaf=(lambda x: isinstance(x, boxed)) if boxed else None)
    leaves = [leaf for _, leaf in flat]
    paths: dict[str, int] = {}
    duplicates: set[str] = set()
    for index, (keys, leaf) in enumerate(flat):
        if _is_array(_unbox(leaf, boxed)):
            path = "/".join(_entry(k) for k in keys)
            if path in paths:
                duplicates.add(path)
            paths[path] = index
    for path in duplicates:  # e.g. dict keys 0 and "0": ambiguous to match, marked unusable
        paths[path] = -1
    return leaves, treedef, paths, boxed


def leaf_paths(tree: Any) -> list[str]:
    """The paths :func:`reinit` matches: one per array leaf of ``tree``, in tree order.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxinit.reinit import leaf_paths
      >>> leaf_paths({"params": {"dense": {"kernel": jnp.zeros((2, 3)), "bias": jnp.zeros(3)}}})
      ['params/dense/bias', 'params/dense/kernel']
    """
    _check_tree(tree)
    return list(_flatten(tree)[2])


def _check_tree(tree: Any) -> None:
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(tree, nnx.Module):
        raise TypeError(
            f"{_NAME}: got an nnx.Module; pass its state and apply the result: "
            "nnx.update(model, jaxinit.reinit(key, nnx.state(model, nnx.Param), rules)).")


# ------------------------------------------------------------------------------ keys


@jax.jit
def _fold(key: Array, words: Array) -> Array:
    return threefry.fold_in(threefry.fold_in(key, words[0]), words[1])


def _leaf_key(key: Array, path: str) -> Array:
    """A key that depends on ``key`` and ``path`` only: 64 bits of the path's hash folded in.

    Two distinct paths share a key with probability 2⁻⁶⁴.
    """
    digest = hashlib.blake2b(path.encode(), digest_size=8).digest()
    return _fold(key, np.frombuffer(digest, dtype=np.uint32))


# ------------------------------------------------------------------------------ reinit


def reinit(key: Array, tree: Any, rules: Rules, *, layout: str = "flax",
           allow_unused: bool = False) -> Any:
    """Redraws the array leaves of ``tree`` whose paths match ``rules``.

    Works on linen variable dicts (``dict``/``FrozenDict``), ``nnx.State``
    (apply the result with ``nnx.update(model, new_state)``), Equinox
    modules and any other pytree of arrays; returns the same type with the
    same structure. Paths and rules are described in the module docstring
    (:mod:`jaxinit.reinit`): the path is the keys from the root joined with
    ``/`` (``"params/h_3/c_proj/kernel"``, ``"layers/0/weight"``), a pattern
    must match the whole path, the first matching rule wins and unmatched
    leaves are returned unchanged.

    * Keys: each redrawn leaf's key is ``key`` folded with a 64-bit hash of
      its path, so a leaf's value depends on ``key`` and its path only:
      adding, removing or reordering other leaves or rules changes nothing
      else.
    * Each new leaf has the old leaf's shape and dtype (16-bit leaves are
      sampled in float32 by jaxinit's schemes). A leaf sharded with a
      ``NamedSharding`` is redrawn with ``out_sharding`` equal to its
      sharding: each device computes its own shard, and the values are those
      of the unsharded redraw. Other placements are restored with
      ``jax.device_put``.
    * ``layout``: how the tree stores weights of rank >= 2: ``"flax"``,
      ``(*kernel, in, out)`` (linen, nnx, Haiku), or ``"torch"``,
      ``(out, in, *kernel)`` (Equinox, PyTorch checkpoints). An initializer
      written for the other layout (every jaxinit scheme is written for
      Flax's; :mod:`jaxinit.torch`'s for PyTorch's) is applied to the
      permuted shape and transposed back (:func:`jaxinit.layout.for_layout`),
      so fans, orthogonal axes and gate blocks are the ones it expects.
      Leaves of rank 0 and 1 are the same in both layouts.
    * Errors: a pattern that matches no leaf's path raises ``ValueError`` (it
      is almost always a typo; ``allow_unused=True`` accepts it; a pattern
      whose leaves are all taken by earlier rules is fine); an error raised
      by an initializer is re-raised with the leaf's path, shape and pattern.
      Only floating and complex leaves can be redrawn.

    * Abstract leaves (``jax.ShapeDtypeStruct``, from ``jax.eval_shape``) are
      drawn like arrays, with their shape, dtype and sharding: a model built
      abstractly is allocated once, by ``reinit``. Each must be drawn by a rule.

    Works under ``jax.jit`` (``key`` and the leaves may be traced).

    Args:
      key: a PRNG key.
      tree: the parameters.
      rules: a mapping, or a sequence of ``(pattern, target)`` pairs, from
        regular expressions (str or compiled) to initializers, ``None`` (keep)
        or :func:`from_sibling` targets.
      layout: ``"flax"`` or ``"torch"``.
      allow_unused: accept patterns that match no leaf.

    Returns:
      A tree of the same type and structure.

    Example (GPT-2's init: normal(0.02), residual projections scaled by 1/√(2L)):
      >>> import jax, jax.numpy as jnp, jaxinit
      >>> params = {"h_0": {"c_attn": {"kernel": jnp.zeros((64, 192)), "bias": jnp.zeros(192)},
      ...                   "c_proj": {"kernel": jnp.zeros((64, 64)), "bias": jnp.zeros(64)}}}
      >>> new = jaxinit.reinit(jax.random.key(0), params, {
      ...     r".*/c_proj/kernel": jaxinit.normal(0.02 / (2 * 12) ** 0.5),
      ...     r".*/kernel": jaxinit.normal(0.02),
      ... })
      >>> round(float(new["h_0"]["c_attn"]["kernel"].std()), 2)
      0.02
      >>> new["h_0"]["c_proj"]["bias"] is params["h_0"]["c_proj"]["bias"]
      True
    """
    check_key(_NAME, key)
    check_choice(_NAME, "layout", layout, LAYOUTS)
    _check_tree(tree)
    parsed = _parse_rules(rules)
    leaves, treedef, paths, boxed = _flatten(tree)
    plan: list[tuple[str, int, _Rule]] = []
    for path, index in paths.items():
        for rule in parsed:
            if rule.pattern.fullmatch(path):
                if index < 0:
                    raise ValueError(f"{_NAME}: pattern {rule.text!r} matches path {path!r}, "
                                     "which names more than one leaf (keys that print alike).")
                if rule.target is not None:
                    plan.append((path, index, rule))
                break
    # A pattern shadowed by earlier rules is fine (a general rule set after specific ones);
    # a pattern that fits no path at all is a typo.
    unused = [rule.text for rule in parsed
              if not any(rule.pattern.fullmatch(path) for path in paths)]
    if unused and not allow_unused:
        shown = list(paths)[:8]
        raise ValueError(
            f"{_NAME}: pattern(s) {unused} match no leaf path (patterns must match the whole "
            f"path). Paths look like {shown}{' ...' if len(paths) > 8 else ''}. Pass "
            "allow_unused=True to accept patterns that match nothing.")
    drawn = {index for _, index, _ in plan}
    abstract = [path for path, index in paths.items() if index not in drawn and isinstance(
        _unbox(leaves[index], boxed), jax.ShapeDtypeStruct)]
    if abstract:
        raise ValueError(
            f"{_NAME}: no rule draws the abstract leaves {abstract[:8]}"
            f"{' ...' if len(abstract) > 8 else ''} (jax.ShapeDtypeStruct, e.g. from "
            "jax.eval_shape), which would stay without values; add rules for them.")
    new_leaves = list(leaves)
    for path, index, rule in plan:
        leaf = leaves[index]
        value = _redraw(key, path, _unbox(leaf, boxed), rule, paths, leaves, boxed, layout)
        new_leaves[index] = _rebox(leaf, value, boxed)
    return jax.tree_util.tree_unflatten(treedef, new_leaves)


def _initializer_for(path: str, rule: _Rule, paths: dict[str, int], leaves: list[Any],
                     boxed: tuple[type, ...], layout: str) -> Any:
    target = rule.target
    if not isinstance(target, FromSibling):
        return target
    parent = path.rpartition("/")[0]
    for name in target.names:
        sibling = f"{parent}/{name}" if parent else name
        if paths.get(sibling, -1) >= 0:
            shape = tuple(np.shape(_unbox(leaves[paths[sibling]], boxed)))
            try:
                return target.build(permute_shape(shape, layout, target.layout))
            except (TypeError, ValueError) as err:
                raise _annotated(err, f"{_NAME}: building the initializer of {path!r} "
                                      f"(pattern {rule.text!r}) from its sibling {sibling!r} "
                                      f"of shape {shape}: {err}") from err
    tried = [f"{parent}/{n}" if parent else n for n in target.names]
    raise ValueError(f"{_NAME}: pattern {rule.text!r} matches {path!r}, whose initializer is "
                     f"built from a sibling leaf, but none of {tried} exists; exclude the path "
                     "with an earlier rule mapping it to None.")


def _redraw(key: Array, path: str, leaf: Any, rule: _Rule, paths: dict[str, int],
            leaves: list[Any], boxed: tuple[type, ...], layout: str) -> Array:
    shape = tuple(leaf.shape)
    where = f"leaf {path!r} (shape {shape}, dtype {leaf.dtype}, matched by {rule.text!r})"
    dtype = None if _is_key(leaf) else np.dtype(leaf.dtype)
    if dtype is None or not (jnp.issubdtype(dtype, jnp.floating)
                             or jnp.issubdtype(dtype, jnp.complexfloating)):
        raise TypeError(f"{_NAME}: {where} is not a floating or complex array; narrow the "
                        "pattern (for nnx, pass nnx.state(model, nnx.Param)).")
    init = check_callable(_NAME, f"the initializer of {path!r}",
                          _initializer_for(path, rule, paths, leaves, boxed, layout))
    sharding = None if is_traced(leaf) else getattr(leaf, "sharding", None)
    named = sharding if isinstance(sharding, NamedSharding) else None
    try:
        init = for_layout(init, layout)
        if named is not None and not _takes_out_sharding(init):
            init = shardable(getattr(init, "__name__", "initializer"))(init)
        kwargs = {} if named is None else {"out_sharding": named}
        value = init(_leaf_key(key, path), shape, dtype, **kwargs)
    except (TypeError, ValueError) as err:
        raise _annotated(err, f"{_NAME}: {where}: {err}") from err
    if tuple(np.shape(value)) != shape:
        raise ValueError(f"{_NAME}: {where}: the initializer returned shape "
                         f"{tuple(np.shape(value))}.")
    value = jnp.asarray(value)
    if value.dtype != dtype:
        value = value.astype(dtype)
    if sharding is not None and not is_traced(value) and \
            not value.sharding.is_equivalent_to(sharding, len(shape)):
        value = jax.device_put(value, sharding)
    return value


def _annotated(err: Exception, message: str) -> Exception:
    """``err``'s type with ``message`` (its base TypeError/ValueError if it cannot take one)."""
    try:
        return type(err)(message)
    except Exception:  # e.g. JAX's tracer errors take other arguments
        return (TypeError if isinstance(err, TypeError) else ValueError)(message)


def _is_key(leaf: Any) -> bool:
    return bool(jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key))


def _takes_out_sharding(init: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(init).parameters
    except (TypeError, ValueError):
        return False
    return "out_sharding" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
