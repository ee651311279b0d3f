"""Each compiled kernel variant of each level this CPU has, alone, over the lengths around its tile
(1 .. 2 * tile + 1 and a few multiples), against NumPy in float64 (float32 kernels) or longdouble
(float64 kernels), with canaries around the arrays."""
import math

import numpy as np
import pytest

import twopass
from twopass import _dispatch

from conftest import check_vscale_flushes_like_ftz

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
            ref = np.minimum(np.exp(x64) * scale * 2.0**-e2, 1.0)  # softmax's bound: at most 1
            assert np.all(np.abs(y - ref) <= 1e-6 * ref + 2.0**-125)
        elif op == "raddexpminusmax":
            assert abs(run(name, x, y, shift, exponent) - e.sum()) <= 1e-6 * e.sum()
        elif op == "raddstoreexpminusmax":
            assert abs(run(name, x, y, shift, exponent) - e.sum()) <= 1e-6 * e.sum()
            assert np.all(np.abs(y - e) <= 1e-6 * e + 2.0**-125)
        elif op == "vscaleexpminusmax":
            run(name, x, y, shift, exponent, 0.5)
            ref = np.minimum(0.5 * e, 1.0)
            assert np.all(np.abs(y - ref) <= 1e-6 * ref + 2.0**-125)
        elif op == "vscale":
            run(name, x, y, 0.25)
            np.testing.assert_array_equal(y, x * np.float32(0.25))
        elif op == "vsubc":
            run(name, x, y, 90.0, 2.0**-20)  # log_softmax's bound, at most 0: the x above 90 clamp
            np.testing.assert_array_equal(y, np.minimum((x - np.float32(90.0)) - np.float32(2.0**-20), 0))
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


RMAX_VARIANTS = [dict(v, dtype=dtype) for dtype in ("float32", "float64", "float16")
                 for v in _dispatch._kernels.registry(dtype)
                 if v["op"] == "rmax" and v["level"] in twopass.available_levels()]


@pytest.mark.parametrize("variant", RMAX_VARIANTS, ids=lambda v: v["name"])
def test_rmax_is_nan_if_any_element_is(variant):
    """As np.max: one NaN anywhere (any accumulator, vector, lane or the tail; before or after the
    max, beside +inf or -inf) makes the max NaN. A max instruction returns one operand of a pair
    holding a NaN, so a kernel that only takes maxima keeps or drops a NaN by where it lies."""
    run, dtype = _dispatch._kernels.run_kernel, np.dtype(variant["dtype"])
    rng = np.random.default_rng(1)
    y = np.zeros(4 * variant["unroll"], dtype)
    as_arg = (lambda a: a.view(np.uint16)) if dtype == np.float16 else (lambda a: a)
    for n in range(1, 2 * variant["unroll"] + 2):
        for fill in ("numbers", "+inf", "-inf"):
            x = rng.uniform(-100, 100, n).astype(dtype)
            if fill != "numbers":
                x[:] = float(fill)
            for i in range(n):
                x_nan = x.copy()
                x_nan[i] = np.nan
                got = run(variant["name"], as_arg(x_nan), as_arg(y[:n]))
                assert np.isnan(got), f"n={n}, fill {fill}, NaN at {i}: max {got}"
            assert run(variant["name"], as_arg(x), as_arg(y[:n])) == x.max()


STORE_VARIANTS = [dict(v, dtype=dtype) for dtype in ("float32", "float64", "float16")
                  for v in _dispatch._kernels.registry(dtype)
                  if v["op"] == "raddstoreexpminusmax" and v["level"] in twopass.available_levels()]


@pytest.mark.parametrize("variant", STORE_VARIANTS, ids=lambda v: v["name"])
def test_raddstoreexpminusmax_finds_the_max_on_the_way(variant):
    """With its max output (blocked reload's pass 1): max x as np.max, over every tail length, where
    the masked lanes past the end (read as 0) must not count, on all-negative rows, -inf alone, and
    with the max in any position; the sum and the stored exps the same bits as without. A NaN
    anywhere makes the sum NaN (the max may miss it: kernels.h)."""
    run, dtype = _dispatch._kernels.run_kernel, np.dtype(variant["dtype"])
    stored_dtype = np.float64 if dtype == np.float64 else np.float32
    rng = np.random.default_rng(3)

    def call(x, exponent, track_max):
        y, stored = np.zeros_like(x), np.zeros(x.shape, np.float32)
        xs, ys = (x.view(np.uint16), y.view(np.uint16)) if dtype == np.float16 else (x, y)
        extra = dict(stored=stored) if dtype == np.float16 else {}
        result = run(variant["name"], xs, ys, 0.0, exponent, track_max=track_max, **extra)
        return result, stored if dtype == np.float16 else y

    for n in range(1, 2 * variant["unroll"] + 2):
        for low, high in ((-100, 100), (-90, -10)):  # all negative: a 0 from a masked lane would win
            x = rng.uniform(low, high, n).astype(dtype)
            x[rng.integers(n)] = high  # the max anywhere: any vector, accumulator, lane or the tail
            exponent = float(np.rint(float(x.max()) * LOG2E))
            (total, top), w = call(x, exponent, True)
            plain, w_plain = call(x, exponent, False)
            assert top == float(x.max()), f"n={n}: {top} != {x.max()}"
            assert_same_bits(np.array([total], stored_dtype), np.array([plain], stored_dtype), f"sum, n={n}")
            assert_same_bits(w, w_plain, f"exps, n={n}")
        x = np.full(n, -np.inf, dtype)
        assert call(x, 0.0, True)[0] == (0.0, -np.inf)
        x = rng.uniform(-100, 100, n).astype(dtype)
        x[rng.integers(n)] = np.nan
        assert np.isnan(call(x, 0.0, True)[0][0]), f"n={n}: a NaN x must make the sum NaN"


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


# The largest ULP error of the exp passes, at scale 1 and at a scale that is not a power of two: the
# AVX2 table exp of every pass (f32_exp_avx2.h; 1.13 and 2.12 measured) and AVX-512F's degree-5
# polynomial with the scale folded into its coefficients (1.98 and 2.28).
EXP_ULP_BOUNDS = {"avx2": {1.0: 1.2, 0.7391: 2.2}, "avx512f": {1.0: 2.0, 0.7391: 2.5}}


@pytest.mark.parametrize("scale", [1.0, 0.7391])
@pytest.mark.parametrize("level", twopass.available_levels()[1:])
@pytest.mark.parametrize("op", ["vscaleextexp", "vscaleexpminusmax"])
def test_exp_is_within_its_ulp_bound(level, op, scale):
    """exp through the two-pass (extended exponent) and the three-pass paths, on a dense sample of
    the float32 domain where exp is normal: every 257th float32 (8e6 inputs) in [-87.3, 88.7], in
    slices of width 16 scaled by 2^-E with E = round(max * log2 e) + 1 (the drivers' E plus one: the
    same ULPs one binade lower, below the kernels' clamp at 1), within EXP_ULP_BOUNDS."""
    bound = EXP_ULP_BOUNDS[level][scale]
    name = _dispatch._kernels.kernel_names(twopass.LEVELS.index(level))[op]
    x_all = float32_sample(-87.3, 88.7, 257)
    worst = (0.0, None)
    for lo in np.arange(-87.3, 88.7, 16.0):
        x = x_all[(x_all >= lo) & (x_all < lo + 16.0)]
        exponent = float(np.rint(x.max() * np.float32(LOG2E))) + 1.0
        y = np.empty_like(x)
        if op == "vscaleextexp":
            _dispatch._kernels.run_kernel(name, x, y, scale, exponent)        # exp(x) * scale * 2^-E
        else:
            _dispatch._kernels.run_kernel(name, x, y, 0.0, exponent, scale)   # exp(x - 0) * 2^-E * scale
        ref = np.exp(x.astype(np.float64)) * float(np.float32(scale)) * 2.0**-exponent
        err = np.abs(y - ref) / np.spacing(ref.astype(np.float32)).astype(np.float64)
        if err.max() > worst[0]:
            worst = (float(err.max()), float(x[err.argmax()]))
    assert worst[0] <= bound, worst


# ---- float64 kernels: the same checks against longdouble references, to a few float64 ULPs ----

VARIANTS_F64 = [v for v in _dispatch._kernels.registry("float64")
                if v["level"] in twopass.available_levels() and v["op"] in _dispatch._kernels.ROW_OPS]
LOG2E_F64 = float.fromhex("0x1.71547652B82FEp+0")
SENTINEL_F64 = np.float64(-7.77e303)
EPS64 = float(np.finfo(np.float64).eps)
FLUSH64 = 2.0**-1021  # float64 kernels flush results whose power-of-two scale is below 2^-1022
LD = np.longdouble


def guarded_f64(values):
    buffer = np.full(len(values) + 2 * CANARY, SENTINEL_F64, np.float64)
    buffer[CANARY:-CANARY] = values
    return buffer, buffer[CANARY:-CANARY]


def assert_canaries_f64(buffer):
    assert np.all(buffer[:CANARY] == SENTINEL_F64) and np.all(buffer[-CANARY:] == SENTINEL_F64)


def assert_close_f64(y, ref, ulps, what):
    """|y - ref| <= ulps * eps * |ref|, or y == 0 with ref below the flush bound."""
    err = np.abs(y.astype(LD) - ref)
    ok = (err <= ulps * EPS64 * np.abs(ref)) | ((y == 0) & (np.abs(ref) < FLUSH64))
    assert np.all(ok), f"{what}: worst {float(np.max(err / np.abs(ref)) / EPS64):.2f} ulp"


def test_float64_has_every_op_of_every_level():
    ops = set(_dispatch._kernels.ROW_OPS)
    for level in twopass.available_levels()[1:]:
        assert {v["op"] for v in VARIANTS_F64 if v["level"] == level} == ops
        assert set(_dispatch._kernels.kernel_names(twopass.LEVELS.index(level), "float64")) == set(
            _dispatch._kernels.OP_NAMES)


@pytest.mark.parametrize("spread", [100.0, 700.0])
@pytest.mark.parametrize("variant", VARIANTS_F64, ids=lambda v: v["name"])
def test_kernel_variant_f64(variant, spread):
    """As test_kernel_variant, in float64: elementwise results within 3 ULP of a longdouble
    reference (exp within about 1 ULP, then a scaling), sums within 1e-14 relative."""
    run = _dispatch._kernels.run_kernel
    name, op = variant["name"], variant["op"]
    rng = np.random.default_rng(len(name))
    for n in lengths(variant["unroll"]):
        xbuf, x = guarded_f64(rng.uniform(-spread, spread, n))
        ybuf, y = guarded_f64(np.zeros(n))
        xl = x.astype(LD)
        m = float(x.max())
        shift, exponent = 0.0, float(np.rint(m * LOG2E_F64))
        e = np.exp(xl - shift) * LD(2.0) ** LD(-exponent)
        what = f"{name} n={n}"
        if op == "rmax":
            assert run(name, x, y) == m
        elif op == "raddextexp":
            mantissa, exp2 = run(name, x, y)
            total = np.exp(xl - LD(m)).sum()  # sum exp(x) = total * e^m
            got = LD(mantissa) * np.exp(LD(exp2) * np.log(LD(2)) - LD(m))
            assert abs(got - total) <= 1e-14 * total, what
        elif op == "vscaleextexp":
            run(name, x, y, 0.75, exponent)
            assert_close_f64(y, np.minimum(np.exp(xl) * LD(0.75) * LD(2.0) ** LD(-exponent), 1), 3, what)
        elif op in ("raddexpminusmax", "raddstoreexpminusmax"):
            total = run(name, x, y, shift, exponent)
            assert abs(LD(total) - e.sum()) <= 1e-14 * e.sum(), what
            if op == "raddstoreexpminusmax":
                assert_close_f64(y, e, 3, what)
        elif op == "vscaleexpminusmax":
            run(name, x, y, shift, exponent, 0.5)
            assert_close_f64(y, np.minimum(LD(0.5) * e, 1), 3, what)
        elif op == "vscale":
            run(name, x, y, 0.25)
            np.testing.assert_array_equal(y, x * 0.25)
        elif op == "vsubc":
            c_hi = 0.9 * spread  # the x above it clamp at 0
            run(name, x, y, c_hi, 2.0**-40)
            np.testing.assert_array_equal(y, np.minimum((x - c_hi) - 2.0**-40, 0))
        elif op == "raddonline":
            max_, sum_ = run(name, x, y)
            assert max_ == m
            expected = np.exp(xl - LD(m)).sum()
            assert abs(LD(sum_) - expected) <= 1e-14 * expected, what
        else:
            raise AssertionError(f"untested op {op}")
        assert_canaries_f64(xbuf)
        assert_canaries_f64(ybuf)


def test_kernel_f64_rejects_float32_arrays():
    name = VARIANTS_F64[0]["name"] if VARIANTS_F64 else pytest.skip("no kernel level")
    with pytest.raises(ValueError, match="no kernel named"):
        _dispatch._kernels.run_kernel(name, np.ones(4, np.float32), np.ones(4, np.float32))


@pytest.mark.parametrize("level", twopass.available_levels()[1:])
@pytest.mark.parametrize("algorithm", [0, 1, 2, 3])
def test_softmax_f64_rows_stay_inside_their_arrays(level, algorithm):
    kernels = _dispatch._kernels
    rng = np.random.default_rng(algorithm)
    for n in range(1, 70):
        rows = 3
        for log in (False, True):
            xbuf, x = guarded_f64(rng.uniform(-50, 50, rows * n))
            ybuf, y = guarded_f64(np.zeros(rows * n))
            run = kernels.log_softmax_f64_rows if log else kernels.softmax_f64_rows
            run(x.reshape(rows, n), y.reshape(rows, n), algorithm, twopass.LEVELS.index(level))
            assert_canaries_f64(xbuf)
            assert_canaries_f64(ybuf)
            if not log:
                np.testing.assert_allclose(y.reshape(rows, n).sum(axis=1), 1.0, rtol=1e-14)


@pytest.mark.parametrize("level", twopass.available_levels()[1:])
@pytest.mark.parametrize("op", ["vscaleextexp", "vscaleexpminusmax"])
def test_exp_f64_is_within_2_ulp(level, op):
    """The float64 exp through both paths on 2e6 points spread over [-708, 709] (slices of width 16
    scaled by 2^-E with E = round(max log2 e) + 1, below the kernels' clamp at 1): at most 2 ULP from
    a longdouble reference."""
    name = _dispatch._kernels.kernel_names(twopass.LEVELS.index(level), "float64")[op]
    rng = np.random.default_rng(3)
    worst = 0.0
    for lo in np.arange(-708.0, 709.0, 16.0):
        x = np.sort(rng.uniform(lo, min(lo + 16.0, 709.0), 2000))
        exponent = float(np.rint(x.max() * LOG2E_F64)) + 1.0
        y = np.empty_like(x)
        if op == "vscaleextexp":
            _dispatch._kernels.run_kernel(name, x, y, 1.0, exponent)
        else:
            _dispatch._kernels.run_kernel(name, x, y, 0.0, exponent, 1.0)
        ref = np.exp(x.astype(LD)) * LD(2.0) ** LD(-exponent)
        keep = ref >= FLUSH64
        err = np.abs(y[keep].astype(LD) - ref[keep]) / np.spacing(ref[keep].astype(np.float64)).astype(LD)
        worst = max(worst, float(err.max(initial=0)))
    assert worst <= 2.0, worst


VSCALE_VARIANTS = [v for v in VARIANTS + VARIANTS_F64 if v["op"] == "vscale"]


@pytest.mark.parametrize("variant", VSCALE_VARIANTS, ids=lambda v: v["name"])
def test_vscale_never_forms_a_subnormal(variant):
    """vscale (reload's pass 3) is x * scale exactly, products below the smallest normal flushed to
    zeros of their sign by MXCSR.FTZ, which run_kernel sets as the drivers do (conftest)."""
    dtype = np.float32 if variant in VARIANTS else np.float64
    check_vscale_flushes_like_ftz(lambda x, y, s: _dispatch._kernels.run_kernel(variant["name"], x, y, float(s)),
                                  dtype, lengths(variant["unroll"]), variant["name"])


SPLIT_VARIANTS = [dict(v, dtype=dtype) for dtype in ("float32", "float64", "float16")
                  for v in _dispatch._kernels.registry(dtype)
                  if v["op"] in ("raddexpminusmax", "raddstoreexpminusmax", "vscaleexpminusmax", "vscaleextexp")
                  and v["level"] in twopass.available_levels()]


def split_kernel(variant, x, shift, exponent, scale):
    """(sum, y) of one exp(x - shift) * 2^-exponent kernel (times scale: vscaleexpminusmax and
    vscaleextexp, the latter with shift 0 only, whose sums are None); y starts as zeros, which
    raddexpminusmax leaves; float16's raddstoreexpminusmax gives its float32 exps."""
    y = np.zeros_like(x)
    xs, ys = (x.view(np.uint16), y.view(np.uint16)) if x.dtype == np.float16 else (x, y)
    if variant["op"] == "vscaleextexp":
        assert shift == 0
        _dispatch._kernels.run_kernel(variant["name"], xs, ys, scale, exponent)
        return None, y
    if variant["op"] == "vscaleexpminusmax":
        _dispatch._kernels.run_kernel(variant["name"], xs, ys, shift, exponent, scale)
        return None, y
    if variant["op"] == "raddstoreexpminusmax" and x.dtype == np.float16:  # its exps in float32 (kernels.h)
        stored = np.zeros(x.shape, np.float32)
        return _dispatch._kernels.run_kernel(variant["name"], xs, ys, shift, exponent, stored=stored), stored
    return _dispatch._kernels.run_kernel(variant["name"], xs, ys, shift, exponent), y


def assert_same_bits(a, b, what):
    np.testing.assert_array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8), err_msg=what)


@pytest.mark.parametrize("variant", SPLIT_VARIANTS, ids=lambda v: v["name"])
def test_exp_split_instances_give_the_same_bits(variant):
    """The kernels of exp(x - shift) * 2^-exponent run one of three instances (src/instantiate.h): any
    shift; shift 0, without x - shift; shift 0 with 2^-exponent folded into the scale, where it
    keeps every step normal (AVX-512F float32 and float16: scale 2^-exponent in [2^-119, 2^126]).
    They must agree bit for bit. (1) Across the fold's limits e(E) = 2 e(E + 1) exactly, outputs and
    sums, for pairs (E, scale) where one of E and E + 1 folds and the other does not (the scale only
    counts for the vscale kernels). (2) With x - 0.5 exact, exp(x - 0.5) by shift 0.5 (the general
    instance) equals exp((x - 0.5) - 0) by shift 0, also for scales too small or large to fold.
    vscaleextexp (two-pass's pass 2) is the shift-0 case of vscaleexpminusmax: (1) only."""
    dtype = np.dtype(variant["dtype"])
    rng = np.random.default_rng(len(variant["name"]))
    n = 3 * variant["unroll"] + 5
    scaled = variant["op"] in ("vscaleexpminusmax", "vscaleextexp")
    pairs = [(-127, 0.75), (118, 0.75), (119, 1.0), (19, 2.0**-100), (-2, 2.0**125), (0, 0.75)]
    for exponent, scale in pairs:
        # x below (E - log2 scale) ln2: outputs in e^-5 .. e^-0.1 (below vscaleexpminusmax's clamp
        # at 1), normal at E and at E + 1
        centre = (exponent - (math.log2(scale) if scaled else 0)) * math.log(2)
        x = (centre + rng.uniform(-5, -0.1, n)).astype(dtype)
        s0, y0 = split_kernel(variant, x, 0.0, exponent, scale)
        s1, y1 = split_kernel(variant, x, 0.0, exponent + 1, scale)
        what = f"E={exponent} scale={scale}"
        assert variant["op"] == "raddexpminusmax" or (np.all(np.isfinite(y0)) and np.all(y0 > 0)), what
        assert_same_bits(y0, 2 * y1, what)
        if s0 is not None:
            assert s0 == 2 * s1, what
    if variant["op"] == "vscaleextexp":
        return
    # multiples of 2^-6 (float16: |x| < 31.5, where its spacing is at most 2^-6): x - 0.5 exact
    limit = 31 if dtype == np.float16 else 40
    x = (rng.integers(-limit * 64, limit * 64, n) / 64).astype(dtype)
    # scales outside [2^-119, 2^126] must not fold (the general instance builds on them)
    for exponent, scale in ((0, 0.75), (20, 0.75), (-20, 0.75), (119, 0.75), (120, 0.75),
                            (-10, 2.0**-125), (2, 1.5 * 2.0**127)):
        general = split_kernel(variant, x, 0.5, exponent, scale)
        shift_0 = split_kernel(variant, x - dtype.type(0.5), 0.0, exponent, scale)
        assert_same_bits(general[1], shift_0[1], f"E={exponent} scale={scale}")
        assert general[0] == shift_0[0], f"E={exponent}"


@pytest.mark.parametrize("variant", [v for v in SPLIT_VARIANTS if v["dtype"] != "float64"],
                         ids=lambda v: v["name"])
def test_exp_flushes_cleanly_below_2_to_the_minus_126_at_every_exponent(variant):
    """exp(x - shift) * 2^-exponent across the bottom of the float32 range, at exponents up to the
    +-2^17 of the split (common.h) and with both instances (shift 0 and 0.5; vscaleextexp: 0): every
    output finite and >= 0, exact to 2e-6 or flushed to 0 where exact is below 2^-124 (float16
    outputs: to their rounding), and the sums with them (raddexpminusmax writes no output). The
    AVX2 float32 table exp flushes only below 2^-126 (2^-126 (1 + 1e-6): its own rounding), so there
    every output above that is kept. It clamps x - shift at (exponent - 126.03125) ln2 and builds
    2^(m/8 - exponent) from the bits of its rounding constant and a table: a clamp two binades lower
    makes -inf of the lowest elements (one binade lower: tested by the constants, just above)."""
    dtype = np.dtype(variant["dtype"])
    floor = 2.0**-126 * (1 + 1e-6) if variant["level"] == "avx2" and dtype == np.float32 else 2.0**-124
    top = float(np.finfo(dtype).max)
    for exponent in (-131072, -100000, -65536, -1000, -127, -1, 0, 1, 126, 127, 1000, 65536, 94000, 131072):
        for shift in (0.0,) if variant["op"] == "vscaleextexp" else (0.0, 0.5):
            q = np.concatenate([np.linspace(-140.0, -110.0, 601), [-0.3]])  # (x - shift) log2e - exponent
            x = (exponent + q) / LOG2E + shift
            if np.abs(x).max() > top:
                continue  # float16 cannot hold these x
            x = np.concatenate([x, [-np.inf, -top]]).astype(dtype)
            sum_, y = split_kernel(variant, x, shift, exponent, 1.0)
            exact = np.exp((x.astype(np.float64) - shift) - exponent * math.log(2))  # error ~1e-11
            what = f"E={exponent} shift={shift}"
            if sum_ is not None:
                assert abs(sum_ - math.fsum(exact)) <= 2e-6 * math.fsum(exact), what
            if variant["op"] == "raddexpminusmax":
                continue
            if variant["op"] != "raddstoreexpminusmax":
                exact = np.minimum(exact, 1.0)  # the passes of the output: min(1, ...) (kernels.h)
            rtol, atol = (2e-6, 0.0) if y.dtype == np.float32 else (2.0**-11, 2.0**-25)
            assert np.all(np.isfinite(y)) and np.all(y >= 0), what
            close = np.abs(y - exact) <= rtol * exact + atol
            assert np.all(close | ((y == 0) & (exact < floor))), what
            assert np.all(close[exact >= floor]), what


def test_avx2_exp_clamp_lands_on_the_lowest_normal_power_at_every_exponent():
    """The AVX2 table exp (f32_exp_avx2.h) clamps u = x - shift at c = (E - EXP8_CLAMP) ln2 and needs
    every element at c to round to m = 8 (E - 126), k = 0 with t < 0: s = 2^-126 (normal) and a result
    below 2^-126, which MXCSR.FTZ makes 0. A clamp one step lower would make s subnormal, which FTZ
    hides in the outputs (so the kernels cannot show it) but costs a microcode assist on Intel. So this
    redoes the core's float32 arithmetic on its constants from common.h, exactly, at each integral E
    in [-2^17 - 256, 2^17 + 128] (the split's limit; raddextexp's floor below it, and above it
    two-pass's pass 2, whose sum's exponent may pass the limit by the binades of its mantissa):
    c = fl(fl(E - CLAMP) * LN2_HI), z = fl(c * 8 log2e + 0x1.8p23 - 8 E)
    (the FMA: products of two floats and these sums are exact in float64), and asks that
    v = c * 8 log2e - 8 E lie within 0.1 of -1008.25 (so fl(v) = -1008 and t ~ v ln2/8 + 126 ln2 < 0).
    Source tree only: the wheel check's copy of the suite has no include/."""
    import pathlib
    import re
    header = pathlib.Path(__file__).resolve().parent.parent / "include" / "twopass" / "common.h"
    if not header.exists():
        pytest.skip("not a source tree")
    text = header.read_text()

    def constant(name):
        literal = re.search(rf"#define TWOPASS_{name} (\S+)", text).group(1).rstrip("f")
        return float.fromhex(literal) if "0x" in literal.lower() else float(literal)

    f32 = np.float32
    log2e8 = float(f32(8 * f32(constant("F32_LOG2E"))))
    ln2_hi, clamp, magic = -constant("F32_MINUS_LN2_HI"), constant("F32_EXP8_CLAMP"), constant("F32_MAGIC")
    exponent = np.arange(-2**17 - 256, 2**17 + 129, dtype=np.float64)
    bias = magic - 8 * exponent
    assert np.all((bias >= 2.0**23) & (bias < 2.0**24))  # exact, and z's integers lie in [2^23, 2^24)
    offset = (exponent - clamp).astype(f32)
    assert np.all(offset == exponent - clamp)
    c = (offset.astype(np.float64) * float(f32(ln2_hi))).astype(f32).astype(np.float64)
    v = c * log2e8 - 8 * exponent
    worst = float(np.abs(v + 1008.25).max())
    assert worst < 0.1, worst
    z = (c * log2e8 + bias).astype(f32).astype(np.float64)
    assert np.all(z - bias == 8 * (exponent - 126))


EXP_STORE_VARIANTS = [v for v in VARIANTS if v["op"] in ("vscaleextexp", "vscaleexpminusmax", "raddstoreexpminusmax")]


@pytest.mark.parametrize("variant", EXP_STORE_VARIANTS, ids=lambda v: v["name"])
def test_exp_kernels_run_alone_flush_subnormals_and_restore_the_mxcsr(variant):
    """run_kernel runs a kernel with MXCSR.FTZ as the drivers do (the AVX-512F exp passes rely on it to
    flush results below 2^-126): outputs of exp(x) * 2^-exponent * scale that straddle 2^-126 are 0
    or normal and within 2e-6 of exact, and NumPy makes subnormals again after the call."""
    name, op = variant["name"], variant["op"]
    tiny = np.finfo(np.float32).tiny
    n = 4096 + 17
    x = np.linspace(-95.0, -80.0, n).astype(np.float32)  # exp(x) * 2^-exponent from 2^-137 to 2^-115
    exponent, scale = 0.0, 0.75
    y = np.full(n, 5.0, np.float32)
    if op == "vscaleextexp":
        _dispatch._kernels.run_kernel(name, x, y, scale, exponent)
        exact = np.exp(x.astype(np.float64)) * scale
    elif op == "vscaleexpminusmax":
        _dispatch._kernels.run_kernel(name, x, y, 0.0, exponent, scale)
        exact = np.exp(x.astype(np.float64)) * scale
    else:
        _dispatch._kernels.run_kernel(name, x, y, 0.0, exponent)
        exact = np.exp(x.astype(np.float64))
    assert not np.any((y != 0) & (np.abs(y) < tiny)), "subnormal outputs"
    assert np.any(y == 0) and np.any(y > 0)
    kept = y != 0
    assert np.all(np.abs(y[kept] - exact[kept]) <= 2e-6 * exact[kept])
    assert np.all(exact[~kept] < 2 * tiny)
    assert np.float32(tiny) * np.float32(0.25) > 0  # MXCSR.FTZ is off again: NumPy forms the subnormal


def test_kernel_cycles_tool_builds_and_runs(tmp_path):
    """benchmarks/kernel_cycles.c (the L1 timing tool; it compiles the AVX2 kernels from source) still
    builds against the kernels' sources and runs. Source tree only: the wheel check's copy of the
    suite has neither src/ nor this tool."""
    import pathlib
    import shutil
    import subprocess
    root = pathlib.Path(__file__).resolve().parent.parent
    tool = root / "benchmarks" / "kernel_cycles.c"
    if not tool.exists() or not (root / "src").is_dir():
        pytest.skip("not a source tree")
    if "avx2" not in twopass.available_levels() or shutil.which("gcc") is None:
        pytest.skip("needs gcc and a CPU with AVX2")
    exe = tmp_path / "kernel_cycles"
    build = subprocess.run(["gcc", "-O2", "-fno-math-errno", "-mavx2", "-mfma", f"-I{root / 'include'}", str(tool),
                            "-o", str(exe), "-lm"], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe), "256"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "raddextexp" in run.stdout, run.stderr
