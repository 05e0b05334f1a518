"""What every client test does: initialize the model from Flax's initializer namespace and
from jaxinit, compare the leaves, and train the jaxinit-initialized model for a few steps."""

import dataclasses
import functools
import re
import types
from typing import Any

import chex
import jax
import numpy as np
import optax
from flax import linen as nn
from flax import nnx

import jaxinit
from jaxinit.testing import assert_orthogonal

KEY = jax.random.key(0)
# jax.nn.initializers plus zeros_init()/ones_init(): the namespace Flax code uses.
FLAX = nn.initializers
# jaxinit with orthogonal's method pinned to "qr", the method that gives JAX's values.
JAXINIT_QR = types.SimpleNamespace(**{
    **{name: getattr(jaxinit, name) for name in jaxinit.__all__},
    "orthogonal": functools.partial(jaxinit.orthogonal, method="qr"),
})


def leaves(tree, as_numpy: bool = True) -> dict[str, Any]:
    """Every leaf by its path (as a NumPy array, or as it is)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): np.asarray(leaf) if as_numpy else leaf
            for path, leaf in flat}


def _bits(x: np.ndarray) -> np.ndarray:
    return x.view(np.dtype(f"u{x.dtype.itemsize}")) if x.dtype.kind in "fc" else x


def assert_bit_identical(expected, actual, skip=lambda path: False) -> None:
    """Same tree, shapes and dtypes, and every leaf (but those ``skip`` names) the same
    bits; the message lists every differing leaf with its largest difference."""
    chex.assert_trees_all_equal_shapes_and_dtypes(expected, actual)
    got = leaves(actual)
    differing = [
        f"{path} (max |diff| {np.max(np.abs(want - got[path]).astype(np.float64)):.3g})"
        for path, want in leaves(expected).items()
        if not skip(path) and not np.array_equal(_bits(want), _bits(got[path]))]
    assert not differing, f"{len(differing)} leaves differ: {differing}"


def orthogonal_scales(patterns: dict[str, float]):
    """``path -> scale`` of the leaves drawn by ``orthogonal(scale)``, else None."""
    return lambda path: next((s for p, s in patterns.items() if re.search(p, path)), None)


def assert_matches_reference(reference, actual, patterns: dict[str, float]) -> None:
    """Bit-identical but for the orthogonal leaves, which must be (semi-)orthogonal times
    their scale (jaxinit's default method draws the same law, not always the same values)."""
    scale_of = orthogonal_scales(patterns)
    assert_bit_identical(reference, actual, skip=lambda path: scale_of(path) is not None)
    checked = [path for path in leaves(actual) if scale_of(path) is not None]
    assert bool(checked) == bool(patterns), f"no leaf matches {patterns}"
    for path in checked:
        assert_orthogonal(leaves(actual)[path], scale=scale_of(path), name=path)


def init_and_train(init_fn, loss_fn, key, steps: int = 3, learning_rate: float = 1e-2):
    """``init_fn(key)`` and ``steps`` Adam steps on ``loss_fn(params, variables)`` from it,
    in one compiled program (one compile per model): returns the jitted ``variables``
    (a dict whose ``"params"`` entry is trained) and the loss of each step."""
    optimizer = optax.adam(learning_rate)

    def run(key):
        variables = init_fn(key)

        def step(carry, _):
            params, state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, variables)
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), loss

        params = variables["params"]
        _, losses = jax.lax.scan(step, (params, optimizer.init(params)), length=steps)
        return variables, losses

    variables, losses = jax.jit(run)(key)
    return variables, np.asarray(losses)


@dataclasses.dataclass
class Inits:
    reference: Any  # eager, Flax's namespace
    eager: Any  # eager, jaxinit
    jitted: Any  # jitted, jaxinit, in the program that also trains
    losses: np.ndarray
    qr: Any = None  # eager, jaxinit with orthogonal(method="qr"), where the client asks


def assert_client(inits: Inits, orthogonal: dict[str, float]) -> None:
    """The promises: JAX's values (orthogonal: with method="qr"; by default the law), the
    same values under jit, and a model that trains."""
    if inits.qr is not None:
        assert_bit_identical(inits.reference, inits.qr)
    assert_matches_reference(inits.reference, inits.eager, orthogonal)
    assert_bit_identical(inits.eager, inits.jitted)
    assert np.all(np.isfinite(inits.losses)), inits.losses
    assert inits.losses[-1] < inits.losses[0], inits.losses


def linen_inits(client, key=KEY) -> Inits:
    """A linen client (``model(namespace)``, ``batch() -> (inputs, targets)``,
    ``loss(model, variables, inputs, targets)``, optional ``ORTHOGONAL`` and ``CHECK_QR``)
    initialized every way."""
    inputs, targets = client.batch()

    def eager(namespace):
        return nn.meta.unbox(client.model(namespace).init(key, *inputs))

    model = client.model(jaxinit)
    jitted, losses = init_and_train(
        lambda k: nn.meta.unbox(model.init(k, *inputs)),
        lambda p, v: client.loss(model, {**v, "params": p}, inputs, targets), key)
    return Inits(eager(FLAX), eager(jaxinit), jitted, losses,
                 eager(JAXINIT_QR) if getattr(client, "CHECK_QR", False) else None)


def _nnx_pure(params, rest) -> dict:
    return {"params": nnx.to_pure_dict(params), "rest": nnx.to_pure_dict(rest)}


def nnx_eager(client, namespace, seed: int = 0) -> dict:
    """An nnx client's variables, created eagerly from ``namespace``."""
    return _nnx_pure(*nnx.split(client.model(namespace, nnx.Rngs(seed)), nnx.Param, ...)[1:])


def nnx_inits(client, seed: int = 0) -> Inits:
    """An nnx client (``model(namespace, rngs)``, ``batch() -> (inputs, targets)``,
    ``loss(model, inputs, targets)``, optional ``ORTHOGONAL`` and ``CHECK_QR``) initialized
    every way."""
    inputs, targets = client.batch()
    graphdef = nnx.split(client.model(jaxinit, nnx.Rngs(seed)), nnx.Param, ...)[0]

    def init_fn(key):
        _, params, rest = nnx.split(client.model(jaxinit, nnx.Rngs(key)), nnx.Param, ...)
        return {"params": params, "rest": rest}

    def loss_fn(params, variables):
        net = nnx.merge(graphdef, params, variables["rest"])
        return client.loss(net, inputs, targets)

    jitted, losses = init_and_train(init_fn, loss_fn, jax.random.key(seed))
    qr = nnx_eager(client, JAXINIT_QR, seed) if getattr(client, "CHECK_QR", False) else None
    return Inits(nnx_eager(client, FLAX, seed), nnx_eager(client, jaxinit, seed),
                 _nnx_pure(jitted["params"], jitted["rest"]), losses, qr)
