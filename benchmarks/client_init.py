"""Time to first weights of real model code: Flax's initializers against jaxinit's.

The models are the client models of the test suite (``tests/clients``: the lm1b and GPT-2
transformers, a ResNet, seq2seq and SST-2 LSTMs, an RL actor-critic, an nnx CNN and a
Gemma-style decoder), each written once against an initializer namespace. Every
initialization runs in a fresh Python process (import, model, first call: tracing,
compilation and run), Flax's namespace (``flax.linen.initializers``, i.e.
``jax.nn.initializers``) and jaxinit alternating; medians of wall and process CPU time.
linen models are initialized eagerly (``model.init``) and jitted
(``jax.jit(model.init)``), nnx models are built eagerly.

    python benchmarks/client_init.py --repeats 3
    python benchmarks/client_init.py --clients gpt2 resnet --modes jit
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINEN = ["lm1b_transformer", "gpt2", "resnet", "seq2seq_lstm", "sst2_lstm", "actor_critic"]
NNX = ["nnx_cnn", "gemma_decoder"]
IMPLS = ("flax", "jaxinit")


def _child(impl: str, client_name: str, mode: str) -> dict[str, float]:
    sys.path.insert(0, REPO)
    import jax
    from flax import linen as nn
    from flax import nnx

    client = importlib.import_module(f"tests.clients.{client_name}")
    if impl == "flax":
        namespace = nn.initializers
    else:
        import jaxinit as namespace
    inputs, _ = client.batch()
    jax.block_until_ready(inputs)
    cpu, wall = time.process_time(), time.perf_counter()
    if client_name in NNX:
        variables = nnx.state(client.model(namespace, nnx.Rngs(0)))
    else:
        model = client.model(namespace)
        init = jax.jit(model.init) if mode == "jit" else model.init
        variables = init(jax.random.key(0), *inputs)
    jax.block_until_ready(jax.tree.leaves(variables))
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def _measure(impl: str, client: str, mode: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", impl, client, mode],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", nargs="+", default=LINEN + NNX, choices=LINEN + NNX)
    parser.add_argument("--modes", nargs="+", default=["eager", "jit"], choices=["eager", "jit"],
                        help="linen clients only; nnx clients are built eagerly")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(*args.child)))
        return
    import jax
    print(f"jax {jax.__version__}, backend {jax.default_backend()}; fresh process per "
          f"initialization, median of {args.repeats}")
    print(f"{'client':>16} {'mode':>5} {'impl':>8} {'wall s':>7} {'cpu s':>7} "
          f"{'Flax/this wall':>14} {'Flax/this cpu':>13}")
    for client in args.clients:
        for mode in ["eager"] if client in NNX else args.modes:
            runs: dict[str, list[dict[str, float]]] = {impl: [] for impl in IMPLS}
            for _ in range(args.repeats):
                for impl in IMPLS:  # interleaved, so that load affects both alike
                    runs[impl].append(_measure(impl, client, mode))
            wall = {i: statistics.median(r["wall_s"] for r in runs[i]) for i in IMPLS}
            cpu = {i: statistics.median(r["cpu_s"] for r in runs[i]) for i in IMPLS}
            for impl in IMPLS:
                print(f"{client:>16} {mode:>5} {impl:>8} {wall[impl]:7.3f} {cpu[impl]:7.3f} "
                      f"{wall['flax'] / wall[impl]:14.2f} {cpu['flax'] / cpu[impl]:13.2f}",
                      flush=True)


if __name__ == "__main__":
    main()
