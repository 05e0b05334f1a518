"""Two processes on one machine over loopback initialize one sharded parameter tree.

The worker is ``examples/sharded_init.py``'s: each process owns 4 of the 8
devices of a global 2 x 4 mesh, computes only its addressable shards (the
worker exits non-zero otherwise) and gathers them over gloo CPU collectives;
the gathered values must equal the single-process, unsharded ones bit for bit.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from example_loader import load_example


@pytest.mark.devices(8)
def test_one_process_sharded_tree_equals_the_reference():
    # What each worker computes, on this process's 8 devices: the smoke test of the slow
    # two-process run (its layout, shardings and reference values).
    example = load_example("sharded_init")
    mesh = jax.make_mesh((2, 4), example.MESH_AXES)
    params = example.sharded_initializer(example.SMALL, mesh)(jax.random.key(0))
    expected = example.reference_params()
    for name, value in params.items():
        assert value.sharding == example.shardings(example.SMALL, mesh)[name], name
        np.testing.assert_array_equal(np.asarray(value), expected[name], err_msg=name)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_processes_over_loopback_agree_with_single_process(tmp_path):
    example = load_example("sharded_init")
    files = example.run_two_processes(str(tmp_path), timeout=200)
    expected = example.reference_params()
    assert set(expected) >= {"embed", "qkv", "mlp_bias", "eager_arg"}
    for process_id, path in enumerate(files):
        gathered = np.load(path)
        for name, value in expected.items():
            np.testing.assert_array_equal(gathered[name], value,
                                          err_msg=f"{name} gathered in process {process_id}")
