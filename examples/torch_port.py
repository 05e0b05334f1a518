"""Porting a PyTorch model's initialization to Equinox and Flax with jaxinit.torch.

A PyTorch model often initializes itself in a loop over its modules, e.g.
torchvision's ResNet::

    for m in self.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.GroupNorm):
            nn.init.ones_(m.weight); nn.init.zeros_(m.bias)
    # nn.Linear keeps PyTorch's default: kaiming_uniform(a=sqrt(5)), bias U(±1/sqrt(fan_in)).

With ``jaxinit.torch`` the same lines become rules for ``jaxinit.reinit``, with
PyTorch's names, defaults and fans. The one set of rules serves an Equinox
port (weights ``(out, in, kh, kw)`` like PyTorch: ``layout="torch"``) and a
Flax linen port (kernels ``(kh, kw, in, out)``: ``layout="flax"``, where each
PyTorch scheme is drawn in PyTorch's layout and transposed). Both ports are
built abstractly (``eqx.filter_eval_shape``, ``jax.eval_shape``) and every
parameter is drawn once, by the rules. If PyTorch is installed, the PyTorch
model itself is built too and its weights' stds are printed beside the
ports'. Run:

    python examples/torch_port.py [--out stds.json]
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxinit
import jaxinit.torch as tinit

# One path pattern per PyTorch module; "params/" is the linen prefix, "weight"/"kernel"
# the Equinox/linen names of a weight.
RULES = {
    r"(params/)?conv\d/(weight|kernel)": tinit.kaiming_normal(mode="fan_out",
                                                             nonlinearity="relu"),
    r"(params/)?conv\d/bias": tinit.zeros(),
    r"(params/)?gn\d/(weight|scale)": tinit.ones(),
    r"(params/)?gn\d/bias": tinit.zeros(),
    **tinit.linear_default(module=r"(params/)?fc"),
}


class EqxNet(eqx.Module):
    """The Equinox port: attribute names as in the PyTorch module, so paths are its names."""

    conv1: eqx.nn.Conv2d
    gn1: eqx.nn.GroupNorm
    conv2: eqx.nn.Conv2d
    fc: eqx.nn.Linear

    def __init__(self, key: jax.Array):
        k1, k2, k3 = jax.random.split(key, 3)
        self.conv1 = eqx.nn.Conv2d(1, 32, 3, padding=1, key=k1)
        self.gn1 = eqx.nn.GroupNorm(4, 32)
        self.conv2 = eqx.nn.Conv2d(32, 64, 3, padding=1, key=k2)
        self.fc = eqx.nn.Linear(64, 10, key=k3)

    def __call__(self, x: jax.Array) -> jax.Array:  # (1, H, W)
        x = jax.nn.relu(self.gn1(self.conv1(x)))
        return self.fc(jax.nn.relu(self.conv2(x)).mean(axis=(1, 2)))


class LinenNet(nn.Module):
    """The Flax linen port, with the same module names."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:  # (N, H, W, 1)
        x = nn.relu(nn.GroupNorm(4, name="gn1")(nn.Conv(32, (3, 3), name="conv1")(x)))
        x = nn.relu(nn.Conv(64, (3, 3), name="conv2")(x)).mean(axis=(1, 2))
        return nn.Dense(10, name="fc")(x)


def target_std(name: str, torch_shape: tuple[int, ...]) -> float:
    """The std PyTorch's formulas give each weight (shape as in PyTorch)."""
    fan_in, fan_out = tinit.fans(torch_shape)
    if name.startswith("conv"):
        return math.sqrt(2.0 / fan_out)  # kaiming_normal, fan_out, relu
    return 1.0 / math.sqrt(fan_in) / math.sqrt(3.0)  # U(±1/sqrt(fan_in))


def torch_stds() -> dict[str, float] | None:
    """The PyTorch model's weight stds after its own init, or None without PyTorch."""
    try:
        import torch
    except ImportError:
        return None

    class TorchNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = torch.nn.Conv2d(1, 32, 3, padding=1)
            self.gn1 = torch.nn.GroupNorm(4, 32)
            self.conv2 = torch.nn.Conv2d(32, 64, 3, padding=1)
            self.fc = torch.nn.Linear(64, 10)
            for m in self.modules():
                if isinstance(m, torch.nn.Conv2d):
                    torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    torch.nn.init.zeros_(m.bias)
                elif isinstance(m, torch.nn.GroupNorm):
                    torch.nn.init.ones_(m.weight)
                    torch.nn.init.zeros_(m.bias)

    torch.manual_seed(0)
    net = TorchNet()
    return {name: float(p.detach().std()) for name, p in net.named_parameters()
            if not name.startswith("gn")}


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON")
    args = parser.parse_args(argv)

    key = jax.random.key(0)
    eqx_net = eqx.filter_eval_shape(EqxNet, jax.random.key(1))  # shapes only
    eqx_net = jaxinit.reinit(key, eqx_net, RULES, layout="torch")
    linen_vars = jax.eval_shape(LinenNet().init, jax.random.key(1), jnp.zeros((1, 8, 8, 1)))
    linen_vars = jaxinit.reinit(key, linen_vars, RULES)  # layout="flax"
    assert eqx_net(jnp.ones((1, 8, 8))).shape == (10,)
    assert LinenNet().apply(linen_vars, jnp.ones((2, 8, 8, 1))).shape == (2, 10)

    from_torch = torch_stds()
    table: dict[str, dict[str, float]] = {}
    for module, param in (("conv1", "weight"), ("conv2", "weight"), ("fc", "weight"),
                          ("fc", "bias")):
        eqx_leaf = getattr(getattr(eqx_net, module), param)
        linen_leaf = linen_vars["params"][module]["kernel" if param == "weight" else "bias"]
        weight_shape = tuple(getattr(eqx_net, module).weight.shape)
        row = {"target": target_std(module, weight_shape), "equinox": float(np.std(eqx_leaf)),
               "linen": float(np.std(linen_leaf)), "bound": 1.0 / math.sqrt(
                   tinit.fans(weight_shape)[0]),
               "equinox_max": float(np.abs(eqx_leaf).max()),
               "linen_max": float(np.abs(linen_leaf).max())}
        if from_torch is not None:
            row["torch"] = from_torch[f"{module}.{param}"]
        table[f"{module}.{param}"] = row
    print(f"{'parameter':>12} {'target std':>10} {'equinox':>8} {'linen':>8}"
          + (f" {'torch':>8}" if from_torch is not None else "  (PyTorch not installed)"))
    for name, row in table.items():
        print(f"{name:>12} {row['target']:>10.4f} {row['equinox']:>8.4f} {row['linen']:>8.4f}"
              + (f" {row['torch']:>8.4f}" if "torch" in row else ""))
    if args.out is not None:
        args.out.write_text(json.dumps(table, indent=1))
    return table


if __name__ == "__main__":
    main()
