"""The blocked sums (TWOPASS_SUM_BLOCK elements per float32 block sum, blocks added in double) keep
long rows accurate; one float32 accumulation over the whole row (twopass.kernels.set_sum_block, a
benchmark switch) does not. Issue 4: N(0, 10) rows sum to 1 within 1e-6, max relative error 2e-6."""
import numpy as np
import pytest

import twopass
from twopass import kernels

from conftest import max_relative_error, reference_softmax

KERNEL_LEVELS = twopass.available_levels()[1:]


def test_sum_block_switch_resets():
    default = kernels.sum_block()
    assert default == 1024
    try:
        kernels.set_sum_block(2**40)
        assert kernels.sum_block() == 2**40
    finally:
        kernels.set_sum_block(0)
    assert kernels.sum_block() == default


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
@pytest.mark.parametrize("algorithm", twopass.ALGORITHMS[1:])  # every one but auto
def test_blocked_sums_keep_long_rows_accurate(level_name, algorithm):
    x = np.random.default_rng(0).normal(0.0, 10.0, 4_000_000).astype(np.float32)
    ref = reference_softmax(x)
    with twopass.use_isa(level_name):
        blocked = twopass.softmax(x, algorithm=algorithm, threads=1)
        try:
            kernels.set_sum_block(2**40)
            unblocked = twopass.softmax(x, algorithm=algorithm, threads=1)
        finally:
            kernels.set_sum_block(0)
    blocked_sum_error = abs(blocked.sum(dtype=np.float64) - 1.0)
    assert blocked_sum_error <= 1e-6 and max_relative_error(blocked, ref) <= 2e-6
    # the switch really changes the summation: one float32 sum over 4e6 terms is off by far more
    assert abs(unblocked.sum(dtype=np.float64) - 1.0) > 4 * max(blocked_sum_error, 1e-8)
