"""Short rows in three-pass reload run in groups, pass by pass (softmax_template.h, reload_group):
the same bits as row by row (kernels.set_row_group_bytes(0)), on every kernel level and dtype, with
special rows between ordinary ones, strided inputs and outputs, and any thread count."""
import numpy as np
import pytest

import twopass
from twopass import kernels

KERNEL_LEVELS = twopass.available_levels()[1:]
ROW_GROUP_ROW_BYTES = 512  # TWOPASS_ROW_GROUP_ROW_BYTES


def rows_with_specials(rows, n, dtype, seed):
    """Uniform [-30, 30] rows, with a NaN row, a +inf row, an all -inf row, a row beyond the
    extended-exponent shift (or float16's range), a constant row and rows holding a single -inf."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-30.0, 30.0, (rows, n))
    x[1, n // 2] = np.nan
    x[4, 0] = np.inf
    x[6] = -np.inf
    x[9] *= 1e30
    x[10] = 7.0
    x[12:rows:17, -1] = -np.inf
    with np.errstate(over="ignore"):  # float16: the row beyond its range becomes +-inf
        return x.astype(dtype)


def bits(a):
    return a.view(f"u{a.dtype.itemsize}")


def test_row_group_switch_resets():
    default = kernels.row_group_bytes()
    assert default == 4096
    try:
        kernels.set_row_group_bytes(0)
        assert kernels.row_group_bytes() == 0
    finally:
        kernels.set_row_group_bytes()
    assert kernels.row_group_bytes() == default


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
@pytest.mark.parametrize("dtype, n", [(dtype, n) for dtype in (np.float32, np.float64, np.float16)
                                      for n in (1, 3, 16, 37, 64, 100, 128, 256)
                                      if n * np.dtype(dtype).itemsize <= ROW_GROUP_ROW_BYTES])
def test_groups_give_the_bits_of_row_by_row(level_name, dtype, n):
    x = rows_with_specials(203, n, dtype, seed=n)
    with twopass.use_isa(level_name):
        try:
            kernels.set_row_group_bytes(0)
            expected = twopass.softmax(x, axis=-1, algorithm="three_pass_reload", threads=1)
        finally:
            kernels.set_row_group_bytes()
        for threads in (1, 2):
            got = twopass.softmax(x, axis=-1, algorithm="three_pass_reload", threads=threads)
            assert np.array_equal(bits(got), bits(expected)), (threads, np.argwhere(bits(got) != bits(expected))[:5])
            if dtype != np.float16:  # auto is three_pass_reload on short rows (float16: two_pass)
                auto = twopass.softmax(x, axis=-1, threads=threads)
                assert np.array_equal(bits(auto), bits(expected))
    # and the rows are right: each one alone, against the reference row by row
    assert np.isnan(expected[1]).all() and np.isnan(expected[4]).all() and np.isnan(expected[6]).all()
    with np.errstate(all="ignore"):
        x64 = x.astype(np.float64)
        e = np.exp(x64 - x64.max(axis=1, keepdims=True))
        ref = e / e.sum(axis=1, keepdims=True)
    finite = np.isfinite(ref).all(axis=1)
    tol = {np.float32: 1e-5, np.float64: 1e-13, np.float16: 2e-3}[dtype]
    np.testing.assert_allclose(expected[finite], ref[finite], rtol=tol, atol=1e-30 if dtype != np.float16 else 1e-7)


@pytest.mark.parametrize("level_name", KERNEL_LEVELS)
def test_groups_on_strided_rows_write_only_their_outputs(level_name):
    n, rows = 40, 300
    x_wide = rows_with_specials(rows, n + 24, np.float32, seed=1)
    x = x_wide[:, 5:5 + n]  # rows 64 floats apart
    out_wide = np.full((rows, n + 9), 123.0, dtype=np.float32)
    out = out_wide[:, 2:2 + n]
    with twopass.use_isa(level_name):
        twopass.softmax(x, axis=-1, algorithm="three_pass_reload", out=out, threads=1)
        try:
            kernels.set_row_group_bytes(0)
            expected = twopass.softmax(np.ascontiguousarray(x), axis=-1, algorithm="three_pass_reload", threads=1)
        finally:
            kernels.set_row_group_bytes()
    assert np.array_equal(bits(out), bits(expected))
    assert (out_wide[:, :2] == 123.0).all() and (out_wide[:, 2 + n:] == 123.0).all()
