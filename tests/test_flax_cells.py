"""Gate initializers inside Flax's own recurrent cells, read back from the real parameters.

Each cell is built the way Flax code builds it (``nn.RNN`` around a linen cell, the SST-2
classifier's ``nn.scan`` over an ``OptimizedLSTMCell``, nnx cells constructed directly), and the
check is on the parameters the cell actually holds, plus a behavioural check where a wrong gate
would show: zero kernels and a saturated gate make the cell keep its state exactly.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxinit import gate_bias, gate_blocks, lstm_bias, orthogonal
from jaxinit.testing import assert_orthogonal

pytestmark = pytest.mark.timeout(120)

KEY = jax.random.key(0)
ZERO_KERNELS = {"kernel_init": nn.initializers.zeros,
                "recurrent_kernel_init": nn.initializers.zeros}


class Seq2SeqEncoder(nn.Module):
    """The encoder of Flax's seq2seq example: an LSTM run over time by ``nn.RNN``."""

    hidden: int
    cell_type: type = nn.LSTMCell
    cell_kwargs: tuple = ()

    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(12, 5)(tokens)
        cell = self.cell_type(self.hidden, **dict(self.cell_kwargs), name="cell")
        carry, _ = nn.RNN(cell, return_carry=True)(x)
        return carry


class SST2Classifier(nn.Module):
    """The SST-2 example's pattern: ``nn.scan`` of an OptimizedLSTMCell over time, then Dense."""

    hidden: int
    bias_init: object = nn.initializers.zeros

    @nn.compact
    def __call__(self, x):
        cell = nn.scan(nn.OptimizedLSTMCell, variable_broadcast="params", in_axes=1, out_axes=1,
                       split_rngs={"params": False})(self.hidden, bias_init=self.bias_init,
                                                     name="lstm")
        carry = cell.initialize_carry(jax.random.key(0), x[:, 0].shape)
        (_, h), _ = cell(carry, x)
        return nn.Dense(2)(h)


def _biases(cell_params):
    return {name: np.asarray(p["bias"]) for name, p in cell_params.items() if "bias" in p}


@pytest.mark.parametrize("cell_type", [nn.LSTMCell, nn.OptimizedLSTMCell])
def test_lstm_bias_on_linen_cells_sets_the_forget_gate_alone(cell_type):
    h = 8  # a multiple of 4: the fused reading would silently give every gate [0, 0, 1, 1, 0...]
    model = Seq2SeqEncoder(h, cell_type, (("bias_init", lstm_bias(1.0)),))
    tokens = jnp.zeros((2, 6), jnp.int32)
    biases = _biases(model.init(KEY, tokens)["params"]["cell"])
    assert set(biases) == {"hi", "hf", "hg", "ho"}
    np.testing.assert_array_equal(biases["hf"], np.ones(h))
    for gate in ("hi", "hg", "ho"):
        np.testing.assert_array_equal(biases[gate], np.zeros(h))


@pytest.mark.parametrize("cell_type", [nn.LSTMCell, nn.OptimizedLSTMCell])
def test_linen_cell_with_a_saturated_forget_gate_keeps_its_memory(cell_type):
    # Forget gate at sigmoid(100) = 1, input gate at sigmoid(-100) = 0: c' = c exactly. With the
    # constants in the wrong gates the input or forget gate would be half open.
    h = 4
    init = gate_bias({"f": 100.0, "i": -100.0}, ("i", "f", "g", "o"))
    cell = cell_type(h, bias_init=init, **ZERO_KERNELS)
    c = jnp.arange(1.0, h + 1.0)[None]
    carry, x = (c, jnp.zeros((1, h))), jnp.ones((1, 3))
    (new_c, _), _ = cell.apply(cell.init(KEY, carry, x), carry, x)
    np.testing.assert_allclose(new_c, c, rtol=1e-6)


def test_lstm_bias_in_the_sst2_scan_over_time():
    h = 4
    model = SST2Classifier(h, lstm_bias(1.0))
    variables = model.init(KEY, jnp.ones((2, 7, 3)))
    biases = _biases(variables["params"]["lstm"])
    np.testing.assert_array_equal(biases["hf"], np.ones(h))
    np.testing.assert_array_equal(biases["hi"], np.zeros(h))

    # Outside a cell (a hand-written fused layer, even one named like a gate) the bias stays
    # fused: [i, f, g, o] blocks of h/4.
    class FusedGates(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(8, bias_init=lstm_bias(1.0), name="hf")(x)

    bias = FusedGates().init(KEY, jnp.ones((1, 3)))["params"]["hf"]["bias"]
    np.testing.assert_array_equal(bias, [0, 0, 1, 1, 0, 0, 0, 0])


def test_gate_bias_on_linen_gru_cell_keeps_the_state():
    """Update gate z at sigmoid(100) = 1 with zero kernels: h' = h. The candidate's recurrent
    bias hn (multiplied by the reset gate) has no counterpart in the fused layout: base."""
    h = 3
    init = gate_bias({"z": 100.0, "n": 0.5}, "nnx.GRUCell")
    cell = nn.GRUCell(h, bias_init=init, **ZERO_KERNELS)
    state, x = jnp.array([[0.5, -1.0, 2.0]]), jnp.ones((1, 2))
    variables = cell.init(KEY, state, x)
    biases = _biases(variables["params"])
    assert set(biases) == {"ir", "iz", "in", "hn"}
    np.testing.assert_array_equal(biases["iz"], np.full(h, 100.0))
    np.testing.assert_array_equal(biases["in"], np.full(h, 0.5))
    np.testing.assert_array_equal(biases["ir"], np.zeros(h))
    np.testing.assert_array_equal(biases["hn"], np.zeros(h))
    new_h, _ = cell.apply(variables, state, x)
    np.testing.assert_allclose(new_h, state, rtol=1e-6)


def test_gate_bias_as_the_forget_bias_of_a_linen_mgu_cell():
    h = 3
    cell = nn.MGUCell(h, forget_bias_init=gate_bias({"f": 2.0}, ("f", "n")))
    x = jnp.ones((1, 2))
    params = cell.init(KEY, jnp.zeros((1, h)), x)["params"]
    np.testing.assert_array_equal(params["if"]["bias"], np.full(h, 2.0))


def test_nnx_lstm_cell_refuses_a_gate_bias_and_points_to_set_forget_bias():
    # Its four Linear layers share one bias_init and nothing says which gate is being built.
    with pytest.raises(ValueError, match=r"nnx.LSTMCell builds one Linear per gate.*"
                                         r"jaxinit.set_forget_bias"):
        nnx.LSTMCell(3, 8, bias_init=lstm_bias(1.0), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="jaxinit.gate_bias: nnx.LSTMCell"):
        nnx.LSTMCell(3, 8, bias_init=gate_bias({"i": 1.0}), rngs=nnx.Rngs(0))


def test_fused_nnx_cells_use_their_own_gate_order():
    h = 4
    # An LSTM order on a GRU: 'f' is not one of its gates (and 3h = 12 would split into 4).
    with pytest.raises(ValueError, match=r"names gates \['f'\].*nnx.GRUCell.*\('r', 'z', 'n'\)"):
        nnx.GRUCell(2, h, bias_init=lstm_bias(), rngs=nnx.Rngs(0))
    # The cell's own order wins over a gate_order that disagrees with it.
    cell = nnx.GRUCell(2, h, bias_init=gate_bias({"z": 1.0}, ("z", "r", "n")), rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(cell.dense_i.bias[...], [0] * h + [1] * h + [0] * h)
    cell = nnx.OptimizedLSTMCell(2, h, bias_init=lstm_bias(1.0, "linen.ConvLSTMCell"),
                                 rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(cell.dense_h.bias[...], [0] * h + [1] * h + [0] * 2 * h)


def test_cells_without_gates_refuse_gate_initializers():
    with pytest.raises(ValueError, match="nnx.SimpleCell has no gates"):
        nnx.SimpleCell(2, 8, bias_init=lstm_bias(), rngs=nnx.Rngs(0))
    cell = nn.SimpleCell(8, bias_init=lstm_bias())
    with pytest.raises(ValueError, match="linen.SimpleCell has no gates"):
        cell.init(KEY, jnp.zeros((1, 8)), jnp.ones((1, 2)))
    with pytest.raises(ValueError, match="linen.SimpleCell has no gates"):
        nn.SimpleCell(8, recurrent_kernel_init=gate_blocks(orthogonal(), 4)).init(
            KEY, jnp.zeros((1, 8)), jnp.ones((1, 2)))


@pytest.mark.parametrize("init", [gate_blocks(orthogonal(), 4), orthogonal(num_blocks=4)],
                         ids=["gate_blocks", "num_blocks"])
def test_gate_blocks_in_per_gate_cells_makes_each_gate_kernel_orthogonal(init):
    # Each gate's (h, h) recurrent kernel is one gate block: cutting it into 4 column blocks of
    # (h, h/4) would leave the gate's kernel non-orthogonal.
    h = 8
    cell = nnx.LSTMCell(3, h, recurrent_kernel_init=init, rngs=nnx.Rngs(0))
    assert_orthogonal(np.stack([np.asarray(getattr(cell, g).kernel[...])
                                for g in ("hi", "hf", "hg", "ho")]), batch_axis=0)
    model = Seq2SeqEncoder(h, nn.OptimizedLSTMCell, (("recurrent_kernel_init", init),))
    params = model.init(KEY, jnp.zeros((2, 6), jnp.int32))["params"]["cell"]
    kernels = np.stack([np.asarray(params[g]["kernel"]) for g in ("hi", "hf", "hg", "ho")])
    assert_orthogonal(kernels, batch_axis=0)
    assert not np.allclose(kernels[0], kernels[1])


def test_gate_blocks_with_the_wrong_number_of_gates_for_the_cell():
    with pytest.raises(ValueError, match=r"num_gates=3, but nnx.OptimizedLSTMCell has 4 gates"):
        nnx.OptimizedLSTMCell(2, 6, recurrent_kernel_init=gate_blocks(orthogonal(), 3),
                              rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"nnx.GRUCell concatenates its gates along the last"):
        nnx.GRUCell(3, 3, recurrent_kernel_init=gate_blocks(orthogonal(), 3, axis=0),
                    rngs=nnx.Rngs(0))
    cell = nn.LSTMCell(4, kernel_init=gate_blocks(orthogonal(), 3))
    with pytest.raises(ValueError, match=r"num_gates=3, but linen.LSTMCell has 4 gates"):
        cell.init(KEY, (jnp.zeros((1, 4)),) * 2, jnp.ones((1, 6)))
    cell = nn.GRUCell(6, recurrent_kernel_init=orthogonal(num_blocks=2))
    with pytest.raises(ValueError, match=r"orthogonal: num_blocks=2, but linen.GRUCell has 3"):
        cell.init(KEY, jnp.zeros((1, 6)), jnp.ones((1, 6)))
    with pytest.raises(ValueError, match=r"orthogonal: .*nnx.SimpleCell has no gates"):
        nnx.SimpleCell(2, 8, recurrent_kernel_init=orthogonal(num_blocks=4), rngs=nnx.Rngs(0))

