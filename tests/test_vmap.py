"""Orthogonal initializers under a user's jax.vmap: no batched LAPACK call, pinned values, no hang.

With jaxlib 0.10 on CPU, several batched LAPACK calls in one program can
deadlock, and a user's ``vmap`` turns an unbatched LAPACK call into a batched
one. Every orthogonal method therefore runs under a ``custom_vmap`` rule that
maps the vmapped call onto its batched path (one matrix per key, LAPACK one
matrix at a time). The values of a vmapped call are those of the batched
sampler on the same keys; per key they equal the single call up to rounding
(bit for bit where each matrix is computed on its own: on CPU, LAPACK methods and
Householder's accumulation).
"""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinit.identity import delta_orthogonal
from jaxinit.orthogonal import SAMPLERS, orthogonal
from jaxinit.spectral import spectral_radius

KEYS = jax.random.split(jax.random.key(3), 4)
METHODS = ["auto", *sorted(SAMPLERS)]
# Methods whose matrices are each computed alone on CPU (LAPACK, or Householder's
# products, one matrix at a time): vmapped, stacked and single calls give the same bits.
LAPACK = {"qr", "cholesky_qr2", "svd"}
PER_MATRIX = LAPACK | {"householder"}


# --- no batched LAPACK call in any program ---------------------------------------------------


def _lapack_operand_ranks(lowered_text):
    """(target, [operand ranks]) of every LAPACK custom call in a lowered program."""
    calls = []
    for line in lowered_text.splitlines():
        found = re.search(r"custom_call @(lapack_\w+)", line)
        if not found:
            continue
        signature = line.rsplit(" : (", 1)[1].split(") ->")[0]
        ranks = [len(t.split("x")) - 1 for t in re.findall(r"tensor<([^>]*)>", signature)]
        calls.append((found.group(1), ranks))
    return calls


def _assert_no_batched_lapack(fn, *args):
    calls = _lapack_operand_ranks(jax.jit(fn).lower(*args).as_text())
    batched = [(target, ranks) for target, ranks in calls if max(ranks, default=0) > 2]
    assert not batched, f"batched LAPACK calls: {batched}"
    return calls


def _vmapped(init, shape):
    return jax.vmap(lambda k: init(k, shape))


@pytest.mark.parametrize("method", METHODS)
def test_no_batched_lapack_call_under_vmap(method):
    single = orthogonal(method=method)
    stack = orthogonal(method=method, batch_axis=0)
    calls = _assert_no_batched_lapack(_vmapped(single, (24, 16)), KEYS)
    _assert_no_batched_lapack(_vmapped(stack, (3, 16, 24)), KEYS)
    _assert_no_batched_lapack(jax.vmap(_vmapped(single, (24, 16))), KEYS.reshape(2, 2))
    _assert_no_batched_lapack(lambda k: stack(k, (3, 24, 16)), KEYS[0])
    if method in LAPACK:
        assert calls  # the scan sees the LAPACK calls it should (unbatched)


def test_no_batched_lapack_call_in_delta_orthogonal_and_spectral_radius():
    calls = _assert_no_batched_lapack(_vmapped(delta_orthogonal(), (3, 3, 8, 8)), KEYS)
    assert calls  # delta_orthogonal uses "qr", a LAPACK call
    _assert_no_batched_lapack(_vmapped(spectral_radius(1.1), (8, 8)), KEYS)
    _assert_no_batched_lapack(_vmapped(spectral_radius(1.1), (2, 8, 8)), KEYS)


# --- what vmapped values equal --------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_vmapped_values(method):
    init = orthogonal(1.5, method=method)
    shape = (24, 16)
    vmapped = jax.vmap(lambda k: init(k, shape))(KEYS)
    # Equal to the sampler's explicit batched call on the same keys...
    sampler = SAMPLERS["qr" if method == "auto" else method]
    # (the scale is an argument, as in the initializer: a constant could be folded
    # into the sampler's last product, which rounds differently)
    batched = jax.jit(lambda k, s: s * sampler(k, 24, 16, np.dtype(np.float32)))(KEYS, 1.5)
    np.testing.assert_array_equal(vmapped, batched)
    # ... and, per key, to the single call (bit for bit for per-matrix methods).
    single = np.stack([init(k, shape) for k in KEYS])
    if method in PER_MATRIX or method == "auto":
        np.testing.assert_array_equal(vmapped, single)
    else:
        np.testing.assert_allclose(vmapped, single, rtol=0, atol=1e-6)
    # Nested vmaps flatten onto the same batched call. The rule that flattens them is one
    # wrapper for every sampler (haar._vmappable): checked with and without LAPACK.
    if method in ("qr", "householder"):
        nested = jax.vmap(jax.vmap(lambda k: init(k, shape)))(KEYS.reshape(2, 2))
        np.testing.assert_array_equal(nested.reshape(vmapped.shape), vmapped)


@pytest.mark.parametrize("method", ["auto", "householder", "qr"])
def test_vmapped_stacks_and_wide_shapes(method):
    init = orthogonal(method=method, batch_axis=0, num_blocks=2)
    shape = (3, 12, 40)  # wide blocks of 12 x 20
    vmapped = jax.jit(jax.vmap(lambda k: init(k, shape)))(KEYS)
    single = np.stack([init(k, shape) for k in KEYS])
    np.testing.assert_array_equal(vmapped, single)


def test_vmap_with_legacy_keys_and_over_another_argument():
    legacy = jax.random.split(jax.random.PRNGKey(0), 3)
    init = orthogonal(method="qr")
    vmapped = jax.vmap(lambda k: init(k, (6, 4)))(legacy)
    for i in range(3):
        np.testing.assert_array_equal(vmapped[i], jax.nn.initializers.orthogonal()(legacy[i],
                                                                                   (6, 4)))
    # A vmap over the scale only: the key is shared, the matrix too.
    scaled = jax.vmap(lambda s: orthogonal(s)(KEYS[0], (6, 4)))(jnp.array([1.0, 2.0]))
    np.testing.assert_allclose(scaled[1], 2 * scaled[0], rtol=1e-6)


def test_grad_through_scale_under_vmap():
    # custom_vmap must not block differentiation with respect to a traced scale.
    grads = jax.vmap(jax.grad(lambda s, k: orthogonal(s)(k, (5, 5)).sum()), (None, 0))(2.0, KEYS)
    expected = [float(orthogonal()(k, (5, 5)).sum()) for k in KEYS]
    np.testing.assert_allclose(grads, expected, rtol=1e-5)


# --- the reported hang: actor-critic init, vmapped over seeds, jitted --------------------------


class ActorCritic(nn.Module):
    """The pattern of PPO code: orthogonal(sqrt 2) hidden layers, 0.01 policy head, 1.0 value."""

    actions: int = 6

    @nn.compact
    def __call__(self, x):
        hidden = orthogonal(np.sqrt(2))
        actor = nn.tanh(nn.Dense(64, kernel_init=hidden)(x))
        actor = nn.tanh(nn.Dense(64, kernel_init=hidden)(actor))
        logits = nn.Dense(self.actions, kernel_init=orthogonal(0.01))(actor)
        critic = nn.tanh(nn.Dense(64, kernel_init=hidden)(x))
        critic = nn.tanh(nn.Dense(64, kernel_init=hidden)(critic))
        return logits, nn.Dense(1, kernel_init=orthogonal(1.0))(critic)


class DeltaConvNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        for _ in range(3):
            x = nn.relu(nn.Conv(16, (3, 3), kernel_init=delta_orthogonal())(x))
        return x


class Recurrent(nn.Module):
    @nn.compact
    def __call__(self, h):
        w = self.param("recurrent", spectral_radius(1.05), (32, 32))
        stack = self.param("stacked", spectral_radius(0.9), (3, 32, 32))
        return jnp.tanh(h @ w) + jnp.tanh(h @ stack[0])


def _init_repeatedly(model, x, rounds=30, seeds=16):
    init = jax.jit(jax.vmap(model.init, in_axes=(0, None)))
    for r in range(rounds):
        params = init(jax.random.split(jax.random.key(r), seeds), x)
        jax.block_until_ready(params)
    return params


@pytest.mark.timeout(180)
@pytest.mark.parametrize("model,x", [
    (ActorCritic(), jnp.zeros((1, 8))),
    (DeltaConvNet(), jnp.zeros((1, 8, 8, 16))),
    (Recurrent(), jnp.zeros((1, 32))),
], ids=["actor_critic", "delta_orthogonal", "spectral_radius"])
def test_vmapped_jitted_inits_finish(model, x):
    # 30 jitted inits vmapped over 16 seeds: a batched LAPACK call in this program
    # could hang (the timeout turns that into a failure).
    params = jax.tree_util.tree_leaves(_init_repeatedly(model, x))
    kernel = max(params, key=lambda p: p.ndim)
    assert kernel.shape[0] == 16 and np.all(np.isfinite(kernel))
