"""Recurrent helpers: gate blocks, gate biases on real Flax cells, IRNN, spectral radius."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from example_loader import load_example
from flax import nnx

from jaxinit import (
    GATE_ORDERS,
    estimate_spectral_radius,
    gate_bias,
    gate_blocks,
    irnn,
    lstm_bias,
    set_forget_bias,
    spectral_radius,
)
from jaxinit.testing import assert_orthogonal

KEY = jax.random.key(0)


# --- gate_blocks -------------------------------------------------------------------------------

def test_gate_blocks_makes_each_block_orthogonal():
    h = 16
    w = gate_blocks(jax.nn.initializers.orthogonal(), 4)(KEY, (h, 4 * h))
    assert w.shape == (h, 4 * h)
    blocks = np.stack(np.split(np.asarray(w), 4, axis=1))
    assert_orthogonal(blocks, batch_axis=0)
    assert not np.allclose(blocks[0], blocks[1])
    # Why it matters: orthogonal() on the whole (h, 4h) kernel gives orthonormal rows, so a
    # single gate block is far from orthogonal (singular values in (0, 1), r.m.s. 1/2).
    whole = np.asarray(jax.nn.initializers.orthogonal()(KEY, (h, 4 * h)))
    singular = np.linalg.svd(whole[:, :h], compute_uv=False)
    assert singular.max() < 0.95


def test_gate_blocks_uses_one_folded_key_per_gate():
    base = jax.nn.initializers.normal(1.0)
    w = gate_blocks(base, 3)(KEY, (5, 6))
    for g in range(3):
        np.testing.assert_array_equal(w[:, 2 * g:2 * g + 2],
                                      base(jax.random.fold_in(KEY, g), (5, 2)))
    biases = gate_blocks(jax.nn.initializers.normal(1.0), 4, axis=0)(KEY, (8,))
    assert biases.shape == (8,)


def test_gate_blocks_on_a_real_fused_cell():
    init = gate_blocks(jax.nn.initializers.orthogonal(), 4)
    cell = nnx.OptimizedLSTMCell(3, 8, recurrent_kernel_init=init, rngs=nnx.Rngs(0))
    kernel = np.asarray(cell.dense_h.kernel[...])
    assert kernel.shape == (8, 32)
    assert_orthogonal(np.stack(np.split(kernel, 4, axis=1)), batch_axis=0)


def test_gate_blocks_errors():
    init = jax.nn.initializers.zeros
    with pytest.raises(ValueError, match="num_gates=0"):
        gate_blocks(init, 0)
    with pytest.raises(TypeError, match="init=3"):
        gate_blocks(3, 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a multiple of num_gates=4"):
        gate_blocks(init, 4)(KEY, (3, 10))
    with pytest.raises(ValueError, match=r"axis=3 is out of range for shape=\(4, 8\) \(rank 2\); "
                                         r"accepted: an axis in \[-2, 1\]"):
        gate_blocks(init, 4, axis=3)(KEY, (4, 8))
    with pytest.raises(TypeError, match=r"axis=1.0 must be an int"):
        gate_blocks(init, 4, axis=1.0)


# --- gate biases on the actual Flax cells --------------------------------------------------------

def _zero_kernels():
    zeros = jax.nn.initializers.zeros
    return {"kernel_init": zeros, "recurrent_kernel_init": zeros}


def test_lstm_bias_on_nnx_optimized_lstm_cell():
    h = 3
    cell = nnx.OptimizedLSTMCell(2, h, bias_init=lstm_bias(), rngs=nnx.Rngs(0))
    bias = np.asarray(cell.dense_h.bias[...])
    np.testing.assert_array_equal(bias, [0] * h + [1] * h + [0] * 2 * h)


def test_gate_bias_keeps_the_base_for_other_gates():
    b = gate_bias({"o": -2.0, "i": 3.0}, ("i", "f", "g", "o"), base=jax.nn.initializers.ones)(
        KEY, (2, 8), jnp.bfloat16)
    assert b.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(b, np.float32),
                                  np.tile([3, 3, 1, 1, 1, 1, -2, -2], (2, 1)))


def test_gate_bias_slices_are_the_gates_the_nnx_optimized_cell_uses():
    """Zero kernels, forget gate saturated open and input gate closed: the cell keeps c exactly."""
    h = 4
    init = gate_bias({"f": 100.0, "i": -100.0}, "nnx.OptimizedLSTMCell")
    cell = nnx.OptimizedLSTMCell(2, h, bias_init=init, rngs=nnx.Rngs(0), **_zero_kernels())
    c = jnp.arange(1.0, h + 1.0)[None]
    (new_c, _), _ = cell((c, jnp.zeros((1, h))), jnp.ones((1, 2)))
    np.testing.assert_allclose(new_c, c, rtol=1e-6)
    # The wrong slice would not: forget gate closed instead.
    wrong = gate_bias({"f": -100.0}, "nnx.OptimizedLSTMCell")
    cell = nnx.OptimizedLSTMCell(2, h, bias_init=wrong, rngs=nnx.Rngs(0), **_zero_kernels())
    (new_c, _), _ = cell((c, jnp.zeros((1, h))), jnp.ones((1, 2)))
    assert np.abs(np.asarray(new_c)).max() < 1e-6


def test_gate_bias_on_nnx_gru_cell():
    """Update gate z saturated at 1 with zero kernels: the GRU keeps its state (h' = h)."""
    h = 3
    init = gate_bias({"z": 100.0}, "nnx.GRUCell")
    cell = nnx.GRUCell(2, h, bias_init=init, rngs=nnx.Rngs(0), **_zero_kernels())
    bias = np.asarray(cell.dense_i.bias[...])
    np.testing.assert_array_equal(bias, [0] * h + [100] * h + [0] * h)
    state = jnp.array([[0.5, -1.0, 2.0]])
    new_h, _ = cell(state, jnp.ones((1, 2)))
    np.testing.assert_allclose(new_h, state, rtol=1e-6)


@pytest.mark.parametrize("cell_type", [nn.LSTMCell, nn.OptimizedLSTMCell])
def test_set_forget_bias_on_linen_cells(cell_type):
    h = 3
    cell = cell_type(h, **_zero_kernels())
    x = jnp.ones((1, 2))
    carry = (jnp.arange(1.0, h + 1.0)[None], jnp.zeros((1, h)))
    variables = cell.init(KEY, carry, x)
    updated = set_forget_bias(variables, 100.0)
    params = updated["params"]
    np.testing.assert_array_equal(params["hf"]["bias"], [100.0] * h)
    for gate in ("hi", "hg", "ho"):
        np.testing.assert_array_equal(params[gate]["bias"], [0.0] * h)
    np.testing.assert_array_equal(variables["params"]["hf"]["bias"], [0.0] * h)  # not mutated
    # Forget gate open, g = tanh(0) = 0: the cell keeps c exactly.
    (new_c, _), _ = cell.apply(updated, carry, x)
    np.testing.assert_allclose(new_c, carry[0], rtol=1e-6)
    (new_c, _), _ = cell.apply(variables, carry, x)  # forget gate at 1/2
    np.testing.assert_allclose(new_c, carry[0] / 2, rtol=1e-6)


def test_set_forget_bias_finds_a_cell_nested_in_linen_rnn():
    rnn = nn.RNN(nn.LSTMCell(4))
    variables = rnn.init(KEY, jnp.ones((2, 5, 3)))
    updated = set_forget_bias(variables)
    np.testing.assert_array_equal(updated["params"]["cell"]["hf"]["bias"], np.ones(4))
    np.testing.assert_array_equal(updated["params"]["cell"]["hi"]["bias"], np.zeros(4))


def test_set_forget_bias_on_nnx_cells():
    h = 3
    cell = nnx.LSTMCell(2, h, rngs=nnx.Rngs(0), **_zero_kernels())
    assert set_forget_bias(cell, 100.0) is cell
    np.testing.assert_array_equal(cell.hf.bias[...], [100.0] * h)
    np.testing.assert_array_equal(cell.hi.bias[...], [0.0] * h)
    c = jnp.arange(1.0, h + 1.0)[None]
    (new_c, _), _ = cell((c, jnp.zeros((1, h))), jnp.ones((1, 2)))
    np.testing.assert_allclose(new_c, c, rtol=1e-6)

    fused = nnx.OptimizedLSTMCell(2, h, rngs=nnx.Rngs(0))
    set_forget_bias(fused)
    np.testing.assert_array_equal(fused.dense_h.bias[...], [0] * h + [1] * h + [0] * 2 * h)


def test_gate_order_table_matches_linen_conv_lstm_cell():
    """ConvLSTMCell splits its ih/hh outputs as i, g, f, o (and adds 1 to f itself). It takes no
    initializer options, so the gate bias goes into its initialized params: with zero kernels,
    forget gate open and input gate closed, the real cell keeps its memory exactly."""
    assert GATE_ORDERS["nnx.OptimizedLSTMCell"] == ("i", "f", "g", "o")
    h = 2
    cell = nn.ConvLSTMCell(h, kernel_size=(3,))
    x = jnp.ones((1, 5, 1))
    c = jnp.arange(1.0, 11.0).reshape(1, 5, h)
    carry = (c, jnp.ones((1, 5, h)))
    params = jax.tree_util.tree_map(jnp.zeros_like, cell.init(KEY, carry, x)["params"])
    bias = gate_bias({"f": 100.0, "i": -100.0}, "linen.ConvLSTMCell")(KEY, (4 * h,))
    params["ih"]["bias"] = bias
    (new_c, _), _ = cell.apply({"params": params}, carry, x)
    np.testing.assert_allclose(new_c, c, rtol=1e-6)
    params["ih"]["bias"] = gate_bias({"f": 100.0, "i": -100.0}, "nnx.OptimizedLSTMCell")(
        KEY, (4 * h,))
    (new_c, _), _ = cell.apply({"params": params}, carry, x)
    assert not np.allclose(new_c, c, rtol=1e-3)


def test_gate_bias_errors():
    with pytest.raises(ValueError, match="not in gate_order"):
        gate_bias({"x": 1.0})
    with pytest.raises(ValueError, match="use jaxinit.set_forget_bias"):
        gate_bias({"f": 1.0}, "linen.LSTMCell")
    with pytest.raises(ValueError, match="not a known fused-gate cell"):
        gate_bias({"f": 1.0}, "keras.LSTM")
    with pytest.raises(ValueError, match="distinct"):
        gate_bias({"f": 1.0}, ("f", "f"))
    with pytest.raises(TypeError, match="non-empty mapping"):
        gate_bias({})
    with pytest.raises(ValueError, match="must be finite"):
        gate_bias({"f": float("inf")})
    with pytest.raises(ValueError, match="not a multiple of num_gates=4"):
        lstm_bias()(KEY, (6,))
    with pytest.raises(ValueError, match="no LSTM gate parameters"):
        set_forget_bias({"params": {"dense": {"bias": jnp.zeros(3)}}})
    with pytest.raises(TypeError, match="not supported"):
        set_forget_bias(3)


# --- IRNN ----------------------------------------------------------------------------------------

def test_irnn_is_scaled_identity():
    np.testing.assert_array_equal(irnn()(KEY, (4, 4)), np.eye(4))
    stacked = np.broadcast_to(np.float32(0.01) * np.eye(3, dtype=np.float32), (2, 3, 3))
    np.testing.assert_array_equal(irnn(0.01)(KEY, (2, 3, 3)), stacked)
    assert irnn()(KEY, (3, 3), jnp.bfloat16).dtype == jnp.bfloat16


def test_irnn_errors():
    with pytest.raises(ValueError, match="not square"):
        irnn()(KEY, (3, 4))
    with pytest.raises(ValueError, match="rank 1"):
        irnn()(KEY, (3,))
    with pytest.raises(ValueError, match="scale=0.0 must be > 0"):
        irnn(0.0)


def _relu_rnn_state_norms(recurrent_init, n=64, steps=100):
    """Norm of the state of an nnx ReLU SimpleCell over `steps` steps of small random input."""
    cell = nnx.SimpleCell(n, n, activation_fn=nnx.relu, recurrent_kernel_init=recurrent_init,
                          kernel_init=jax.nn.initializers.normal(0.01),
                          bias_init=jax.nn.initializers.zeros, rngs=nnx.Rngs(1))
    xs = jax.random.normal(jax.random.key(2), (steps, 1, n))
    h0 = jax.nn.relu(jax.random.normal(jax.random.key(3), (1, n)))

    def step(h, x):
        h, _ = cell(h, x)
        return h, jnp.linalg.norm(h)

    _, norms = jax.lax.scan(step, h0, xs)
    return np.asarray(norms), float(jnp.linalg.norm(h0))


def test_irnn_keeps_relu_state_bounded_where_large_gaussian_explodes():
    irnn_norms, h0_norm = _relu_rnn_state_norms(irnn())
    # Identity + non-negative state: h_t = relu(h_{t-1} + small input) changes by O(0.01·√n·√t).
    assert np.all(irnn_norms < 2 * h0_norm) and np.all(irnn_norms > 0.5 * h0_norm)
    big_norms, _ = _relu_rnn_state_norms(jax.nn.initializers.normal(3.0 / np.sqrt(64)))
    assert big_norms[-1] > 1e10  # ReLU of a gain-3 Gaussian: grows ~ (3/√2)^t


# --- spectral radius ------------------------------------------------------------------------------

def _radii(w):
    return np.abs(np.linalg.eigvals(np.asarray(w, np.float64)))


@pytest.mark.parametrize("radius", [0.5, 1.0, 1.5])
def test_orthogonal_base_puts_every_eigenvalue_on_the_circle(radius):
    w = spectral_radius(radius)(KEY, (3, 48, 48))
    moduli = _radii(w)
    # radius · Q: every |λ| = radius up to float32 rounding (≈ √n·ε).
    np.testing.assert_allclose(moduli, radius, rtol=1e-5)
    assert_orthogonal(np.asarray(w) / radius, batch_axis=0)


@pytest.mark.parametrize("n, radius", [(8, 0.9), (64, 1.0), (256, 2.0)])
def test_normal_base_spectral_radius_within_2e_5(n, radius):
    w = spectral_radius(radius, "normal")(jax.random.key(n), (2, n, n))
    rho = _radii(w).max(axis=-1)
    # Gelfand estimate with k = 2^20: high by at most log(κ·n)/k < 2e-5 for κ·n < 1e9 (measured
    # ≈ 1.5e-6 up to n = 1024), plus float32 rounding of the rescaled matrix (~1e-7).
    np.testing.assert_allclose(rho, radius, rtol=2e-5)


def test_custom_base_is_rescaled():
    w = spectral_radius(0.7, jax.nn.initializers.lecun_normal())(KEY, (40, 40))
    np.testing.assert_allclose(_radii(w).max(), 0.7, rtol=2e-5)


def test_estimate_spectral_radius_on_known_matrices():
    jordan = jnp.array([[0.5, 1.0], [0.0, 0.5]])  # defective: ‖Jᵏ‖ ~ k·0.5^k
    rotation = 3.0 * jnp.array([[0.0, -1.0], [1.0, 0.0]])
    diag = jnp.diag(jnp.array([0.2, -1.3, 0.7]))
    np.testing.assert_allclose(estimate_spectral_radius(jordan), 0.5, rtol=1e-4)
    np.testing.assert_allclose(estimate_spectral_radius(rotation), 3.0, rtol=1e-5)
    np.testing.assert_allclose(estimate_spectral_radius(diag), 1.3, rtol=1e-5)
    stacked = jnp.stack([rotation, 0.1 * rotation])
    np.testing.assert_allclose(estimate_spectral_radius(stacked), [3.0, 0.3], rtol=1e-5)


def test_spectral_radius_under_jit_and_low_precision():
    init = spectral_radius(1.2, "normal")
    eager = init(KEY, (32, 32))
    jitted = jax.jit(init, static_argnums=1)(KEY, (32, 32))
    np.testing.assert_allclose(eager, jitted, rtol=1e-5, atol=1e-7)
    w16 = init(KEY, (32, 32), jnp.bfloat16)
    assert w16.dtype == jnp.bfloat16
    np.testing.assert_allclose(_radii(w16).max(), 1.2, rtol=2e-2)  # bf16 rounding, 8 bits


def _linear_state_norm(w, steps):
    h = jax.random.normal(jax.random.key(4), (w.shape[0],))
    h = h / jnp.linalg.norm(h)
    for _ in range(steps):
        h = w @ h
    return float(jnp.linalg.norm(h))


def test_regimes_of_the_linear_recurrence():
    n, steps = 64, 200
    stable = _linear_state_norm(spectral_radius(0.9)(KEY, (n, n)), steps)
    critical = _linear_state_norm(spectral_radius(1.0)(KEY, (n, n)), steps)
    growing = _linear_state_norm(spectral_radius(1.1)(KEY, (n, n)), steps)
    # Scaled orthogonal: ‖W^t h‖ = ρ^t ‖h‖ exactly.
    np.testing.assert_allclose([stable, critical, growing], [0.9**steps, 1.0, 1.1**steps],
                               rtol=1e-3)


def _tanh_divergence(radius, n=128, steps=300):
    """Distance between two tanh-RNN trajectories started 1e-6 apart, zero input."""
    w = spectral_radius(radius, "normal")(jax.random.key(5), (n, n))
    h = jax.random.normal(jax.random.key(6), (n,))
    delta = 1e-6 * jax.random.normal(jax.random.key(7), (n,))

    def step(carry, _):
        a, b = carry
        return (jnp.tanh(w @ a), jnp.tanh(w @ b)), None

    (a, b), _ = jax.lax.scan(step, (h, h + delta), None, length=steps)
    return float(jnp.linalg.norm(a - b) / np.sqrt(n))


def test_tanh_rnn_is_chaotic_above_radius_one_and_stable_below():
    """Large recurrent weights give chaos: extreme sensitivity to perturbations."""
    assert _tanh_divergence(0.5) < 1e-12  # contracts: ‖Δ‖ ≤ ‖W‖^t·1e-6
    assert _tanh_divergence(3.0) > 1e-2  # a 1e-6 perturbation grows to O(1)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"radius": 0.0}, ValueError, "radius=0.0 must be > 0"),
        ({"radius": -1.0}, ValueError, "radius=-1.0 must be > 0"),
        ({"radius": 1.0, "base": "uniform"}, ValueError, "base='uniform' is not supported"),
        ({"radius": 1.0, "base": 3}, TypeError, "base=3"),
        ({"radius": 1.0, "num_squarings": 0}, ValueError, "num_squarings=0"),
    ],
)
def test_spectral_radius_errors(kwargs, error, match):
    with pytest.raises(error, match=match) as info:
        spectral_radius(**kwargs)
    assert "jaxinit.spectral_radius" in str(info.value)


def test_spectral_radius_call_errors():
    with pytest.raises(ValueError, match="not square"):
        spectral_radius(1.0)(KEY, (4, 8))
    with pytest.raises(TypeError, match="dtype=int32"):
        spectral_radius(1.0)(KEY, (4, 4), jnp.int32)
    assert spectral_radius(1.0)(KEY, (0, 0)).shape == (0, 0)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_lstm_example_runs_and_writes_a_plot(tmp_path):
    module = load_example("lstm_copy_task")
    out = tmp_path / "lstm.png"
    results = module.main(["--out", str(out), "--steps", "60", "--seq-len", "5", "--hidden", "8",
                           "--task", "copy"])
    assert out.stat().st_size > 0
    assert set(results) == set(module.MODELS) and all(np.isfinite(list(results.values())))


@pytest.mark.devices(8)
def test_out_sharding_of_the_recurrent_initializers():
    from jax.sharding import AxisType, NamedSharding, PartitionSpec

    mesh = jax.make_mesh((8,), ("d",), axis_types=(AxisType.Explicit,))
    sharding = NamedSharding(mesh, PartitionSpec(None, "d"))
    cases = [
        (gate_blocks(jax.nn.initializers.orthogonal(), 4), (16, 64)),
        (lstm_bias(), (2, 32)),
        (irnn(), (16, 16)),
        (spectral_radius(0.9), (16, 16)),
    ]
    for init, shape in cases:
        plain = jax.jit(init, static_argnums=1)(KEY, shape)
        sharded = init(KEY, shape, out_sharding=sharding)
        assert sharded.sharding.is_equivalent_to(sharding, 2)
        np.testing.assert_array_equal(sharded, plain)
    # The Gelfand estimate's reductions are partitioned too: equal up to float32 rounding.
    init = spectral_radius(1.1, "normal")
    plain = jax.jit(init, static_argnums=1)(KEY, (16, 16))
    sharded = init(KEY, (16, 16), out_sharding=sharding)
    assert sharded.sharding.is_equivalent_to(sharding, 2)
    np.testing.assert_allclose(sharded, plain, rtol=1e-6, atol=1e-7)
