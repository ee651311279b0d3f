"""The mathematical bounds of the results, which SciPy's arithmetic keeps by construction (its max
term is exp(0) = 1 exactly, so sum >= 1 and exp(x - max) <= sum):

- softmax is at most 1 and log_softmax at most 0, on every level (forced), with every algorithm, on
  rows, down columns, through softmax_from_extsum and the dask split plan. Two-pass and recompute
  round their exps apart from the sum, which put about 2% of the largest elements of two-element
  rows an ulp above 1, and logsumexp below the max (log_softmax > 0 for a third of them), before
  the kernels clamped;
- a single element gives what SciPy gives, exactly: softmax 1, log_softmax 0, logsumexp the element
  (NaN, NaN and the element for +-inf and NaN). The general passes gave 1 - 2^-24 or +-1e-7.
"""
import numpy as np
import pytest
import scipy.special

import twopass

LEVELS = list(twopass.available_levels())
ALGORITHMS = list(twopass.ALGORITHMS)
DTYPES = [np.float16, np.float32, np.float64, np.longdouble]  # longdouble: the NumPy fallback on every level


def dominated_rows(dtype, rows, n, seed):
    """Rows whose max outweighs the rest (the cases where the largest result is nearest its bound),
    and a quarter of plain random rows."""
    rng = np.random.default_rng(seed)
    top = 10.0 if dtype == np.float16 else 100.0
    x = rng.uniform(-top, top, (rows, 1)) - rng.uniform(0, 40, (rows, n))
    x[:, 0] = x[:, 0] + rng.uniform(20, 40, rows)
    x[rows // 4 * 3:] = rng.uniform(-top, top, (rows - rows // 4 * 3, n))
    return x.astype(dtype)


def assert_bounded(y, upper, what):
    finite = y[~np.isnan(y)]
    assert finite.size and finite.max() <= upper, (what, finite.max() if finite.size else None)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", [2, 3, 17, 100, 1000])
@pytest.mark.parametrize("level", LEVELS)
def test_softmax_at_most_1_and_log_softmax_at_most_0(level, n, dtype):
    x = dominated_rows(dtype, 4000 if n < 100 else 400, n, seed=n)
    with twopass.use_isa(level):
        for algorithm in ALGORITHMS:
            for axis, data in ((-1, x), (0, np.ascontiguousarray(x.T))):  # rows, and down columns
                what = (level, algorithm, axis)
                y = twopass.softmax(data, axis=axis, algorithm=algorithm)
                assert_bounded(y, 1, what)
                assert_bounded(twopass.log_softmax(data, axis=axis, algorithm=algorithm), 0, what)
                # the bound costs no accuracy: the largest results are still 1 - (the rest)
                ref = scipy.special.softmax(data.astype(np.float64), axis=axis)
                rtol, atol = {np.float16: (2e-3, 2.0**-23), np.float32: (1e-5, 2.0**-125),
                              np.float64: (1e-13, 2.0**-1021), np.longdouble: (1e-13, 2.0**-1021)}[dtype]  # atol: flushed
                assert np.allclose(y, ref, rtol=rtol, atol=atol), what
        pair = twopass.extsum(x, axis=-1)
        assert_bounded(twopass.softmax_from_extsum(x, pair, axis=-1), 1, (level, "from_extsum"))


def test_clamps_keep_nan_and_minus_inf():
    """NaN, infinities and zeros where SciPy has them; the other values SciPy's rounded to float32, and
    on AVX2, whose three-pass exp is another (f32_exp_avx2.h: 1 ULP off at x = 3), within the README's
    accuracy: 1e-6 relative for softmax, one float32 ULP of max(|x|, |logsumexp|) for log_softmax."""
    x = np.array([[0.0, np.nan, 1.0], [np.inf, 1.0, -np.inf], [-np.inf, -np.inf, -np.inf],
                  [3.0, -np.inf, 3.0]], np.float32)
    for level in LEVELS:
        with twopass.use_isa(level):
            for algorithm in ALGORITHMS:
                for f, g in ((twopass.softmax, scipy.special.softmax),
                             (twopass.log_softmax, scipy.special.log_softmax)):
                    with np.errstate(invalid="ignore"):
                        ref = g(x.astype(np.float64), axis=1)
                    got = f(x, axis=1, algorithm=algorithm)
                    what = (level, algorithm, f.__name__)
                    assert np.array_equal(np.isnan(got), np.isnan(ref)), what
                    special = np.isinf(ref) | (ref == 0)
                    assert np.array_equal(got[special], ref[special]), what
                    values = ~np.isnan(ref) & ~special
                    if level != "avx2":
                        with np.errstate(invalid="ignore"):  # inf - inf where values is False
                            tolerance = np.abs(ref.astype(np.float32) - ref)
                    elif f is twopass.softmax:
                        tolerance = 1e-6 * np.abs(ref)
                    else:  # one float32 ULP of max(|x|, |logsumexp|) of the slice (README)
                        with np.errstate(invalid="ignore"):
                            lse = scipy.special.logsumexp(x.astype(np.float64), axis=1, keepdims=True)
                        size = np.maximum(np.abs(np.where(np.isfinite(x), x, 0)).max(axis=1, keepdims=True),
                                          np.abs(np.where(np.isfinite(lse), lse, 0)))
                        tolerance = np.broadcast_to(np.spacing(size.astype(np.float32)), x.shape)
                    assert np.all(np.abs(got[values] - ref[values]) <= tolerance[values]), what


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("level", LEVELS)
def test_a_single_element_gives_scipys_exact_results(level, dtype):
    rng = np.random.default_rng(7)
    top = 60000.0 if dtype == np.float16 else 1e30
    values = np.concatenate([rng.uniform(-100, 100, 3000), rng.uniform(-top, top, 200),
                             [0.0, -0.0, np.inf, -np.inf, np.nan]]).astype(dtype)
    with np.errstate(invalid="ignore"):
        expected = {"softmax": scipy.special.softmax(values[:, None].astype(np.float64), axis=1),
                    "log_softmax": scipy.special.log_softmax(values[:, None].astype(np.float64), axis=1)}
    with twopass.use_isa(level):
        for algorithm in ALGORITHMS:
            for kind in ("softmax", "log_softmax"):
                f = getattr(twopass, kind)
                want = expected[kind].astype(dtype)
                # rows of one element; the same down columns (a (1, n) array over axis 0, C and F
                # order); a 0-d array; the whole of a 1-element array
                for got in (f(values[:, None], axis=1, algorithm=algorithm),
                            f(values[None, :], axis=0, algorithm=algorithm).T,
                            f(np.asfortranarray(values[None, :]), axis=0, algorithm=algorithm).T):
                    assert np.array_equal(got, want, equal_nan=True), (level, algorithm, kind)
                assert np.array_equal(f(values[5], algorithm=algorithm), want[5, 0])
                assert np.array_equal(f(values[-1:], axis=None, algorithm=algorithm), want[-1:, 0], equal_nan=True)
        lse = twopass.logsumexp(values[:, None], axis=1)
        assert np.array_equal(lse, values.astype(lse.dtype), equal_nan=True), level
        assert not np.signbit(lse[values == 0]).any(), level  # SciPy's x + log 1 turns -0 into +0


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32], ids=lambda d: np.dtype(d).name)
def test_dask_split_plan_keeps_the_bounds(dtype):
    """The split plan's pass 2 in NumPy, (x - hi) - lo clamped at 0: log_softmax (above 0 for some of
    these rows without the clamp), and softmax as its exp for integer input (float softmax runs on the
    kernels, softmax_from_extsum)."""
    da = pytest.importorskip("dask.array")
    import twopass.dask as tpd
    x = dominated_rows(np.float64, 2000, 4, seed=3).astype(dtype)
    xd = da.from_array(x, chunks=(500, 2))  # the reduced axis split: two-pass across blocks
    assert_bounded(tpd.log_softmax(xd, axis=1).compute(scheduler="synchronous"), 0, "dask log_softmax")
    assert_bounded(tpd.softmax(xd, axis=1).compute(scheduler="synchronous"), 1, "dask softmax")
