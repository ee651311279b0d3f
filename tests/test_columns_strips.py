"""softmax / log_softmax (and logsumexp) over axis 0 (the columns kernels): sizes around the strips that pass 1 walks
down the rows (TWOPASS_COLUMN_STRIP vectors: 16 float32 / 8 float64 columns on AVX2, twice that on
AVX-512F), the single-vector and masked tails after them, the groups of rows merged per update
(TWOPASS_COLUMN_GROUP) and the driver's 64-row sum blocks; special values in one column."""
import numpy as np
import pytest
import scipy.special

import twopass
from twopass import kernels

from conftest import FLUSH32, max_relative_error, reference_softmax

WIDTHS = list(range(1, 34)) + [63, 64, 65, 255, 256, 257]
ROWS = [1, 2, 3, 4, 5, 63, 64, 65, 127, 128, 129, 131]


def reference_log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - scipy.special.logsumexp(x, axis=0, keepdims=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("rows", ROWS)
def test_widths_and_rows(level, rows, dtype):
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    rng = np.random.default_rng(rows)
    for width in WIDTHS:
        x = rng.uniform(-60, 60, (rows, width)).astype(dtype)
        y = twopass.softmax(x, axis=0)
        assert max_relative_error(y, reference_softmax(x, axis=0)) <= rtol, width
        ly = twopass.log_softmax(x, axis=0)
        np.testing.assert_allclose(ly, reference_log_softmax(x), rtol=rtol, atol=64 * np.finfo(dtype).eps * 60,
                                   err_msg=str(width))


@pytest.mark.parametrize("rows", [2, 3, 64, 65, 130])
@pytest.mark.parametrize("width", [17, 33, 40])
def test_special_values_in_one_column(level, rows, width):
    """NaN, +inf or a huge value in one column: that column falls back (NaN, or three-pass on a copy);
    the others, in the same strip, stay exact."""
    rng = np.random.default_rng(rows * width)
    for column in (0, 15, 16, width - 1):
        for value in (np.nan, np.inf, -np.inf, 3e38, -3e38):
            x = rng.uniform(-50, 50, (rows, width)).astype(np.float32)
            x[rows // 2, column] = value
            with np.errstate(all="ignore"):
                expected = scipy.special.softmax(x.astype(np.float64), axis=0)
            y = twopass.softmax(x, axis=0)
            np.testing.assert_array_equal(np.isnan(y), np.isnan(expected), err_msg=f"{column} {value}")
            ok = ~np.isnan(expected)
            np.testing.assert_allclose(y[ok], expected[ok], rtol=1e-6, atol=FLUSH32, err_msg=f"{column} {value}")
            others = np.arange(width) != column
            ly = twopass.log_softmax(x, axis=0)
            np.testing.assert_allclose(ly[:, others], reference_log_softmax(x[:, others]), rtol=1e-6, atol=1e-5)


def test_strided_rows_and_threads(level):
    """Rows further apart than the width (a view), and every thread count bitwise alike."""
    x = np.random.default_rng(3).uniform(-80, 80, (200, 300)).astype(np.float32)
    view = x[:, 7:50]
    one = twopass.softmax(view, axis=0, threads=1)
    assert max_relative_error(one, reference_softmax(view, axis=0)) <= 1e-6
    for threads in (2, 3):
        np.testing.assert_array_equal(twopass.softmax(view, axis=0, threads=threads).view(np.uint32),
                                      one.view(np.uint32))


# Pass 1 on AVX2 streams each row across a block of columns (at most TWOPASS_COLUMN_PASS1_WIDTH = 4096
# wide, at least one block per thread), per-column lazily rescaled sums in memory (the last, partial
# vector in registers), 4 rows per update (TWOPASS_COLUMN_ROW_GROUP), merged in double every 64 rows.

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16], ids=lambda d: np.dtype(d).name)
def test_each_column_alone_bitwise(level, dtype):
    """A column's result does not depend on its neighbours, its lane, the vector (in memory or the
    partial one in registers) or the block of columns it falls in: bitwise as when it is alone."""
    rng = np.random.default_rng(11)
    rows, width = 131, 45
    x = rng.uniform(-40, 40, (rows, width))
    # columns whose max grows by more than 64 binades (a lane over its limit, rescaled alone)
    x[100:, 3] += 60.0
    x[1::2, 20] -= 200.0
    x[64, 41] = 90.0
    x = x.astype(dtype)
    y, ly = twopass.softmax(x, axis=0), twopass.log_softmax(x, axis=0)
    if level != "python":  # alone: the column kernels on one column (twopass.softmax runs it as a row)
        name = {np.float32: "f32", np.float64: "f64", np.float16: "f16"}[dtype]
        for j in range(width):
            col = np.ascontiguousarray(x[:, j:j + 1]).reshape(1, rows, 1)
            for function, together in (("softmax", y), ("log_softmax", ly)):
                alone = np.empty_like(col)
                getattr(kernels, f"{function}_{name}_columns")(col, alone, twopass.LEVELS.index(level))
                np.testing.assert_array_equal(alone.reshape(rows, 1), together[:, j:j + 1], err_msg=f"{function} {j}")
    expected = reference_softmax(x.astype(np.float64), axis=0)
    if dtype == np.float16:  # float16 results below its smallest normal lose relative precision
        np.testing.assert_allclose(y.astype(np.float64), expected, rtol=1e-3, atol=float(np.finfo(np.float16).tiny))
    else:
        assert max_relative_error(y, expected) <= (1e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("cols", [4095, 4096, 4097, 4096 + 17, 2 * 4096 + 40])
def test_wide_blocks_and_threads(level, cols):
    """Several blocks of columns (and the block split between threads): accurate, and bitwise the
    same for every thread count; a special value in the first column of the second block."""
    rng = np.random.default_rng(cols)
    x = rng.uniform(-80, 80, (67, cols)).astype(np.float32)
    if cols > 4096:
        x[5, 4096] = np.inf
    one = twopass.softmax(x, axis=0, threads=1)
    with np.errstate(all="ignore"):
        expected = scipy.special.softmax(x.astype(np.float64), axis=0)
    ok = ~np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(one), ~ok)
    np.testing.assert_allclose(one[ok], expected[ok], rtol=1e-6, atol=FLUSH32)
    lone = twopass.log_softmax(x, axis=0, threads=1)
    for threads in (2, 3):
        np.testing.assert_array_equal(twopass.softmax(x, axis=0, threads=threads).view(np.uint32),
                                      one.view(np.uint32))
        np.testing.assert_array_equal(twopass.log_softmax(x, axis=0, threads=threads).view(np.uint32),
                                      lone.view(np.uint32))


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 7, 63, 64, 65, 66, 67, 68, 128, 129])
@pytest.mark.parametrize("value", [np.nan, np.inf, 3e38, -np.inf])
def test_special_value_at_row_edges(level, rows, value):
    """A special value in the last row of a 64-row block, the rows after the 4-row updates, or
    the first row: only its column falls back; a full vector and the partial one."""
    rng = np.random.default_rng(rows)
    for column in (2, 9, 12):
        for row in {0, rows - 1, min(63, rows - 1)}:
            x = rng.uniform(-30, 30, (rows, 13)).astype(np.float32)
            x[row, column] = value
            with np.errstate(all="ignore"):
                expected = scipy.special.softmax(x.astype(np.float64), axis=0)
            y = twopass.softmax(x, axis=0)
            np.testing.assert_array_equal(np.isnan(y), np.isnan(expected), err_msg=f"{row} {column}")
            ok = ~np.isnan(expected)
            np.testing.assert_allclose(y[ok], expected[ok], rtol=1e-6, atol=FLUSH32, err_msg=f"{row} {column}")


@pytest.fixture
def restore_threshold():
    saved = kernels.streaming_threshold()
    yield
    kernels.set_streaming_threshold(saved)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("function", [twopass.softmax, twopass.log_softmax], ids=lambda f: f.__name__)
def test_streamed_pass2_same_bits(level, dtype, function, restore_threshold):
    """Pass 2 over whole rows with non-temporal stores (outputs past the streaming threshold): each
    row's elements before its first aligned vector and its tail stored ordinarily; bitwise the same
    as ordinary stores, nothing written outside the output (rows of out ld apart, at any offset)."""
    sentinel = -7.25
    rng = np.random.default_rng(5)
    for rows, width in ((2, 1), (3, 7), (5, 8), (9, 17), (66, 33), (7, 100)):  # (1 row: no pass 2)
        x = rng.uniform(-50, 50, (rows, width)).astype(dtype)
        results = []
        for streaming in (False, True):
            for offset in (0, 1, 3, 9):
                kernels.set_streaming_threshold(1 if streaming else (1 << 62))
                ld = width + 5  # rows of out further apart than the width: each row's own misalignment
                buf = np.full(rows * ld + 64, sentinel, dtype)
                start = (-buf.ctypes.data % 64) // buf.itemsize + offset
                y = buf[start:start + rows * ld].reshape(rows, ld)[:, :width]
                before = kernels.thread_stats()["streaming_jobs"]
                function(x, axis=0, out=y, threads=1)
                if level != "python":
                    assert kernels.thread_stats()["streaming_jobs"] - before == int(streaming)
                mask = np.ones(buf.shape, bool)
                mask[start:start + rows * ld].reshape(rows, ld)[:, :width] = False
                assert np.all(buf[mask] == sentinel), (rows, width, streaming, offset)
                results.append(y.copy())
        for r in results[1:]:
            np.testing.assert_array_equal(r.view(np.uint8), results[0].view(np.uint8), err_msg=f"{rows} {width}")


# ---- logsumexp down the columns (the columns driver's pass 1 alone, no transposing copy) ----

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("rows", [1, 2, 3, 63, 64, 65, 131])
def test_logsumexp_down_columns(level, rows, dtype):
    """logsumexp over axis 0 and over a middle axis: SciPy's values, special values in single columns
    as SciPy gives them (NaN; +inf; all -inf; a value beyond the extended range), one row exactly x
    (SciPy's x + log 1), and each column bitwise as when it is alone."""
    rng = np.random.default_rng(rows)
    width = 45
    x = rng.uniform(-60, 60, (rows, width))
    x[rows // 2, 3] = np.nan
    x[rows - 1, 17] = np.inf
    x[:, 20] = -np.inf
    x[0, 30] = {np.float32: 3e38, np.float64: 1e300, np.float16: 6e4}[dtype]
    x[1::2, 40] -= 300.0  # a column whose values differ by more than the float16/float32 exp range
    x[0, 7] = -0.0  # one row: SciPy's x + log 1 makes it +0
    x = x.astype(dtype)
    x64 = x.astype(np.float64)
    rtol = {np.float32: 1e-6, np.float64: 1e-13, np.float16: 1e-3}[dtype]
    for keepdims in (False, True):
        got = twopass.logsumexp(x, axis=0, keepdims=keepdims)
        with np.errstate(all="ignore"):
            expected = scipy.special.logsumexp(x64, axis=0, keepdims=keepdims)
        assert got.dtype == dtype and got.shape == expected.shape
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(got) * np.sign(got), np.isinf(expected) * np.sign(expected))
        ok = np.isfinite(expected)
        np.testing.assert_allclose(got[ok].astype(np.float64), expected[ok], rtol=rtol, atol=rtol)
    if rows == 1:
        bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[np.dtype(dtype).itemsize]
        np.testing.assert_array_equal(got.ravel().view(bits), (x[0] + dtype(0)).view(bits))
    x3 = np.stack([x, x[::-1], -x]).reshape(3, rows, width)  # over the middle axis: 3 blocks of columns
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(twopass.logsumexp(x3, axis=1).astype(np.float64),
                                   scipy.special.logsumexp(x3.astype(np.float64), axis=1), rtol=rtol, atol=rtol)
    if level == "python":
        return  # each column alone, on the column kernels (twopass.logsumexp runs a single column as a row)
    name = {np.float32: "f32", np.float64: "f64", np.float16: "f16"}[dtype]
    lse = twopass.logsumexp(x, axis=0)
    for j in range(width):
        alone = np.empty((1, 1))
        getattr(kernels, f"logsumexp_{name}_columns")(np.ascontiguousarray(x[:, j:j + 1]).reshape(1, rows, 1), alone,
                                                       twopass.LEVELS.index(level))
        np.testing.assert_array_equal(alone.ravel().astype(dtype), lse[j:j + 1], err_msg=str(j))


@pytest.mark.parametrize("cols", [4097, 2 * 4096 + 40])
def test_logsumexp_down_wide_blocks_and_threads(level, cols):
    """Several blocks of columns (about equal, whole cache lines, at most 4096 wide), split between
    threads: SciPy's values, bitwise alike for every thread count; +inf in column 4096."""
    x = np.random.default_rng(cols).uniform(-80, 80, (67, cols)).astype(np.float32)
    x[5, 4096] = np.inf
    one = twopass.logsumexp(x, axis=0, threads=1)
    np.testing.assert_allclose(one.astype(np.float64), scipy.special.logsumexp(x.astype(np.float64), axis=0),
                               rtol=1e-6)
    for threads in (2, 3):
        np.testing.assert_array_equal(twopass.logsumexp(x, axis=0, threads=threads).view(np.uint32),
                                      one.view(np.uint32))


def test_logsumexp_columns_entry_points():
    """twopass.kernels.logsumexp_*_columns: out must be x's shape without axis 1 (ValueError); an
    empty axis 1 gives -inf, as SciPy's empty sum; float16 takes float16 arrays only."""
    for level in range(1, len(twopass.available_levels())):
        for dtype, run in ((np.float32, kernels.logsumexp_f32_columns), (np.float64, kernels.logsumexp_f64_columns),
                           (np.float16, kernels.logsumexp_f16_columns)):
            x = np.random.default_rng(level).uniform(-5, 5, (2, 9, 3)).astype(dtype)
            out = np.empty((2, 3))
            run(x, out, level)
            np.testing.assert_allclose(out, scipy.special.logsumexp(x.astype(np.float64), axis=1),
                                       rtol=1e-3 if dtype == np.float16 else 1e-6)
            with pytest.raises(ValueError, match="shape"):
                run(x, np.empty((2, 4)), level)
            out = np.zeros((2, 3))
            run(np.empty((2, 0, 3), dtype), out, level)
            np.testing.assert_array_equal(out, -np.inf)
    with pytest.raises(TypeError):
        kernels.logsumexp_f16_columns(np.zeros((1, 2, 3), np.float32), np.empty((1, 3)), 1)
