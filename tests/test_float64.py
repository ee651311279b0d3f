"""float64 on every level (the float64 kernels on avx2/avx512f, the NumPy fallback on python) and
every algorithm: accuracy against longdouble references, SciPy's answers on special values (NaN,
+-inf, huge), every function (softmax, log_softmax, logsumexp, extsum, softmax_from_extsum), the
columns path, out=, threads.

Accuracy target: softmax within 1e-14 relative (|y - ref| / max(ref, DBL_MIN), outputs flushed to 0
below FLUSH64 counting as exact, as the float32 kernels flush below 2^-125); log_softmax within a
few ULP of max(|x - max|, |log sum|), the magnitudes it subtracts; logsumexp within 4e-16 relative.
"""
import numpy as np
import pytest
import scipy.special

import twopass
from twopass import _dispatch

from conftest import max_relative_error

LD = np.longdouble
TINY64 = float(np.finfo(np.float64).tiny)
EPS64 = float(np.finfo(np.float64).eps)
FLUSH64 = 2.0**-1021
RTOL64 = 1e-14
KERNEL_LEVELS = twopass.available_levels()[1:]


def ref_softmax(x, axis=-1):
    """softmax in longdouble (x - max is exact in it for every element that matters)."""
    xl = np.asarray(x, np.float64).astype(LD)
    with np.errstate(all="ignore"):
        e = np.exp(xl - xl.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)


def ref_log_softmax(x, axis=-1):
    """(x - max) - log sum exp(x - max) in longdouble; x - max is exact for these inputs."""
    xl = np.asarray(x, np.float64).astype(LD)
    m = xl.max(axis=axis, keepdims=True)
    return (xl - m) - np.log(np.exp(xl - m).sum(axis=axis, keepdims=True))


def ref_logsumexp(x, axis=-1):
    xl = np.asarray(x, np.float64).astype(LD)
    m = xl.max(axis=axis, keepdims=True)
    return np.squeeze(m + np.log(np.exp(xl - m).sum(axis=axis, keepdims=True)), axis=axis)


def rel64(y, ref):
    return max_relative_error(y.astype(LD), np.asarray(ref, LD), floor=TINY64, flush=FLUSH64)


def check_log_softmax(y, x, axis=-1, ulps=4, level="avx2"):
    """Within `ulps` ULP of the magnitudes subtracted, max(|x - max|, |log sum|, 1) (SciPy's form;
    log sum carries the rounding of a sum >= 1, an absolute error near 0, as for SciPy). The NumPy fallback subtracts a rounded logsumexp (the float32 bound of the
    README): within `ulps` ULP of max(|x|, |logsumexp|) there."""
    ref = ref_log_softmax(x, axis)
    xl = np.asarray(x, np.float64).astype(LD)
    shifted = xl - xl.max(axis=axis, keepdims=True)
    if level == "python":
        scale = np.maximum(np.abs(xl), np.abs(xl - ref))
    else:
        scale = np.maximum(np.abs(shifted), np.abs(ref - shifted))
    err = np.abs(y.astype(LD) - ref)
    bound = ulps * EPS64 * np.maximum(scale, 1.0)
    assert np.all(err <= bound), f"worst {float(np.max(err / bound)):.2f} x the bound"


def data(kind, n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "uniform100": lambda: rng.uniform(-100, 100, n),
        "normal10": lambda: rng.normal(0, 10, n),
        "uniform700": lambda: rng.uniform(-700, 700, n),
        "offset1e9": lambda: rng.uniform(-30, 30, n) + 1e9,
        "beyond2^37": lambda: rng.uniform(-30, 30, n) + 3e11,
        "negative1e12": lambda: rng.uniform(-30, 30, n) - 1.5e12,
    }[kind]()


KINDS = ["uniform100", "normal10", "uniform700", "offset1e9", "beyond2^37", "negative1e12"]


def test_float64_runs_on_the_kernels(level):
    x = np.linspace(-3, 3, 1000)
    before = twopass.runtime_info()["calls"][level]
    for fn in (twopass.softmax, twopass.log_softmax, twopass.logsumexp):
        fn(x)
    twopass.softmax(x.reshape(20, 50), axis=0)  # the columns path
    twopass.extsum(x)
    assert twopass.runtime_info()["calls"][level] - before == 5
    names = twopass.runtime_info()["kernels"]["float64"]
    if level == "python":
        assert isinstance(names, str)
    else:
        assert isinstance(names, dict) and set(names) == set(_dispatch._kernels.OP_NAMES)
        assert all(v.startswith("twopass_f64_") and f"__{level}_" in v for v in names.values())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 3, 17, 1000, 4097, 100_003])
def test_softmax_accuracy(level, algorithm, kind, n):
    x = data(kind, n, seed=n)
    y = twopass.softmax(x, axis=-1, algorithm=algorithm)
    assert y.dtype == np.float64
    err = rel64(y, ref_softmax(x))
    assert err <= RTOL64 or (level == "python" and err <= 1e-13), err  # the fallback rounds x - max
    check_log_softmax(twopass.log_softmax(x, axis=-1, algorithm=algorithm), x, level=level)


@pytest.mark.parametrize("kind", KINDS)
def test_logsumexp_and_extsum_accuracy(level, kind):
    x = data(kind, 30_013)
    ref = ref_logsumexp(x)
    got = twopass.logsumexp(x)
    assert abs(LD(got) - ref) <= 4e-16 * abs(ref), (got, ref)
    m, e = twopass.extsum(x)
    lse = np.log(LD(m)) + LD(e) * np.log(LD(2))
    assert abs(lse - ref) <= 1e-15 * max(abs(ref), 1), (m, e)
    # the kernels' range; the NumPy fallback is exact only while |e| < 2^21 (_api.softmax_from_extsum)
    if abs(e) <= (2.0**38 if level != "python" else 2.0**21):
        y = twopass.softmax_from_extsum(x, (m, e))
        assert rel64(y, ref_softmax(x)) <= (RTOL64 if level != "python" else 1e-13)


def test_many_rows_and_threads_bitwise(level, algorithm):
    x = np.random.default_rng(5).normal(0, 20, (3, 70_001))
    one = twopass.softmax(x, axis=-1, algorithm=algorithm, threads=1)
    assert rel64(one, ref_softmax(x)) <= (RTOL64 if level != "python" else 1e-13)
    for threads in (2, 3):
        np.testing.assert_array_equal(twopass.softmax(x, axis=-1, algorithm=algorithm, threads=threads), one)
    lone = twopass.log_softmax(x, axis=-1, algorithm=algorithm, threads=1)
    np.testing.assert_array_equal(twopass.log_softmax(x, axis=-1, algorithm=algorithm, threads=2), lone)
    np.testing.assert_array_equal(twopass.logsumexp(x, axis=-1, threads=2), twopass.logsumexp(x, axis=-1, threads=1))


# ---- SciPy's answers on special values, every algorithm and level ----

def special_rows(n, rng):
    big = np.finfo(np.float64).max
    rows = {"nan": rng.uniform(-5, 5, n), "inf": rng.uniform(-5, 5, n), "-inf": rng.uniform(-5, 5, n),
            "all -inf": np.full(n, -np.inf), "all inf": np.full(n, np.inf), "all nan": np.full(n, np.nan),
            "dbl_max": rng.choice(np.array([big, -big, 0.0, big]), n), "1e300": rng.choice(np.array([1e300, -1e300, 1.0]), n),
            "2^40 mix": rng.choice(np.array([2.0**40, 2.0**40 - 1, -2.0**40, 0.0]), n),
            "tiny": np.array([0.0, -700.0, -745.0, -760.0] * n)[:n]}
    rows["nan"][n // 2] = np.nan
    rows["inf"][n - 1] = np.inf
    rows["-inf"][0] = -np.inf
    return rows


@pytest.mark.parametrize("n", [1, 2, 5, 8, 33, 1025, 5000])
def test_special_values_match_scipy(level, algorithm, n):
    rng = np.random.default_rng(n)
    for what, x in special_rows(n, rng).items():
        with np.errstate(all="ignore"):
            expected = scipy.special.softmax(x)
            expected_log = scipy.special.log_softmax(x)
            expected_lse = scipy.special.logsumexp(x)
        y = twopass.softmax(x, algorithm=algorithm)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected), err_msg=what)
        ok = ~np.isnan(expected)
        np.testing.assert_allclose(y[ok], expected[ok], rtol=1e-14, atol=FLUSH64, err_msg=what)
        ly = twopass.log_softmax(x, algorithm=algorithm)
        np.testing.assert_array_equal(np.isnan(ly), np.isnan(expected_log), err_msg=what)
        np.testing.assert_allclose(ly, expected_log, rtol=1e-14, atol=1e-13, err_msg=what)
        lse = twopass.logsumexp(x)
        # near 0 (one dominant element), an absolute bound: log(1 + 1e-305) is 0 here
        np.testing.assert_allclose(lse, expected_lse, rtol=1e-15, atol=2 * EPS64, err_msg=what)


def test_minus_inf_among_finite(level, algorithm):
    rng = np.random.default_rng(2)
    for n in (3, 17, 300, 5000):
        x = rng.uniform(-50, 50, n)
        x[rng.random(n) < 0.5] = -np.inf
        x[0] = 1.0
        y = twopass.softmax(x, algorithm=algorithm)
        assert np.all(y[np.isinf(x)] == 0)
        assert rel64(y, ref_softmax(x)) <= (RTOL64 if level != "python" else 1e-13)


# ---- axes, layouts, out= ----

@pytest.mark.parametrize("shape, axis", [((40, 300), 0), ((40, 300), 1), ((5, 600, 7), 1), ((6, 5, 4), (0, 2)),
                                         ((300, 257), 0), ((2, 3), None)])
@pytest.mark.parametrize("order", ["C", "F"])
def test_axes_and_layouts_match_scipy(level, shape, axis, order):
    x = np.asarray(np.random.default_rng(1).normal(0, 30, shape), order=order)
    if x.ndim == 2 and shape[0] > 3:
        x[2, 1] = -np.inf
        x[:, 3] = 1e300  # a column two-pass cannot take
    with np.errstate(all="ignore"):
        expected = scipy.special.softmax(x, axis=axis)
        expected_log = scipy.special.log_softmax(x, axis=axis)
    y = twopass.softmax(x, axis=axis)
    np.testing.assert_allclose(y, expected, rtol=1e-13, atol=FLUSH64)
    axis1 = axis if isinstance(axis, int) else None
    if axis1 is not None:
        assert rel64(np.moveaxis(y, axis1, -1), ref_softmax(np.moveaxis(x, axis1, -1))) <= (
            RTOL64 if level != "python" else 1e-13)
    ly = twopass.log_softmax(x, axis=axis)
    np.testing.assert_allclose(ly, expected_log, rtol=1e-14, atol=1e-12)
    np.testing.assert_allclose(twopass.logsumexp(x, axis=axis), scipy.special.logsumexp(x, axis=axis), rtol=1e-15)
    out = np.empty_like(x)
    assert twopass.softmax(x, axis=axis, out=out) is out
    np.testing.assert_array_equal(out, y)
    inplace = x.copy(order="A")
    twopass.softmax(inplace, axis=axis, out=inplace)
    np.testing.assert_array_equal(inplace, y)


def test_columns_match_rows(level):
    """The columns kernels (axis 0 of a C array) against the rows kernels on the transpose."""
    x = np.random.default_rng(4).normal(0, 10, (1000, 300))
    y = twopass.softmax(x, axis=0)
    assert rel64(y.T, ref_softmax(x.T)) <= (RTOL64 if level != "python" else 1e-13)
    # each lane sums 1000 terms, so log sum may carry a few more ULP than a row's blocked sum
    check_log_softmax(twopass.log_softmax(x, axis=0).T, x.T, ulps=8, level=level)


def test_fast_path_float64(level):
    x = np.random.default_rng(6).normal(0, 5, (8, 1000))
    out = np.empty_like(x)
    assert twopass.softmax(x, axis=-1, out=out) is out
    np.testing.assert_array_equal(out, twopass._api.softmax(x, axis=-1))
    assert twopass.log_softmax(x, axis=-1).dtype == np.float64
    assert rel64(out, ref_softmax(x)) <= (RTOL64 if level != "python" else 1e-13)


def test_longdouble_stays_on_the_fallback(level):
    x = np.linspace(-5, 5, 100).astype(np.longdouble)
    before = twopass.runtime_info()["calls"]["python"]
    y = twopass.softmax(x)
    assert y.dtype == np.longdouble
    assert twopass.runtime_info()["calls"]["python"] == before + 1


def test_integers_run_in_float64(level):
    x = np.arange(-500, 500, dtype=np.int64)
    np.testing.assert_allclose(twopass.softmax(x), scipy.special.softmax(x.astype(np.float64)), rtol=1e-13,
                               atol=FLUSH64)
    np.testing.assert_allclose(twopass.logsumexp(x), scipy.special.logsumexp(x), rtol=1e-15)


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
def test_float64_kernels_are_more_accurate_than_float32(level_name):
    """A float64 result is not a float32 computation in disguise."""
    x = np.random.default_rng(8).uniform(-20, 20, 5000)
    with twopass.use_isa(level_name):
        for algorithm in twopass.ALGORITHMS[1:]:
            assert rel64(twopass.softmax(x, algorithm=algorithm), ref_softmax(x)) <= 1e-15 * 5


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
def test_streaming_stores_float64_same_bits(level_name):
    """float64 jobs beyond the streaming threshold run the float64 _nt kernels: bitwise the same
    results, nothing written outside the output, whatever its offset from a 64-byte boundary."""
    kernels = _dispatch._kernels
    saved = kernels.streaming_threshold()
    rng = np.random.default_rng(9)
    names = kernels.streaming_kernel_names(twopass.LEVELS.index(level_name), "float64")
    assert {"vscaleextexp", "vscaleexpminusmax", "vsubc"} <= set(names) <= {
        "vscaleextexp", "vscaleexpminusmax", "vsubc", "vscaleextexp_columns", "vsubc_columns"}
    assert all(n.startswith("twopass_f64_") and n.endswith("_nt") for n in names.values())
    try:
        with twopass.use_isa(level_name):
            for n in (1, 3, 4, 5, 9, 17, 4097, 70_001):
                x = rng.uniform(-300, 300, n)
                for offset in (0, 1, 3, 7):
                    for function in (twopass.softmax, twopass.log_softmax):
                        for algorithm in twopass.ALGORITHMS[1:]:  # auto: one of these, by job (test_dispatch)
                            results = []
                            for threshold in (1 << 62, 1):
                                kernels.set_streaming_threshold(threshold)
                                buf = np.full(n + 16, -7.25)
                                start = (-buf.ctypes.data % 64) // 8 + offset
                                y = buf[start:start + n]
                                before = kernels.thread_stats()["streaming_jobs"]
                                function(x, out=y, algorithm=algorithm, threads=1)
                                streamed = kernels.thread_stats()["streaming_jobs"] - before
                                assert streamed == (threshold == 1), (n, offset, algorithm)
                                assert np.all(buf[:start] == -7.25) and np.all(buf[start + n:] == -7.25)
                                results.append(y.copy())
                            np.testing.assert_array_equal(results[0], results[1], err_msg=str((n, offset, algorithm)))
    finally:
        kernels.set_streaming_threshold(saved)
