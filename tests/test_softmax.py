"""softmax: accuracy on every level and algorithm, SciPy's semantics on edge cases, out=, dtypes, axes."""
import numpy as np
import pytest
import scipy.special

import twopass
from twopass import _dispatch

from conftest import ALGORITHMS, FLUSH32, TINY32, max_relative_error, reference_softmax

# Lengths 0..300 cover every tail of every tile; then around the tiles (16- and 8-float vectors,
# 32..192-float iterations) and the 4096-element sum blocks.
TILE_LENGTHS = sorted(set(range(1, 301)) | {t + d for t in (384, 512, 4096, 8192) for d in (-1, 0, 1)})


def uniform(n, lo=-100.0, hi=100.0, seed=0, shape=None):
    rng = np.random.default_rng(seed)
    return rng.uniform(lo, hi, size=shape if shape is not None else n).astype(np.float32)


def test_every_length_around_the_tiles(level, algorithm):
    rows = [uniform(n, seed=n) for n in TILE_LENGTHS]
    for x in rows:
        y = twopass.softmax(x, algorithm=algorithm)
        assert y.dtype == np.float32 and y.shape == x.shape
        err = max_relative_error(y, reference_softmax(x))
        assert err <= 1e-6, (len(x), err)


@pytest.mark.parametrize("n", [10**4, 10**5])
@pytest.mark.parametrize("lo, hi", [(-100, 100), (-1, 1), (-1e4, 1e4), (0, 0)])
def test_large_rows(level, algorithm, n, lo, hi):
    x = uniform(n, lo, hi, seed=n)
    err = max_relative_error(twopass.softmax(x, algorithm=algorithm), reference_softmax(x))
    assert err <= 1e-6


@pytest.mark.parametrize("algorithm", ["two_pass", "three_pass_reload", "three_pass_recompute", "blocked_reload"])
def test_pairs_of_equal_values_give_halves(level, algorithm):
    """Rows of two equal floats, 20,000 values in [-80, 80]: each output within one float32 ULP of 1/2
    (1.2e-7 relative; the NumPy fallback gives 1/2 exactly). The exps of the sum and of the outputs
    must then be the same function: two-pass's pass 2 on the AVX2 table exp while its pass 1 summed a
    degree-5 polynomial (src/avx2/f32_exp_avx2.h, a975fa0) gave 2.4e-7."""
    values = np.random.default_rng(3).uniform(-80, 80, 20000).astype(np.float32)
    y = twopass.softmax(np.stack([values, values], 1), axis=-1, algorithm=algorithm)
    worst = float(np.abs(y.astype(np.float64) - 0.5).max() / 0.5)
    assert worst <= 1.2e-7, worst


def test_many_short_rows(level, algorithm):
    for n in (1, 3, 17, 100):
        x = uniform(None, shape=(3000, n), seed=n)
        err = max_relative_error(twopass.softmax(x, axis=1, algorithm=algorithm), reference_softmax(x, 1))
        assert err <= 1e-6


def test_huge_magnitudes_never_overflow(level, algorithm):
    rng = np.random.default_rng(5)
    for scale in (1e6, 1e10, 1e20, 1e30, 3e38):
        x = (rng.uniform(-1, 1, size=(20, 97)) * scale).astype(np.float32)
        x[:, 3] = scale  # a tie at the top in some rows
        x[5] = -scale    # a row of equal, hugely negative values
        y = twopass.softmax(x, axis=-1, algorithm=algorithm)
        ref = reference_softmax(x)
        assert np.all(np.isfinite(y))
        assert max_relative_error(y, ref) <= 1e-6
        np.testing.assert_allclose(y.sum(axis=-1, dtype=np.float64), 1.0, rtol=1e-6)


def test_tiny_outputs_are_flushed_or_exact(level, algorithm):
    # exp(-86 .. -104) relative to the max is near or below the smallest normal float32: each output
    # is 0 (flushed, allowed below 2^-125) or correctly rounded, never negative or garbage
    x = np.array([0.0, -86.0, -86.7, -87.0, -87.5, -88.0, -90.5, -95.0, -100.0, -103.0, -104.0, -200.0], np.float32)
    ref = reference_softmax(x)
    y = twopass.softmax(x, algorithm=algorithm).astype(np.float64)
    assert np.all(y >= 0)
    flushed = y == 0
    assert np.all(ref[flushed] < FLUSH32)
    assert np.all(np.abs(y - ref)[~flushed] <= 1e-6 * ref[~flushed] + 2.0**-149)
    assert np.all(y[ref >= FLUSH32] > 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_kernels_flush_subnormal_outputs_and_restore_the_mxcsr(level, algorithm, dtype, threads):
    """The kernels run with flush-to-zero (Intel forms each subnormal by a microcode assist: recompute
    was 4.5x slower on AVX-512): no output is subnormal, the values are otherwise those of the
    accuracy tests; and the caller's MXCSR comes back unchanged (NumPy still makes subnormals), on
    the calling thread and with threads. The NumPy fallback keeps subnormals, as SciPy."""
    info = np.finfo(dtype)
    # about 2.5% of the outputs in the subnormal range (below the max by 87..104 for float32)
    spread = 200.0 if dtype == np.float32 else 1500.0
    x = np.random.default_rng(9).uniform(-spread / 2, spread / 2, size=(4, 30_000)).astype(dtype)
    y = twopass.softmax(x, axis=-1, algorithm=algorithm, threads=threads)
    subnormal = (y > 0) & (y < info.tiny)
    ref = reference_softmax(x)
    if level == "python":
        assert subnormal.any()  # as SciPy: the data has them
    else:
        assert not subnormal.any(), f"{subnormal.sum()} subnormal outputs"
    assert np.all(np.abs(y - ref) <= 1e-6 * ref + 2 * info.tiny)
    tiny = np.full(8, info.tiny, dtype)
    assert np.all(tiny * dtype(0.25) > 0)  # MXCSR.FTZ is off again: NumPy forms the subnormal


EDGE_ROWS = [
    [np.nan, 1.0, 2.0],
    [1.0, 2.0, np.nan],
    [np.inf, 1.0, 2.0],
    [np.inf, np.inf],
    [-np.inf, -np.inf, -np.inf],
    [-np.inf, 1.0, 2.0],
    [-np.inf, np.inf],
    [np.nan, -np.inf],
    [0.0],
    [-np.inf],
    [np.inf],
    [np.nan],
    [3.0e38, -3.0e38, 3.0e38],
    [1e-45, -1e-45, 0.0],
]


@pytest.mark.parametrize("row", EDGE_ROWS, ids=str)
@pytest.mark.parametrize("length", [1, 17, 40])
def test_edge_cases_match_scipy(level, algorithm, row, length):
    # the special values at the start, in the middle and in the masked tail of longer rows
    for pad_at in ("end", "start"):
        pad = np.linspace(-3, 3, max(0, length - len(row)))
        x = np.concatenate([row, pad] if pad_at == "end" else [pad, row]).astype(np.float32)
        with np.errstate(all="ignore"):
            expected = scipy.special.softmax(x.astype(np.float64))
        y = twopass.softmax(x, algorithm=algorithm)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
        ok = ~np.isnan(expected)
        np.testing.assert_allclose(y[ok], expected[ok], rtol=1e-6, atol=FLUSH32)


def test_nan_and_inf_rows_in_a_batch(level, algorithm):
    x = uniform(None, shape=(6, 50), seed=3)
    x[1, 7] = np.nan
    x[2, :] = -np.inf
    x[3, 49] = np.inf
    x[4, :10] = -np.inf
    y = twopass.softmax(x, axis=1, algorithm=algorithm)
    with np.errstate(all="ignore"):
        expected = scipy.special.softmax(x.astype(np.float64), axis=1)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(y[ok], expected[ok], rtol=1e-6, atol=FLUSH32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_nan_anywhere_makes_every_output_nan(level, algorithm, dtype):
    """As SciPy: a NaN anywhere in a slice, whatever surrounds it (here +inf first, then -inf or
    numbers), makes softmax, log_softmax and logsumexp NaN. A max taken with max instructions alone
    loses a NaN in some positions (then +inf - (-inf) gave inf)."""
    for n in (1, 2, 7, 8, 9, 16, 17, 33, 64, 100, 129, 257):
        for fill in (-np.inf, 1.5):
            for i in range(n):
                x = np.full(n, fill, dtype)
                x[0] = np.inf
                x[i] = np.nan
                what = (n, fill, i)
                assert np.isnan(twopass.softmax(x, algorithm=algorithm)).all(), what
                assert np.isnan(twopass.log_softmax(x, algorithm=algorithm)).all(), what
                assert np.isnan(twopass.logsumexp(x)), what


# ---- SciPy semantics: shapes, axes, dtypes ----

SHAPES_AXES = [((7,), None), ((7,), 0), ((7,), -1), ((4, 5), None), ((4, 5), 0), ((4, 5), 1),
               ((4, 5), (0, 1)), ((2, 3, 4), 1), ((2, 3, 4), (0, 2)), ((2, 3, 4), (2, 0)),
               ((2, 3, 4), -2), ((3, 1, 4), 1), ((2, 3, 4, 5), (1, 3)), ((4, 5), ())]


@pytest.mark.parametrize("shape, axis", SHAPES_AXES, ids=str)
def test_axes_match_scipy(level, shape, axis):
    x = uniform(None, -10, 10, shape=shape, seed=len(shape))
    expected = scipy.special.softmax(x.astype(np.float64), axis=axis)
    for layout in (x, np.asfortranarray(x), x[..., ::-1], np.flip(x)):
        y = twopass.softmax(layout, axis=axis)
        assert y.shape == layout.shape and y.dtype == np.float32
        expected = scipy.special.softmax(layout.astype(np.float64), axis=axis)
        np.testing.assert_allclose(y, expected, rtol=1e-6, atol=TINY32)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int8, np.uint8, np.int16,
                                   np.uint16, np.int32, np.uint32, np.int64, np.uint64, np.longdouble])
def test_dtypes_match_scipy(level, dtype):
    # same result dtype as SciPy; values from a float64 reference, since SciPy computes x - max in
    # the integer type and wraps around for unsigned integers
    x = np.array([[1, 2, 3, 4, 0], [5, 3, 1, 0, 2]], dtype=dtype)
    with np.errstate(all="ignore"):
        expected = scipy.special.softmax(x, axis=1)
    y = twopass.softmax(x, axis=1)
    assert y.dtype == expected.dtype
    rtol = {np.float16: 2e-3}.get(np.dtype(expected.dtype).type, 1e-6)
    np.testing.assert_allclose(y.astype(np.float64), reference_softmax(x.astype(np.float64), 1), rtol=rtol)


def test_float16_matches_float32_rounded(level):
    x = uniform(1000, -20, 20).astype(np.float16)
    y = twopass.softmax(x)
    assert y.dtype == np.float16
    ref = reference_softmax(x.astype(np.float64)).astype(np.float16)
    # one float16 rounding of a float32 result: within one float16 ULP of the rounded reference
    assert np.all(np.abs(y.astype(np.float64) - ref) <= np.spacing(np.maximum(np.abs(ref), np.float16(6.1e-5))).astype(np.float64))


def test_float64_is_accurate_to_float64(level, algorithm):
    x = np.random.default_rng(2).uniform(-100, 100, size=(5, 3001))
    y = twopass.softmax(x, axis=1, algorithm=algorithm)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, reference_softmax(x, 1), rtol=1e-12, atol=1e-300)


def test_complex_input_as_scipy(level):
    x = np.array([1 + 1j, 2 - 0.5j, 0.5 + 0j])
    np.testing.assert_allclose(twopass.softmax(x), scipy.special.softmax(x), rtol=1e-12)


@pytest.mark.parametrize("x", [3.0, np.float32(2.5), np.array(1.5, np.float32), np.float64(-7.0), 4, [1.0, 2.0], (3, 4, 5), [[1, 2], [3, 4]]], ids=repr)
def test_scalars_lists_and_0d_like_scipy(level, x):
    expected = scipy.special.softmax(x)
    y = twopass.softmax(x)
    assert type(y) is type(expected)
    assert np.asarray(y).dtype == np.asarray(expected).dtype
    np.testing.assert_allclose(y, expected, rtol=1e-6)


@pytest.mark.parametrize("shape, axis", [((0,), None), ((0, 5), 0), ((5, 0), 1), ((0, 0), 1), ((0, 5), None)], ids=str)
def test_empty_reductions_raise_like_scipy(level, shape, axis):
    with pytest.raises(ValueError) as scipy_error:
        scipy.special.softmax(np.zeros(shape, np.float32), axis=axis)
    with pytest.raises(ValueError) as our_error:
        twopass.softmax(np.zeros(shape, np.float32), axis=axis)
    assert str(our_error.value) == str(scipy_error.value)


@pytest.mark.parametrize("shape, axis", [((0, 5), 1), ((5, 0), 0), ((2, 0, 3), 2)], ids=str)
def test_empty_arrays_with_nonempty_slices(level, shape, axis):
    expected = scipy.special.softmax(np.zeros(shape, np.float32), axis=axis)
    y = twopass.softmax(np.zeros(shape, np.float32), axis=axis)
    assert y.shape == expected.shape and y.dtype == expected.dtype


@pytest.mark.parametrize("axis, error", [(2, np.exceptions.AxisError), (-3, np.exceptions.AxisError),
                                         ((0, 0), ValueError), (1.5, TypeError), ("1", TypeError)])
def test_bad_axis_raises_like_scipy(axis, error):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(error):
        scipy.special.softmax(x, axis=axis)
    with pytest.raises(error):
        twopass.softmax(x, axis=axis)


@pytest.mark.parametrize("x", [np.array([True, False]), np.array(["a", "b"]), np.array([b"a"]),
                               np.array([1, 2], dtype="datetime64[s]"), np.array([1.0, None], dtype=object)], ids=repr)
def test_unsupported_dtypes_raise_type_error_like_scipy(x):
    with pytest.raises(TypeError):
        scipy.special.softmax(x)
    with pytest.raises(TypeError):
        twopass.softmax(x)


def test_unknown_algorithm():
    with pytest.raises(ValueError, match="valid choices: auto, two_pass"):
        twopass.softmax(np.ones(3, np.float32), algorithm="four_pass")


def test_byteswapped_and_misaligned_input(level, algorithm):
    x = uniform(1000, -50, 50, seed=9)
    swapped = x.astype(x.dtype.newbyteorder(">"))
    buffer = np.zeros(4 * 1000 + 1, np.uint8)
    misaligned = buffer[1:].view(np.float32)
    misaligned[:] = x
    expected = reference_softmax(x)
    expected_lse = scipy.special.logsumexp(x.astype(np.float64))
    for variant in (swapped, misaligned):
        y = twopass.softmax(variant, algorithm=algorithm)
        assert y.dtype == np.float32
        assert max_relative_error(y, expected) <= 1e-6
        # logsumexp lays out its rows with the same helper
        assert abs(twopass.logsumexp(variant) - expected_lse) <= 1e-6 * abs(expected_lse)


def test_readonly_input(level):
    x = uniform(100, seed=4)
    x.flags.writeable = False
    assert max_relative_error(twopass.softmax(x), reference_softmax(x)) <= 1e-6


# ---- out= ----

def test_out_receives_the_result(level, algorithm):
    x = uniform(None, shape=(8, 300), seed=6)
    out = np.full_like(x, -1.0)
    result = twopass.softmax(x, axis=1, out=out, algorithm=algorithm)
    assert result is out
    assert max_relative_error(out, reference_softmax(x, 1)) <= 1e-6


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1)])
def test_in_place(level, algorithm, axis):
    x = uniform(None, shape=(16, 257), seed=7)
    expected = reference_softmax(x, axis=axis if axis is not None else (0, 1))
    result = twopass.softmax(x, axis=axis, out=x, algorithm=algorithm)
    assert result is x
    assert max_relative_error(x, expected) <= 1e-6


def test_out_non_contiguous_and_fortran(level):
    x = uniform(None, shape=(6, 40), seed=8)
    expected = reference_softmax(x, 1)
    out_f = np.zeros((6, 40), np.float32, order="F")
    twopass.softmax(x, axis=1, out=out_f)
    big = np.zeros((6, 80), np.float32)
    twopass.softmax(x, axis=1, out=big[:, ::2])
    for out in (out_f, big[:, ::2]):
        assert max_relative_error(out, expected) <= 1e-6
    assert np.all(big[:, 1::2] == 0)


def test_out_float16_and_float64(level):
    x16 = uniform(50, -5, 5).astype(np.float16)
    out16 = np.empty(50, np.float16)
    assert twopass.softmax(x16, out=out16) is out16
    np.testing.assert_allclose(out16, reference_softmax(x16.astype(np.float64)), rtol=2e-3, atol=2.0**-24)
    x64 = uniform(50, -5, 5).astype(np.float64)
    out64 = np.empty(50)
    assert twopass.softmax(x64, out=out64) is out64
    np.testing.assert_allclose(out64, reference_softmax(x64), rtol=1e-12)


def bad_outs(x):
    overlap = np.zeros(x.size + 1, np.float32)
    overlap[1:] = x.ravel()
    x_in_overlap = overlap[1:]
    readonly = np.zeros_like(x)
    readonly.flags.writeable = False
    return [
        ("wrong shape", x, np.zeros(x.size + 1, np.float32), ValueError),
        ("wrong dtype", x, np.zeros(x.shape, np.float64), TypeError),
        ("not an array", x, [0.0] * x.size, TypeError),
        ("read-only", x, readonly, ValueError),
        ("partial overlap", x_in_overlap, overlap[:-1], ValueError),
        ("reversed view of x", x, x[::-1], ValueError),
    ]


@pytest.mark.parametrize("case", range(6))
def test_bad_out_raises_before_writing(level, case):
    x = uniform(33, seed=11)
    name, xin, out, error = bad_outs(x)[case]
    x_before = np.array(xin, copy=True)
    out_before = np.array(out, copy=True)
    with pytest.raises(error):
        twopass.softmax(xin, out=out)
    np.testing.assert_array_equal(xin, x_before)
    np.testing.assert_array_equal(np.asarray(out), out_before)


def test_zero_stride_and_broadcast_views(level, algorithm):
    row = uniform(37, -20, 20, seed=12)
    broadcast = np.broadcast_to(row, (5, 37))          # stride 0 along axis 0, read-only
    for axis in (0, 1, None):
        y = twopass.softmax(broadcast, axis=axis, algorithm=algorithm)
        assert y.shape == (5, 37) and y.flags.writeable
        assert max_relative_error(y, reference_softmax(np.array(broadcast), axis=axis if axis is not None else (0, 1))) <= 1e-6
    with pytest.raises(ValueError):
        twopass.softmax(row, out=np.broadcast_to(np.zeros(1, np.float32), (37,)))  # read-only out


def test_negative_strides_in_place(level, algorithm):
    x = uniform(None, -20, 20, shape=(4, 65), seed=13)
    view = x[::-1, ::-1]
    expected = reference_softmax(np.array(view), axis=1)
    assert twopass.softmax(view, axis=1, out=view, algorithm=algorithm) is view
    assert max_relative_error(view, expected) <= 1e-6


COLUMN_CASES = [(1, 1, 1), (1, 5, 7), (2, 3, 8), (1, 300, 9), (3, 17, 16), (1, 256, 33), (1, 257, 255),
                (2, 513, 256), (1, 40, 257), (1, 1000, 600), (4, 1, 100)]


@pytest.mark.parametrize("outer, rows, inner", COLUMN_CASES, ids=str)
def test_non_contiguous_axis_without_copy(level, outer, rows, inner):
    """Axis 1 of (outer, rows, inner): each SIMD lane follows one column (two-pass lane by lane);
    widths around the vectors and the 256-column blocks, rows around the 256-row sum blocks."""
    x = uniform(None, -100, 100, shape=(outer, rows, inner), seed=rows * inner)
    expected = reference_softmax(x, axis=1)
    for layout in (x, np.asfortranarray(x)):
        for algorithm in ("auto", "two_pass"):
            y = twopass.softmax(layout, axis=1, algorithm=algorithm)
            assert max_relative_error(y, expected) <= 1e-6
        inplace = layout.copy(order="K")
        assert twopass.softmax(inplace, axis=1, out=inplace) is inplace
        assert max_relative_error(inplace, expected) <= 1e-6


def test_non_contiguous_axis_special_columns(level):
    x = uniform(None, -50, 50, shape=(300, 270), seed=21)
    x[3, 5] = np.nan
    x[:, 7] = -np.inf
    x[10, 9] = np.inf
    x[:, 11] = 1e30
    x[2, 11] = 3e30
    x[:, 269] = np.nan
    with np.errstate(all="ignore"):
        expected = scipy.special.softmax(x.astype(np.float64), axis=0)
    for out in (None, x.copy()):
        y = twopass.softmax(x if out is None else out, axis=0, out=out)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
        ok = ~np.isnan(expected)
        np.testing.assert_allclose(y[ok], expected[ok], rtol=1e-6, atol=FLUSH32)


@pytest.mark.parametrize("function", [twopass.softmax, twopass.log_softmax], ids=lambda f: f.__name__)
def test_non_contiguous_axis_uses_no_transposing_copy(level, function, monkeypatch):
    if level == "python":
        return  # the fallback copies; the kernels' column path is what this checks
    from twopass import _api
    calls = []
    original = _api._rows
    monkeypatch.setattr(_api, "_rows", lambda *a: calls.append(a) or original(*a))
    x = uniform(None, shape=(64, 48), seed=22)
    function(x, axis=0)
    function(np.asfortranarray(x), axis=1)
    assert calls == []


# ---- regressions found in review ----

@pytest.mark.parametrize("base", [1e4, 9e4, 1e5, 1e6, 2e6, 2.09e6, 2.5e6, -1e6, -2.09e6])
def test_large_magnitudes_dense(level, algorithm, base):
    """Values near +-1e6 that are not tied at the max: the float32 product x * log2(e) is coarse
    there, so two-pass must hand the slice to three-pass, which subtracts the max exactly."""
    x = (np.float32(base) + np.arange(0, 16, 0.25, dtype=np.float32)).astype(np.float32)
    assert max_relative_error(twopass.softmax(x, algorithm=algorithm), reference_softmax(x)) <= 1e-6


@pytest.mark.parametrize("value", [2.1568956, 0.1, -3.3, 77.0])
def test_constant_rows_and_columns(level, algorithm, value):
    """Equal terms are the worst case of float32 summation: the sums are blocked, so 8000 or 256
    equal values still give 1/n to 1e-6."""
    row = np.full(8000, value, np.float32)
    assert max_relative_error(twopass.softmax(row, algorithm=algorithm), reference_softmax(row)) <= 1e-6
    columns = np.full((3000, 16), value, np.float32)
    assert max_relative_error(twopass.softmax(columns, axis=0), reference_softmax(columns, axis=0)) <= 1e-6


@pytest.mark.parametrize("value, n", [(72.89327, 100000), (-52.087208, 1000000), (4.748021, 1000)])
def test_constant_rows_worst_cases(level, algorithm, value, n):
    """The worst rows of one repeated value found in a scan of 150 values at 1e3-1e6 elements: with
    two accumulators in the AVX2 sums of two-pass and recompute (u32_acc2) the first two gave 0.94e-6
    and 1.03e-6; with four (u64_acc4, the defaults) every algorithm stays at 5.4e-7 or below."""
    row = np.full(n, value, np.float32)
    assert max_relative_error(twopass.softmax(row, algorithm=algorithm), reference_softmax(row)) <= 6e-7


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_masked_blocks_keep_two_pass_exact(level, dtype):
    """Whole sum blocks of -inf (causal-mask padding: 1024 elements of a row, 64 rows of a column)
    merge as nothing: the result is exact, the extended sum is normalised, and two-pass computes the
    slices itself (its count of slices), rows and columns, softmax and logsumexp. On AVX2 such a block
    sums to 0; when that made the whole slice fall back to three-pass, softmax down the columns of a
    causal-masked (2048, 2048) took 62 ms instead of 3 (nineteenth session's review)."""
    two_pass_slices = lambda: _dispatch._kernels.thread_stats()["two_pass_slices"]  # noqa: E731
    counted = level != "python"  # (the NumPy fallback runs no kernel)
    x = np.zeros((3, 8192), dtype)
    x[:, 4096:] = -np.inf
    columns = np.ascontiguousarray(np.repeat(x[:1].T, 16, axis=1))  # (8192, 16), masked below row 4096
    for data, axis, slices in ((x, -1, 3), (columns, 0, 16)):
        before = two_pass_slices()
        y = twopass.softmax(data, axis=axis, algorithm="two_pass")
        assert two_pass_slices() - before == (slices if counted else 0)
        masked = (slice(None), slice(4096, None)) if axis == -1 else (slice(4096, None), slice(None))
        np.testing.assert_array_equal(y[masked], 0.0)
        np.testing.assert_allclose(np.delete(y, np.s_[4096:], axis=axis).astype(np.float64), 1 / 4096,
                                   rtol=1e-3 if dtype == np.float16 else 1e-6)
        before = two_pass_slices()
        np.testing.assert_allclose(twopass.logsumexp(data, axis=axis), np.log(4096.0),
                                   rtol=1e-3 if dtype == np.float16 else 1e-6)
        assert two_pass_slices() - before == (slices if counted else 0)
    mantissa, exponent = twopass.extsum(x[0])
    assert mantissa * 2.0**exponent == 4096.0
    if counted:  # the kernels' sum normalised (the fallback's is not)
        assert (mantissa, exponent) == (1.0, 12.0)


@pytest.mark.parametrize("axis", [True, [0, 1], 1.0])
def test_axis_types_rejected_like_numpy(axis):
    x = np.ones((2, 2), np.float32)
    with pytest.raises(TypeError):
        scipy.special.softmax(x, axis=axis)
    for f in (twopass.softmax, twopass.log_softmax, twopass.logsumexp):
        with pytest.raises(TypeError):
            f(x, axis=axis)


@pytest.mark.parametrize("base", [-90000.0, -90852.0, -90900.0, -90990.0, -91000.0, -91100.0, -91200.0, -91300.0])
def test_two_pass_around_its_exponent_floor(level, algorithm, base):
    """Two-pass's sum starts each lane's exponent at a floor 256 binades below -2^17, the lowest largest
    exponent of a slice it takes (x about -90852), and raises it only for x above (floor + 64) ln2,
    about -90986 (src/avx2/kernels_avx2.h). Rows and columns whose values span 40 around each of
    these (slices inside the range, straddling it, and below it, which go to three-pass) give softmax,
    log_softmax and logsumexp to the usual bounds. A floor that let the lanes' exponents sit more than
    126 binades above their largest term would flush the sum of the rows just below the range."""
    x = np.float32(base) + np.arange(0, 40, 0.125, dtype=np.float32)  # exact: float32 spacing 2^-7
    x64 = x.astype(np.float64)
    assert max_relative_error(twopass.softmax(x, algorithm=algorithm), reference_softmax(x)) <= 1e-6
    np.testing.assert_allclose(twopass.log_softmax(x, algorithm=algorithm), scipy.special.log_softmax(x64),
                               rtol=0, atol=1e-5)
    columns = np.tile(x[:, None], (1, 19))
    assert max_relative_error(twopass.softmax(columns, axis=0), reference_softmax(columns, axis=0)) <= 1e-6
    lse = scipy.special.logsumexp(x64)
    assert twopass.logsumexp(x) == pytest.approx(lse, rel=2e-7)
    np.testing.assert_allclose(twopass.logsumexp(columns, axis=0), lse, rtol=2e-7)


@pytest.mark.parametrize("order", ["rising", "falling", "interleaved"])
def test_two_pass_rows_whose_max_keeps_rising(level, order):
    """Ramps over [-87, 87] of 128 elements, repeated: within each sum block (1024 elements; 64 rows
    down columns) two-pass's per-lane exponent is raised every 64 binades (44 in x) and the sums
    rescaled each time (falling: once per block; interleaved: both). All to 1e-6."""
    ramp = np.linspace(-87, 87, 128).astype(np.float32)
    period = {"rising": ramp, "falling": ramp[::-1].copy(), "interleaved": np.stack([ramp, ramp[::-1]], 1).ravel()}
    x = np.tile(period[order], 50000 // len(period[order]))
    y = twopass.softmax(x, algorithm="two_pass")
    assert max_relative_error(y, reference_softmax(x)) <= 1e-6
    columns = np.tile(x[:, None], (1, 11))
    assert max_relative_error(twopass.softmax(columns, axis=0), reference_softmax(columns, axis=0)) <= 1e-6
