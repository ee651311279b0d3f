"""softmax: SciPy's semantics, argument checks, layout, and the choice between kernels and fallback.

Steps: validate (dtype, axis, out, algorithm) before anything is written; move the reduced axes to
the end and view the data as C-contiguous (rows, n) float32 or float64 rows (copying only when the
layout or dtype requires it); run the kernels of the level in force on float32 rows, or the NumPy
fallback; write back into `out` when a temporary was needed.
"""
import math

import numpy as np

from twopass import _dispatch, _fallback

try:
    from numpy.lib.array_utils import normalize_axis_tuple
except ImportError:  # NumPy < 2
    from numpy.core.numeric import normalize_axis_tuple

ALGORITHMS = ("auto", "two_pass", "three_pass_reload", "three_pass_recompute")
_KERNEL_ALGORITHM = {"two_pass": 0, "three_pass_reload": 1, "three_pass_recompute": 2}
# Calls served by the NumPy fallback (the kernels count theirs in twopass.kernels).
fallback_calls = {"python": 0}


def _algorithm(algorithm, n, level):
    """Resolve "auto" and reject unknown names (ValueError listing the valid ones)."""
    if algorithm == "auto":
        return _dispatch.auto_algorithm(level, n)
    if algorithm not in _KERNEL_ALGORITHM:
        raise ValueError(f"unknown algorithm {algorithm!r}; valid choices: {', '.join(ALGORITHMS)}")
    return algorithm


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


def softmax(x, axis=None, *, out=None, algorithm="auto"):
    """softmax(x)_i = exp(x_i) / sum_j exp(x_j) over `axis`, like scipy.special.softmax.
    (twopass.softmax is the typed layer's fast path, which hands every other case to this one.)

    axis: None (the whole array), an int, or a tuple of ints. out: an array of x's shape and the
    result dtype to write into (may be x itself). algorithm: "auto", "two_pass",
    "three_pass_reload" or "three_pass_recompute"; all agree within float rounding.
    """
    x = np.asarray(x)
    dtype = _result_dtype(x.dtype)
    axes = tuple(range(x.ndim)) if axis is None else normalize_axis_tuple(axis, x.ndim)
    n = math.prod(x.shape[a] for a in axes)
    level = _dispatch.current_level()
    algorithm = _algorithm(algorithm, n, level)
    if out is not None:
        _check_out(out, x, dtype)
    if n == 0:
        raise ValueError("zero-size array to reduction operation maximum which has no identity")
    if dtype.kind == "c":
        return _softmax_complex(x, axes, out)

    # (rows, n) layout: the reduced axes last, C-contiguous, in the dtype the computation runs in.
    work = np.dtype(np.float32) if dtype in (np.float16, np.float32) else dtype
    order = [a for a in range(x.ndim) if a not in axes] + list(axes)
    trailing = order == list(range(x.ndim))
    xt = x if trailing else x.transpose(order)
    rows = xt.size // n
    x2 = np.require(xt, dtype=work, requirements=["C", "A"]).reshape(rows, n)

    result = np.empty(x.shape, dtype) if out is None else out
    direct = trailing and dtype == work and result.flags.c_contiguous and result.flags.aligned
    y2 = result.reshape(rows, n) if direct else np.empty((rows, n), work)

    if work == np.float32 and level != "python":
        _dispatch._kernels.softmax_f32_rows(x2, y2, _KERNEL_ALGORITHM[algorithm], _dispatch.LEVELS.index(level))
    else:
        fallback_calls["python"] += 1
        _fallback.softmax_rows(x2, y2, algorithm)

    if not direct:
        result.transpose(order)[...] = y2.reshape(xt.shape)
    if out is None and x.ndim == 0:
        return result[()]
    return result


def _softmax_complex(x, axes, out):
    """Complex input: SciPy's own formula (NumPy orders complex numbers lexicographically)."""
    with np.errstate(all="ignore"):
        shifted = np.exp(x - np.max(x, axis=axes, keepdims=True))
        result = shifted / np.sum(shifted, axis=axes, keepdims=True)
    if out is None:
        return result
    out[...] = result
    return out
