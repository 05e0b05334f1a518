"""Presets: the RBM small Gaussian and the ReLU bias 0.01."""

import jax
import numpy as np
import pytest

from jaxinit.presets import rbm_normal, relu_bias
from jaxinit.testing import assert_ks, assert_std


@pytest.mark.parametrize("stddev", [0.01, 0.1])
def test_rbm_normal(stddev):
    init = rbm_normal() if stddev == 0.01 else rbm_normal(stddev)
    w = init(jax.random.key(0), (784, 500))
    # 392000 samples; 5 s.e. of the variance: false failure ≈ 6e-7; KS false failure 1e-4.
    assert_std(w, stddev, mean=0.0)
    assert_ks(w, "norm", (0.0, stddev))


def test_relu_bias():
    bias = relu_bias()(jax.random.key(0), (4,))
    np.testing.assert_array_equal(bias, np.full(4, 0.01, np.float32))
    np.testing.assert_array_equal(relu_bias(0.0)(jax.random.key(0), (2,)), [0.0, 0.0])


def test_errors():
    with pytest.raises(ValueError, match="jaxinit.rbm_normal: stddev=0"):
        rbm_normal(0)
    with pytest.raises(ValueError, match="jaxinit.relu_bias: value=inf must be finite"):
        relu_bias(float("inf"))
