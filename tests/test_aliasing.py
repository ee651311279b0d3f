"""Outputs 1-128 bytes past the input modulo 4096 take the elementwise passes' loads-ahead loop
(4K aliasing, include/twopass/common.h); every algorithm, dtype and level gives the same bits there
as with the output elsewhere, over lengths around the kernels' tiles. (Guard pages behind x with y
64 bytes past it: tests/test_guard_pages.py.)"""
import numpy as np
import pytest

import twopass
from twopass import _dispatch
from conftest import out_past

# bytes; only multiples of the itemsize reach the kernels (a misaligned out= goes through a temporary)
DISTANCES = (2, 4, 8, 16, 64, 120, 124, 128, 132, 136, 2048)
LENGTHS = (1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 127, 128, 129, 191, 192, 193, 255, 256, 257, 1000, 4099, 70001)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_outputs_just_past_the_input_give_the_same_bits(level, algorithm, dtype):
    rng = np.random.default_rng(3)
    for n in LENGTHS:
        x = rng.uniform(-30, 30, (2, n)).astype(dtype)
        expected = twopass.softmax(x, axis=-1, algorithm=algorithm, out=out_past(x, 0))
        log_expected = twopass.log_softmax(x, axis=-1, algorithm=algorithm, out=out_past(x, 0))
        for distance in (d for d in DISTANCES if d % x.itemsize == 0):
            y = twopass.softmax(x, axis=-1, algorithm=algorithm, out=out_past(x, distance))
            assert np.array_equal(y, expected), (n, distance)
            z = twopass.log_softmax(x, axis=-1, algorithm=algorithm, out=out_past(x, distance))
            assert np.array_equal(z, log_expected), (n, distance)


def test_streamed_outputs_just_past_the_input(level):
    """An output large enough for the non-temporal stores (twopass._dispatch.STREAMING_FROM_BYTES)."""
    n = _dispatch.STREAMING_FROM_BYTES // 8 + 1001
    x = np.random.default_rng(4).uniform(-30, 30, (2, n)).astype(np.float32)
    for algorithm in twopass.ALGORITHMS:
        expected = twopass.softmax(x, axis=-1, algorithm=algorithm, out=out_past(x, 0))
        for distance in (16, 64, 2048):
            assert np.array_equal(twopass.softmax(x, axis=-1, algorithm=algorithm, out=out_past(x, distance)),
                                  expected), (algorithm, distance)
