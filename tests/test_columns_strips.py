"""softmax / log_softmax over axis 0 (the columns kernels): sizes around the strips that pass 1 walks
down the rows (TWOPASS_COLUMN_STRIP vectors: 16 float32 / 8 float64 columns on AVX2, twice that on
AVX-512F), the single-vector and masked tails after them, the groups of rows merged per update
(TWOPASS_COLUMN_GROUP) and the driver's 64-row sum blocks; special values in one column."""
import numpy as np
import pytest
import scipy.special

import twopass

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
