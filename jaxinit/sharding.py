"""Sharded initialization: every device computes only its own shard, with mesh-independent values.

Every jaxinit initializer accepts ``out_sharding`` (a
:class:`jax.sharding.NamedSharding`, or a :class:`jax.sharding.PartitionSpec`
resolved against the mesh set with ``jax.set_mesh``). The result is the array
the initializer returns without ``out_sharding`` -- bit for
bit, whatever the mesh and the partition spec -- laid out with that sharding.
It is produced by JAX's SPMD partitioner: the initializer's computation is
compiled with the requested output sharding, so each device runs the part of
the computation that makes its shard and no device holds the whole array.
(The unsharded values themselves are the same eagerly and under ``jax.jit``:
see :func:`jaxinit.contract.scale_samples` and :func:`jaxinit.contract.runtime_value`.)

Why the values do not depend on the mesh: JAX's threefry random bits are a
pure function of the key and of each element's position in the *logical*
array. With ``jax_threefry_partitionable=True`` (the default of recent JAX
releases, jax 0.10 included) the partitioner splits that computation along
any axis without communication. With it off, the values are still
sharding-independent (but not equal to those with it on), and every device
computes the whole array before keeping its shard -- measured: an
all-gather in the compiled program and more than the whole array in
temporaries per device -- so :func:`shardable` warns
(:class:`NonPartitionableRandomWarning`). ``rbg`` keys give
sharding-independent values too (checked on CPU).

Two helpers let any scheme (and any user initializer) join in:

* :func:`check_out_sharding` turns ``out_sharding`` into a ``NamedSharding``
  checked against the shape, with errors that name the initializer;
* :func:`shardable` wraps an initializer so that it accepts ``out_sharding``
  in every setting: eager or under ``jax.jit``, meshes with ``Explicit`` or
  ``Auto`` axes, with or without a mesh context.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxinit.core import Array, OutSharding, Shape, check_shape

__all__ = [
    "NonPartitionableRandomWarning",
    "auto_mesh",
    "check_out_sharding",
    "constrain",
    "shard_output",
    "warn_if_not_partitionable",
]


class NonPartitionableRandomWarning(UserWarning):
    """Sharded random init with ``jax_threefry_partitionable`` off: every device computes it all."""


def _context_mesh() -> Any:
    """The mesh set with ``jax.set_mesh``: concrete outside a trace, else abstract."""
    abstract = jax.sharding.get_abstract_mesh()
    if abstract.empty:
        return None
    try:
        concrete = jax.sharding.get_mesh()
    except ValueError:  # inside jax.jit only the abstract mesh is known
        return abstract
    return abstract if concrete.empty else concrete


def _spec_axes(name: str, entry: Any, out_sharding: Any) -> tuple[str, ...]:
    """The mesh axis names of one PartitionSpec entry (None, a name, or a tuple of names)."""
    if entry is None:
        return ()
    if isinstance(entry, str):
        return (entry,)
    if isinstance(entry, tuple) and all(isinstance(a, str) for a in entry):
        return entry
    raise ValueError(
        f"{name}: out_sharding={out_sharding!r} has the entry {entry!r}; accepted entries: "
        "None, a mesh axis name, or a tuple of mesh axis names."
    )


def check_out_sharding(name: str, shape: Shape, out_sharding: OutSharding) -> NamedSharding | None:
    """Returns ``out_sharding`` as a ``NamedSharding`` valid for ``shape``, or raises.

    ``None`` (and a ``NamedSharding`` over an empty mesh) means "no sharding"
    and returns ``None``. A ``PartitionSpec`` is resolved against the mesh set
    with ``jax.set_mesh``. As in JAX, a spec shorter than the shape leaves the
    trailing dimensions unsharded.

    Raises:
      TypeError: ``out_sharding`` is not a NamedSharding, a PartitionSpec or None.
      ValueError: a PartitionSpec with no mesh set; a spec longer than the
        shape's rank; an axis name the mesh does not have, or used twice; a
        dimension that the product of its mesh axis sizes does not divide;
        a NamedSharding whose mesh differs from an ``Explicit`` context mesh.
    """
    dims = check_shape(name, shape)
    if out_sharding is None:
        return None
    context = _context_mesh()
    if isinstance(out_sharding, PartitionSpec):
        if context is None:
            raise ValueError(
                f"{name}: out_sharding={out_sharding!r} is a PartitionSpec but no mesh is set; "
                "pass a NamedSharding(mesh, spec) or call inside `with jax.set_mesh(mesh):`."
            )
        try:
            sharding = NamedSharding(context, out_sharding)
        except Exception as err:  # an axis the mesh lacks, or one axis used twice
            raise ValueError(
                f"{name}: out_sharding={out_sharding!r} does not fit the mesh set with "
                f"jax.set_mesh (axes {tuple(context.axis_names)}): {err}"
            ) from err
    elif isinstance(out_sharding, NamedSharding):
        sharding = out_sharding
        if sharding.mesh.empty:
            return None
        if (context is not None and context.abstract_mesh.explicit_axes
                and sharding.mesh.abstract_mesh != context.abstract_mesh):
            raise ValueError(
                f"{name}: out_sharding={out_sharding!r} is on a mesh other than the mesh set "
                f"with jax.set_mesh ({context}); accepted: a sharding on the context mesh."
            )
    else:
        raise TypeError(
            f"{name}: out_sharding={out_sharding!r} is not supported; accepted: "
            "a jax.sharding.NamedSharding, a jax.sharding.PartitionSpec, or None."
        )
    spec = tuple(sharding.spec)
    if len(spec) > len(dims):
        raise ValueError(
            f"{name}: out_sharding={out_sharding!r} has {len(spec)} entries but shape={dims} "
            f"has rank {len(dims)}; accepted: a partition spec of at most {len(dims)} entries."
        )
    mesh_sizes = dict(sharding.mesh.shape)
    used: set[str] = set()
    for dim_index, entry in enumerate(spec):
        axes = _spec_axes(name, entry, out_sharding)
        for axis in axes:
            if axis not in mesh_sizes:
                raise ValueError(
                    f"{name}: out_sharding={out_sharding!r} names mesh axis {axis!r}, which "
                    f"the mesh does not have; accepted axes: {tuple(mesh_sizes)}."
                )
            if axis in used:
                raise ValueError(
                    f"{name}: out_sharding={out_sharding!r} uses mesh axis {axis!r} twice."
                )
            used.add(axis)
        ways = math.prod(mesh_sizes[a] for a in axes)
        if dims[dim_index] % ways:
            raise ValueError(
                f"{name}: out_sharding={out_sharding!r} splits dimension {dim_index} of "
                f"shape={dims} (size {dims[dim_index]}) over mesh axes {axes} of total size "
                f"{ways}, which does not divide it; accepted: mesh axes whose sizes multiply "
                "to a divisor of the dimension."
            )
    return sharding


def warn_if_not_partitionable(name: str) -> None:
    """Warns that a sharded random draw computes the whole array on every device."""
    if not jax.config.jax_threefry_partitionable:  # type: ignore[attr-defined]
        warnings.warn(
            f"{name}: out_sharding is given but jax_threefry_partitionable is off, so every "
            "device computes the whole random array before keeping its shard (the values do "
            "not depend on the sharding, but differ from those with the flag on). Enable it "
            "with jax.config.update('jax_threefry_partitionable', True).",
            NonPartitionableRandomWarning,
            stacklevel=3,
        )


def shard_output(compute: Callable[[Array], Array], key: Array, sharding: NamedSharding) -> Array:
    """Runs ``compute(key)`` so that its result comes out with ``sharding``, computed shard-wise.

    ``compute`` must be a pure function of the key that builds the *unsharded*
    logical array. Under a mesh with ``Explicit`` axes (``jax.set_mesh``) it
    runs in ``jax.sharding.auto_axes``, which lets the partitioner choose the
    layout inside and fixes the output's sharding in its type; otherwise it
    is compiled with ``jax.jit(..., out_shardings=sharding)`` (nested in the
    caller's trace under ``jax.jit``, where it acts as a sharding constraint).
    Either way the partitioner propagates the output sharding backwards, so
    elementwise work (all the random samplers) is done one shard per device.
    """
    context = jax.sharding.get_abstract_mesh()
    if not context.empty and context.explicit_axes:
        return jax.sharding.auto_axes(compute, out_sharding=sharding,
                                      axes=context.explicit_axes)(key)
    return jax.jit(compute, out_shardings=sharding)(key)


def constrain(x: Array, sharding: NamedSharding, entries: tuple[Any, ...]) -> Array:
    """Constrains ``x`` to the partition spec ``entries`` on ``sharding``'s mesh.

    For a computation run by :func:`shard_output` that lays out an
    intermediate result itself (e.g. a stack of matrices along its batch axes
    before they are reshaped into the output). On a mesh with ``Explicit``
    axes that computation runs under ``auto_axes`` over the context mesh, so
    the spec alone names the layout there.
    """
    spec = PartitionSpec(*entries)
    if not jax.sharding.get_abstract_mesh().empty:
        return jax.lax.with_sharding_constraint(x, spec)
    # No context mesh: a constraint may name Auto axes only, so use an Auto copy of the mesh
    # (same devices; the output sharding itself stays the one asked for).
    return jax.lax.with_sharding_constraint(x, NamedSharding(auto_mesh(sharding.mesh), spec))


@functools.lru_cache(maxsize=64)
def auto_mesh(mesh: Mesh) -> Mesh:
    """``mesh`` with every axis ``Auto`` (the same devices)."""
    if not mesh.abstract_mesh.explicit_axes:
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))
