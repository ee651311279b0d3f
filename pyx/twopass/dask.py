"""softmax, log_softmax and logsumexp of dask arrays, with twopass's semantics and dtypes.

    import dask.array as da, twopass.dask
    y = twopass.dask.softmax(x, axis=-1)               # x: a dask array (or anything da.asarray takes)
    s = twopass.dask.logsumexp(x, axis=(0, 2), keepdims=True, split_every=8)

Importing twopass does not import dask; importing twopass.dask does (ImportError without it).

Two plans, chosen from the chunking of the reduced axes:

- Each reduced axis in one chunk: every block holds whole slices, so each block is one call of
  twopass.softmax / log_softmax / logsumexp (map_blocks), one task per block.
- A reduced axis split across chunks: two-pass across blocks, one or several reduced axes alike.
  Pass 1, a dask.array.reduction: each block gives the partial sum of its piece of every slice,
  sum exp(x) = m * 2**e (twopass.extsum: a (mantissa, exponent) pair per slice, no max pass); the
  pieces are merged with exact powers of two (as twopass.merge_extsum, in any order) in a tree of
  at most `split_every` inputs per task, down to one partial sum per slice. logsumexp ends here:
  log(m) + e ln 2.
  Pass 2, blockwise: each block and its slices' merged sums (the reduced shape, small) give
      log_softmax = x - log(m) - e ln 2 = (x - e*LN2_HI) - (e*LN2_LO + log m)
  in float64 (e*LN2_HI is exact, Cody-Waite, so the first subtraction loses nothing where it
  matters), rounded once to the result dtype; softmax = exp of that for float64 and integer input.
  float16, float32 and float64 softmax runs on the kernels instead: pass 2 of two-pass,
  exp(x) / (m 2^e), one read of the block (twopass.kernels.softmax_from_extsum_*_rows). No task ever holds more
  than one block of x: each block goes to one pass-1 task and one pass-2 task, nothing is gathered,
  and each is read once by each.

Threads: dask runs blocks in parallel, so every kernel call here runs on one thread (threads=1).

Slices of huge magnitude: extsum is exact while |logsumexp| < 2^17 ln 2 (~90850). A piece beyond
that is summed as exp(c) * sum exp(x - c) with c its max (float64), since a float64 logsumexp
cannot hold log(2) or log(3) next to 3e38; so every finite input, up to +-3.4e38, is handled.

Special slices give what twopass.softmax gives (SciPy's results): a NaN, a +inf or only -inf make
the whole softmax slice NaN; log_softmax is x - logsumexp in IEEE arithmetic (+inf: NaN at the
+inf, -inf elsewhere); logsumexp is NaN, +inf, or -inf (only -inf, or an empty reduction).

Dtypes as twopass: float16/float32/float64 keep their type, integers promote as np.exp does
(8-bit to float16, 16-bit to float32, wider to float64); bool raises TypeError for softmax and
log_softmax and gives float64 for logsumexp (as integers do). complex and longdouble have no
extended-exponent sum: when their reduced axes are split they are first rechunked so that each
slice is in one chunk (dask.array.rechunk), then take the blockwise plan.

Accuracy of the split plan: float64 within a few ULP (softmax: relative; log_softmax and
logsumexp: of max(|result|, 1)); float32 softmax within about 2 ULP (the kernel's error, then
two roundings for the scale), float32 log_softmax and float16 within one rounding of the float64
value; float32/float16 logsumexp as twopass.logsumexp (the kernels' sum, about 1e-7 absolute).
"""
import math

import numpy as np

try:
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised only without dask
    raise ImportError("twopass.dask needs dask with its array extras: pip install \"dask[array]\" "
                      "(and \"dask[distributed]\" for a cluster); twopass itself does not") from exc

import twopass
from twopass import _dispatch
from twopass._api import _KERNEL_DTYPES, _axes, _copy_rows, _result_dtype, _row_target, _rows, _writes_result
from twopass._fallback import EXTEXP_EXPONENT_LIMIT, LN2_HI, LN2_LO

__all__ = ["softmax", "log_softmax", "logsumexp"]

# The partial sum of one piece of a slice: sum exp(x) = m * 2**e * exp(c).
#   in range:  c = 0, (m, e) = twopass.extsum, e an integer with |e| <= 2^17 (|logsumexp| < ~90850,
#              where extsum is exact and e * LN2_HI is exact);
#   beyond:    e = 0, c = the piece's max (|c| > ~90800, so c != 0), m = sum exp(x - c) in [1, n];
#              a float64 logsumexp cannot hold such sums to better than ulp(|logsumexp|), which is
#              more than ln 2 beyond 2^53, so the max is kept apart instead;
#   special:   (NaN, 0, 0) for a NaN, (inf, 0, 0) for +inf, (0, -inf, 0) for nothing (empty or
#              only -inf), as extsum gives them.
PARTIAL = np.dtype([("m", np.float64), ("e", np.float64), ("c", np.float64)])
LIMIT = EXTEXP_EXPONENT_LIMIT  # 2^17, extsum's exact range (include/twopass/common.h)


# ---- blocks whose slices are whole: the twopass kernels directly ----

def _whole_block(block, kind, axis, keepdims=False):
    """twopass.softmax / log_softmax / logsumexp of one block that holds entire slices."""
    if kind == "logsumexp":
        return np.asarray(twopass.logsumexp(block, axis=axis, keepdims=keepdims, threads=1))
    return np.asarray((twopass.softmax if kind == "softmax" else twopass.log_softmax)(block, axis=axis, threads=1))


# ---- pass 1: partial sums of the pieces, merged in a tree ----

def _partials(m, e, c, shape):
    out = np.empty(np.shape(m), PARTIAL)
    out["m"], out["e"], out["c"] = m, e, c
    return out.reshape(shape)


def _extsum_chunk(block, axis, keepdims=True, computing_meta=False, **kwargs):
    """The partial sum of this block's piece of each slice, the reduced axes kept at length 1."""
    if computing_meta:
        return np.empty((0,) * block.ndim, PARTIAL)
    shape = tuple(1 if a in axis else d for a, d in enumerate(block.shape))
    kept = [a for a in range(block.ndim) if a not in axis]
    n = math.prod(block.shape[a] for a in axis)
    # the slices as rows: the reduced axes last, flattened into one (a copy only when needed)
    rows = np.transpose(block, kept + list(axis)).reshape([block.shape[a] for a in kept] + [n])
    m, e = (np.array(v, np.float64) for v in twopass.extsum(rows, axis=-1, threads=1))
    c = np.zeros_like(m)
    with np.errstate(all="ignore"):
        beyond = np.isfinite(e) & (np.abs(e) > LIMIT)
        if beyond.any():  # rare (|x| > ~90000): sum exp(x - max) in float64, max kept apart
            r = np.asarray(rows[beyond], np.float64)
            top = r.max(axis=-1)  # NaN if any NaN, +inf if any +inf
            finite = np.isfinite(top)
            s = np.exp(r - np.where(finite, top, 0.0)[:, None]).sum(axis=-1)
            m[beyond] = np.where(finite, s, np.where(np.isnan(top), np.nan, np.where(top > 0, np.inf, 0.0)))
            e[beyond] = np.where(finite | (top > 0) | np.isnan(top), 0.0, -np.inf)
            c[beyond] = np.where(finite, top, 0.0)
    return _partials(m, e, c, shape)


def _merge_partials(parts, axis, keepdims=True, computing_meta=False, **kwargs):
    """Merge the partial sums of up to split_every pieces (concatenated along the reduced axes)
    into one per slice.

    In range only:  (m, e) = (sum m_i 2^(e_i - E), E), E = max e_i: exact powers of two, any order.
    With a piece beyond the range and above it (some c_j > 0): the result keeps C = max c_j,
        m = sum_j m_j exp(c_j - C) + sum_i m_i exp((e_i LN2_HI - C) + e_i LN2_LO), e = 0;
        e_i LN2_HI is exact and within a factor 2 of C whenever that piece matters, so the
        subtraction is exact (Sterbenz).
    With pieces beyond and below the range only next to pieces in range: those are far smaller;
        they join the in-range sum as m_j exp((c_j - E LN2_HI) - E LN2_LO) at exponent E.
    Only pieces beyond and below: C = max c_j, m = sum m_j exp(c_j - C).
    A NaN piece makes the sum NaN, else a +inf piece +inf; empty / all -inf pieces add nothing.
    """
    if computing_meta:
        return np.empty((0,) * parts.ndim, PARTIAL)
    for a in axis:
        if parts.shape[a] > 1:
            parts = _merge_along(parts, a)
    return parts


def _merge_along(parts, a):
    m, e, c = parts["m"], parts["e"], parts["c"]

    def total(v, where):
        return np.sum(np.where(where, v, 0.0), axis=a, keepdims=True)

    def top(v, where):
        return np.max(np.where(where, v, -np.inf), axis=a, keepdims=True)

    with np.errstate(all="ignore"):
        special = ~np.isfinite(m)                        # NaN or +inf pieces
        inside = np.isfinite(m) & (m > 0) & (c == 0)     # in range (e finite)
        beyond = np.isfinite(m) & (c != 0)
        big_c = top(c, beyond & (c > 0))                 # -inf if no piece beyond and above
        e_max = top(e, inside)                           # -inf if no piece in range
        c_max = top(c, beyond)
        # case 1: some piece beyond and above the range: relative to exp(big_c)
        safe_big = np.where(np.isfinite(big_c), big_c, 0.0)
        m1 = (total(m * np.exp(c - safe_big), beyond)
              + total(m * np.exp((e * LN2_HI - safe_big) + e * LN2_LO), inside))
        # case 2: pieces in range (and maybe pieces beyond and below): relative to 2^e_max
        safe_e = np.where(np.isfinite(e_max), e_max, 0.0)
        m2 = (total(m * np.exp2(e - safe_e), inside)
              + total(m * np.exp((c - safe_e * LN2_HI) - safe_e * LN2_LO), beyond))
        # case 3: only pieces beyond and below: relative to exp(c_max)
        safe_c = np.where(np.isfinite(c_max), c_max, 0.0)
        m3 = total(m * np.exp(c - safe_c), beyond)
        any_special = np.any(special, axis=a, keepdims=True)
        m_special = total(m, special)                    # NaN + inf = NaN, inf + inf = inf
        case1, case2 = np.isfinite(big_c), np.isfinite(e_max)
        case3 = np.isfinite(c_max)
        m_out = np.where(any_special, m_special, np.where(case1, m1, np.where(case2, m2, np.where(case3, m3, 0.0))))
        e_out = np.where(any_special | case1, 0.0, np.where(case2, e_max, np.where(case3, 0.0, -np.inf)))
        c_out = np.where(any_special, 0.0, np.where(case1, big_c, np.where(case2, 0.0, np.where(case3, c_max, 0.0))))
    return _partials(m_out, e_out, c_out, m_out.shape)


def _split_log(parts):
    """(hi, lo) with logsumexp = hi + lo and x - hi exact where it matters: hi = c + e LN2_HI,
    lo = e LN2_LO + log m for normal sums. Special sums: hi = 0, lo = logsumexp (NaN, +inf or
    -inf, SciPy's values), so x - hi - lo is x - logsumexp in IEEE arithmetic."""
    m, e, c = parts["m"], parts["e"], parts["c"]
    with np.errstate(all="ignore"):
        normal = np.isfinite(m) & (m > 0) & np.isfinite(e)
        e0 = np.where(normal, e, 0.0)
        hi = np.where(normal, c + e0 * LN2_HI, 0.0)  # c = 0 or e = 0: one of the terms is 0
        special = np.where(np.isnan(m), np.nan, np.where(m > 0, np.inf, -np.inf))
        lo = np.where(normal, e0 * LN2_LO + np.log(np.where(normal, m, 1.0)), special)
    return hi, lo


def _lse_block(parts, axis, keepdims, result_dtype):
    """logsumexp of each slice from its merged partial sum, rounded once to the result dtype."""
    hi, lo = _split_log(parts)
    lse = hi + lo
    if not keepdims:
        lse = lse.reshape([d for a, d in enumerate(lse.shape) if a not in axis])
    return lse.astype(result_dtype)


def _extsum_reduction(x, axes, split_every):
    """Pass 1 over the whole array: a dask array of PARTIAL, x's shape with the reduced axes at 1."""
    return da.reduction(x, _extsum_chunk, _merge_partials, combine=_merge_partials, axis=axes,
                        keepdims=True, dtype=PARTIAL, split_every=split_every,
                        meta=np.empty((0,) * x.ndim, PARTIAL), name="twopass-extsum")


# ---- pass 2: blockwise, from each slice's merged partial sum ----

TILE = 32768  # elements per step of the float64 evaluation (its temporaries stay in L2)


def _tiles(shape):
    """Index tuples covering an array of `shape` in C order, about TILE elements each."""
    k, tail = len(shape), 1
    while k > 0 and tail * shape[k - 1] <= TILE:
        k, tail = k - 1, tail * shape[k - 1]
    if k == 0:
        yield ()
        return
    step = max(1, TILE // tail)
    for lead in np.ndindex(*shape[:k - 1]):
        for start in range(0, shape[k - 1], step):
            yield lead + (slice(start, start + step),)


def _second_pass(block, parts, kind, axis, result_dtype):
    """softmax or log_softmax of one block given the merged partial sum of each of its slices."""
    if kind == "softmax" and block.dtype in (np.float16, np.float32, np.float64):
        y = _softmax_kernels(block, parts, axis, result_dtype)
        if y is not None:
            return y
    return _shifted(block, parts, kind, result_dtype)


def _shifted(block, parts, kind, result_dtype):
    """log_softmax = (x - hi) - lo, softmax = exp(log_softmax), in float64, rounded once to the
    result dtype, a tile at a time.

    Special slices: log_softmax is x - logsumexp (IEEE gives SciPy's answer), softmax is NaN (a
    NaN, a +inf or only -inf in the slice), as twopass.softmax.
    """
    hi, lo = _split_log(parts)
    if kind == "softmax":
        lo = np.where(np.isfinite(lo), lo, np.nan)
    hi, lo = np.broadcast_to(hi, block.shape), np.broadcast_to(lo, block.shape)
    out = np.empty(block.shape, result_dtype)
    buf = np.empty(min(TILE, block.size) if block.size else 0)
    with np.errstate(all="ignore"):
        for idx in _tiles(block.shape):
            x = block[idx]
            t = buf[:x.size].reshape(x.shape)
            np.subtract(x, hi[idx], out=t, dtype=np.float64)
            t -= lo[idx]
            np.minimum(t, 0.0, out=t)  # log_softmax <= 0 and softmax <= 1, as the kernels
            if kind == "softmax":
                np.exp(t, out=t)
            out[idx] = t
    return out


def _softmax_kernels(block, parts, axis, result_dtype):
    """float16, float32 and float64 softmax of a block on the kernels: y = exp(x) / (m * 2**e), pass 2
    of two-pass, one read of the block. None (the caller then uses
    _shifted) on the python level or when a slice's sum is special or beyond the exponent range."""
    level = _dispatch.current_level()
    m, e, c = parts["m"], parts["e"], parts["c"]
    if level == "python" or block.size == 0 or not (
            np.all(c == 0) and np.all((m > 0) & (m < np.inf)) and np.all(np.abs(e) <= LIMIT)):
        return None
    x2, order, xt_shape = _rows(block, axis, block.dtype)
    out = np.empty(block.shape, result_dtype)
    y2, direct = _row_target(out, x2, _writes_result(order, result_dtype, block.dtype))
    # parts has length 1 on the reduced axes, so its C order is that of the rows of x2
    run = getattr(_dispatch._kernels, f"softmax_from_extsum_{_KERNEL_DTYPES[block.dtype]}_rows")
    run(x2, y2, np.ascontiguousarray(m).reshape(-1), np.ascontiguousarray(e).reshape(-1),
        _dispatch.LEVELS.index(level), 1)
    _copy_rows(out, y2, direct, order, xt_shape)
    return out


# ---- the public functions ----

def _split(x, axes):
    """True when a reduced axis is split across chunks."""
    return any(x.numblocks[a] > 1 for a in axes)


def _elementwise(kind, x, axis, split_every):
    x = da.asarray(x)
    dtype = _result_dtype(x.dtype)  # TypeError for bool, object, ... as twopass
    axes = _axes(axis, x.ndim)
    sizes = [x.shape[a] for a in axes]
    if not any(math.isnan(s) for s in sizes) and math.prod(sizes) == 0:
        raise ValueError("zero-size array to reduction operation maximum which has no identity")
    meta = np.empty((0,) * x.ndim, dtype)
    if _split(x, axes) and (dtype.kind == "c" or dtype == np.longdouble):
        x = x.rechunk({a: -1 for a in axes})  # no extended-exponent sum for these dtypes
    if not _split(x, axes):
        return x.map_blocks(_whole_block, kind=kind, axis=axes, dtype=dtype, meta=meta,
                            token=f"twopass-{kind}")
    parts = _extsum_reduction(x, axes, split_every)
    return da.map_blocks(_second_pass, x, parts, kind=kind, axis=axes, result_dtype=dtype, dtype=dtype,
                         meta=meta, token=f"twopass-{kind}-pass2")


def softmax(x, axis=None, *, split_every=None):
    """softmax(x)_i = exp(x_i) / sum_j exp(x_j) over `axis`, as twopass.softmax, for a dask array.

    axis: None (all axes), an int or a tuple of ints. Reduced axes in one chunk run the kernels
    per block; split ones run two-pass across blocks (see the module docstring). split_every: the
    most partial sums one task merges (dask.array.reduction's argument; dask's default if None).
    Returns a dask array of x's shape and chunks.
    """
    return _elementwise("softmax", x, axis, split_every)


def log_softmax(x, axis=None, *, split_every=None):
    """log_softmax(x)_i = x_i - logsumexp(x) over `axis`, as twopass.log_softmax, for a dask array.

    Same arguments and plans as softmax.
    """
    return _elementwise("log_softmax", x, axis, split_every)


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False, *, split_every=None):
    """log(sum(exp(a))) over `axis`, as twopass.logsumexp / scipy.special.logsumexp, for a dask array.

    Reduced axes in one chunk run twopass.logsumexp per block; split ones merge the blocks'
    extended-exponent sums in a tree (split_every inputs per task at most). Weights `b` are not
    supported (NotImplementedError). return_sign gives (value, sign) with sign 1, 0 for an empty
    or all -inf sum (twopass's convention) and NaN for NaN, for real input.
    """
    if b is not None:
        raise NotImplementedError("twopass.dask.logsumexp does not take weights b")
    a = da.asarray(a)
    if a.dtype.kind in "biu":
        dtype = np.dtype(np.float64)
    elif a.dtype.kind in "fc":
        dtype = np.dtype(a.dtype.type)
    else:
        raise TypeError(f"logsumexp is not supported for arrays of dtype {a.dtype}")
    if return_sign and dtype.kind == "c":
        raise NotImplementedError("twopass.dask.logsumexp has no return_sign for complex input")
    axes = _axes(axis, a.ndim)
    out_ndim = a.ndim if keepdims else a.ndim - len(axes)
    meta = np.empty((0,) * out_ndim, dtype)
    if _split(a, axes) and (dtype.kind == "c" or dtype == np.longdouble):
        a = a.rechunk({ax: -1 for ax in axes})
    if not _split(a, axes):
        chunks = tuple((1,) if i in axes else c for i, c in enumerate(a.chunks) if keepdims or i not in axes)
        result = a.map_blocks(_whole_block, kind="logsumexp", axis=axes, keepdims=keepdims, dtype=dtype,
                              meta=meta, chunks=chunks, drop_axis=[] if keepdims else list(axes),
                              token="twopass-logsumexp")
    else:
        parts = _extsum_reduction(a, axes, split_every)
        result = parts.map_blocks(_lse_block, axis=axes, keepdims=keepdims, result_dtype=dtype, dtype=dtype,
                                  meta=meta, drop_axis=[] if keepdims else list(axes),
                                  token="twopass-logsumexp")
    if return_sign:
        return result, result.map_blocks(_sign, dtype=dtype, meta=meta)
    return result


def _sign(value):
    """The sign of an unweighted sum from its log: NaN, 0 for -inf (empty or all -inf), else 1."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(value), np.nan, np.where(value == -np.inf, 0.0, 1.0)).astype(value.dtype)
