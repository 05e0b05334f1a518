"""GPT-2's initialization of a Flax linen model, in a handful of lines with jaxinit.reinit.

GPT-2 (Radford et al. 2019) draws every weight from N(0, 0.02²), sets biases
to zero, and scales the weights of the residual projections (``c_proj`` of the
attention and of the MLP) by 1/sqrt(2L) for L layers: each of the 2L residual
branches then adds a variance 2L times smaller to the residual stream. Written
against the parameter paths ``"params/h_3/attn/c_proj/kernel"``, it is four
rules, whatever the model's size (:func:`gpt2_init`). The model's own init is
only traced for the shapes (``jax.eval_shape``): each weight is drawn once.

Run:

    python examples/gpt2_reinit.py [--n-layer 12] [--out stds.json]
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxinit


def gpt2_init(key: jax.Array, variables: Any, n_layer: int) -> Any:
    """GPT-2's init: N(0, 0.02²), residual projections N(0, (0.02/sqrt(2L))²), zero biases."""
    return jaxinit.reinit(key, variables, {
        r"params/h_\d+/(attn|mlp)/c_proj/kernel": jaxinit.normal(0.02 / math.sqrt(2 * n_layer)),
        r"params/.*/(kernel|embedding)": jaxinit.normal(0.02),
        r"params/.*/bias": jaxinit.zeros,
        r"params/.*/scale": jaxinit.ones,  # LayerNorm
    })


class CausalSelfAttention(nn.Module):
    n_embd: int
    n_head: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, c = x.shape
        qkv = nn.Dense(3 * c, name="c_attn")(x)
        q, k, v = (z.reshape(b, t, self.n_head, c // self.n_head)
                   for z in jnp.split(qkv, 3, axis=-1))
        mask = nn.make_causal_mask(jnp.ones((b, t), bool))
        y = nn.dot_product_attention(q, k, v, mask=mask).reshape(b, t, c)
        return nn.Dense(c, name="c_proj")(y)


class MLP(nn.Module):
    n_embd: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.gelu(nn.Dense(4 * self.n_embd, name="c_fc")(x), approximate=True)
        return nn.Dense(self.n_embd, name="c_proj")(x)


class Block(nn.Module):
    n_embd: int
    n_head: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + CausalSelfAttention(self.n_embd, self.n_head, name="attn")(
            nn.LayerNorm(epsilon=1e-5, name="ln_1")(x))
        return x + MLP(self.n_embd, name="mlp")(nn.LayerNorm(epsilon=1e-5, name="ln_2")(x))


class GPT(nn.Module):
    vocab_size: int = 512
    block_size: int = 64
    n_layer: int = 12
    n_embd: int = 128
    n_head: int = 4

    @nn.compact
    def __call__(self, idx: jax.Array) -> jax.Array:
        wte = nn.Embed(self.vocab_size, self.n_embd, name="wte")
        x = wte(idx) + nn.Embed(self.block_size, self.n_embd, name="wpe")(
            jnp.arange(idx.shape[1]))
        for i in range(self.n_layer):
            x = Block(self.n_embd, self.n_head, name=f"h_{i}")(x)
        return wte.attend(nn.LayerNorm(epsilon=1e-5, name="ln_f")(x))  # tied output head


def std_table(params: Any, n_layer: int) -> dict[str, tuple[float, float]]:
    """Measured std of each group of weights and GPT-2's target."""
    groups: dict[str, list[np.ndarray]] = {"c_proj kernels": [], "other kernels": [],
                                           "embeddings": []}
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        if re.search(r"c_proj/kernel$", name):
            groups["c_proj kernels"].append(np.ravel(leaf))
        elif name.endswith("kernel"):
            groups["other kernels"].append(np.ravel(leaf))
        elif name.endswith("embedding"):
            groups["embeddings"].append(np.ravel(leaf))
    targets = {"c_proj kernels": 0.02 / math.sqrt(2 * n_layer), "other kernels": 0.02,
               "embeddings": 0.02}
    return {group: (float(np.concatenate(values).std()), targets[group])
            for group, values in groups.items()}


def main(argv: Sequence[str] | None = None) -> dict[str, tuple[float, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-layer", type=int, default=12)
    parser.add_argument("--n-embd", type=int, default=128)
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON")
    args = parser.parse_args(argv)

    model = GPT(n_layer=args.n_layer, n_embd=args.n_embd)
    tokens = jax.random.randint(jax.random.key(1), (4, model.block_size), 0, model.vocab_size)
    # Shapes only (nothing is drawn or allocated), then every leaf drawn once by the rules.
    abstract = jax.eval_shape(model.init, jax.random.key(0), tokens)
    variables = gpt2_init(jax.random.key(2), abstract, args.n_layer)

    table = std_table(variables["params"], args.n_layer)
    for group, (measured, target) in table.items():
        print(f"{group:>15}: std {measured:.5f} (GPT-2 target {target:.5f})")
    # Small weights make the first prediction nearly uniform: loss ~ log(vocab_size).
    logits = model.apply(variables, tokens[:, :-1])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()
    print(f"loss at init {float(loss):.3f}, log(vocab) = {math.log(model.vocab_size):.3f}")
    if args.out is not None:
        args.out.write_text(json.dumps(table, indent=1))
    return table


if __name__ == "__main__":
    main()
