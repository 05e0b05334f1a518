"""The diagnose command: built-in nets, scheme names, plot written, clear errors."""

import pytest

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
