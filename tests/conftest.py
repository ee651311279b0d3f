"""Shared fixtures: every test that takes `level` runs once per ISA level this machine has (and
the NumPy fallback), forced with twopass.use_isa."""
import numpy as np
import pytest

import twopass

LEVELS = list(twopass.available_levels())
ALGORITHMS = list(twopass.ALGORITHMS)
TINY32 = float(np.finfo(np.float32).tiny)
# The kernels flush results below 2^-126 times their scale to 0: outputs below FLUSH32 may be 0.
FLUSH32 = 2.0**-125


@pytest.fixture(params=LEVELS)
def level(request):
    with twopass.use_isa(request.param):
        yield request.param


@pytest.fixture(params=ALGORITHMS)
def algorithm(request):
    return request.param


def reference_softmax(x, axis=-1):
    """softmax in float64 (longdouble sums would not change the float32 comparison)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)


def max_relative_error(y, ref, floor=TINY32, flush=FLUSH32):
    """max |y - ref| / max(ref, floor): relative error, measured against the smallest normal float
    for subnormal references; an output flushed to 0 where ref < flush counts as exact."""
    y = np.asarray(y, dtype=np.float64)
    err = np.abs(y - ref) / np.maximum(np.abs(ref), floor)
    err[(y == 0) & (np.abs(ref) < flush)] = 0.0
    return float(np.max(err, initial=0.0))
