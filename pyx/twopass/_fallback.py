"""Pure NumPy versions of the five algorithms: the "python" level, the float64 path, and the
oracle the tests compare the kernels with.

They work on C-contiguous (rows, n) float arrays and compute in float64 (or longdouble for
longdouble input). The data is walked in tiles of at most BLOCK elements (several short rows, or a
piece of one long row) so that the temporaries of each step stay in cache, and every pass reads the
input again, as the kernels do.
"""
import math

import numpy as np

BLOCK = 16384
LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453
# ln2 = LN2_HI + LN2_LO with LN2_HI's low 21 bits zero, so n * LN2_HI is exact for |n| < 2^21
# (the usual Cody-Waite split for double, as in fdlibm)
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
# Same valid range of the extended exponent as the kernels (include/twopass/common.h).
EXTEXP_X_MIN = -(2.0**22)
EXTEXP_EXPONENT_LIMIT = 2.0**17


def _valid(mantissa, exponent):
    """Where the merged extended sum is exact (the kernels' rule, src/softmax.c extsum_done)."""
    return np.isfinite(mantissa) & (mantissa > 0) & (np.abs(exponent) <= EXTEXP_EXPONENT_LIMIT)


def _tiles(rows, n):
    """(row slice, column slice) tiles of at most ~BLOCK elements, row chunks outermost."""
    rows_per_tile = max(1, BLOCK // max(n, 1))
    cols_per_tile = min(n, BLOCK)
    for r in range(0, rows, rows_per_tile):
        rs = slice(r, min(rows, r + rows_per_tile))
        yield rs, [slice(c, min(n, c + cols_per_tile)) for c in range(0, n, cols_per_tile)]


def _work_dtype(x):
    """The working precision of x: longdouble for longdouble, else float64."""
    return np.longdouble if x.dtype == np.longdouble else np.float64


def _work(x):
    """x in the working precision (no copy when it already is)."""
    return np.asarray(x, dtype=_work_dtype(x))


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


def _blocked_reload(x, out):
    """Reload with the max found tile by tile, as the kernels' blocked_reload finds it block by
    block: per tile t, its max m_t and w = exp(x - m_t) stored in out with the tile's sum s_t; then
    y = w * exp(m_t - m) / s with m = max_t m_t and s = sum_t s_t exp(m_t - m). Tiles of -inf alone
    have weight exp(-inf) = 0; NaN and +inf make m or s NaN, all -inf makes m - m NaN: SciPy's NaN."""
    for rs, cols in _tiles(*x.shape):
        xr, yr = x[rs], out[rs]
        maxima, sums = [], []
        for c in cols:
            m_t = _work(xr[:, c].max(axis=1))
            base = np.where(m_t == -np.inf, 0.0, m_t)[:, None]  # exp(-inf - 0) = 0, not exp(NaN)
            yr[:, c] = np.exp(_work(xr[:, c]) - base)
            maxima.append(m_t)
            sums.append(_work(yr[:, c]).sum(axis=1))
        m = np.max(maxima, axis=0)
        weights = [np.exp(m_t - m) for m_t in maxima]
        s = sum(s_t * w_t for s_t, w_t in zip(sums, weights))
        for c, w_t in zip(cols, weights):
            yr[:, c] = _work(yr[:, c]) * (w_t / s)[:, None]


def _extexp(x):
    """exp(x) = p * 2^n with n = round(x log2 e), x clamped below (NaN kept) as in the kernels."""
    x = np.maximum(_work(x), EXTEXP_X_MIN)
    n = np.rint(x * LOG2E)
    return np.exp((x - n * LN2_HI) - n * LN2_LO), n


def _two_pass(x, out):
    # pass 1: (M, E) = sum exp(x) per row, from the tiles' partial sums (_extsum_valid), M in the
    # working precision (a longdouble M rounded to double could fall below one of its terms)
    mantissa, exponent = np.empty(x.shape[0], _work_dtype(x)), np.empty(x.shape[0])
    _extsum_valid(x, mantissa, exponent)
    # rows with NaN, +inf or |max| beyond the exact exponent range: three-pass, as the kernels
    # (computed before pass 2, which may overwrite x when out is x)
    invalid = ~_valid(mantissa, exponent)
    if invalid.any():
        fixed = np.empty((int(invalid.sum()), x.shape[1]), dtype=out.dtype)
        _three_pass_recompute(np.ascontiguousarray(x[invalid]), fixed)
    # pass 2: y = p / M * 2^(n - E), at most 1 with no clamp: p 2^(n - E) <= M (pass 1 summed the
    # same p), so p / M rounds to at most 2^(E - n)
    for rs, cols in _tiles(*x.shape):
        for c in cols:
            p, n = _extexp(x[rs, c])
            out[rs, c] = p / mantissa[rs, None] * np.exp2(n - exponent[rs, None])
    if invalid.any():
        out[invalid] = fixed


def _online_sums(x):
    """Pass 1 of the online normaliser: per row, the max m and d = sum exp(x - m) in one read, tile
    by tile: m' = max(m, max of the tile), d <- d exp(m - m') + sum exp(x - m'). Rows with NaN,
    +inf or only -inf come out invalid (d not in [1, inf))."""
    rows, n = x.shape
    m, d = np.full(rows, -np.inf), np.zeros(rows)
    for rs, cols in _tiles(rows, n):
        for c in cols:
            xc = _work(x[rs, c])
            m_new = np.maximum(m[rs], xc.max(axis=1))
            base = np.where(np.isfinite(m_new), m_new, 0.0)  # all -inf so far: d stays 0
            d[rs] = d[rs] * np.exp(m[rs] - base) + np.exp(xc - base[:, None]).sum(axis=1)
            m[rs] = m_new
    return m, d, (d >= 1.0) & (d < np.inf)


def _online(x, out):
    m, d, valid = _online_sums(x)
    if not valid.all():  # NaN, +inf, all -inf: three-pass gives SciPy's answers
        fixed = np.empty((int((~valid).sum()), x.shape[1]), dtype=out.dtype)
        _three_pass_recompute(np.ascontiguousarray(x[~valid]), fixed)
    for rs, cols in _tiles(*x.shape):
        for c in cols:
            out[rs, c] = np.exp(_work(x[rs, c]) - m[rs, None]) / d[rs, None]
    if not valid.all():
        out[~valid] = fixed


ALGORITHMS = {
    "two_pass": _two_pass,
    "three_pass_reload": _three_pass_reload,
    "three_pass_recompute": _three_pass_recompute,
    "online": _online,
    "blocked_reload": _blocked_reload,
}


def _one_element(x, out, log):
    """softmax (log) of rows of one element, as SciPy's exp(x - x) / 1 and (x - x) - log 1: exactly 1
    (0) for a finite x, NaN for +-inf and NaN (the kernels' one_element)."""
    out[...] = np.where(np.isfinite(x), 0.0 if log else 1.0, np.nan)


def softmax_rows(x, out, algorithm):
    """out[r] = softmax(x[r]) for a (rows, n) array, with one of ALGORITHMS."""
    if x.shape[1] == 1:
        return _one_element(x, out, log=False)
    with np.errstate(all="ignore"):
        ALGORITHMS[algorithm](x, out)


# ---- log_softmax, logsumexp, extsum ----

def _row_max_logsum(x):
    """(m, log sum exp(x - m)) of each row of a (rows, n) array, in float64 (longdouble stays),
    blocked like the kernels; m is the max, 0 where the max is not finite (SciPy's trick: then NaN,
    +inf and all -inf flow through exp and log to SciPy's logsumexp: NaN, +inf, -inf)."""
    rows, n = x.shape
    dtype = _work_dtype(x)
    m_out, log_s = np.zeros(rows, dtype), np.full(rows, -np.inf, dtype)
    if n == 0:
        return m_out, log_s
    for rs, cols in _tiles(rows, n):
        xr = x[rs]
        m = _row_max(xr, cols)
        m = np.where(np.isfinite(m), m, 0.0)[:, None]
        s = sum(np.exp(_work(xr[:, c]) - m).sum(axis=1) for c in cols)
        m_out[rs], log_s[rs] = m[:, 0], np.log(s)
    return m_out, log_s


def _row_logsumexp(x):
    """logsumexp of each row of a (rows, n) array (SciPy's values; -inf for n = 0)."""
    m, log_s = _row_max_logsum(x)
    return m + log_s


def log_softmax_rows(x, out, algorithm):
    """out[r] = x[r] - logsumexp(x[r]), as (x - hi) - lo with hi + lo = logsumexp. two_pass (and
    blocked_reload) takes
    logsumexp from the extended-exponent sum of each valid row (hi = it, lo = 0: |x| < ~90850
    there); the others, and rows two-pass cannot take, as SciPy: hi = max, lo = log sum exp(x - max),
    so x - hi is exact at the max even where a float64 logsumexp could not hold the log. At most 0,
    as SciPy's (two-pass's logsumexp can round below the max; the kernels clamp the same way)."""
    if x.shape[1] == 1:
        return _one_element(x, out, log=True)
    with np.errstate(all="ignore"):
        if algorithm in ("two_pass", "blocked_reload"):  # blocked_reload's logsumexp is two-pass's
            mantissa, exponent = np.empty(x.shape[0], _work_dtype(x)), np.empty(x.shape[0])
            _extsum_valid(x, mantissa, exponent)
            valid = _valid(mantissa, exponent)
            hi = np.log(np.where(valid, mantissa, 1.0)) + np.where(valid, exponent, 0.0) * LN2
            lo = np.zeros_like(hi)
        elif algorithm == "online":
            hi, d, valid = _online_sums(x)
            lo = np.log(np.where(valid, d, 1.0))
        else:
            valid = np.zeros(x.shape[0], bool)
            hi = lo = None
        if not valid.all():
            m, log_s = _row_max_logsum(np.ascontiguousarray(x[~valid]))
            if hi is None:
                hi, lo = m, log_s
            else:
                hi[~valid], lo[~valid] = m, log_s
        out[...] = np.minimum((_work(x) - hi[:, None]) - lo[:, None], 0.0)


def _extsum_valid(x, mantissa, exponent):
    """Two-pass pass 1 per row: (M, E) += (sum p 2^(n - e), e) per tile, merged with exact powers of
    two (_valid says where the result is exact, as the kernels' rule)."""
    for rs, cols in _tiles(*x.shape):
        m_acc = np.zeros(rs.stop - rs.start, _work_dtype(x))
        e_acc = np.full(rs.stop - rs.start, -np.inf)
        for c in cols:
            p, n = _extexp(x[rs, c])
            e = n.max(axis=1)
            m = (p * np.exp2(n - e[:, None])).sum(axis=1)
            new_e = np.maximum(e_acc, e)
            m_acc = m_acc * np.exp2(e_acc - new_e) + m * np.exp2(e - new_e)
            e_acc = new_e
        mantissa[rs], exponent[rs] = m_acc, e_acc


def extsum_rows(x, mantissa, exponent):
    """sum exp(x[r]) = mantissa[r] * 2**exponent[r]; (0, -inf) for empty rows; rows the exponent
    range cannot hold exactly (NaN, inf, huge) are given from their logsumexp, as the kernels do."""
    with np.errstate(all="ignore"):
        if x.shape[1] == 0:
            mantissa[...], exponent[...] = 0.0, -np.inf
            return
        _extsum_valid(x, mantissa, exponent)
        valid = _valid(mantissa, exponent)
        if not valid.all():
            lse = _row_logsumexp(np.ascontiguousarray(x[~valid]))
            e = np.where(np.isfinite(lse), np.rint(lse / LN2), np.where(lse == -np.inf, -np.inf, 0.0))
            m = np.where(np.isfinite(lse), np.exp(lse - np.where(np.isfinite(e), e, 0.0) * LN2),
                         np.where(lse == -np.inf, 0.0, lse))
            mantissa[~valid], exponent[~valid] = m, e


def logsumexp(a, axes, b, keepdims, dtype, return_sign):
    """SciPy's logsumexp in NumPy (weights b already broadcast to a's shape; elements with b = 0 are
    ignored). Returns (value, sign of the sum): for real input the sign is -1, 0, 1 or NaN and the
    value is log |sum| (NaN for a negative sum unless return_sign); for complex input with
    return_sign the value is log |sum| and the sign a unit complex, as SciPy does."""
    with np.errstate(all="ignore"):
        work = np.longdouble if dtype == np.longdouble else (np.complex128 if dtype.kind == "c" else np.float64)
        a = a.astype(work)
        if b is not None:
            a = np.where(b != 0, a, -np.inf)
        if math.prod(a.shape[i] for i in axes) == 0:
            shape = tuple(1 if i in axes else d for i, d in enumerate(a.shape) if keepdims or i not in axes)
            return np.full(shape, -np.inf, dtype=dtype), np.zeros(shape, dtype=dtype)
        a_max = np.max(a, axis=axes, keepdims=True)
        a_max = np.where(np.isfinite(a_max), a_max, 0)
        terms = np.exp(a - a_max) if b is None else b * np.exp(a - a_max)
        s = np.sum(terms, axis=axes, keepdims=True)
        if dtype.kind == "c":
            value = np.log(s) + a_max
            sign = np.exp(1j * value.imag)
            if return_sign:
                value = value.real
        else:
            sign = np.sign(s)
            value = np.log(np.abs(s)) + a_max
            if not return_sign:
                value = np.where(sign < 0, np.nan, value)
        if not keepdims:
            value, sign = np.squeeze(value, axis=axes), np.squeeze(sign, axis=axes)
        value_dtype = np.finfo(dtype).dtype if (dtype.kind == "c" and return_sign) else dtype
        return value.astype(value_dtype), sign.astype(dtype)
