"""softmax, log_softmax, logsumexp and extsum: SciPy's semantics, argument checks, layout, and the
choice between kernels and fallback.

Steps: validate (dtype, axis, out, algorithm) before anything is written; move the reduced axes to
the end and view the data as C-contiguous (rows, n) float32 or float64 rows (copying only when the
layout or dtype requires it); run the kernels of the level in force on float32 and float64 rows, or
the NumPy fallback (longdouble, and the python level); write back into `out` when a temporary was needed. (twopass.softmax and log_softmax are
the typed layer's fast path, which hands every other case to the functions here.)
"""
import math
import operator

import numpy as np

from twopass import _dispatch, _fallback

try:
    from numpy.lib.array_utils import normalize_axis_tuple
except ImportError:  # NumPy < 2
    from numpy.core.numeric import normalize_axis_tuple

def _axes(axis, ndim):
    """The reduced axes as a tuple, as NumPy's reductions read `axis` (which also allow the int 0 or
    -1 on a 0-d array, meaning no axis)."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, tuple) and not hasattr(axis, "__index__"):
        raise TypeError(f"axis must be an int or a tuple of ints, not {type(axis).__name__}")
    if ndim == 0 and not isinstance(axis, tuple) and operator.index(axis) in (0, -1):
        return ()
    return normalize_axis_tuple(axis, ndim)


ALGORITHMS = ("auto", "two_pass", "three_pass_reload", "three_pass_recompute", "online", "blocked_reload")
_KERNEL_ALGORITHM = {"two_pass": 0, "three_pass_reload": 1, "three_pass_recompute": 2, "online": 3,
                     "blocked_reload": 4}
# Calls served by the NumPy fallback (the kernels count theirs in twopass.kernels).
fallback_calls = {"python": 0}


def _algorithm(algorithm, n, level, itemsize=4, size=None, function="softmax"):
    """Resolve "auto" and reject unknown names (ValueError listing the valid ones)."""
    if algorithm == "auto":
        return _dispatch.auto_algorithm(level, n, itemsize, size, function)
    if algorithm not in _KERNEL_ALGORITHM:
        raise ValueError(f"unknown algorithm {algorithm!r}; valid choices: {', '.join(ALGORITHMS)}")
    return algorithm


def _empty_result(shape, dtype, order="C", like=None):
    """np.empty for a result returned to the caller: large ones from the output cache
    (twopass.set_output_cache), placed for the data of like, the array the kernels read as they
    write the result (None: none does)."""
    if _dispatch._kernels is None:
        return np.empty(shape, dtype, order=order)
    return _dispatch._kernels.empty_output(shape, dtype, order, like)


def _result_dtype(dtype):
    """dtype of softmax(x) as SciPy computes it (np.exp's promotion of integers)."""
    if dtype.kind in "fc":
        return np.dtype(dtype.type)  # native byte order
    if dtype.kind in "iu":
        return np.dtype({1: np.float16, 2: np.float32}.get(dtype.itemsize, np.float64))
    if dtype.kind == "b":
        raise TypeError("softmax of a boolean array is not supported (NumPy has no boolean "
                        "subtract, so scipy.special.softmax rejects it too); convert to float first")
    raise TypeError(f"softmax is not supported for arrays of dtype {dtype}")


def _check_out(out, x, dtype):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, not {type(out).__name__}")
    if out.shape != x.shape:
        raise ValueError(f"out has shape {out.shape}, expected {x.shape}")
    if out.dtype != dtype:
        raise TypeError(f"out has dtype {out.dtype}, expected {dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if np.may_share_memory(x, out):
        identical = (x.__array_interface__["data"][0] == out.__array_interface__["data"][0]
                     and x.strides == out.strides and x.dtype == out.dtype)
        if not identical and np.shares_memory(x, out, max_work=10**6):
            raise ValueError("out overlaps x partially; pass out=x for in place or a separate array")


def _rows(x, axes, work):
    """x with the reduced axes last, as C-contiguous (rows, n) in dtype `work`; and the axis order."""
    order = [a for a in range(x.ndim) if a not in axes] + list(axes)
    xt = x if order == list(range(x.ndim)) else x.transpose(order)
    n = math.prod(x.shape[a] for a in axes)
    rows = xt.size // n if n else math.prod(xt.shape[: x.ndim - len(axes)])
    if not (xt.dtype == work and xt.flags.c_contiguous and xt.flags.aligned):
        xt = np.require(xt, dtype=work, requirements=["C", "A"])  # ~5 us even when it changes nothing
    return xt.reshape(rows, n), order, xt.shape


def _writes_result(order, dtype, work):
    """True when the row kernels can write the result itself: _rows kept x's axis order and the
    result's dtype is the work dtype."""
    return order == list(range(len(order))) and dtype == work


def _row_target(result, x2, writes_result):
    """(y2, direct): the (rows, n) array the row kernels write, result itself when it allows it (its
    C order and alignment too), else a temporary that _copy_rows brings into result."""
    if writes_result and result.flags.c_contiguous and result.flags.aligned:
        return result.reshape(x2.shape), True
    return np.empty(x2.shape, x2.dtype), False


def _copy_rows(result, y2, direct, order, xt_shape):
    if not direct:
        result.transpose(order)[...] = y2.reshape(xt_shape)


# dtypes the kernels take, and their names in twopass.kernels' functions
_KERNEL_DTYPES = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64", np.dtype(np.float16): "f16"}


def _work_dtype(dtype, level):
    """The dtype the rows are laid out in: float16 as it is on the kernels (which compute it in
    float32 between load and store), in float32 for the NumPy fallback; every other float in its
    own precision."""
    if dtype == np.float16 and level == "python":
        return np.dtype(np.float32)
    return dtype


def _check_threads(threads):
    """threads=: None (the default, twopass.get_num_threads()) or an int >= 1."""
    return None if threads is None else _dispatch.check_threads(threads)


def _elementwise(kind, x, axis, out, algorithm, threads):
    """softmax or log_softmax (kind) with SciPy's semantics; see softmax."""
    threads = _check_threads(threads)
    x = np.asarray(x)
    dtype = _result_dtype(x.dtype)
    axes = _axes(axis, x.ndim)
    n = math.prod(x.shape[a] for a in axes)
    level = _dispatch.current_level()
    work = _work_dtype(dtype, level)
    requested, algorithm = algorithm, _algorithm(algorithm, n, level, work.itemsize, x.size, kind)
    if out is not None:
        _check_out(out, x, dtype)
    if n == 0:
        raise ValueError("zero-size array to reduction operation maximum which has no identity")
    if dtype.kind == "c":
        return _complex(kind, x, axes, out)

    if requested in ("auto", "two_pass") and work in _KERNEL_DTYPES and level != "python" and len(axes) == 1:
        result = _columns(kind, x, axes[0], out, dtype, level, threads)
        if result is not None:
            return result
    x2, order, xt_shape = _rows(x, axes, work)
    writes_result = _writes_result(order, dtype, work)
    result = _empty_result(x.shape, dtype, like=x2 if writes_result else None) if out is None else out
    y2, direct = _row_target(result, x2, writes_result)

    if work in _KERNEL_DTYPES and level != "python":
        run = getattr(_dispatch._kernels, f"{kind}_{_KERNEL_DTYPES[work]}_rows")
        run(x2, y2, _KERNEL_ALGORITHM[algorithm], _dispatch.LEVELS.index(level), threads)
    else:
        fallback_calls["python"] += 1
        (_fallback.softmax_rows if kind == "softmax" else _fallback.log_softmax_rows)(x2, y2, algorithm)

    _copy_rows(result, y2, direct, order, xt_shape)
    if out is None and x.ndim == 0:
        return result[()]
    return result


def _columns(kind, x, axis, out, dtype, level, threads):
    """softmax or log_softmax over a non-contiguous axis of a C- or F-contiguous array without transposing: view it
    as (outer, axis, inner) with inner contiguous and let each SIMD lane follow one column (two-pass,
    lane by lane). None if the layout does not allow it."""
    if not x.flags.c_contiguous and x.flags.f_contiguous:  # F order: the transpose is C order
        x, axis, flip = x.T, x.ndim - 1 - axis, True
        if axis == x.ndim - 1:
            return None  # the reduced axis is the contiguous one: the rows path takes it as it is
    elif x.flags.c_contiguous and axis != x.ndim - 1:
        flip = False
    else:
        return None  # the contiguous axis (the rows path takes it as it is), or another layout
    outer, rows = math.prod(x.shape[:axis]), x.shape[axis]
    inner = math.prod(x.shape[axis + 1:])
    work = _work_dtype(dtype, level)
    if _dispatch._kernels.narrow_columns(inner, work.itemsize):
        return None  # 1-4 columns run faster as rows (after a transposing copy for more than one)
    x3 = np.require(x, dtype=work, requirements=["C", "A"]).reshape(outer, rows, inner)
    result = out if out is not None else _empty_result(x.T.shape if flip else x.shape, dtype, "F" if flip else "C",
                                                       x3 if dtype == work else None)
    target = result.T if flip else result
    direct = dtype == work and target.flags.c_contiguous and target.flags.aligned
    y3 = target.reshape(outer, rows, inner) if direct else np.empty((outer, rows, inner), work)
    run = getattr(_dispatch._kernels, f"{kind}_{_KERNEL_DTYPES[work]}_columns")
    run(x3, y3, _dispatch.LEVELS.index(level), threads)
    if not direct:
        target[...] = y3.reshape(target.shape)
    return result


def softmax(x, axis=None, *, out=None, algorithm="auto", threads=None):
    """softmax(x)_i = exp(x_i) / sum_j exp(x_j) over `axis`, like scipy.special.softmax.

    axis: None (the whole array), an int, or a tuple of ints. out: an array of x's shape and the
    result dtype to write into (may be x itself). algorithm: "auto", "two_pass",
    "three_pass_reload", "three_pass_recompute", "online" or "blocked_reload" (reload's results with
    x read once); all agree within float rounding. threads: how
    many threads (None: twopass.get_num_threads()); the result is bitwise the same for any count.
    """
    return _elementwise("softmax", x, axis, out, algorithm, threads)


def log_softmax(x, axis=None, *, out=None, algorithm="auto", threads=None):
    """log_softmax(x)_i = x_i - logsumexp(x) over `axis`, like scipy.special.log_softmax.

    Same arguments as softmax. two_pass reads x once for logsumexp (the extended-exponent sum) and
    once to write x - logsumexp (blocked_reload runs it too); the three-pass algorithms (both names
    run the same one) find the max, then the sum, then write.
    """
    return _elementwise("log_softmax", x, axis, out, algorithm, threads)


def _complex(kind, x, axes, out):
    """Complex input: SciPy's own formulas (NumPy orders complex numbers lexicographically)."""
    with np.errstate(all="ignore"):
        x_max = np.max(x, axis=axes, keepdims=True)
        if kind == "softmax":
            shifted = np.exp(x - x_max)
            result = shifted / np.sum(shifted, axis=axes, keepdims=True)
        else:
            x_max = np.where(np.isfinite(x_max), x_max, 0)
            result = (x - x_max) - np.log(np.sum(np.exp(x - x_max), axis=axes, keepdims=True))
    if out is None:
        return result
    out[...] = result
    return out


def _reduced_shape(shape, axes, keepdims):
    return tuple(1 if a in axes else d for a, d in enumerate(shape) if keepdims or a not in axes)


def _logsumexp_columns(a, axes, work, level, threads):
    """logsumexp over one axis that is not the contiguous one of a C-contiguous array, down the
    columns of its (outer, axis, inner) view without transposing: float64 values (outer, inner), in
    the order of the reduced shape; None for other cases (then the rows path, which transposes)."""
    if len(axes) != 1 or axes[0] == a.ndim - 1 or not a.flags.c_contiguous or a.size == 0:
        return None
    axis = axes[0]
    outer, inner = math.prod(a.shape[:axis]), math.prod(a.shape[axis + 1:])
    if _dispatch._kernels.narrow_columns(inner, work.itemsize):
        return None  # rows, as for softmax (_columns)
    x3 = np.require(a, dtype=work, requirements=["C", "A"]).reshape(outer, a.shape[axis], inner)
    values = np.empty((outer, inner), np.float64)
    run = getattr(_dispatch._kernels, f"logsumexp_{_KERNEL_DTYPES[work]}_columns")
    run(x3, values, _dispatch.LEVELS.index(level), threads)
    return values


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False, *, out=None, threads=None):
    """log(sum(b * exp(a))) over `axis`, like scipy.special.logsumexp (same signature, plus out=).

    Unweighted float16/float32/float64 (and integer) input runs on the kernels in one pass over the
    data (the extended-exponent sum, no max pass); weights `b` (broadcast against a, negative values
    with return_sign), other dtypes and the python level use NumPy. Empty reductions give -inf.
    """
    threads = _check_threads(threads)
    a = np.asarray(a)
    if a.dtype.kind == "b" or a.dtype.kind in "iu":
        dtype = np.dtype(np.float64)
    elif a.dtype.kind in "fc":
        dtype = np.dtype(a.dtype.type)
    else:
        raise TypeError(f"logsumexp is not supported for arrays of dtype {a.dtype}")
    if b is not None:
        b = np.asarray(b)
        a, b = np.broadcast_arrays(a, b)
        dtype = np.result_type(dtype, b.dtype) if b.dtype.kind in "fc" else dtype
    axes = _axes(axis, a.ndim)
    shape = _reduced_shape(a.shape, axes, keepdims)
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy.ndarray, not {type(out).__name__}")
        if out.shape != shape:
            raise ValueError(f"out has shape {out.shape}, expected {shape}")
        if out.dtype != (np.finfo(dtype).dtype if dtype.kind == "c" and return_sign else dtype):
            raise TypeError(f"out has dtype {out.dtype}, expected the result's")
        if not out.flags.writeable:
            raise ValueError("out is read-only")
    level = _dispatch.current_level()
    if b is None and dtype in (np.float16, np.float32, np.float64) and level != "python":
        work = _work_dtype(dtype, level)
        values = _logsumexp_columns(a, axes, work, level, threads)
        if values is None:
            x2 = _rows(a, axes, work)[0]
            values = np.empty(x2.shape[0], np.float64)
            run = getattr(_dispatch._kernels, f"logsumexp_{_KERNEL_DTYPES[work]}_rows")
            run(x2, values, 0, _dispatch.LEVELS.index(level), threads)
        result = values.reshape(shape).astype(dtype)
        if return_sign:
            with np.errstate(invalid="ignore"):
                sign = np.where(np.isnan(result), np.nan, np.where(result == -np.inf, 0.0, 1.0)).astype(dtype)
    else:
        fallback_calls["python"] += 1
        result, sign = _fallback.logsumexp(a, axes, b, keepdims, dtype, return_sign)
    if out is not None:
        out[...] = result
        result = out
    elif result.ndim == 0:
        result = result[()]
    if return_sign:
        return result, (sign[()] if np.ndim(sign) == 0 else sign)
    return result


def extsum(x, axis=-1, *, threads=None):
    """The mergeable partial sum of two-pass: (mantissa, exponent) with sum(exp(x)) along `axis` =
    mantissa * 2**exponent, as float64 arrays of the reduced shape (NumPy scalars for 1-D input).

    Pairs of separate pieces of one slice combine exactly with merge_extsum, in any order; finish
    with logsumexp_from_extsum or softmax_from_extsum. Empty slices give (0, -inf), the identity;
    a NaN gives a NaN mantissa, +inf an infinite one.
    """
    threads = _check_threads(threads)
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"extsum is not supported for arrays of dtype {x.dtype}")
    axes = normalize_axis_tuple(axis, x.ndim)
    if len(axes) != 1:
        raise ValueError("extsum takes a single axis")
    level = _dispatch.current_level()
    x2 = _rows(x, axes, x.dtype if x.dtype in _KERNEL_DTYPES and level != "python"
               else np.float32 if x.dtype in (np.float16, np.float32) else np.float64)[0]
    mantissa = np.empty(x2.shape[0])
    exponent = np.empty(x2.shape[0])
    if x2.dtype in _KERNEL_DTYPES and level != "python":
        run = getattr(_dispatch._kernels, f"extsum_{_KERNEL_DTYPES[x2.dtype]}_rows")
        run(x2, mantissa, exponent, _dispatch.LEVELS.index(level), threads)
    else:
        fallback_calls["python"] += 1
        _fallback.extsum_rows(x2, mantissa, exponent)
    shape = _reduced_shape(x.shape, axes, False)
    mantissa, exponent = mantissa.reshape(shape), exponent.reshape(shape)
    return (mantissa[()], exponent[()]) if len(shape) == 0 else (mantissa, exponent)


def merge_extsum(first, second):
    """(M1, E1) + (M2, E2) = (M1 * 2^(E1 - E) + M2 * 2^(E2 - E), E) with E = max(E1, E2): exact
    powers of two, so pieces merge in any order; (0, -inf) is the identity."""
    (m1, e1), (m2, e2) = first, second
    m1, e1, m2, e2 = (np.asarray(v, np.float64) for v in (m1, e1, m2, e2))
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.maximum(e1, e2)
        finite = np.isfinite(e)
        safe = np.where(finite, e, 0.0)
        m = m1 * np.exp2(np.where(finite, e1 - safe, 0.0)) + m2 * np.exp2(np.where(finite, e2 - safe, 0.0))
        # a piece holding +inf (mantissa inf) or NaN decides the sum, whatever the exponents
        special = np.isinf(m1) | np.isinf(m2) | np.isnan(m1) | np.isnan(m2)
        m = np.where(special, m1 + m2, np.where(finite, m, np.where(np.isnan(e), np.nan, 0.0)))
        e = np.where(special, 0.0, e)
    return (m[()], e[()]) if m.ndim == 0 else (m, e)


def logsumexp_from_extsum(pair):
    """log(mantissa) + exponent * ln 2."""
    mantissa, exponent = pair
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(mantissa) + np.where(np.isfinite(exponent), exponent, 0.0) * np.log(2.0) \
            + np.where(exponent == -np.inf, -np.inf, 0.0)


def softmax_from_extsum(x, pair, axis=-1, *, out=None, threads=None):
    """softmax(x) along `axis` given the extsum of the whole slice (e.g. merged from pieces):
    exp(x) / (mantissa * 2**exponent), the second pass of two-pass. float16, float32 and float64 run
    on the kernels (vscaleextexp) when every sum is finite and positive; other cases use float64 NumPy."""
    threads = _check_threads(threads)
    x = np.asarray(x)
    axes = normalize_axis_tuple(axis, x.ndim)
    if len(axes) != 1:
        raise ValueError("softmax_from_extsum takes a single axis")
    dtype = _result_dtype(x.dtype)
    if out is not None:
        _check_out(out, x, dtype)
    shape = _reduced_shape(x.shape, axes, False)
    mantissa, exponent = (np.broadcast_to(np.asarray(v, np.float64), shape) for v in pair)
    level = _dispatch.current_level()
    work = _work_dtype(dtype, level)
    limit = (_dispatch._kernels.EXTEXP_EXPONENT_LIMIT if work in (np.float16, np.float32)
             else _dispatch._kernels.F64_EXTEXP_EXPONENT_LIMIT if work == np.float64 else None)
    if (limit is not None and level != "python" and x.size
            and np.all((mantissa > 0) & (mantissa < np.inf)) and np.all(np.abs(exponent) <= limit)):
        x2, order, xt_shape = _rows(x, axes, work)
        writes_result = _writes_result(order, dtype, work)
        result = _empty_result(x.shape, dtype, like=x2 if writes_result else None) if out is None else out
        y2, direct = _row_target(result, x2, writes_result)
        getattr(_dispatch._kernels, f"softmax_from_extsum_{_KERNEL_DTYPES[work]}_rows")(
            x2, y2, np.ascontiguousarray(mantissa.reshape(-1)), np.ascontiguousarray(exponent.reshape(-1)),
            _dispatch.LEVELS.index(level), threads)
        _copy_rows(result, y2, direct, order, xt_shape)
        return result
    # exp(x - log(m) - e ln2) = exp((x - hi) - lo) with hi = e LN2_HI, lo = e LN2_LO + log m: hi is
    # exact while |e| < 2^21 (e an integer, LN2_HI with 21 trailing zero bits), so x - hi loses
    # nothing where it matters; beyond (sums of huge slices, exact in log space only) hi = log(m) +
    # e ln2, lo = 0. A special sum (NaN or +inf in the slice, or only -inf) gives NaN, as softmax.
    m, e = (np.expand_dims(v, axes) for v in (mantissa, exponent))
    with np.errstate(all="ignore"):
        normal = np.isfinite(m) & (m > 0) & np.isfinite(e)
        split = normal & (np.abs(e) < 2.0**21)
        e0, m0 = np.where(normal, e, 0.0), np.where(normal, m, 1.0)
        hi = np.where(split, e0 * _fallback.LN2_HI, np.log(m0) + e0 * _fallback.LN2)
        lo = np.where(split, e0 * _fallback.LN2_LO + np.log(m0), np.where(normal, 0.0, np.nan))
        result = np.exp(np.minimum((x.astype(np.float64) - hi) - lo, 0.0)).astype(dtype)  # <= 1, as the kernels
    if out is None:
        return result
    out[...] = result
    return out
