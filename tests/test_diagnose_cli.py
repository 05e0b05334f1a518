"""The diagnose command: built-in nets, scheme names, plot written, clear errors."""

import sys

import flax.linen as nn
import pytest
from flax import nnx

from jaxinit.__main__ import main as package_main
from jaxinit.diagnose_cli import main, resolve_scheme, run_schemes, summary_table

pytestmark = pytest.mark.timeout(180)


def test_main_writes_the_plot_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "diag.png"
    code = main(["--schemes", "he_normal,normal:0.05", "--depth", "4", "--width", "16",
                 "--batch", "32", "--out", str(out), "--table"])
    assert code == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    captured = capsys.readouterr()
    assert "he_normal" in captured.out and "normal:0.05" in captured.out
    assert "dense4" in captured.out  # the --table rows
    assert "2/2" in captured.err  # the progress bar reached the end


def test_cnn_model(tmp_path):
    out = tmp_path / "cnn.png"
    assert main(["--model", "cnn", "--schemes", "glorot_uniform", "--depth", "3", "--width",
                 "4", "--batch", "32", "--activation", "tanh", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_summary_table_shows_the_collapse_of_a_small_init():
    # ReLU with N(0, 0.01^2) weights, width 32: each layer multiplies E[a^2] by
    # 32 * 1e-4 / 2 = 1.6e-3, so 6 layers shrink the std by ~1e-8; He keeps it O(1).
    runs = run_schemes(["he_normal", "normal"], depth=6, width=32, batch=64)
    table = summary_table(runs=runs, width=32)
    assert table.splitlines()[0] == "deep relu MLP, depth 6, width 32:"
    assert runs["normal"][-2].act_std < 1e-6 < 0.1 < runs["he_normal"][-2].act_std


def test_bad_arguments(capsys):
    assert main(["--schemes", "no_such_init", "--depth", "2"]) == 2
    assert "unknown scheme 'no_such_init'" in capsys.readouterr().err
    assert main(["--depth", "0"]) == 2
    assert "depth=0" in capsys.readouterr().err
    assert main(["--activation", "swish"]) == 2  # argparse refuses it
    assert main(["--schemes", " , "]) == 2
    with pytest.raises(ValueError, match="normal:abc"):
        resolve_scheme("normal:abc")


# ------------------------------------------------------------------ the user's own model


LECUN = nn.initializers.lecun_normal()


class UserMLP(nn.Module):
    """A user's model, written as Flax code usually is: the initializer is an attribute."""

    kernel_init: object = LECUN

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(16, kernel_init=self.kernel_init, name="encoder_hidden")(x))
        return nn.Dense(4, kernel_init=self.kernel_init, name="encoder_output")(x)


def make_linen_mlp(kernel_init=LECUN):
    return UserMLP(kernel_init)


class UserNnxNet(nnx.Module):
    def __init__(self, rngs):
        self.first_projection = nnx.Linear(8, 16, rngs=rngs)
        self.second_projection = nnx.Linear(16, 4, rngs=rngs)

    def __call__(self, x):
        return self.second_projection(nnx.tanh(self.first_projection(x)))


def make_nnx_net(rngs):
    return UserNnxNet(rngs)


def make_nothing():
    return 42


def test_a_user_linen_factory_gets_each_scheme(capsys):
    module = f"{__name__}:make_linen_mlp"
    code = main(["--model", module, "--input-shape", "32,8", "--schemes", "normal:0.001",
                 "--no-plot"])
    assert code == 0
    out = capsys.readouterr().out
    assert "encoder_hidden" in out and "encoder_output" in out and "normal:0.001" in out
    runs = run_schemes(["he_normal", "normal:0.001"], model=module, input_shape=(32, 8))
    # The scheme reaches every kernel: He weights keep the pre-activation std O(1),
    # N(0, 0.001^2) weights shrink it ~1e-3 x.
    assert runs["normal:0.001"][0].pre_std < 0.01 < 0.5 < runs["he_normal"][0].pre_std
    assert runs["normal:0.001"][1].pre_std < 1e-4


def test_a_user_nnx_factory_without_kernel_init_is_measured_as_built(capsys):
    module = f"{__name__}:make_nnx_net"
    assert main(["--model", module, "--input-shape", "16,8", "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "model defaults" in out and "first_projection" in out and "second_projection" in out
    assert main(["--model", module, "--input-shape", "16,8", "--schemes", "he_normal"]) == 2
    assert "takes no kernel_init argument" in capsys.readouterr().err


def test_user_model_errors(capsys):
    cases = [
        (["--model", f"{__name__}:make_linen_mlp"], "needs --input-shape"),
        (["--model", "no_such_package.models:make", "--input-shape", "2,3"], "cannot import"),
        (["--model", f"{__name__}:missing", "--input-shape", "2,3"], "has no 'missing'"),
        (["--model", f"{__name__}:make_nothing", "--input-shape", "2,3"], "returned int"),
        (["--model", "resnet50", "--input-shape", "2,3"], "package.module:factory"),
        (["--model", f"{__name__}:make_linen_mlp", "--input-shape", "2,3", "--depth", "3"],
         "apply to the built-in models only"),
        (["--model", f"{__name__}:make_linen_mlp", "--input-shape", "0,8"], "positive sizes"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert main(["--input-shape", "2,x"]) == 2  # argparse refuses it


def test_without_matplotlib_the_table_is_printed_and_the_plot_explained(tmp_path, capsys,
                                                                          monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "diag.png"
    code = main(["--schemes", "he_normal", "--depth", "2", "--width", "8", "--batch", "16",
                 "--out", str(out)])
    assert code == 0 and not out.exists()
    captured = capsys.readouterr()
    assert "he_normal" in captured.out
    assert "pip install 'jaxinit[plot]'" in captured.err and "Traceback" not in captured.err


def test_help_of_the_package_says_what_each_command_does(capsys):
    assert package_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "catalogue" in out and "diagnose" in out and "--model package.module:factory" in out
    assert package_main(["diagnose", "--help"]) == 0
    assert "--input-shape" in capsys.readouterr().out
    assert package_main(["bogus"]) == 2
    assert "unknown command or option 'bogus'" in capsys.readouterr().err


def test_demo_signal_propagation_equals_layer_statistics():
    # The demo's single jitted scan must measure what layer_statistics measures: same
    # kernels (drawn from the same keys), same batch, same loss.
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxinit import he_normal, layer_statistics
    from jaxinit.__main__ import signal_propagation
    from jaxinit.diagnose_cli import DeepMLP

    depth, width, batch = 6, 16, 64
    table = signal_propagation(("he_normal",), depth=depth, width=width, batch=batch)
    row = [float(v) for v in table.splitlines()[-1].split()[1:]]
    data_key, init_key = jax.random.split(jax.random.key(0))
    x = jax.random.normal(data_key, (batch, width))
    model = DeepMLP(depth, width, jax.nn.relu, he_normal())
    params = {"params": {
        f"dense{i + 1}": {"kernel": he_normal()(k, (width, width)), "bias": jnp.zeros(width)}
        for i, k in enumerate(jax.random.split(init_key, depth))}}
    stats = layer_statistics(model, params, x,
                             loss_fn=lambda out: jnp.sum(out * jax.random.normal(
                                 jax.random.fold_in(data_key, 1), out.shape)))
    mid = (depth - 1) // 2
    expected = [stats[0].act_std, stats[mid].act_std, stats[depth - 2].act_std,
                stats[-1].grad_out_std, stats[0].grad_out_std]
    np.testing.assert_allclose(row, expected, rtol=2e-3)  # the table prints 3 digits
