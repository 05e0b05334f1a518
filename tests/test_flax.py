"""Flax integration: jaxinit initializers as kernel_init/bias_init in linen and nnx."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from flax import linen as nn
from flax import nnx

import jaxinit
from jaxinit.testing import assert_variance
from jaxinit.variance_scaling import TRUNCATED_NORMAL_STD

KEY = jax.random.key(0)
# Excess kurtosis of N(0,1) truncated to (-2, 2), for the variance test's standard error.
# Each variance check allows 5 standard errors: false failure ≈ 5.7e-7 per check.
TRUNC_KURTOSIS = float(scipy.stats.truncnorm.stats(-2, 2, moments="k"))


def test_linen_dense_and_dense_general():
    dense = nn.Dense(256, kernel_init=jaxinit.he_normal(), bias_init=jaxinit.constant(0.01))
    params = dense.init(KEY, jnp.ones((1, 512)))["params"]
    assert_variance(params["kernel"], 2 / 512, excess_kurtosis=TRUNC_KURTOSIS)
    assert bool(jnp.all(params["bias"] == 0.01))

    # DenseGeneral flattens its kernel to (prod(in), prod(out)) before calling kernel_init.
    general = nn.DenseGeneral((4, 32), axis=(-2, -1), kernel_init=jaxinit.lecun_normal())
    params = general.init(KEY, jnp.ones((1, 8, 64)))["params"]
    assert params["kernel"].shape == (8, 64, 4, 32)
    assert_variance(params["kernel"], 1 / (8 * 64), excess_kurtosis=TRUNC_KURTOSIS)


def test_linen_conv_he_normal_std():
    conv = nn.Conv(64, (3, 3), kernel_init=jaxinit.he_normal(), bias_init=jaxinit.zeros)
    params = conv.init(KEY, jnp.ones((1, 16, 16, 48)))["params"]
    # He et al. 2015 for a conv: std sqrt(2 / (kh * kw * c_in)).
    assert_variance(params["kernel"], 2 / (3 * 3 * 48), excess_kurtosis=TRUNC_KURTOSIS)
    assert float(jnp.abs(params["kernel"]).max()) < 2 * math.sqrt(2 / 432) / TRUNCATED_NORMAL_STD


def test_linen_embed():
    embed = nn.Embed(1000, 64, embedding_init=jaxinit.normal(0.02))
    params = embed.init(KEY, jnp.zeros((1, 3), jnp.int32))["params"]
    assert_variance(params["embedding"], 0.02**2)


def test_nnx_linear_and_conv():
    rngs = nnx.Rngs(0)
    linear = nnx.Linear(300, 200, kernel_init=jaxinit.glorot_uniform(), rngs=rngs)
    assert_variance(linear.kernel[...], 2 / 500, excess_kurtosis=-1.2)
    conv = nnx.Conv(32, 64, (5, 5), kernel_init=jaxinit.he_uniform(),
                    bias_init=jaxinit.constant(0.01), rngs=rngs)
    assert_variance(conv.kernel[...], 2 / (25 * 32), excess_kurtosis=-1.2)
    assert bool(jnp.all(conv.bias[...] == 0.01))


class _MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        for _ in range(3):
            x = nn.relu(nn.Dense(128, kernel_init=jaxinit.he_normal())(x))
        return nn.Dense(10, kernel_init=jaxinit.zeros)(x)


def test_whole_model_inits_under_jit_and_matches_eager():
    x = jnp.ones((2, 64))
    jitted = jax.jit(_MLP().init)(KEY, x)
    eager = _MLP().init(KEY, x)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), jitted, eager))
    assert bool(jnp.all(jitted["params"]["Dense_3"]["kernel"] == 0))


def test_nnx_model_under_jit_has_the_eager_values():
    def make():
        return nnx.Linear(16, 8, kernel_init=jaxinit.lecun_normal(),
                          bias_init=jaxinit.normal(0.5), rngs=nnx.Rngs(1))

    jitted, eager = nnx.jit(make)(), make()
    np.testing.assert_array_equal(jitted.kernel[...], eager.kernel[...])
    np.testing.assert_array_equal(jitted.bias[...], eager.bias[...])
    assert float(jnp.std(eager.kernel[...])) > 0.1  # a real draw, not zeros


def test_bfloat16_params():
    dense = nn.Dense(64, kernel_init=jaxinit.he_normal(), param_dtype=jnp.bfloat16)
    kernel = dense.init(KEY, jnp.ones((1, 256)))["params"]["kernel"]
    assert kernel.dtype == jnp.bfloat16
    assert_variance(kernel, 2 / 256, excess_kurtosis=TRUNC_KURTOSIS)
