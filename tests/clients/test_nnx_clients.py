"""nnx clients: Flax's namespace and jaxinit give bit-identical parameters (eager), jaxinit's
jitted parameters equal its eager ones, and the model trains from them."""

import pytest

from . import gemma_decoder, nnx_cnn
from .common import assert_client, nnx_inits

pytestmark = pytest.mark.timeout(120)
CLIENTS = [nnx_cnn, gemma_decoder]


@pytest.mark.parametrize("client", CLIENTS, ids=lambda m: m.__name__.split(".")[-1])
def test_same_parameters_and_trains(client):
    assert_client(nnx_inits(client), getattr(client, "ORTHOGONAL", {}))
