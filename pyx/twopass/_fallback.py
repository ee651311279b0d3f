"""Pure NumPy versions of the three algorithms: the "python" level, the float64 path, and the
oracle the tests compare the kernels with.

They work on C-contiguous (rows, n) float arrays and compute in float64 (or longdouble for
longdouble input). The data is walked in tiles of at most BLOCK elements (several short rows, or a
piece of one long row) so that the temporaries of each step stay in cache, and every pass reads the
input again, as the kernels do.
"""
import numpy as np

BLOCK = 16384
LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453
# Same valid range of the extended exponent as the kernels (include/twopass/common.h).
EXTEXP_X_MIN = -(2.0**22)
EXTEXP_EXPONENT_LIMIT = 3.0e6


def _tiles(rows, n):
    """(row slice, column slice) tiles of at most ~BLOCK elements, row chunks outermost."""
    rows_per_tile = max(1, BLOCK // max(n, 1))
    cols_per_tile = min(n, BLOCK)
    for r in range(0, rows, rows_per_tile):
        rs = slice(r, min(rows, r + rows_per_tile))
        yield rs, [slice(c, min(n, c + cols_per_tile)) for c in range(0, n, cols_per_tile)]


def _work(x):
    return x.astype(np.longdouble if x.dtype == np.longdouble else np.float64)


def _row_max(x, cols):
    return np.max([x[:, c].max(axis=1) for c in cols], axis=0)


def _three_pass_recompute(x, out):
    for rs, cols in _tiles(*x.shape):
        xr = x[rs]
        m = _row_max(xr, cols)[:, None]
        s = sum(np.exp(_work(xr[:, c]) - m).sum(axis=1) for c in cols)[:, None]
        for c in cols:
            out[rs, c] = np.exp(_work(xr[:, c]) - m) / s


def _three_pass_reload(x, out):
    for rs, cols in _tiles(*x.shape):
        xr, yr = x[rs], out[rs]
        m = _row_max(xr, cols)[:, None]
        s = 0.0
        for c in cols:
            yr[:, c] = np.exp(_work(xr[:, c]) - m)
            s = s + _work(yr[:, c]).sum(axis=1)
        s = np.asarray(s)[:, None]
        for c in cols:
            yr[:, c] = _work(yr[:, c]) / s


def _extexp(x):
    """exp(x) = p * 2^n with n = round(x log2 e), x clamped below (NaN kept) as in the kernels."""
    x = np.maximum(_work(x), EXTEXP_X_MIN)
    n = np.rint(x * LOG2E)
    return np.exp(x - n * LN2), n


def _two_pass(x, out):
    for rs, cols in _tiles(*x.shape):
        xr, yr = x[rs], out[rs]
        # pass 1: (M, E) += (sum p 2^(n - e), e) per tile; merged with exact powers of two
        mantissa = np.zeros(xr.shape[0], dtype=np.float64)
        exponent = np.full(xr.shape[0], -np.inf)
        for c in cols:
            p, n = _extexp(xr[:, c])
            e = n.max(axis=1)
            m = (p * np.exp2(n - e[:, None])).sum(axis=1)
            new_exponent = np.maximum(exponent, e)
            mantissa = mantissa * np.exp2(exponent - new_exponent) + m * np.exp2(e - new_exponent)
            exponent = new_exponent
        # slices with NaN, +inf or |max| beyond the exact exponent range: three-pass, as the kernels
        invalid = ~(np.isfinite(mantissa) & (mantissa > 0) & (np.abs(exponent) <= EXTEXP_EXPONENT_LIMIT))
        if invalid.any():
            fixed = np.empty((int(invalid.sum()), xr.shape[1]), dtype=out.dtype)
            _three_pass_recompute(np.ascontiguousarray(xr[invalid]), fixed)
        # pass 2: y = p / M * 2^(n - E)
        for c in cols:
            p, n = _extexp(xr[:, c])
            yr[:, c] = p / mantissa[:, None] * np.exp2(n - exponent[:, None])
        if invalid.any():
            yr[invalid] = fixed

ALGORITHMS = {
    "two_pass": _two_pass,
    "three_pass_reload": _three_pass_reload,
    "three_pass_recompute": _three_pass_recompute,
}


def softmax_rows(x, out, algorithm):
    """out[r] = softmax(x[r]) for a (rows, n) array, with one of ALGORITHMS."""
    with np.errstate(all="ignore"):
        ALGORITHMS[algorithm](x, out)
