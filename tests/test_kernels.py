"""Each compiled kernel variant of each level this CPU has, alone, over the lengths around its tile
(1 .. 2 * tile + 1 and a few multiples), against NumPy in float64, with canaries around the arrays."""
import math

import numpy as np
import pytest

import twopass
from twopass import _dispatch

LOG2E = 1.4426950408889634
CANARY = 8  # floats of sentinel before and after each array
SENTINEL = np.float32(-7.77e33)

VARIANTS = [v for v in _dispatch._kernels.registry()
            if v["level"] in twopass.available_levels() and v["op"] in _dispatch._kernels.ROW_OPS]


def lengths(unroll):
    return sorted(set(range(1, 2 * unroll + 2)) | {3 * unroll, 5 * unroll - 1, 4096, 4096 + 17})


def guarded(values):
    """values inside a buffer with SENTINEL floats on both sides; returns (buffer, view)."""
    buffer = np.full(len(values) + 2 * CANARY, SENTINEL, np.float32)
    buffer[CANARY:-CANARY] = values
    return buffer, buffer[CANARY:-CANARY]


def assert_canaries(buffer):
    assert np.all(buffer[:CANARY] == SENTINEL) and np.all(buffer[-CANARY:] == SENTINEL)


def exp_shift(m):
    """The driver's split of the max (src/softmax.c): shift 0, exponent round(m * log2 e)."""
    return 0.0, float(np.rint(np.float32(m) * np.float32(LOG2E)))


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v["name"])
def test_kernel_variant(variant):
    run = _dispatch._kernels.run_kernel
    name, op = variant["name"], variant["op"]
    rng = np.random.default_rng(len(name))
    for n in lengths(variant["unroll"]):
        xbuf, x = guarded(rng.uniform(-100, 100, n).astype(np.float32))
        ybuf, y = guarded(np.zeros(n, np.float32))
        x64 = x.astype(np.float64)
        m = float(x.max())
        shift, exponent = exp_shift(m)
        e = np.exp(x64 - shift) * 2.0**-exponent  # exp(x - shift) * 2^-exponent
        if op == "rmax":
            assert run(name, x, y) == m
        elif op == "raddextexp":
            mantissa, exp2 = run(name, x, y)
            total = math.fsum(np.exp(x64 - m)) * math.exp(m)
            assert abs(mantissa * 2.0**exp2 - total) <= 1e-6 * total
        elif op == "vscaleextexp":
            scale, e2 = 0.75, exponent
            run(name, x, y, scale, e2)
            ref = np.exp(x64) * scale * 2.0**-e2
            assert np.all(np.abs(y - ref) <= 1e-6 * ref + 2.0**-125)
        elif op == "raddexpminusmax":
            assert abs(run(name, x, y, shift, exponent) - e.sum()) <= 1e-6 * e.sum()
        elif op == "raddstoreexpminusmax":
            assert abs(run(name, x, y, shift, exponent) - e.sum()) <= 1e-6 * e.sum()
            assert np.all(np.abs(y - e) <= 1e-6 * e + 2.0**-125)
        elif op == "vscaleexpminusmax":
            run(name, x, y, shift, exponent, 0.5)
            assert np.all(np.abs(y - 0.5 * e) <= 1e-6 * 0.5 * e + 2.0**-125)
        elif op == "vscale":
            run(name, x, y, 0.25)
            np.testing.assert_array_equal(y, x * np.float32(0.25))
        elif op == "vsubc":
            run(name, x, y, 1.5, 2.0**-20)
            np.testing.assert_array_equal(y, (x - np.float32(1.5)) - np.float32(2.0**-20))
        elif op == "raddonline":
            max_, sum_ = run(name, x, y)
            assert max_ == m
            expected = math.fsum(np.exp(x64 - m))
            assert abs(sum_ - expected) <= 1e-6 * expected
        else:
            raise AssertionError(f"untested op {op}")
        assert_canaries(xbuf)
        assert_canaries(ybuf)


def test_every_op_of_every_level_is_tested():
    ops = set(_dispatch._kernels.ROW_OPS)  # the *_columns kernels: test_softmax.py's columns tests
    for level in twopass.available_levels()[1:]:
        assert {v["op"] for v in VARIANTS if v["level"] == level} == ops


@pytest.mark.parametrize("level", twopass.available_levels()[1:])
@pytest.mark.parametrize("algorithm", [0, 1, 2, 3])
def test_softmax_rows_stay_inside_their_arrays(level, algorithm):
    """Every tail length on every kernel level: nothing before or after x or out is written."""
    kernels = _dispatch._kernels
    rng = np.random.default_rng(algorithm)
    for n in range(1, 70):
        rows = 3
        xbuf, x = guarded(rng.uniform(-50, 50, rows * n).astype(np.float32))
        ybuf, y = guarded(np.zeros(rows * n, np.float32))
        kernels.softmax_f32_rows(x.reshape(rows, n), y.reshape(rows, n), algorithm,
                                 twopass.LEVELS.index(level))
        assert_canaries(xbuf)
        assert_canaries(ybuf)
        np.testing.assert_allclose(y.reshape(rows, n).sum(axis=1), 1.0, rtol=1e-5)


def float32_sample(lo, hi, step):
    """Every `step`-th float32 between lo and hi (by bit pattern), both signs as needed."""
    lo32, hi32 = np.float32(lo), np.float32(hi)
    parts = []
    if lo32 < 0:
        neg = np.arange(np.float32(0).view(np.int32), (-lo32).view(np.int32), step, dtype=np.int32)
        parts.append(-neg.view(np.float32))
    if hi32 > 0:
        pos = np.arange(0, hi32.view(np.int32), step, dtype=np.int32)
        parts.append(pos.view(np.float32))
    return np.concatenate(parts)


@pytest.mark.parametrize("level", twopass.available_levels()[1:])
@pytest.mark.parametrize("op", ["vscaleextexp", "vscaleexpminusmax"])
def test_exp_is_within_2_ulp(level, op):
    """exp through the two-pass (extended exponent) and the three-pass paths, on a dense sample of
    the float32 domain where exp is normal: every 257th float32 (8e6 inputs) in [-87.3, 88.7], in slices of width 16
    scaled by 2^-E with E = round(max * log2 e), as the softmax drivers call them."""
    name = _dispatch._kernels.kernel_names(twopass.LEVELS.index(level))[op]
    x_all = float32_sample(-87.3, 88.7, 257)
    worst = (0.0, None)
    for lo in np.arange(-87.3, 88.7, 16.0):
        x = x_all[(x_all >= lo) & (x_all < lo + 16.0)]
        exponent = float(np.rint(x.max() * np.float32(LOG2E)))
        y = np.empty_like(x)
        if op == "vscaleextexp":
            _dispatch._kernels.run_kernel(name, x, y, 1.0, exponent)        # exp(x) * 1 * 2^-E
        else:
            _dispatch._kernels.run_kernel(name, x, y, 0.0, exponent, 1.0)   # exp(x - 0) * 2^-E * 1
        ref = np.exp(x.astype(np.float64)) * 2.0**-exponent
        err = np.abs(y - ref) / np.spacing(ref.astype(np.float32)).astype(np.float64)
        if err.max() > worst[0]:
            worst = (float(err.max()), float(x[err.argmax()]))
    assert worst[0] <= 2.0, worst
