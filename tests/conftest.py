"""Shared fixtures: every test that takes `level` runs once per ISA level this machine has (and
the NumPy fallback), forced with twopass.use_isa."""
from fractions import Fraction

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


def flushed_by_ftz(x, scale):
    """Where MXCSR.FTZ makes x * scale 0: the exact product (rational arithmetic) is nonzero and,
    rounded to the dtype's precision p with an unbounded exponent, below the smallest normal, i.e.
    below tiny (1 - 2^-(p+1)) in magnitude (x86 detects tininess after rounding)."""
    info = np.finfo(x.dtype)
    limit = Fraction(float(info.tiny)) * (1 - Fraction(1, 2 ** (info.nmant + 2)))
    return np.array([bool(np.isfinite(v)) and 0 < abs(Fraction(float(v)) * Fraction(float(scale))) < limit for v in x])


def check_vscale_flushes_like_ftz(run, dtype, lengths, name=""):
    """A vscale kernel, run(x, y, scale) under MXCSR.FTZ (as the drivers and run_kernel run it): x * scale
    bit for bit on both signs, NaN, inf and 0 passing through, at every length, except that products
    below the smallest normal are zeros of their sign instead of subnormals (those cost the pass twice
    its time). Tininess is detected after rounding to the format's precision p with an unbounded
    exponent, so a product in [tiny (1 - 2^-(p+1)), tiny) rounds up to tiny and stays; one below is 0."""
    tiny, scale = np.finfo(dtype).tiny, dtype(0.3)
    floor = dtype(tiny / np.float64(scale))  # x near here makes products near tiny
    edge = [floor, np.nextafter(floor, dtype(0)), np.nextafter(floor, dtype(1)), tiny, 4 * tiny, 1.0, 7e3]
    base = np.array(edge + [-v for v in edge] + [np.nan, np.inf, -np.inf, 0.0], dtype)
    as_bits = np.uint32 if dtype == np.float32 else np.uint64
    for n in lengths:
        x = np.resize(base, n)
        y = np.full(n, 5.0, dtype)
        run(x, y, scale)
        with np.errstate(under="ignore", invalid="ignore"):
            product = x * scale
        expected = np.where(flushed_by_ftz(x, scale), np.copysign(dtype(0), product), product)
        np.testing.assert_array_equal(y.view(as_bits), expected.view(as_bits), err_msg=f"{name} n={n}")
        assert not np.any((y != 0) & (np.abs(y) < tiny))
    # the rounding window: x0 * s = tiny (1 - 2^-(2p-2)) lies in it; the next x below gives about
    # tiny (1 - 2^-p), below it
    p = np.finfo(dtype).nmant + 1
    x = np.array([2 * tiny * (1 - 2.0**-(p - 1))] * 2, dtype)
    x[1] = np.nextafter(x[1], dtype(0))
    window_scale = dtype(0.5 + 2.0**-p)
    y = np.empty(2, dtype)
    run(x, y, window_scale)
    assert list(flushed_by_ftz(x, window_scale)) == [False, True]
    assert y[0] == tiny and y[1] == 0, (name, y)


def out_past(x, distance):
    """An output array of x's shape and dtype whose address lies `distance` bytes past x's modulo
    4096: at 1-128 bytes the elementwise passes load x an iteration ahead of their stores (4K
    aliasing, include/twopass/common.h), elsewhere they run their plain loop; the bits must agree."""
    buffer = np.empty(x.nbytes + 3 * 4096, np.uint8)
    start = (x.ctypes.data + distance - buffer.ctypes.data) % 4096
    y = buffer[start:start + x.nbytes].view(x.dtype).reshape(x.shape)
    assert (y.ctypes.data - x.ctypes.data) % 4096 == distance % 4096
    return y
