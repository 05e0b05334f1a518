"""linen clients: Flax's namespace and jaxinit give bit-identical variables (eager), jaxinit's
jitted variables equal its eager ones, and the model trains from them."""

import pytest

from . import gpt2, lm1b_transformer, resnet, seq2seq_lstm, sst2_lstm
from .common import assert_client, linen_inits

pytestmark = pytest.mark.timeout(120)
CLIENTS = [lm1b_transformer, gpt2, seq2seq_lstm, sst2_lstm, resnet]


@pytest.mark.parametrize("client", CLIENTS, ids=lambda m: m.__name__.split(".")[-1])
def test_same_variables_and_trains(client):
    assert_client(linen_inits(client), getattr(client, "ORTHOGONAL", {}))
