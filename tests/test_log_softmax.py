"""log_softmax, logsumexp and the mergeable extended sum, on every level and algorithm."""
import numpy as np
import pytest
import scipy.special

import twopass

from conftest import ALGORITHMS

EDGE_ROWS = [[np.nan, 1.0, 2.0], [np.inf, 1.0, 2.0], [np.inf, np.inf], [-np.inf, -np.inf, -np.inf],
             [-np.inf, 1.0, 2.0], [-np.inf, np.inf], [np.nan, -np.inf], [0.0], [-np.inf], [np.inf],
             [3.0e38, -3.0e38, 3.0e38], [1e30, 1.0], [-1e30, -1e30], [1e-45, -1e-45, 0.0]]


def reference_log_softmax(x, axis=-1):
    """In float64, then rounded to x's float type (where -6e38 is -inf in float32)."""
    with np.errstate(all="ignore"):
        ref = scipy.special.log_softmax(np.asarray(x, np.float64), axis=axis)
        return ref.astype(np.asarray(x).dtype).astype(np.float64) if np.asarray(x).dtype.kind == "f" else ref


def assert_log_close(y, ref, x_scale):
    """Equal NaNs and infinities; finite values within 1e-6 relative or a few float32 ulps of the
    magnitudes subtracted (log_softmax = x - logsumexp cancels)."""
    y = np.asarray(y, np.float64)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(ref))
    ok = np.isfinite(ref)
    tolerance = 1e-6 * np.abs(ref[ok]) + 4 * np.finfo(np.float32).eps * np.broadcast_to(x_scale, ref.shape)[ok]
    assert np.all(np.abs(y[ok] - ref[ok]) <= tolerance)


@pytest.mark.parametrize("n", [1, 2, 7, 8, 15, 16, 17, 33, 64, 100, 129, 255, 1000, 4097, 100_000])
def test_log_softmax_accuracy(level, algorithm, n):
    x = np.random.default_rng(n).uniform(-100, 100, n).astype(np.float32)
    ref = reference_log_softmax(x)
    y = twopass.log_softmax(x, algorithm=algorithm)
    assert y.dtype == np.float32
    assert_log_close(y, ref, np.maximum(np.abs(x), np.abs(scipy.special.logsumexp(x.astype(np.float64)))))


@pytest.mark.parametrize("row", EDGE_ROWS, ids=str)
def test_log_softmax_edge_cases_match_scipy(level, algorithm, row):
    for pad in (0, 20):
        x = np.concatenate([row, np.linspace(-3, 3, pad)]).astype(np.float32)
        ref = reference_log_softmax(x)
        y = twopass.log_softmax(x, algorithm=algorithm)
        assert_log_close(y, ref, np.where(np.isfinite(x), np.abs(x), 0).max() + 10)


@pytest.mark.parametrize("shape, axis", [((4, 5), None), ((4, 5), 0), ((2, 3, 4), (0, 2)), ((3,), -1)], ids=str)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int8, np.int32])
def test_log_softmax_axes_and_dtypes_like_scipy(level, shape, axis, dtype):
    x = (np.random.default_rng(1).uniform(-5, 5, shape)).astype(dtype)
    expected = scipy.special.log_softmax(x, axis=axis)
    y = twopass.log_softmax(x, axis=axis)
    assert y.dtype == expected.dtype and y.shape == expected.shape
    tol = 2e-3 if expected.dtype == np.float16 else 1e-6
    np.testing.assert_allclose(y.astype(np.float64), reference_log_softmax(x.astype(np.float64), axis=axis if axis is not None else (0, 1, 2)[: x.ndim]), rtol=tol, atol=tol)


def test_log_softmax_out_and_in_place(level, algorithm):
    x = np.random.default_rng(3).uniform(-30, 30, (6, 300)).astype(np.float32)
    ref = reference_log_softmax(x)
    out = np.empty_like(x)
    assert twopass.log_softmax(x, axis=1, out=out, algorithm=algorithm) is out
    assert twopass.log_softmax(x, axis=1, out=x, algorithm=algorithm) is x
    for y in (out, x):
        assert_log_close(y, ref, 60.0)
    with pytest.raises(ValueError):
        twopass.log_softmax(x, out=np.empty((6, 299), np.float32))
    with pytest.raises(ValueError):
        twopass.log_softmax(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="valid choices"):
        twopass.log_softmax(x, algorithm="nope")


# ---- logsumexp ----

@pytest.mark.parametrize("shape, axis, keepdims", [((1000,), None, False), ((4, 5), 1, False), ((4, 5), 0, True),
                                                   ((2, 3, 4), (0, 2), False), ((2, 3, 4), None, True),
                                                   ((3, 100_001), -1, False), ((4, 5), (), False)], ids=str)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int16, np.bool_])
def test_logsumexp_matches_scipy(level, shape, axis, keepdims, dtype):
    a = np.random.default_rng(2).uniform(-50, 50, shape).astype(dtype)
    expected = scipy.special.logsumexp(a, axis=axis, keepdims=keepdims)
    got = twopass.logsumexp(a, axis=axis, keepdims=keepdims)
    assert type(got) is type(expected)
    assert np.asarray(got).dtype == np.asarray(expected).dtype
    assert np.shape(got) == np.shape(expected)
    exact = scipy.special.logsumexp(a.astype(np.float64), axis=axis, keepdims=keepdims)
    tol = 1e-3 if dtype == np.float16 else (1e-6 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(np.asarray(got, np.float64), exact, rtol=tol)


@pytest.mark.parametrize("row", EDGE_ROWS + [[]], ids=str)
def test_logsumexp_edge_cases_match_scipy(level, row):
    a = np.array(row, np.float32)
    with np.errstate(all="ignore"):
        expected = scipy.special.logsumexp(a.astype(np.float64), return_sign=True)
    value, sign = twopass.logsumexp(a, return_sign=True)
    np.testing.assert_allclose(value, expected[0], rtol=1e-6)
    # SciPy says sign -1 for an empty sum (an artifact of its code); twopass says 0, as for all -inf
    np.testing.assert_array_equal(sign, expected[1] if len(row) else 0.0)


@pytest.mark.parametrize("b", [np.array([1.0, -2.0, 0.5]), np.array([1, 0, 1]), np.array([[1.0], [2.0]]), 0.5,
                               np.array([1.0, -1.0, 0.0])], ids=str)
@pytest.mark.parametrize("return_sign", [False, True])
def test_logsumexp_weights_match_scipy(level, b, return_sign):
    a = np.array([1.0, 2.0, 0.0])
    with np.errstate(all="ignore"):
        expected = scipy.special.logsumexp(a, b=b, return_sign=return_sign)
        got = twopass.logsumexp(a, b=b, return_sign=return_sign)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    a2 = np.array([[1.0, np.inf], [2.0, 3.0]])
    np.testing.assert_allclose(twopass.logsumexp(a2, axis=1, b=[1, 0]), scipy.special.logsumexp(a2, axis=1, b=[1, 0]))


def test_logsumexp_out(level):
    a = np.random.default_rng(4).uniform(-5, 5, (7, 33)).astype(np.float32)
    out = np.empty(7, np.float32)
    assert twopass.logsumexp(a, axis=1, out=out) is out
    np.testing.assert_allclose(out, scipy.special.logsumexp(a.astype(np.float64), axis=1), rtol=1e-6)
    with pytest.raises(ValueError):
        twopass.logsumexp(a, axis=1, out=np.empty(6, np.float32))
    with pytest.raises(TypeError):
        twopass.logsumexp(np.array(["a"]))


# ---- extsum ----

def test_extsum_is_the_sum_of_exp(level):
    x = np.random.default_rng(5).uniform(-50, 50, (4, 3000)).astype(np.float32)
    mantissa, exponent = twopass.extsum(x, axis=1)
    assert mantissa.shape == exponent.shape == (4,)
    assert np.all(exponent == np.round(exponent))
    total = np.exp(x.astype(np.float64)).sum(axis=1)
    np.testing.assert_allclose(mantissa * 2.0**exponent, total, rtol=1e-6)
    m, e = twopass.extsum(x[0])
    assert isinstance(m, np.floating) and isinstance(e, np.floating)


def test_extsum_pieces_merge_to_the_whole_in_any_order(level):
    x = np.random.default_rng(6).uniform(-300, 300, 100_000).astype(np.float32)  # exp overflows float32
    pieces = [twopass.extsum(p) for p in np.array_split(x, 7)] + [twopass.extsum(x[:0])]
    forward = pieces[0]
    for p in pieces[1:]:
        forward = twopass.merge_extsum(forward, p)
    backward = pieces[-1]
    for p in pieces[-2::-1]:
        backward = twopass.merge_extsum(p, backward)
    whole = scipy.special.logsumexp(x.astype(np.float64))
    for pair in (forward, backward):  # float32 kernels: the sum to ~1e-7 relative, so 1e-7 in log
        assert abs(twopass.logsumexp_from_extsum(pair) - whole) <= 2e-7
    y = twopass.softmax_from_extsum(x, forward)
    np.testing.assert_allclose(y, scipy.special.softmax(x.astype(np.float64)), rtol=1e-6, atol=2.0**-125)
    identity = twopass.extsum(np.zeros(0, np.float32))
    assert identity == (0.0, -np.inf)
    merged = twopass.merge_extsum(identity, pieces[0])
    assert merged[0] == pieces[0][0] and merged[1] == pieces[0][1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_from_extsum_matches_softmax(level, dtype):
    """Pass 2 from a given sum: special slices give softmax's NaN, large values keep full precision
    (the kernels for float32, x - e ln2 split exactly for float64), 2-D rows along either axis."""
    rows = [[1.0, 2.0, np.inf], [1.0, np.nan, 2.0], [-np.inf, -np.inf, -np.inf], [-np.inf, 0.0, 1.0],
            [1e4, 1e4, 1e4], [-8e4, -8e4 + 1, -8e4 + 2], [3.0, 3.0, 3.0]]
    x = np.array(rows, dtype)
    with np.errstate(all="ignore"):
        expected = scipy.special.softmax(x.astype(np.float64), axis=1)
    for axis, xs in ((1, x), (0, np.ascontiguousarray(x.T))):
        y = twopass.softmax_from_extsum(xs, twopass.extsum(xs, axis=axis), axis=axis)
        y = y if axis == 1 else y.T
        assert y.dtype == dtype
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
        ok = ~np.isnan(expected)
        rtol = 4e-7 if dtype == np.float32 else 1e-14
        np.testing.assert_allclose(y[ok], expected[ok], rtol=rtol, atol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("n", [1000, 70_001])
def test_softmax_from_extsum_writes_every_output_alike(level, dtype, n):
    """The kernel writes a fresh C-order result (and out= of that layout, and out=x) itself, and
    any other out= through a copy: every way gives the same bits, and out= is returned."""
    x = np.random.default_rng(5).uniform(-30, 30, (3, n)).astype(dtype)
    pair = twopass.extsum(x, axis=1)
    y = twopass.softmax_from_extsum(x, pair, axis=1)
    assert y.dtype == dtype and y.flags.c_contiguous and y.flags.owndata
    with np.errstate(all="ignore"):
        assert np.all(np.abs(y.astype(np.float64).sum(axis=1) - 1) < (3e-2 if dtype == np.float16 else 1e-5))
    outs = {"C": np.empty_like(x), "F": np.empty(x.shape, dtype, order="F"),
            "strided": np.empty((3, 2 * n), dtype)[:, ::2], "in place": x.copy()}
    for name, out in outs.items():
        source = out if name == "in place" else x
        assert twopass.softmax_from_extsum(source, pair, axis=1, out=out) is out
        np.testing.assert_array_equal(out, y, err_msg=name)
    yt = twopass.softmax_from_extsum(np.ascontiguousarray(x.T), pair, axis=0)  # the reduced axis first
    np.testing.assert_array_equal(yt.T, y)


@pytest.mark.parametrize("row", [[np.nan, 1.0], [np.inf, 1.0], [-np.inf, -np.inf], [1e30, 0.0]], ids=str)
def test_extsum_special_rows_keep_logsumexp(level, row):
    x = np.array(row, np.float32)
    with np.errstate(all="ignore"):
        expected = scipy.special.logsumexp(x.astype(np.float64))
    np.testing.assert_allclose(twopass.logsumexp_from_extsum(twopass.extsum(x)), expected, rtol=1e-12)


def test_merge_keeps_inf_and_nan_pieces(level):
    inf_piece = twopass.extsum(np.array([np.inf, 1.0], np.float32))
    nan_piece = twopass.extsum(np.array([np.nan, 1.0], np.float32))
    big = twopass.extsum(np.array([800.0, 1.0], np.float32))
    assert twopass.logsumexp_from_extsum(twopass.merge_extsum(inf_piece, big)) == np.inf
    assert twopass.logsumexp_from_extsum(twopass.merge_extsum(big, inf_piece)) == np.inf
    assert np.isnan(twopass.logsumexp_from_extsum(twopass.merge_extsum(big, nan_piece)))


def test_complex_logsumexp_like_scipy(level):
    a = np.array([1 + 1j, 2.0, -0.5j])
    for b in (None, [1, 2, 0.5]):
        for return_sign in (False, True):
            expected = scipy.special.logsumexp(a, b=b, return_sign=return_sign)
            got = twopass.logsumexp(a, b=b, return_sign=return_sign)
            np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_bad_out_for_logsumexp_and_softmax_from_extsum(level):
    a = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError):
        twopass.logsumexp(a, axis=1, out=np.empty(3, np.float64))
    pair = twopass.extsum(a, axis=1)
    for bad, error in ((np.empty((3, 4), np.int64), TypeError), (np.empty((2, 3), np.float32), ValueError)):
        with pytest.raises(error):
            twopass.softmax_from_extsum(a, pair, axis=1, out=bad)


# ---- a reduced axis that is not the contiguous one: the columns kernels, no transposing copy ----

COLUMN_CASES = [(1, 1, 1), (1, 5, 7), (2, 3, 8), (1, 300, 9), (3, 17, 16), (1, 257, 255), (2, 513, 256),
                (1, 40, 257), (4, 1, 100)]


@pytest.mark.parametrize("outer, rows, inner", COLUMN_CASES, ids=str)
def test_log_softmax_non_contiguous_axis(level, outer, rows, inner):
    x = np.random.default_rng(rows * inner).uniform(-100, 100, (outer, rows, inner)).astype(np.float32)
    ref = reference_log_softmax(x, axis=1)
    scale = np.maximum(np.abs(x), np.abs(scipy.special.logsumexp(x.astype(np.float64), axis=1, keepdims=True)))
    for layout in (x, np.asfortranarray(x)):
        for algorithm in ("auto", "two_pass"):
            assert_log_close(twopass.log_softmax(layout, axis=1, algorithm=algorithm), ref, scale)
        inplace = layout.copy(order="K")
        assert twopass.log_softmax(inplace, axis=1, out=inplace) is inplace
        assert_log_close(inplace, ref, scale)


def test_log_softmax_special_columns(level):
    """Columns two-pass cannot take (NaN, +-inf, huge) get SciPy's answers, in place too."""
    x = np.random.default_rng(21).uniform(-50, 50, (300, 270)).astype(np.float32)
    x[3, 5] = np.nan
    x[:, 7] = -np.inf
    x[10, 9] = np.inf
    x[:, 11] = 1e30
    x[2, 11] = 3e30
    x[:, 269] = np.nan
    ref = reference_log_softmax(x, axis=0)
    scale = np.maximum(np.abs(np.nan_to_num(x)), 1e30 * (np.arange(270) == 11) + 200)
    for out in (None, x.copy()):
        y = twopass.log_softmax(x if out is None else out, axis=0, out=out)
        assert_log_close(y, ref, scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("row", [[3e38, 3e38, 3e38, 0.0], [1e16] * 4, [-1e30, -1e30], [2e6, 2e6, 2e6 - 1]], ids=str)
def test_log_softmax_tied_maxima_at_huge_magnitude(level, algorithm, dtype, row):
    """Beyond the extended range, log_softmax is (x - max) - log sum exp(x - max), as SciPy: exact
    at the maxima (x - logsumexp in floating point would give 0 there, as logsumexp rounds to x)."""
    x = np.array(row, dtype)
    expected = scipy.special.log_softmax(x.astype(np.float64))
    y = twopass.log_softmax(x, algorithm=algorithm)
    top = x == x.max()
    np.testing.assert_allclose(y[top], expected[top], rtol=2e-7)
    np.testing.assert_allclose(y, expected, rtol=2e-7)
