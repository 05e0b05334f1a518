"""A PureJaxRL/CleanRL-style actor-critic for a discrete-action task (CartPole's sizes):
two tanh MLPs of width 64 whose hidden kernels are ``orthogonal(sqrt(2))``, the policy head
``orthogonal(0.01)``, the value head ``orthogonal(1.0)``, every bias ``constant(0.0)``. RL
code initializes one network per seed with ``jax.jit(jax.vmap(net.init, in_axes=(0, None)))``.

Run as ``python -m clients.actor_critic SECONDS`` (from ``tests/``) it performs the 30
vmapped initializations and checks them against per-seed ones (see the test)."""

import re
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

OBS, ACTIONS, WIDTH, SEEDS = 4, 2, 64, 16
# Leaf paths of the orthogonal kernels and their scales.
ORTHOGONAL = {r"hidden_\d.*kernel": np.sqrt(2), r"policy.*kernel": 0.01,
              r"value.*kernel": 1.0}
# Also initialize with orthogonal(method="qr"): the whole tree must then be JAX's, bit for bit.
CHECK_QR = True


class ActorCritic(nn.Module):
    inits: Any
    activation: str = "tanh"

    def dense(self, features, scale, name):
        return nn.Dense(features, kernel_init=self.inits.orthogonal(scale),
                        bias_init=self.inits.constant(0.0), name=name)

    @nn.compact
    def __call__(self, obs):
        act = nn.relu if self.activation == "relu" else nn.tanh
        pi = act(self.dense(WIDTH, np.sqrt(2), "actor_hidden_0")(obs))
        pi = act(self.dense(WIDTH, np.sqrt(2), "actor_hidden_1")(pi))
        logits = self.dense(ACTIONS, 0.01, "policy")(pi)
        v = act(self.dense(WIDTH, np.sqrt(2), "critic_hidden_0")(obs))
        v = act(self.dense(WIDTH, np.sqrt(2), "critic_hidden_1")(v))
        return logits, jnp.squeeze(self.dense(1, 1.0, "value")(v), -1)


def model(init) -> ActorCritic:
    return ActorCritic(init)


def batch():
    k1, k2, k3, k4 = jax.random.split(jax.random.key(1), 4)
    obs = jax.random.normal(k1, (8, OBS))
    return (obs,), (jax.random.randint(k2, (8,), 0, ACTIONS), jax.random.normal(k3, (8,)),
                    jax.random.normal(k4, (8,)))


def loss(net, variables, inputs, targets):
    """Policy-gradient loss on fixed advantages plus the value regression."""
    actions, advantages, returns = targets
    logits, value = net.apply(variables, *inputs)
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), actions[:, None], -1)[:, 0]
    return -(logp * advantages).mean() + 0.5 * ((value - returns) ** 2).mean()


def scale_of(path: str) -> float | None:
    return next((s for pattern, s in ORTHOGONAL.items() if re.search(pattern, path)), None)


def vmapped_inits(init, repeats: int = 30) -> None:
    """``repeats`` jitted, vmapped initializations of SEEDS networks each; the last batch is
    compared with per-seed initializations."""
    net, obs = model(init), jnp.zeros((1, OBS))
    init_many = jax.jit(jax.vmap(net.init, in_axes=(0, None)))
    for i in range(repeats):
        keys = jax.random.split(jax.random.key(i), SEEDS)
        many = jax.block_until_ready(init_many(keys, obs))
    init_one = jax.jit(net.init)
    for s in range(SEEDS):
        one = init_one(keys[s], obs)
        for got, want in zip(jax.tree.leaves(many), jax.tree.leaves(one), strict=True):
            np.testing.assert_allclose(got[s], want, rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    import jaxinit

    vmapped_inits(jaxinit, int(sys.argv[1]) if len(sys.argv) > 1 else 30)
    print("ok")
