"""Property tests (Hypothesis, derandomized so every run checks the same examples): random shapes
(0-4 dims), random axes (None, ints, tuples, negative, sometimes invalid), every supported real
dtype, and values mixing moderate numbers, NaN, +-inf, huge magnitudes and subnormals.

For every example, every level this process has (forced with twopass.use_isa) and every algorithm:
  (a) the result equals the NumPy fallback's (level "python", same algorithm): same dtype, shape and
      NaN positions, values within float rounding (kernel levels may flush outputs below 2^-125);
  (b) the result equals scipy.special.softmax on the float64 cast of the input (SciPy subtracts the
      max in the integer type, which wraps around, and computes float16 in float16), or both raise
      the same exception type;
  (c) out= and in-place calls give exactly the result of the plain call.
"""
import math

import numpy as np
import pytest
import scipy.special
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import twopass

from conftest import FLUSH32

LEVELS = list(twopass.available_levels())
ALGORITHMS = list(twopass.ALGORITHMS)
DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64]

PROPERTY_SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=120,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SUB32 = 2.0**-149     # smallest float32 subnormal: the rounding of a subnormal float32 result
SUB64 = 1e-307        # below the smallest normal float64: absolute slack for subnormal float64 results


# ---- strategies ----

def special_values(dtype):
    """Edge values of a dtype: NaN, infinities, the largest and smallest magnitudes, zeros."""
    dtype = np.dtype(dtype)
    if dtype.kind == "i":
        info = np.iinfo(dtype)
        return [info.min, info.min + 1, info.max, info.max - 1, -1, 0, 1]
    info = np.finfo(dtype)
    huge = {2: [65504.0, -65504.0, 6e4, -6e4], 4: [1e38, -1e38, 3.4028235e38, -3.4028235e38],
            8: [1e38, -1e38, 1e308, -1e308, 1.7976931348623157e308, -1.7976931348623157e308]}[dtype.itemsize]
    tiny = float(info.smallest_subnormal)
    return [np.nan, np.inf, -np.inf, 0.0, -0.0, tiny, -tiny, float(info.tiny), 3 * tiny] + huge


def elements(dtype):
    """One element: an edge value, a moderate value, or any value of the dtype (subnormals too)."""
    dtype = np.dtype(dtype)
    specials = st.sampled_from(special_values(dtype))
    if dtype.kind == "i":
        info = np.iinfo(dtype)
        return st.one_of(specials, st.integers(-100, 100), st.integers(int(info.min), int(info.max)))
    width = 8 * dtype.itemsize
    return st.one_of(specials, st.floats(-100, 100, width=width),
                     st.floats(width=width, allow_nan=True, allow_infinity=True, allow_subnormal=True))


VALUE_CLASSES = ("moderate", "narrow", "wide", "huge", "subnormal", "nan", "+inf", "-inf", "constant")


def bulk_values(rng, dtype, size, classes):
    """`size` values of `dtype` drawn from a seeded generator, each from one of `classes`."""
    dtype = np.dtype(dtype)
    which = rng.integers(0, len(classes), size)
    out = np.zeros(size, np.float64 if dtype.kind == "f" else np.int64)
    if dtype.kind == "i":
        info = np.iinfo(dtype)
        ranges = {"moderate": (-100, 100), "narrow": (-2, 2), "wide": (info.min // 2, info.max // 2),
                  "huge": (info.min, info.max)}
        for k, name in enumerate(classes):
            mask = which == k
            lo, hi = ranges.get(name, (info.min, info.min + 3) if name == "-inf" else (info.max - 3, info.max))
            out[mask] = rng.integers(lo, hi, size=int(mask.sum()), endpoint=True, dtype=np.int64)
        return out.astype(dtype)
    finfo = np.finfo(dtype)
    big = min(float(finfo.max), 1e38 if dtype.itemsize == 4 else float(finfo.max))
    constant = rng.uniform(-50, 50)
    for k, name in enumerate(classes):
        mask = which == k
        m = int(mask.sum())
        if name == "moderate":
            v = rng.uniform(-100, 100, m)
        elif name == "narrow":
            v = rng.uniform(-1, 1, m)
        elif name == "wide":
            v = rng.uniform(-1e4, 1e4, m) if dtype.itemsize > 2 else rng.uniform(-6e4, 6e4, m)
        elif name == "huge":
            v = rng.choice([-1.0, 1.0], m) * big * rng.uniform(0.01, 1.0, m)
        elif name == "subnormal":
            v = rng.integers(-2**10, 2**10, m) * float(finfo.smallest_subnormal)
        elif name == "constant":
            v = np.full(m, constant)
        else:
            v = np.full(m, {"nan": np.nan, "+inf": np.inf, "-inf": -np.inf}[name])
        out[mask] = v
    with np.errstate(over="ignore"):
        return out.astype(dtype)


@st.composite
def shapes(draw):
    ndim = draw(st.integers(0, 4))
    sides = [draw(st.integers(0, 5)) for _ in range(ndim)]
    if ndim and draw(st.booleans()):
        # one longer axis, so the kernels' unrolled loops, whole vectors and masked tails all run
        sides[draw(st.integers(0, ndim - 1))] = draw(st.integers(6, 200))
    return tuple(sides)


@st.composite
def arrays(draw, dtype):
    shape = draw(shapes())
    size = math.prod(shape)
    if size <= 48:
        # small arrays element by element, so Hypothesis can shrink to the offending value
        return draw(hnp.arrays(dtype, shape, elements=elements(dtype), fill=st.nothing()))
    # larger arrays: a seeded mixture of value classes, plus Hypothesis-chosen values at chosen places
    classes = draw(st.lists(st.sampled_from(VALUE_CLASSES), min_size=1, max_size=4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = bulk_values(rng, dtype, size, classes)
    for _ in range(draw(st.integers(0, 6))):
        x[draw(st.integers(0, size - 1))] = draw(elements(dtype))
    return x.reshape(shape)


@st.composite
def axes(draw, ndim):
    """None, an int, a tuple (any order, negative or not, possibly empty), or now and then an
    invalid axis (out of range, repeated)."""
    kind = draw(st.sampled_from(["none", "int", "int", "tuple", "tuple", "bad"]))
    if kind == "none":
        return None
    if ndim == 0:
        # not the ints 0 and -1, which NumPy accepts for 0-d arrays (see test_0d_input_with_int_axis)
        return draw(st.sampled_from([(), (0,), (-1,), 1, -2]))
    if kind == "bad":
        bad = [ndim, -ndim - 1]
        if ndim:
            a = draw(st.integers(0, ndim - 1))
            bad.append((a, a - ndim))
        return draw(st.sampled_from(bad))
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    chosen = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
    return tuple(a - ndim if draw(st.booleans()) else a for a in chosen)


@st.composite
def cases(draw, dtype):
    x = draw(arrays(dtype))
    return x, draw(axes(x.ndim))


# ---- running and comparing ----

def result_dtype(dtype):
    """np.exp's result dtype, which is SciPy's (8-bit integers to float16, 16-bit to float32, ...)."""
    return np.exp(np.zeros(1, dtype)).dtype


def call(fn, *args, **kwargs):
    """(result, None) or (None, exception)."""
    try:
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs), None
    except Exception as error:  # noqa: BLE001 -- the exception type is what is compared
        return None, error


def twopass_softmax(x, axis, algorithm, level, **kwargs):
    with twopass.use_isa(level):
        return call(twopass.softmax, x, axis=axis, algorithm=algorithm, **kwargs)


def close(y, ref, dtype, flushed_ok):
    """Boolean mask: y (of result dtype `dtype`) agrees with ref (float64) within the rounding of
    that dtype. NaN positions must match exactly. float32/float64: relative 1e-6 plus half a float32
    ULP (the reference itself may be a float32 rounding) and the rounding of subnormals; kernel
    levels may also give 0 where the reference is below FLUSH32. float16: one float16 ULP at the
    larger of the two magnitudes (a float32 result rounded once more to float16)."""
    y = np.asarray(y, np.float64)
    ref = np.asarray(ref, np.float64)
    nan = np.isnan(y) | np.isnan(ref)
    same_nan = np.isnan(y) == np.isnan(ref)
    with np.errstate(all="ignore"):
        diff = np.abs(y - ref)
        if dtype == np.float16:
            big = np.maximum(np.abs(y), np.abs(ref)).astype(np.float16)
            ok = diff <= np.spacing(big).astype(np.float64)
        else:
            half_ulp32 = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64) / 2
            absolute = SUB32 if dtype == np.float32 else SUB64
            ok = diff <= 1e-6 * np.abs(ref) + np.where(np.isfinite(half_ulp32), half_ulp32, 0) + absolute
            if flushed_ok:
                ok |= (y == 0) & (np.abs(ref) < FLUSH32)
    ok = np.where(nan, same_nan, ok)
    return ok & same_nan


def assert_close(y, ref, dtype, flushed_ok, what):
    ok = close(y, ref, dtype, flushed_ok)
    if not np.all(ok):
        bad = np.argwhere(~np.asarray(ok))[:5]
        y, ref = np.asarray(y), np.asarray(ref)
        detail = [(tuple(i), y[tuple(i)], ref[tuple(i)]) for i in bad]
        raise AssertionError(f"{what}: {int(np.size(ok) - np.sum(ok))} of {np.size(ok)} outputs differ; "
                             f"first (index, got, expected): {detail}")


def assert_same_outcome(result, error, expected, expected_error, what):
    """Both raised the same exception type, or neither raised."""
    if expected_error is not None or error is not None:
        assert type(error) is type(expected_error), (
            f"{what}: raised {error!r}, expected {expected_error!r}")
        return False
    return True


def check_example(x, axis):
    dtype = result_dtype(x.dtype)
    with np.errstate(all="ignore"):
        x64 = x.astype(np.float64)
    expected, expected_error = call(scipy.special.softmax, x64, axis=axis)
    for algorithm in ALGORITHMS:
        oracle, oracle_error = twopass_softmax(x, axis, algorithm, "python")
        for level in LEVELS:
            what = f"level={level} algorithm={algorithm} dtype={x.dtype} shape={x.shape} axis={axis}"
            if level == "python":
                y, error = oracle, oracle_error
            else:
                y, error = twopass_softmax(x, axis, algorithm, level)
            # (b) SciPy on the float64 cast: same exception type, or the same values
            if not assert_same_outcome(y, error, expected, expected_error, what + " vs SciPy"):
                continue
            assert np.ndim(y) == x.ndim and np.shape(y) == x.shape, what
            assert np.asarray(y).dtype == dtype, (what, np.asarray(y).dtype, dtype)
            assert isinstance(y, np.generic) == (x.ndim == 0), (what, type(y))
            assert_close(y, expected, dtype, level != "python", what + " vs SciPy")
            # (a) the NumPy fallback (level "python")
            assert oracle_error is None, (what, oracle_error)
            assert_close(y, oracle, dtype, level != "python", what + " vs fallback")
            # (c) out= and in place give exactly the plain call's result
            out = np.full(x.shape, 7, dtype)
            r, error = twopass_softmax(x, axis, algorithm, level, out=out)
            assert error is None and r is out, (what, error)
            assert np.array_equal(out, y, equal_nan=True), what + " out="
            if x.dtype == dtype:
                inplace = x.copy()
                r, error = twopass_softmax(inplace, axis, algorithm, level, out=inplace)
                assert error is None and r is inplace, (what, error)
                assert np.array_equal(inplace, y, equal_nan=True), what + " in place"


def zero_d_with_int_axis(x, axis):
    # NumPy (hence SciPy) accepts axis=0 and axis=-1 on 0-d arrays; see test_0d_input_with_int_axis
    return x.ndim == 0 and type(axis) is int and axis in (0, -1)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_matches_fallback_and_scipy(dtype, data):
    x, axis = data.draw(cases(dtype), label="x, axis")
    assert not zero_d_with_int_axis(x, axis)
    check_example(x, axis)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_float32_rows_with_long_tails(data):
    # float32 over the last axis, the kernels' fast path: longer rows, mixtures of every value class
    rows = data.draw(st.integers(1, 4), label="rows")
    n = data.draw(st.integers(1, 600), label="n")
    classes = data.draw(st.lists(st.sampled_from(VALUE_CLASSES), min_size=1, max_size=4), label="classes")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    x = bulk_values(np.random.default_rng(seed), np.float32, rows * n, classes).reshape(rows, n)
    check_example(x, -1)


@settings(PROPERTY_SETTINGS, max_examples=40)
@given(data=st.data())
def test_float32_rows_across_sum_blocks(data):
    # rows longer than the 4096-element sum blocks, made of segments of different value classes, so
    # blocks of -inf, of huge or of tiny values meet blocks of others in the merge of block sums
    n = data.draw(st.integers(4090, 9000), label="n")
    cuts = sorted(data.draw(st.lists(st.integers(1, n - 1), min_size=1, max_size=3), label="cuts"))
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    parts = []
    for lo, hi in zip([0] + cuts, cuts + [n]):
        classes = data.draw(st.lists(st.sampled_from(VALUE_CLASSES), min_size=1, max_size=2), label="classes")
        parts.append(bulk_values(rng, np.float32, hi - lo, classes))
    check_example(np.concatenate(parts)[None, :], -1)


@pytest.mark.parametrize("axis", [0, -1])
def test_0d_input_with_int_axis(axis):
    for x in (np.float32(3.0), np.array(2.0), 5.0, np.array(np.inf, np.float32)):
        with np.errstate(all="ignore"):
            expected = scipy.special.softmax(x, axis=axis)
        y = twopass.softmax(x, axis=axis)
        assert type(y) is type(expected)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))


def test_the_comparison_can_fail():
    # the tolerance is not so loose that a wrong answer passes
    ref = np.array([0.5, 0.25, 0.25, np.nan])
    assert not close(np.array([0.5, 0.25, 0.2500005, np.nan]), ref, np.dtype(np.float32), True).all()
    assert not close(np.array([0.5, 0.25, 0.25, 0.1]), ref, np.dtype(np.float32), True).all()
    assert not close(np.array([0.5, 0.25, 0.25 + 2**-9, np.nan]), ref, np.dtype(np.float16), False).all()
    assert not close(np.array([0.0, 0.25, 0.25, np.nan]), ref, np.dtype(np.float32), True).all()
    assert close(np.array([0.5, 0.25, 0.25, np.nan]), ref, np.dtype(np.float32), True).all()
    assert close(np.array([0.0]), np.array([1e-39]), np.dtype(np.float32), True).all()
    assert not close(np.array([0.0]), np.array([1e-37]), np.dtype(np.float32), True).all()
