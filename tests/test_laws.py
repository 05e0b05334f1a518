"""The variance law of every random scheme, sized to catch a 1% variance error.

Each row draws N = 2^21 entries and checks the sample variance (and mean)
within 5 standard errors of the exact value. The standard error of the
sample variance is σ²·sqrt(2/(N-1) + κ/N) ≤ σ²·0.098%, so:

* a correct sampler fails with probability 5.7e-7 per row (two-sided 5 s.e.);
* a variance 1% off is ≥ 10.2 s.e. away (more for κ < 0), so it passes with
  probability P(Z > 5.2) ≈ 1e-7: the power against a 1% error is > 0.9999999.

The mutation test runs every row again with the variance scaled by 1.01 and
requires the check to fail: a test that cannot see a 1% error is caught here.
The shape of each law is checked by KS tests in the scheme's own test file.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import numpy as np
import pytest
import scipy.stats

import jaxinit
from jaxinit.testing import UNIFORM_EXCESS_KURTOSIS, assert_variance
from jaxinit.variance_scaling import TRUNCATED_NORMAL_STD

KEY = jax.random.key(101)
N_DENSE = (1024, 2048)  # 2^21 entries
N_CONV = (3, 3, 256, 1024)  # 2.36e6 entries: fan_in 2304, fan_out 9216
TRUNC_KURTOSIS = float(scipy.stats.truncnorm.stats(-2, 2, moments="k"))


class Law(NamedTuple):
    init: jaxinit.Initializer
    shape: tuple[int, ...]
    variance: float
    kurtosis: float = 0.0
    mean: float = 0.0


def _truncated(lower: float, upper: float, stddev: float) -> tuple[float, float, float]:
    law = scipy.stats.truncnorm(lower, upper, scale=stddev)
    return float(law.var()), float(law.stats(moments="k")), float(law.mean())


FAN_IN, FAN_OUT = 2304, 9216
LAWS: dict[str, Law] = {
    "normal": Law(jaxinit.normal(0.05), N_DENSE, 0.05**2),
    "normal_mean": Law(jaxinit.normal(0.3, mean=-1.0), N_DENSE, 0.09, mean=-1.0),
    "rbm_normal": Law(jaxinit.rbm_normal(), N_DENSE, 0.01**2),
    "uniform": Law(jaxinit.uniform(0.4), N_DENSE, 0.16 / 12, UNIFORM_EXCESS_KURTOSIS, 0.2),
    "uniform_range": Law(jaxinit.uniform_range(-1.0, 3.0), N_DENSE, 16 / 12,
                         UNIFORM_EXCESS_KURTOSIS, 1.0),
    "symmetric_uniform": Law(jaxinit.symmetric_uniform(0.2), N_DENSE, 0.04 / 3,
                             UNIFORM_EXCESS_KURTOSIS),
    "truncated_normal": Law(jaxinit.truncated_normal(0.5), N_DENSE, *_truncated(-2, 2, 0.5)),
    "truncated_normal_tail": Law(jaxinit.truncated_normal(1.0, lower=4.0, upper=6.0), N_DENSE,
                                 *_truncated(4.0, 6.0, 1.0)),
    "glorot_uniform": Law(jaxinit.glorot_uniform(), N_CONV, 2 / (FAN_IN + FAN_OUT),
                          UNIFORM_EXCESS_KURTOSIS),
    "glorot_uniform_gain4": Law(jaxinit.glorot_uniform(gain=4.0), N_CONV,
                                16 * 2 / (FAN_IN + FAN_OUT), UNIFORM_EXCESS_KURTOSIS),
    "glorot_normal": Law(jaxinit.glorot_normal(), N_CONV, 2 / (FAN_IN + FAN_OUT),
                         TRUNC_KURTOSIS),
    "he_normal": Law(jaxinit.he_normal(), N_CONV, 2 / FAN_IN, TRUNC_KURTOSIS),
    "he_uniform_leaky": Law(jaxinit.he_uniform(negative_slope=0.2), N_CONV,
                            2 / (1.04 * FAN_IN), UNIFORM_EXCESS_KURTOSIS),
    "lecun_normal": Law(jaxinit.lecun_normal(), N_CONV, 1 / FAN_IN, TRUNC_KURTOSIS),
    "lecun_uniform": Law(jaxinit.lecun_uniform(), N_CONV, 1 / FAN_IN, UNIFORM_EXCESS_KURTOSIS),
    "variance_scaling_geo": Law(jaxinit.variance_scaling(3.0, "fan_geo_avg", "normal"), N_CONV,
                                3 / math.sqrt(FAN_IN * FAN_OUT)),
    "variance_scaling_fan_out": Law(jaxinit.variance_scaling(0.5, "fan_out", "truncated_normal"),
                                    N_CONV, 0.5 / FAN_OUT, TRUNC_KURTOSIS),
    "residual_projection": Law(jaxinit.residual_projection(8, jaxinit.normal(0.02)), N_DENSE,
                               0.02**2 / 16),
    "scaled": Law(jaxinit.scaled(jaxinit.lecun_normal(), -3.0), N_CONV, 9 / FAN_IN,
                  TRUNC_KURTOSIS),
}

# The std correction of JAX's truncated normal is what makes these exact; keep it honest.
assert abs(TRUNCATED_NORMAL_STD**2 - _truncated(-2, 2, 1.0)[0]) < 1e-12


def _check(law: Law, init: Callable[..., jax.Array], name: str) -> None:
    w = np.asarray(init(KEY, law.shape), np.float64)
    assert_variance(w, law.variance, excess_kurtosis=law.kurtosis, mean=law.mean, name=name)


@pytest.mark.parametrize("name", sorted(LAWS))
def test_variance_law(name):
    _check(LAWS[name], LAWS[name].init, name)


@pytest.mark.parametrize("name", sorted(LAWS))
def test_the_law_test_catches_a_one_percent_variance_error(name):
    law = LAWS[name]
    mean = law.mean
    # Scale the deviations from the mean by sqrt(1.01): the variance is 1% high, the mean kept.
    def mutated(key, shape):
        return (law.init(key, shape) - mean) * math.sqrt(1.01) + mean

    with pytest.raises(AssertionError, match="expected variance"):
        _check(law, mutated, name)
