# cython: language_level=3
"""Typed memoryview layer between the Python API and the C kernels.

Design:
- C (src/, include/): CPU detection, one kernel table per ISA level, the three algorithms composed
  from the passes. The Python package (twopass/_api.py) validates arguments and lays the data out as
  C-contiguous rows; this module only checks shapes and the level, then calls C with the GIL released.
- Levels are ints: 0 python (no kernels), 1 avx2, 2 avx512f. A level above what the CPU supports is
  refused here, so no caller can run an instruction the CPU lacks.
- Threads: every driver takes a thread count and runs on OpenMP threads (src/softmax.c); `threads`
  None means the default, set_num_threads()'s value capped by OpenMP's limit for the calling thread
  (OMP_NUM_THREADS, threadpoolctl's threadpool_limits).
- float32, float64 and float16: one fused-type (`element`) function per driver, with a def wrapper
  per dtype (softmax_f32_rows, softmax_f64_rows, softmax_f16_rows, ...); the C drivers of all three
  come from one template. float16 arrays cross as their binary16 bits (uint16 views): Cython has no
  float16 type, and the float16 kernels convert on load and store themselves.
- kernels.pxd exports softmax_f32 / softmax_f32_strided as nogil functions for other Cython code.
"""
import os
from math import prod

from cython cimport floating
from libc.math cimport INFINITY, fabs
from libc.stddef cimport ptrdiff_t
from libc.stdint cimport uint16_t
import numpy as np
cimport numpy as cnp
cimport openmp
from cython.parallel cimport prange

cnp.import_array()

# The element types of the kernels: float32, float64, and float16 as its binary16 bits.
ctypedef fused element:
    float
    double
    uint16_t

cdef extern from "twopass/softmax.h" nogil:
    struct twopass_cpu_features:
        int sse2, sse4_1, avx, f16c, fma, avx2, avx512f, avx512bw, avx512dq, avx512vl
        int os_ymm, os_zmm, intel
    void twopass_detect_cpu(twopass_cpu_features* features)
    void twopass_tune_for_cpu(const twopass_cpu_features* features)
    unsigned int twopass_flush_to_zero_begin()
    void twopass_flush_to_zero_end(unsigned int csr)
    int twopass_best_level(const twopass_cpu_features* features)

    int TWOPASS_F32_OP_COUNT
    struct twopass_kernel_info:
        const char* name
        int op
        int level
        int unroll
        int accumulators
        int streaming
    const twopass_kernel_info* twopass_f32_kernel_registry(size_t* count)

    struct twopass_f32_kernels:
        float (*rmax)(size_t n, const float* x) noexcept nogil
        void (*raddextexp)(size_t n, const float* x, float* sum) noexcept nogil
        void (*vscaleextexp)(size_t n, const float* x, float* y, float scale, float exponent) noexcept nogil
        float (*raddexpminusmax)(size_t n, const float* x, float shift, float exponent) noexcept nogil
        float (*raddstoreexpminusmax)(size_t n, const float* x, float* y, float shift, float exponent,
                                      float* max) noexcept nogil
        void (*vscaleexpminusmax)(size_t n, const float* x, float* y, float shift, float exponent, float scale) noexcept nogil
        void (*vscale)(size_t n, const float* x, float* y, float scale) noexcept nogil
        void (*vsubc)(size_t n, const float* x, float* y, float c_hi, float c_lo) noexcept nogil
        void (*raddonline)(size_t n, const float* x, float* result) noexcept nogil
        const twopass_f32_kernels* streaming
        const char* const* names
    const twopass_f32_kernels* twopass_f32_kernels_for(int level)
    int twopass_f32_kernels_with(twopass_f32_kernels* table, const twopass_kernel_info* variant)

    const twopass_kernel_info* twopass_f64_kernel_registry(size_t* count)
    struct twopass_f64_kernels:
        double (*rmax)(size_t n, const double* x) noexcept nogil
        void (*raddextexp)(size_t n, const double* x, double* sum) noexcept nogil
        void (*vscaleextexp)(size_t n, const double* x, double* y, double scale, double exponent) noexcept nogil
        double (*raddexpminusmax)(size_t n, const double* x, double shift, double exponent) noexcept nogil
        double (*raddstoreexpminusmax)(size_t n, const double* x, double* y, double shift, double exponent,
                                       double* max) noexcept nogil
        void (*vscaleexpminusmax)(size_t n, const double* x, double* y, double shift, double exponent, double scale) noexcept nogil
        void (*vscale)(size_t n, const double* x, double* y, double scale) noexcept nogil
        void (*vsubc)(size_t n, const double* x, double* y, double c_hi, double c_lo) noexcept nogil
        void (*raddonline)(size_t n, const double* x, double* result) noexcept nogil
        const twopass_f64_kernels* streaming
        const char* const* names
    const twopass_f64_kernels* twopass_f64_kernels_for(int level)
    int twopass_f64_kernels_with(twopass_f64_kernels* table, const twopass_kernel_info* variant)

    const twopass_kernel_info* twopass_f16_kernel_registry(size_t* count)
    struct twopass_f16_kernels:
        float (*rmax)(size_t n, const uint16_t* x) noexcept nogil
        void (*raddextexp)(size_t n, const uint16_t* x, float* sum) noexcept nogil
        void (*vscaleextexp)(size_t n, const uint16_t* x, uint16_t* y, float scale, float exponent) noexcept nogil
        float (*raddexpminusmax)(size_t n, const uint16_t* x, float shift, float exponent) noexcept nogil
        float (*raddstoreexpminusmax)(size_t n, const uint16_t* x, float* w, float shift, float exponent,
                                      float* max) noexcept nogil
        void (*vscaleexpminusmax)(size_t n, const uint16_t* x, uint16_t* y, float shift, float exponent, float scale) noexcept nogil
        void (*vscale)(size_t n, const float* w, uint16_t* y, float scale) noexcept nogil
        void (*vsubc)(size_t n, const uint16_t* x, uint16_t* y, float c_hi, float c_lo) noexcept nogil
        void (*raddonline)(size_t n, const uint16_t* x, float* result) noexcept nogil
        const twopass_f16_kernels* streaming
        const char* const* names
    const twopass_f16_kernels* twopass_f16_kernels_for(int level)
    int twopass_f16_kernels_with(twopass_f16_kernels* table, const twopass_kernel_info* variant)

    void twopass_softmax_f32_rows(const twopass_f32_kernels* k, int algorithm, size_t rows, size_t n,
                                  const float* x, ptrdiff_t x_stride, float* y, ptrdiff_t y_stride,
                                  int threads)
    void twopass_log_softmax_f32_rows(const twopass_f32_kernels* k, int algorithm, size_t rows, size_t n,
                                      const float* x, ptrdiff_t x_stride, float* y, ptrdiff_t y_stride,
                                      int threads)
    void twopass_logsumexp_f32_rows(const twopass_f32_kernels* k, int algorithm, size_t rows, size_t n,
                                    const float* x, ptrdiff_t x_stride, double* out, int threads)
    int twopass_softmax_f32_columns(const twopass_f32_kernels* k, size_t rows, size_t cols, const float* x,
                                    ptrdiff_t x_ld, float* y, ptrdiff_t y_ld, int threads)
    int twopass_log_softmax_f32_columns(const twopass_f32_kernels* k, size_t rows, size_t cols, const float* x,
                                        ptrdiff_t x_ld, float* y, ptrdiff_t y_ld, int threads)
    int twopass_logsumexp_f32_columns(const twopass_f32_kernels* k, size_t rows, size_t cols, const float* x,
                                      ptrdiff_t x_ld, double* out, int threads)
    void twopass_extsum_f32_rows(const twopass_f32_kernels* k, size_t rows, size_t n, const float* x,
                                 ptrdiff_t x_stride, double* mantissa, double* exponent, int threads)
    void twopass_softmax_from_extsum_f32_rows(const twopass_f32_kernels* k, size_t rows, size_t n,
                                              const float* x, ptrdiff_t x_stride, float* y,
                                              ptrdiff_t y_stride, const double* mantissa,
                                              const double* exponent, int threads)
    void twopass_softmax_f64_rows(const twopass_f64_kernels* k, int algorithm, size_t rows, size_t n,
                                  const double* x, ptrdiff_t x_stride, double* y, ptrdiff_t y_stride,
                                  int threads)
    void twopass_log_softmax_f64_rows(const twopass_f64_kernels* k, int algorithm, size_t rows, size_t n,
                                      const double* x, ptrdiff_t x_stride, double* y, ptrdiff_t y_stride,
                                      int threads)
    void twopass_logsumexp_f64_rows(const twopass_f64_kernels* k, int algorithm, size_t rows, size_t n,
                                    const double* x, ptrdiff_t x_stride, double* out, int threads)
    int twopass_softmax_f64_columns(const twopass_f64_kernels* k, size_t rows, size_t cols, const double* x,
                                    ptrdiff_t x_ld, double* y, ptrdiff_t y_ld, int threads)
    int twopass_log_softmax_f64_columns(const twopass_f64_kernels* k, size_t rows, size_t cols,
                                        const double* x, ptrdiff_t x_ld, double* y, ptrdiff_t y_ld, int threads)
    int twopass_logsumexp_f64_columns(const twopass_f64_kernels* k, size_t rows, size_t cols, const double* x,
                                      ptrdiff_t x_ld, double* out, int threads)
    void twopass_extsum_f64_rows(const twopass_f64_kernels* k, size_t rows, size_t n, const double* x,
                                 ptrdiff_t x_stride, double* mantissa, double* exponent, int threads)
    void twopass_softmax_from_extsum_f64_rows(const twopass_f64_kernels* k, size_t rows, size_t n,
                                              const double* x, ptrdiff_t x_stride, double* y,
                                              ptrdiff_t y_stride, const double* mantissa,
                                              const double* exponent, int threads)
    void twopass_softmax_f16_rows(const twopass_f16_kernels* k, int algorithm, size_t rows, size_t n,
                                  const uint16_t* x, ptrdiff_t x_stride, uint16_t* y, ptrdiff_t y_stride,
                                  int threads)
    void twopass_log_softmax_f16_rows(const twopass_f16_kernels* k, int algorithm, size_t rows, size_t n,
                                      const uint16_t* x, ptrdiff_t x_stride, uint16_t* y, ptrdiff_t y_stride,
                                      int threads)
    void twopass_logsumexp_f16_rows(const twopass_f16_kernels* k, int algorithm, size_t rows, size_t n,
                                    const uint16_t* x, ptrdiff_t x_stride, double* out, int threads)
    int twopass_softmax_f16_columns(const twopass_f16_kernels* k, size_t rows, size_t cols, const uint16_t* x,
                                    ptrdiff_t x_ld, uint16_t* y, ptrdiff_t y_ld, int threads)
    int twopass_log_softmax_f16_columns(const twopass_f16_kernels* k, size_t rows, size_t cols,
                                        const uint16_t* x, ptrdiff_t x_ld, uint16_t* y, ptrdiff_t y_ld, int threads)
    int twopass_logsumexp_f16_columns(const twopass_f16_kernels* k, size_t rows, size_t cols, const uint16_t* x,
                                      ptrdiff_t x_ld, double* out, int threads)
    void twopass_extsum_f16_rows(const twopass_f16_kernels* k, size_t rows, size_t n, const uint16_t* x,
                                 ptrdiff_t x_stride, double* mantissa, double* exponent, int threads)
    void twopass_softmax_from_extsum_f16_rows(const twopass_f16_kernels* k, size_t rows, size_t n,
                                              const uint16_t* x, ptrdiff_t x_stride, uint16_t* y,
                                              ptrdiff_t y_stride, const double* mantissa,
                                              const double* exponent, int threads)
    int TWOPASS_PARALLEL_MIN
    int TWOPASS_ROW_GROUP_ROW_BYTES, TWOPASS_ROW_GROUP_BYTES
    void twopass_set_sum_block(size_t elements)
    size_t twopass_sum_block()
    void twopass_set_row_group_bytes(size_t nbytes)
    size_t twopass_row_group_bytes()
    void twopass_set_streaming_threshold(size_t bytes)
    size_t twopass_streaming_threshold()
    int TWOPASS_ALGORITHM_COUNT
    void twopass_threads_init()
    int twopass_threads_usable()
    struct twopass_thread_stats:
        long teams, team_threads, streaming_jobs, grouped_jobs, blocked_slices, two_pass_slices
    void twopass_get_thread_stats(twopass_thread_stats* out)

cdef extern from "twopass/common.h" nogil:
    double TWOPASS_EXTEXP_EXPONENT_LIMIT
    double TWOPASS_F64_EXTEXP_EXPONENT_LIMIT
    size_t twopass_prefetch_ahead  # the exp passes' prefetch distance (set at import; benchmarks below)
    int TWOPASS_PREFETCH_AHEAD, TWOPASS_PREFETCH_AHEAD_INTEL
    int twopass_stores_alias_next_loads(const void* x, const void* y)

EXTEXP_EXPONENT_LIMIT = TWOPASS_EXTEXP_EXPONENT_LIMIT
F64_EXTEXP_EXPONENT_LIMIT = TWOPASS_F64_EXTEXP_EXPONENT_LIMIT

cdef extern from "twopass/bandwidth.h" nogil:
    float twopass_bw_read__avx2(size_t n, const float* x)
    void twopass_bw_copy__avx2(size_t n, const float* x, float* y)
    void twopass_bw_copy_nt__avx2(size_t n, const float* x, float* y)
    void twopass_bw_scale__avx2(size_t n, float* x, float s)

LEVEL_NAMES = ("python", "avx2", "avx512f")
OP_NAMES = ("rmax", "raddextexp", "vscaleextexp", "raddexpminusmax", "raddstoreexpminusmax",
            "vscaleexpminusmax", "vscale", "vsubc", "raddonline", "raddextexp_columns", "vscaleextexp_columns",
            "vsubc_columns", "softmax_short_rows")
# Ops run_kernel can call on one 1-D array (the *_columns kernels and softmax_short_rows take blocks
# of rows: tested through their drivers and tests/test_avx512_emulated.py).
ROW_OPS = OP_NAMES[:9]
# 0 two_pass, 1 three_pass_reload, 2 three_pass_recompute, 3 online, 4 blocked_reload (enum twopass_algorithm)
ALGORITHM_COUNT = TWOPASS_ALGORITHM_COUNT

cdef twopass_cpu_features _features
twopass_detect_cpu(&_features)
twopass_tune_for_cpu(&_features)
# The best level the CPU supports that this build has kernels for (none on other architectures).
# Asking for the tables here also builds them, once, under the GIL, before any nogil caller.
cdef int _best_level = twopass_best_level(&_features)
while _best_level > 0 and (twopass_f32_kernels_for(_best_level) == NULL
                           or twopass_f64_kernels_for(_best_level) == NULL
                           or twopass_f16_kernels_for(_best_level) == NULL):
    _best_level -= 1
cdef int _default_level = _best_level
# Kernel calls made per level since import (tests check that a forced level is the one that ran).
cdef long long _calls[3]


# ---- threads ----

def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


cdef int _num_threads = _usable_cores()
twopass_threads_init()


def set_num_threads(int n):
    """Default thread count (twopass.set_num_threads validates it first)."""
    global _num_threads
    _num_threads = n


def get_num_threads():
    """Default thread count in the calling thread: set_num_threads()'s value, capped by OpenMP's
    limit for this thread (OMP_NUM_THREADS, threadpoolctl's threadpool_limits); 1 in a child forked
    after the parent ran threads (libgomp cannot start threads there)."""
    return _threads(None)


def thread_stats():
    """Teams of threads the drivers have started since import, their threads in all, the jobs
    written with non-temporal stores, the jobs that ran short rows in groups, the slices that ran
    blocked reload's passes (not reload's, which it falls back to) and the slices (rows, columns)
    that two-pass computed from its pass 1's sum (not those it handed to three-pass)."""
    cdef twopass_thread_stats st
    twopass_get_thread_stats(&st)
    return {"teams": st.teams, "team_threads": st.team_threads, "streaming_jobs": st.streaming_jobs,
            "grouped_jobs": st.grouped_jobs, "blocked_slices": st.blocked_slices,
            "two_pass_slices": st.two_pass_slices}


PARALLEL_MIN = TWOPASS_PARALLEL_MIN
ROW_GROUP_ROW_BYTES, ROW_GROUP_BYTES = TWOPASS_ROW_GROUP_ROW_BYTES, TWOPASS_ROW_GROUP_BYTES  # softmax.h
PREFETCH_AHEAD, PREFETCH_AHEAD_INTEL = TWOPASS_PREFETCH_AHEAD, TWOPASS_PREFETCH_AHEAD_INTEL  # common.h
cdef object _check_threads = None  # twopass._dispatch.check_threads, for an explicit threads=


cdef inline int _threads(threads) except -1:
    """threads= of a call: None for the default, else an int >= 1 (TypeError / ValueError)."""
    if not twopass_threads_usable():
        if threads is not None:
            _check_threads(threads)
        return 1
    if threads is None:
        return min(_num_threads, openmp.omp_get_max_threads())
    if type(threads) is int and 1 <= threads <= _max_threads:  # what _check_threads accepts unchanged
        return threads
    if _check_threads is None:
        raise RuntimeError("twopass.kernels is not configured (import twopass)")
    return _check_threads(threads)


def cpu_features():
    """What CPUID and XGETBV report."""
    cdef dict features = _features
    return {name: bool(value) for name, value in features.items()}


def best_level():
    """Highest level this CPU and OS support (0 python, 1 avx2, 2 avx512f)."""
    return _best_level


def set_default_level(int level):
    """Level used by the cimport API for LEVEL_DEFAULT (set by twopass at import from TWOPASS_ISA)."""
    global _default_level
    if level < 0 or level > _best_level:
        raise ValueError(f"level {level} is not supported by this CPU (best is {_best_level})")
    _default_level = level


def call_counts():
    """Kernel calls per level name since import."""
    return {LEVEL_NAMES[i]: _calls[i] for i in range(3)}


DTYPES = ("float32", "float64", "float16")


cdef int _check_dtype(str dtype) except -1:
    if dtype not in DTYPES:
        raise ValueError(f"no kernels for dtype {dtype!r} (kernel dtypes: {', '.join(DTYPES)})")
    return 0


cdef const char* const* _names(int level, str dtype, bint streaming):
    """The kernel names of a level's default (or streaming) table for a dtype; NULL for python."""
    cdef const twopass_f32_kernels* k32
    cdef const twopass_f64_kernels* k64
    cdef const twopass_f16_kernels* k16
    _check_dtype(dtype)
    if dtype == "float32":
        k32 = twopass_f32_kernels_for(level)
        if k32 == NULL:
            return NULL
        return k32.streaming.names if streaming else k32.names
    if dtype == "float64":
        k64 = twopass_f64_kernels_for(level)
        if k64 == NULL:
            return NULL
        return k64.streaming.names if streaming else k64.names
    k16 = twopass_f16_kernels_for(level)
    if k16 == NULL:
        return NULL
    return k16.streaming.names if streaming else k16.names


def kernel_names(int level, str dtype="float32"):
    """{pass: kernel name} of the default table of a level for a dtype ({} for python)."""
    cdef const char* const* names = _names(level, dtype, False)
    if names == NULL:
        return {}
    return {OP_NAMES[i]: names[i].decode() for i in range(TWOPASS_F32_OP_COUNT)}


cdef const twopass_kernel_info* _registry(str dtype, size_t* count) except NULL:
    _check_dtype(dtype)
    if dtype == "float32":
        return twopass_f32_kernel_registry(count)
    if dtype == "float64":
        return twopass_f64_kernel_registry(count)
    return twopass_f16_kernel_registry(count)


def registry(str dtype="float32"):
    """Every compiled kernel variant of a dtype: list of dicts (name, op, level, unroll, accumulators;
    unroll in elements)."""
    cdef size_t count, i
    cdef const twopass_kernel_info* r = _registry(dtype, &count)
    return [dict(name=r[i].name.decode(), op=OP_NAMES[r[i].op], level=LEVEL_NAMES[r[i].level],
                 unroll=r[i].unroll, accumulators=r[i].accumulators, streaming=bool(r[i].streaming))
            for i in range(count)]


def streaming_kernel_names(int level, str dtype="float32"):
    """{pass: kernel name} of the streaming table of a level and dtype: what outputs above the
    streaming threshold are written with ({} for python)."""
    cdef const char* const* names = _names(level, dtype, False)
    cdef const char* const* streaming_names = _names(level, dtype, True)
    if names == NULL:
        return {}
    return {OP_NAMES[i]: streaming_names[i].decode() for i in range(TWOPASS_F32_OP_COUNT)
            if streaming_names[i] != names[i]}


def set_streaming_threshold(size_t nbytes):
    """Outputs of at least nbytes are written with non-temporal stores (set by twopass at import)."""
    twopass_set_streaming_threshold(nbytes)


def streaming_threshold():
    """The current threshold, in bytes of output (SIZE_MAX: never)."""
    return twopass_streaming_threshold()


cdef int _check_level(int level) except -1:
    if level < 1 or level > _best_level:
        raise ValueError(f"no kernels for level {level!r} on this CPU (kernel levels: "
                         f"{', '.join(f'{i} {LEVEL_NAMES[i]}' for i in range(1, _best_level + 1)) or 'none'})")
    return 0


cdef const twopass_f32_kernels* _table(int level) except NULL:
    _check_level(level)
    return twopass_f32_kernels_for(level)


cdef _rows(bint log, const element[:, ::1] x, element[:, ::1] out, int algorithm, int level, threads):
    if x.shape[0] != out.shape[0] or x.shape[1] != out.shape[1]:
        raise ValueError(f"out has shape {(out.shape[0], out.shape[1])}, expected {(x.shape[0], x.shape[1])}")
    if algorithm < 0 or algorithm >= ALGORITHM_COUNT:
        raise ValueError(f"unknown algorithm {algorithm}")
    _check_level(level)
    cdef int t = _threads(threads)
    _calls[level] += 1
    if x.shape[0] == 0 or x.shape[1] == 0:
        return
    with nogil:
        if element is float:
            if log:
                twopass_log_softmax_f32_rows(twopass_f32_kernels_for(level), algorithm, x.shape[0], x.shape[1],
                                             &x[0, 0], x.shape[1], &out[0, 0], out.shape[1], t)
            else:
                twopass_softmax_f32_rows(twopass_f32_kernels_for(level), algorithm, x.shape[0], x.shape[1],
                                         &x[0, 0], x.shape[1], &out[0, 0], out.shape[1], t)
        elif element is double:
            if log:
                twopass_log_softmax_f64_rows(twopass_f64_kernels_for(level), algorithm, x.shape[0], x.shape[1],
                                             &x[0, 0], x.shape[1], &out[0, 0], out.shape[1], t)
            else:
                twopass_softmax_f64_rows(twopass_f64_kernels_for(level), algorithm, x.shape[0], x.shape[1],
                                         &x[0, 0], x.shape[1], &out[0, 0], out.shape[1], t)
        else:
            if log:
                twopass_log_softmax_f16_rows(twopass_f16_kernels_for(level), algorithm, x.shape[0], x.shape[1],
                                             &x[0, 0], x.shape[1], &out[0, 0], out.shape[1], t)
            else:
                twopass_softmax_f16_rows(twopass_f16_kernels_for(level), algorithm, x.shape[0], x.shape[1],
                                         &x[0, 0], x.shape[1], &out[0, 0], out.shape[1], t)


cdef _half_bits(a):
    """A float16 array as its binary16 bits (a uint16 view, no copy); TypeError for any other dtype."""
    if not isinstance(a, np.ndarray) or a.dtype != np.float16:
        raise TypeError(f"expected a float16 ndarray, not {getattr(a, 'dtype', type(a).__name__)}")
    return a.view(np.uint16)


def softmax_f32_rows(const float[:, ::1] x, float[:, ::1] out, int algorithm, int level, threads=None):
    """out[r] = softmax(x[r]) for every row, with the given algorithm (0-4) and level (1, 2).
    out may be x itself (in place) but must not partially overlap it."""
    _rows(False, x, out, algorithm, level, threads)


def log_softmax_f32_rows(const float[:, ::1] x, float[:, ::1] out, int algorithm, int level, threads=None):
    """out[r] = log_softmax(x[r]) for every row (algorithm 0 or 4 two-pass, 1 or 2 three-pass, 3 online)."""
    _rows(True, x, out, algorithm, level, threads)


def softmax_f64_rows(const double[:, ::1] x, double[:, ::1] out, int algorithm, int level, threads=None):
    """softmax_f32_rows for float64 rows."""
    _rows(False, x, out, algorithm, level, threads)


def log_softmax_f64_rows(const double[:, ::1] x, double[:, ::1] out, int algorithm, int level, threads=None):
    """log_softmax_f32_rows for float64 rows."""
    _rows(True, x, out, algorithm, level, threads)


def softmax_f16_rows(x, out, int algorithm, int level, threads=None):
    """softmax_f32_rows for 2-D C-contiguous float16 arrays (computed in float32 by the kernels)."""
    cdef const uint16_t[:, ::1] xv = _half_bits(x)
    cdef uint16_t[:, ::1] yv = _half_bits(out)
    _rows(False, xv, yv, algorithm, level, threads)


def log_softmax_f16_rows(x, out, int algorithm, int level, threads=None):
    """log_softmax_f32_rows for float16 arrays."""
    cdef const uint16_t[:, ::1] xv = _half_bits(x)
    cdef uint16_t[:, ::1] yv = _half_bits(out)
    _rows(True, xv, yv, algorithm, level, threads)


def run_kernel(str name, const element[::1] x, element[::1] y, double a=0.0, double b=0.0, double c=0.0,
               float[::1] stored=None, bint track_max=False):
    """Run one registered kernel variant on x (tests and the benchmark sweep); len(x) >= 1; float32
    arrays for twopass_f32_* kernels, float64 for twopass_f64_*, float16 arrays viewed as uint16 for
    twopass_f16_* (a, b, c are cast to the kernels' scalar type: float, or double for float64).
    float16's raddstoreexpminusmax writes its exps to `stored` (float32, as long as x) instead of y,
    and its vscale scales `stored` into y (kernels.h: reload keeps float16's exps in float32).

    rmax returns max x; raddextexp returns (mantissa, exponent); raddonline returns (max, sum
    exp(x - max)); raddexpminusmax(shift=a,
    exponent=b) returns the sum; raddstoreexpminusmax(a, b) also writes y, and with track_max returns
    (sum, max x) from its max output (blocked reload's pass 1); vscaleextexp(scale=a,
    exponent=b), vscaleexpminusmax(shift=a, exponent=b, scale=c), vscale(scale=a) and vsubc(c_hi=a, c_lo=b)
    write y.
    """
    cdef str dtype = "float32" if element is float else "float64" if element is double else "float16"
    cdef size_t count, i, n = x.shape[0]
    cdef const twopass_kernel_info* r = _registry(dtype, &count)
    cdef twopass_f32_kernels t
    cdef twopass_f64_kernels t64
    cdef twopass_f16_kernels t16
    cdef float pair[2]
    cdef double pair64[2]
    cdef double result = 0
    cdef float max32 = 0
    cdef double max64 = 0
    cdef float* max32_out = NULL
    cdef double* max64_out = NULL
    cdef int op
    for i in range(count):
        if r[i].name.decode() == name:
            break
    else:
        raise ValueError(f"no kernel named {name!r} for {dtype} arrays")
    _check_level(r[i].level)
    if n == 0:
        raise ValueError("kernels need at least one element")
    if <size_t>y.shape[0] != n:
        raise ValueError("x and y differ in length")
    if OP_NAMES[r[i].op] not in ROW_OPS:
        raise ValueError(f"{name} works on blocks of rows: use the softmax drivers")
    cdef bint uses_stored = element is uint16_t and OP_NAMES[r[i].op] in ("raddstoreexpminusmax", "vscale")
    if uses_stored and (stored is None or <size_t>stored.shape[0] != n):
        raise ValueError(f"{name} needs a float32 array `stored` as long as x")
    if not uses_stored and stored is not None:
        raise ValueError(f"{name} takes no `stored` array")
    if element is float:
        twopass_f32_kernels_with(&t, &r[i])
    elif element is double:
        twopass_f64_kernels_with(&t64, &r[i])
    else:
        twopass_f16_kernels_with(&t16, &r[i])
    op = r[i].op  # index into OP_NAMES
    if track_max and OP_NAMES[op] != "raddstoreexpminusmax":
        raise ValueError(f"{name} has no max output")
    if track_max:
        max32_out, max64_out = &max32, &max64
    _calls[r[i].level] += 1
    cdef unsigned int csr
    with nogil:
        csr = twopass_flush_to_zero_begin()  # as the drivers run the kernels
        if element is float:
            if op == 0:
                result = t.rmax(n, &x[0])
            elif op == 1:
                t.raddextexp(n, &x[0], pair)
            elif op == 2:
                t.vscaleextexp(n, &x[0], &y[0], <float>a, <float>b)
            elif op == 3:
                result = t.raddexpminusmax(n, &x[0], <float>a, <float>b)
            elif op == 4:
                result = t.raddstoreexpminusmax(n, &x[0], &y[0], <float>a, <float>b, max32_out)
            elif op == 5:
                t.vscaleexpminusmax(n, &x[0], &y[0], <float>a, <float>b, <float>c)
            elif op == 6:
                t.vscale(n, &x[0], &y[0], <float>a)
            elif op == 7:
                t.vsubc(n, &x[0], &y[0], <float>a, <float>b)
            else:
                t.raddonline(n, &x[0], pair)
        elif element is double:
            if op == 0:
                result = t64.rmax(n, &x[0])
            elif op == 1:
                t64.raddextexp(n, &x[0], pair64)
            elif op == 2:
                t64.vscaleextexp(n, &x[0], &y[0], a, b)
            elif op == 3:
                result = t64.raddexpminusmax(n, &x[0], a, b)
            elif op == 4:
                result = t64.raddstoreexpminusmax(n, &x[0], &y[0], a, b, max64_out)
            elif op == 5:
                t64.vscaleexpminusmax(n, &x[0], &y[0], a, b, c)
            elif op == 6:
                t64.vscale(n, &x[0], &y[0], a)
            elif op == 7:
                t64.vsubc(n, &x[0], &y[0], a, b)
            else:
                t64.raddonline(n, &x[0], pair64)
        else:
            if op == 0:
                result = t16.rmax(n, &x[0])
            elif op == 1:
                t16.raddextexp(n, &x[0], pair)
            elif op == 2:
                t16.vscaleextexp(n, &x[0], &y[0], <float>a, <float>b)
            elif op == 3:
                result = t16.raddexpminusmax(n, &x[0], <float>a, <float>b)
            elif op == 4:
                result = t16.raddstoreexpminusmax(n, &x[0], &stored[0], <float>a, <float>b, max32_out)
            elif op == 5:
                t16.vscaleexpminusmax(n, &x[0], &y[0], <float>a, <float>b, <float>c)
            elif op == 6:
                t16.vscale(n, &stored[0], &y[0], <float>a)
            elif op == 7:
                t16.vsubc(n, &x[0], &y[0], <float>a, <float>b)
            else:
                t16.raddonline(n, &x[0], pair)
        twopass_flush_to_zero_end(csr)
    if op == 1 or op == 8:
        if element is double:
            return (pair64[0], pair64[1])
        else:
            return (<double>pair[0], <double>pair[1])
    if track_max:
        if element is double:
            return (result, max64)
        else:
            return (<float>result, <double>max32)
    if element is double:
        return result
    else:
        return <float>result


# ---- output cache (include/twopass/output_cache.h) ----

cdef extern from "twopass/output_cache.h" nogil:
    size_t TWOPASS_OUTPUT_PLACE_MIN_BYTES, TWOPASS_OUTPUT_CACHE_MIN_BYTES, TWOPASS_OUTPUT_CACHE_MAX_BLOCKS
    size_t TWOPASS_OUTPUT_CACHE_DEFAULT_LIMIT
    void* twopass_output_malloc(void* ctx, size_t size) noexcept nogil
    void* twopass_output_calloc(void* ctx, size_t count, size_t size) noexcept nogil
    void* twopass_output_realloc(void* ctx, void* ptr, size_t size) noexcept nogil
    void twopass_output_free(void* ctx, void* ptr, size_t size) noexcept nogil
    struct twopass_output_cache_stats:
        size_t limit, cached_bytes, cached_blocks, hits, misses
    void twopass_output_cache_align_like(const void* x)
    size_t twopass_output_cache_set_limit(size_t limit)
    int twopass_output_handler_on()
    void twopass_output_cache_get_stats(twopass_output_cache_stats* stats)

cdef extern from "numpy/arrayobject.h":
    ctypedef struct PyDataMemAllocator:
        void* ctx
        void* (*malloc)(void* ctx, size_t size) noexcept nogil
        void* (*calloc)(void* ctx, size_t count, size_t size) noexcept nogil
        void* (*realloc)(void* ctx, void* ptr, size_t size) noexcept nogil
        void (*free)(void* ctx, void* ptr, size_t size) noexcept nogil
    ctypedef struct PyDataMem_Handler:
        char name[127]
        unsigned char version
        PyDataMemAllocator allocator
    object PyDataMem_SetHandler(object handler)  # NumPy >= 1.22: the handler of this context

from cpython.pycapsule cimport PyCapsule_New
from libc.string cimport strcpy

OUTPUT_PLACE_MIN_BYTES = TWOPASS_OUTPUT_PLACE_MIN_BYTES
OUTPUT_CACHE_MIN_BYTES = TWOPASS_OUTPUT_CACHE_MIN_BYTES
OUTPUT_CACHE_MAX_BLOCKS = TWOPASS_OUTPUT_CACHE_MAX_BLOCKS
OUTPUT_CACHE_DEFAULT_LIMIT = TWOPASS_OUTPUT_CACHE_DEFAULT_LIMIT
OUTPUT_HANDLER_NAME = "twopass_output_cache"
# The handler lives as long as the module (every array it allocated holds the capsule).
cdef PyDataMem_Handler _output_handler
strcpy(_output_handler.name, OUTPUT_HANDLER_NAME.encode())
_output_handler.version = 1
_output_handler.allocator.ctx = NULL
_output_handler.allocator.malloc = twopass_output_malloc
_output_handler.allocator.calloc = twopass_output_calloc
_output_handler.allocator.realloc = twopass_output_realloc
_output_handler.allocator.free = twopass_output_free
cdef object _output_handler_capsule = PyCapsule_New(&_output_handler, "mem_handler", NULL)


cdef cnp.ndarray _result_empty(int nd, cnp.npy_intp* dims, int typenum, bint fortran, void* like_data,
                              cnp.npy_intp nbytes):
    """PyArray_EMPTY for a result of nbytes whose input's data is like_data (NULL: none): from NumPy's
    allocator, unless the output handler is on and the result is large enough to be cached, or lies
    just past its input modulo 4096 (4K aliasing, common.h); then from the handler, placed
    2048 bytes past like_data modulo 4096 (output_cache.c)."""
    cdef cnp.ndarray result
    if nbytes < <cnp.npy_intp>TWOPASS_OUTPUT_PLACE_MIN_BYTES or not twopass_output_handler_on():
        return cnp.PyArray_EMPTY(nd, dims, typenum, fortran)
    if nbytes < <cnp.npy_intp>TWOPASS_OUTPUT_CACHE_MIN_BYTES:
        result = cnp.PyArray_EMPTY(nd, dims, typenum, fortran)
        if like_data == NULL or not twopass_stores_alias_next_loads(like_data, cnp.PyArray_DATA(result)):
            return result
        result = None  # freed before the handler allocates its own
    previous = PyDataMem_SetHandler(_output_handler_capsule)
    twopass_output_cache_align_like(like_data)
    try:
        return cnp.PyArray_EMPTY(nd, dims, typenum, fortran)
    finally:
        twopass_output_cache_align_like(NULL)  # unused if the allocation failed before it
        PyDataMem_SetHandler(previous)


cdef cnp.ndarray _new_output(cnp.ndarray like, int typenum):
    """The fast path's result: np.empty of like's shape (_result_empty; small ones directly)."""
    if cnp.PyArray_NBYTES(like) < <cnp.npy_intp>TWOPASS_OUTPUT_PLACE_MIN_BYTES:
        return cnp.PyArray_EMPTY(cnp.PyArray_NDIM(like), cnp.PyArray_DIMS(like), typenum, 0)
    return _result_empty(cnp.PyArray_NDIM(like), cnp.PyArray_DIMS(like), typenum, 0, cnp.PyArray_DATA(like),
                         cnp.PyArray_NBYTES(like))


_INTP_MAX = np.iinfo(np.intp).max


def empty_output(shape, dtype, order="C", like=None):
    """np.empty(shape, dtype, order=order) for a result returned to the caller, whose kernels read
    the ndarray like as they write it (or None): _result_empty. Anything _result_empty cannot make
    as np.empty would (other orders, dtypes, sizes) goes to np.empty."""
    dt = np.dtype(dtype)
    nbytes = dt.itemsize * prod(shape)
    if (nbytes < TWOPASS_OUTPUT_PLACE_MIN_BYTES or nbytes > _INTP_MAX or len(shape) > cnp.NPY_MAXDIMS
            or order not in ("C", "F") or dt.kind not in "fc" or not dt.isnative or dt.metadata is not None):
        return np.empty(shape, dt, order=order)  # and its errors (PyArray_EMPTY makes plain builtin types)
    cdef cnp.npy_intp dims[cnp.NPY_MAXDIMS]
    cdef int nd = len(shape), i
    for i in range(nd):
        dims[i] = shape[i]
    like_data = cnp.PyArray_DATA(<cnp.ndarray>like) if isinstance(like, cnp.ndarray) else NULL
    return _result_empty(nd, dims, dt.num, order == "F", like_data, nbytes)


def set_output_cache(size_t limit):
    """Bytes of freed large results the cache may keep for reuse (0: none, and large results take
    NumPy's allocator again; a limit below one result's block keeps nothing); returns the previous
    limit. twopass.set_output_cache checks the argument."""
    return twopass_output_cache_set_limit(limit)


def output_cache_info():
    """{limit, cached_bytes, cached_blocks, hits, misses, min_block_bytes, placed_from_bytes} of the
    output cache."""
    cdef twopass_output_cache_stats stats
    twopass_output_cache_get_stats(&stats)
    return {"limit": stats.limit, "cached_bytes": stats.cached_bytes, "cached_blocks": stats.cached_blocks,
            "hits": stats.hits, "misses": stats.misses, "min_block_bytes": TWOPASS_OUTPUT_CACHE_MIN_BYTES,
            "placed_from_bytes": TWOPASS_OUTPUT_PLACE_MIN_BYTES}


# ---- twopass.softmax, fast path ----

cdef object _level_var = None        # twopass._dispatch's ContextVar of the level name
cdef object _slow_softmax = None     # twopass._api.softmax: every case the fast path does not take
cdef object _slow_log_softmax = None
cdef object _slow_logsumexp = None   # twopass._api.logsumexp
# auto: twopass._dispatch.auto_algorithm's rule (configure_auto)
cdef cnp.npy_intp _auto_two_pass_from = 1 << 62  # two_pass for rows at least this long
cdef cnp.npy_intp _auto_two_pass_row_bytes = 1 << 62  # ... for rows of this many bytes in streaming jobs
cdef cnp.npy_intp _auto_two_pass_l2_job_bytes = 1 << 62  # ... for rows of _l2_row_bytes in jobs over this
cdef cnp.npy_intp _auto_two_pass_l2_row_bytes = 1 << 62
cdef cnp.npy_intp _auto_log_softmax_two_pass_from = 1 << 62  # log_softmax: two_pass for rows this long
cdef cnp.npy_intp _auto_blocked_reload_from = 1 << 62  # float32/64 rows this long: blocked, not plain, reload
cdef bint _auto_f64_two_pass = True  # float64 takes the two_pass clauses
cdef cnp.npy_intp _auto_blocked_two_pass_row_bytes = 1 << 62  # ... rows that would run blocked, in streaming jobs
# float16 rows of over this many bytes at 8 per element, per level (python, avx2, avx512f)
cdef cnp.npy_intp[3] _auto_f16_two_pass_row_bytes = [1 << 62, 1 << 62, 1 << 62]
cdef dict _ALGORITHM_INDEX = {}     # name -> kernel algorithm index, "auto" -1 (from twopass._api)
cdef dict _LEVEL_INDEX = {"python": 0, "avx2": 1, "avx512f": 2}
cdef int _max_threads = 0           # twopass._dispatch.MAX_THREADS, the most threads= gives


def configure_fast_path(level_var, slow_softmax, slow_log_softmax, check_threads, int max_threads,
                        kernel_algorithms, slow_logsumexp=None):
    """Called once by twopass at import; kernel_algorithms: {name: index} of the kernel algorithms."""
    global _level_var, _slow_softmax, _slow_log_softmax, _check_threads, _ALGORITHM_INDEX, _max_threads
    global _slow_logsumexp
    _level_var, _slow_softmax, _slow_log_softmax = level_var, slow_softmax, slow_log_softmax
    if slow_logsumexp is not None:
        _slow_logsumexp = slow_logsumexp
    _check_threads, _max_threads = check_threads, max_threads
    _ALGORITHM_INDEX = {"auto": -1, **kernel_algorithms}


def configure_auto(cnp.npy_intp two_pass_from, cnp.npy_intp row_bytes, cnp.npy_intp l2_job_bytes,
                   cnp.npy_intp l2_row_bytes, cnp.npy_intp f16_row_bytes_avx2, cnp.npy_intp f16_row_bytes_avx512f,
                   cnp.npy_intp log_softmax_two_pass_from, cnp.npy_intp blocked_reload_from, bint f64_two_pass,
                   cnp.npy_intp blocked_two_pass_row_bytes):
    """The fast path's copy of twopass._dispatch's auto rule (AUTO_TWO_PASS_FROM, AUTO_TWO_PASS_ROW_BYTES,
    AUTO_TWO_PASS_L2_JOB_BYTES, AUTO_TWO_PASS_L2_ROW_BYTES, AUTO_F16_TWO_PASS_ROW_BYTES of the kernel
    levels, AUTO_LOG_SOFTMAX_TWO_PASS_FROM, AUTO_BLOCKED_RELOAD_FROM, AUTO_F64_TWO_PASS,
    AUTO_BLOCKED_TWO_PASS_ROW_BYTES): set by
    twopass._dispatch.configure_fast_path_auto at import (and by tests)."""
    global _auto_two_pass_from, _auto_two_pass_row_bytes, _auto_two_pass_l2_job_bytes, _auto_two_pass_l2_row_bytes
    global _auto_f16_two_pass_row_bytes, _auto_log_softmax_two_pass_from, _auto_blocked_reload_from
    global _auto_f64_two_pass, _auto_blocked_two_pass_row_bytes
    _auto_log_softmax_two_pass_from = log_softmax_two_pass_from
    _auto_blocked_reload_from, _auto_f64_two_pass = blocked_reload_from, f64_two_pass
    _auto_blocked_two_pass_row_bytes = blocked_two_pass_row_bytes
    _auto_two_pass_from, _auto_two_pass_row_bytes = two_pass_from, row_bytes
    _auto_two_pass_l2_job_bytes, _auto_two_pass_l2_row_bytes = l2_job_bytes, l2_row_bytes
    _auto_f16_two_pass_row_bytes[1], _auto_f16_two_pass_row_bytes[2] = f16_row_bytes_avx2, f16_row_bytes_avx512f


cdef inline bint _plain(cnp.ndarray a, int typenum) noexcept:
    """Of NumPy type typenum (float32, float64 or float16), native byte order, C-contiguous and aligned."""
    return (cnp.PyArray_TYPE(a) == typenum and cnp.PyArray_ISNOTSWAPPED(a)
            and cnp.PyArray_IS_C_CONTIGUOUS(a) and cnp.PyArray_ISALIGNED(a))


cdef int _columns_of(bint log, int typenum, int level, cnp.npy_intp outer, cnp.npy_intp n,
                     cnp.npy_intp inner, const void* x, void* y, int t) noexcept nogil:
    """(log_)softmax down axis 1 of C-contiguous (outer, n, inner) x into y: each of the `outer` blocks
    is n rows of `inner` columns, every column one softmax (two-pass, lane by lane). 0, or nonzero when
    the column kernels' scratch could not be allocated."""
    cdef cnp.npy_intp o, block = n * inner
    cdef int status = 0
    for o in range(outer):
        if typenum == cnp.NPY_FLOAT32:
            if log:
                status = twopass_log_softmax_f32_columns(twopass_f32_kernels_for(level), n, inner,
                                                         <const float*>x + o * block, inner,
                                                         <float*>y + o * block, inner, t)
            else:
                status = twopass_softmax_f32_columns(twopass_f32_kernels_for(level), n, inner,
                                                     <const float*>x + o * block, inner,
                                                     <float*>y + o * block, inner, t)
        elif typenum == cnp.NPY_FLOAT64:
            if log:
                status = twopass_log_softmax_f64_columns(twopass_f64_kernels_for(level), n, inner,
                                                         <const double*>x + o * block, inner,
                                                         <double*>y + o * block, inner, t)
            else:
                status = twopass_softmax_f64_columns(twopass_f64_kernels_for(level), n, inner,
                                                     <const double*>x + o * block, inner,
                                                     <double*>y + o * block, inner, t)
        elif log:
            status = twopass_log_softmax_f16_columns(twopass_f16_kernels_for(level), n, inner,
                                                     <const uint16_t*>x + o * block, inner,
                                                     <uint16_t*>y + o * block, inner, t)
        else:
            status = twopass_softmax_f16_columns(twopass_f16_kernels_for(level), n, inner,
                                                 <const uint16_t*>x + o * block, inner,
                                                 <uint16_t*>y + o * block, inner, t)
        if status != 0:
            break
    return status


cdef int _logsumexp_columns_of(int typenum, int level, cnp.npy_intp outer, cnp.npy_intp n, cnp.npy_intp inner,
                               const void* x, double* out, int t) noexcept nogil:
    """out[o, c] = logsumexp down column c of block o of C-contiguous (outer, n, inner) x, in double
    (the column kernels' pass 1, as logsumexp_columns in twopass/softmax.h); out is C-contiguous
    (outer, inner). 0, or nonzero when the column kernels' scratch could not be allocated."""
    cdef cnp.npy_intp o, block = n * inner
    cdef int status = 0
    for o in range(outer):
        if typenum == cnp.NPY_FLOAT32:
            status = twopass_logsumexp_f32_columns(twopass_f32_kernels_for(level), n, inner,
                                                   <const float*>x + o * block, inner, out + o * inner, t)
        elif typenum == cnp.NPY_FLOAT64:
            status = twopass_logsumexp_f64_columns(twopass_f64_kernels_for(level), n, inner,
                                                   <const double*>x + o * block, inner, out + o * inner, t)
        else:
            status = twopass_logsumexp_f16_columns(twopass_f16_kernels_for(level), n, inner,
                                                   <const uint16_t*>x + o * block, inner, out + o * inner, t)
        if status != 0:
            break
    return status


cdef inline bint _narrow_columns(cnp.npy_intp inner, cnp.npy_intp itemsize) noexcept:
    """Whether columns this narrow (inner elements side by side, reduced down the rows) run faster as
    rows: up to 4 columns and 24 bytes; one column is a row as it lies, more need a transposing copy.
    Measured on Zen 3, 2e6 elements, one thread, columns time / rows-and-copy time (logsumexp,
    softmax): float32 1 column 11.8, 25.8, 4 columns 1.27, 1.18 and 6 columns 0.83, 0.93; float64 3
    columns 1.20, 1.48 and 4 columns 0.59, 0.70."""
    return inner <= 4 and inner * itemsize <= 24


def narrow_columns(cnp.npy_intp inner, cnp.npy_intp itemsize):
    """_narrow_columns for twopass._api: whether `inner` columns of `itemsize` bytes run as rows."""
    return _narrow_columns(inner, itemsize)


cdef inline cnp.npy_intp _dims_product(cnp.ndarray a, int start, int stop) noexcept:
    """The product of a's dimensions start .. stop - 1 (1 for none)."""
    cdef cnp.npy_intp product = 1
    cdef int i
    for i in range(start, stop):
        product *= cnp.PyArray_DIM(a, i)
    return product


cdef inline int _axis_index(object axis, int nd):
    """A fast path's axis in [0, nd): a Python int or a NumPy integer (np.argmax's, a shape's) within
    -nd..nd-1; -1 for anything else (bool, an axis out of range, a tuple), which twopass._api takes
    (and rejects as NumPy does)."""
    if (type(axis) is int or isinstance(axis, np.integer)) and -nd <= axis < nd:
        return <int>(axis + nd if axis < 0 else axis)
    return -1


cdef object _fast_path(bint log, x, axis, out, algorithm, threads):
    """softmax (log = False) or log_softmax of a C-contiguous float32, float64 or float16 ndarray on a
    kernel level, over its last axis or the whole array (axis None, the default: one row of x.size),
    or, for "auto" and "two_pass", over any other axis given as an int or NumPy integer (the column
    kernels, as twopass._api runs them: same bits); None for any other case and for every bad
    argument but threads=, which twopass._api then handles (or rejects)."""
    cdef cnp.ndarray xa, ya
    cdef int nd, level, alg, typenum, ax, status
    cdef cnp.npy_intp n, rows, i, outer = 1, inner = 1
    cdef char* x_end
    cdef char* y_end
    if type(x) is not cnp.ndarray or _level_var is None:
        return None
    xa = <cnp.ndarray>x
    nd = cnp.PyArray_NDIM(xa)
    if nd == 0:
        return None
    typenum = cnp.PyArray_TYPE(xa)
    if (typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT64 and typenum != cnp.NPY_FLOAT16) \
            or not _plain(xa, typenum):
        return None
    if axis is None:  # the whole of a C-contiguous array is one row ((1, 1000) float32: 1.0 us, 8.8 via _api)
        ax = nd - 1
        n = cnp.PyArray_SIZE(xa)
    else:
        ax = _axis_index(axis, nd)
        if ax < 0:
            return None
        n = cnp.PyArray_DIM(xa, ax)
    alg = _ALGORITHM_INDEX.get(algorithm, -2) if type(algorithm) is str else -2
    level = _LEVEL_INDEX[_level_var.get()]
    if n == 0 or alg == -2 or level == 0:
        return None
    if ax != nd - 1:  # columns: axis=0 of (10, 100) float32 1.9 us here, 10.4 through _api
        outer, inner = _dims_product(xa, 0, ax), _dims_product(xa, ax + 1, nd)
        if inner == 1:  # nothing after the axis: its slices are contiguous rows
            ax = nd - 1
        elif (alg != -1 and alg != 0) or cnp.PyArray_SIZE(xa) == 0 or _narrow_columns(inner, cnp.PyArray_ITEMSIZE(xa)):
            return None
    if out is None:
        ya = _new_output(xa, typenum)
    else:
        if type(out) is not cnp.ndarray:
            return None
        ya = <cnp.ndarray>out
        if (not _plain(ya, typenum) or not cnp.PyArray_ISWRITEABLE(ya) or cnp.PyArray_NDIM(ya) != nd):
            return None
        for i in range(nd):
            if cnp.PyArray_DIM(ya, i) != cnp.PyArray_DIM(xa, i):
                return None
        if cnp.PyArray_DATA(ya) != cnp.PyArray_DATA(xa):  # in place is fine; any other overlap is not
            x_end = <char*>cnp.PyArray_DATA(xa) + cnp.PyArray_NBYTES(xa)
            y_end = <char*>cnp.PyArray_DATA(ya) + cnp.PyArray_NBYTES(ya)
            if <char*>cnp.PyArray_DATA(ya) < x_end and <char*>cnp.PyArray_DATA(xa) < y_end:
                return None
    cdef int t = _threads(threads)
    _check_level(level)
    _calls[level] += 1
    if ax != nd - 1:
        with nogil:
            status = _columns_of(log, typenum, level, outer, n, inner, cnp.PyArray_DATA(xa),
                                 cnp.PyArray_DATA(ya), t)
        if status != 0:
            raise MemoryError("no memory for one column of scratch")
        return ya
    cdef cnp.npy_intp itemsize
    cdef bint two_pass_clauses, blocked
    if alg == -1:  # auto: twopass._dispatch.auto_algorithm's rule
        itemsize = cnp.PyArray_ITEMSIZE(xa)
        two_pass_clauses = itemsize <= 4 or _auto_f64_two_pass
        blocked = itemsize != 2 and n >= _auto_blocked_reload_from
        if log:
            alg = 0 if n >= _auto_log_softmax_two_pass_from else 1
        elif two_pass_clauses and n >= (_auto_two_pass_from if itemsize <= 4 else _auto_two_pass_from // 2):
            alg = 0
        elif (two_pass_clauses
              and cnp.PyArray_SIZE(xa) >= <cnp.npy_intp>(twopass_streaming_threshold() // <size_t>itemsize)
              and n * (4 if itemsize == 2 else itemsize)
                  >= (_auto_blocked_two_pass_row_bytes if blocked else _auto_two_pass_row_bytes)):
            alg = 0
        elif itemsize == 2:
            alg = 0 if 8 * n > _auto_f16_two_pass_row_bytes[level] else 1
        elif (itemsize == 4 and cnp.PyArray_SIZE(xa) > _auto_two_pass_l2_job_bytes // 8
              and n * 4 >= _auto_two_pass_l2_row_bytes):
            alg = 0
        else:
            alg = 4 if blocked else 1
    rows = cnp.PyArray_SIZE(xa) // n
    cdef const twopass_f32_kernels* k = twopass_f32_kernels_for(level)
    cdef const twopass_f64_kernels* k64 = twopass_f64_kernels_for(level)
    cdef const twopass_f16_kernels* k16 = twopass_f16_kernels_for(level)
    cdef void* xp = cnp.PyArray_DATA(xa)
    cdef void* yp = cnp.PyArray_DATA(ya)
    with nogil:
        if typenum == cnp.NPY_FLOAT64:
            if log:
                twopass_log_softmax_f64_rows(k64, alg, rows, n, <const double*>xp, n, <double*>yp, n, t)
            else:
                twopass_softmax_f64_rows(k64, alg, rows, n, <const double*>xp, n, <double*>yp, n, t)
        elif typenum == cnp.NPY_FLOAT16:
            if log:
                twopass_log_softmax_f16_rows(k16, alg, rows, n, <const uint16_t*>xp, n, <uint16_t*>yp, n, t)
            else:
                twopass_softmax_f16_rows(k16, alg, rows, n, <const uint16_t*>xp, n, <uint16_t*>yp, n, t)
        elif log:
            twopass_log_softmax_f32_rows(k, alg, rows, n, <const float*>xp, n, <float*>yp, n, t)
        else:
            twopass_softmax_f32_rows(k, alg, rows, n, <const float*>xp, n, <float*>yp, n, t)
    return ya


def softmax(x, axis=None, *, out=None, algorithm="auto", threads=None):
    """softmax(x)_i = exp(x_i) / sum_j exp(x_j) over `axis`, like scipy.special.softmax.

    axis: None (the whole array), an int, or a tuple of ints. out: an array of x's shape and the
    result dtype to write into (may be x itself). algorithm: "auto", "two_pass",
    "three_pass_reload", "three_pass_recompute", "online" or "blocked_reload" (reload's results with
    x read once); all agree within float rounding. threads: how
    many threads (None: twopass.get_num_threads()); the result is bitwise the same for any count.
    """
    result = _fast_path(False, x, axis, out, algorithm, threads)
    return result if result is not None else _slow_softmax(x, axis, out=out, algorithm=algorithm,
                                                           threads=threads)


def log_softmax(x, axis=None, *, out=None, algorithm="auto", threads=None):
    """log_softmax(x)_i = x_i - logsumexp(x) over `axis`, like scipy.special.log_softmax.

    Same arguments as softmax. two_pass: one pass for logsumexp (the extended-exponent sum), one to
    write x - logsumexp (blocked_reload: the same); three_pass_reload and three_pass_recompute (the
    same here): max, sum, write.
    """
    result = _fast_path(True, x, axis, out, algorithm, threads)
    return result if result is not None else _slow_log_softmax(x, axis, out=out, algorithm=algorithm,
                                                               threads=threads)


cdef object _fast_logsumexp(a, axis, bint keepdims, threads):
    """Unweighted logsumexp of a C-contiguous float32, float64 or float16 ndarray over one int (or NumPy
    integer) axis or the whole array (axis None), on a kernel level: what twopass._api.logsumexp
    computes for it, the kernels' float64 value of each row (each column, for an axis that is not the
    last) rounded to the dtype (keepdims: with the reduced axes kept as 1); None for any other case."""
    cdef cnp.ndarray xa, values
    cdef int nd, level, typenum, ax, status
    cdef cnp.npy_intp n, rows, outer, inner
    if type(a) is not cnp.ndarray or _level_var is None:
        return None
    xa = <cnp.ndarray>a
    nd = cnp.PyArray_NDIM(xa)
    typenum = cnp.PyArray_TYPE(xa)
    if nd == 0 or not (typenum == cnp.NPY_FLOAT32 or typenum == cnp.NPY_FLOAT64 or typenum == cnp.NPY_FLOAT16) \
            or not _plain(xa, typenum):
        return None
    if axis is None:
        ax = nd - 1
        n = cnp.PyArray_SIZE(xa)
    else:
        ax = _axis_index(axis, nd)
        if ax < 0:
            return None
        n = cnp.PyArray_DIM(xa, ax)
    level = _LEVEL_INDEX[_level_var.get()]
    if n == 0 or level == 0 or cnp.PyArray_SIZE(xa) == 0:
        return None
    cdef int t = _threads(threads)
    _check_level(level)
    cdef void* xp = cnp.PyArray_DATA(xa)
    cdef double* vp
    inner = _dims_product(xa, ax + 1, nd)
    if inner > 1 and _narrow_columns(inner, cnp.PyArray_ITEMSIZE(xa)):
        return None  # twopass._api's transposing copy
    shape = None if axis is None else a.shape[:ax] + ((1,) if keepdims else ()) + a.shape[ax + 1:]
    if inner > 1:  # down the columns, no transposing copy (axis=0 of (2000, 4000): 2.8 ms, 17.8 with one)
        outer = _dims_product(xa, 0, ax)
        rows = outer * inner
        values = cnp.PyArray_EMPTY(1, &rows, cnp.NPY_FLOAT64, 0)
        vp = <double*>cnp.PyArray_DATA(values)
        _calls[level] += 1
        with nogil:
            status = _logsumexp_columns_of(typenum, level, outer, n, inner, xp, vp, t)
        if status != 0:
            raise MemoryError("no memory for one column of scratch")
        return values.reshape(shape).astype(a.dtype)
    rows = cnp.PyArray_SIZE(xa) // n
    values = cnp.PyArray_EMPTY(1, &rows, cnp.NPY_FLOAT64, 0)
    vp = <double*>cnp.PyArray_DATA(values)
    _calls[level] += 1
    with nogil:
        if typenum == cnp.NPY_FLOAT32:
            twopass_logsumexp_f32_rows(twopass_f32_kernels_for(level), 0, rows, n, <const float*>xp, n, vp, t)
        elif typenum == cnp.NPY_FLOAT64:
            twopass_logsumexp_f64_rows(twopass_f64_kernels_for(level), 0, rows, n, <const double*>xp, n, vp, t)
        else:
            twopass_logsumexp_f16_rows(twopass_f16_kernels_for(level), 0, rows, n, <const uint16_t*>xp, n, vp, t)
    if axis is None:  # the whole array: a NumPy scalar of the dtype (as result[()] of the 0-d array), or all 1s
        return values.reshape((1,) * nd).astype(a.dtype) if keepdims else a.dtype.type(vp[0])
    if len(shape) == 0:
        return a.dtype.type(vp[0])
    return values.reshape(shape).astype(a.dtype)  # keepdims: 10 us through twopass._api for (10, 100)


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False, *, out=None, threads=None):
    """log(sum(b * exp(a))) over `axis`, like scipy.special.logsumexp (same signature, plus out=).

    The unweighted sum of a C-contiguous float array over one int axis or the whole of it runs here,
    in one pass of the kernels (the extended-exponent sum; down the columns for an axis that is not
    the last); every other case is twopass._api's.
    """
    if b is None and (keepdims is False or keepdims is True) and return_sign is False and out is None:
        result = _fast_logsumexp(a, axis, keepdims, threads)
        if result is not None:
            return result
    return _slow_logsumexp(a, axis, b, keepdims, return_sign, out=out, threads=threads)


cdef _columns(bint log, const element[:, :, ::1] x, element[:, :, ::1] out, int level, threads):
    cdef int status, typenum
    if x.shape[0] != out.shape[0] or x.shape[1] != out.shape[1] or x.shape[2] != out.shape[2]:
        raise ValueError("out must have x's shape")
    _check_level(level)
    cdef int t = _threads(threads)
    _calls[level] += 1
    if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        return
    if element is float:
        typenum = cnp.NPY_FLOAT32
    elif element is double:
        typenum = cnp.NPY_FLOAT64
    else:
        typenum = cnp.NPY_FLOAT16
    with nogil:
        status = _columns_of(log, typenum, level, x.shape[0], x.shape[1], x.shape[2], &x[0, 0, 0], &out[0, 0, 0], t)
    if status != 0:
        raise MemoryError("no memory for one column of scratch")


def softmax_f32_columns(const float[:, :, ::1] x, float[:, :, ::1] out, int level, threads=None):
    """Two-pass softmax over axis 1 of (outer, rows, cols) C-contiguous float32 arrays: each SIMD
    lane follows one column, nothing is transposed. out may be x (in place)."""
    _columns(False, x, out, level, threads)


def log_softmax_f32_columns(const float[:, :, ::1] x, float[:, :, ::1] out, int level, threads=None):
    """log_softmax over axis 1 of (outer, rows, cols) arrays, as softmax_f32_columns."""
    _columns(True, x, out, level, threads)


def softmax_f64_columns(const double[:, :, ::1] x, double[:, :, ::1] out, int level, threads=None):
    """softmax_f32_columns for float64."""
    _columns(False, x, out, level, threads)


def log_softmax_f64_columns(const double[:, :, ::1] x, double[:, :, ::1] out, int level, threads=None):
    """log_softmax_f32_columns for float64."""
    _columns(True, x, out, level, threads)


def softmax_f16_columns(x, out, int level, threads=None):
    """softmax_f32_columns for float16 arrays."""
    cdef const uint16_t[:, :, ::1] xv = _half_bits(x)
    cdef uint16_t[:, :, ::1] yv = _half_bits(out)
    _columns(False, xv, yv, level, threads)


def log_softmax_f16_columns(x, out, int level, threads=None):
    """log_softmax_f32_columns for float16 arrays."""
    cdef const uint16_t[:, :, ::1] xv = _half_bits(x)
    cdef uint16_t[:, :, ::1] yv = _half_bits(out)
    _columns(True, xv, yv, level, threads)


cdef _logsumexp_rows(const element[:, ::1] x, double[::1] out, int algorithm, int level, threads):
    if x.shape[0] != out.shape[0]:
        raise ValueError(f"out has {out.shape[0]} entries for {x.shape[0]} rows")
    _check_level(level)
    cdef int t = _threads(threads)
    _calls[level] += 1
    if x.shape[0] == 0:
        return
    with nogil:
        if element is float:
            twopass_logsumexp_f32_rows(twopass_f32_kernels_for(level), algorithm, x.shape[0], x.shape[1],
                                       &x[0, 0] if x.shape[1] else NULL, x.shape[1], &out[0], t)
        elif element is uint16_t:
            twopass_logsumexp_f16_rows(twopass_f16_kernels_for(level), algorithm, x.shape[0], x.shape[1],
                                       &x[0, 0] if x.shape[1] else NULL, x.shape[1], &out[0], t)
        else:
            twopass_logsumexp_f64_rows(twopass_f64_kernels_for(level), algorithm, x.shape[0], x.shape[1],
                                       &x[0, 0] if x.shape[1] else NULL, x.shape[1], &out[0], t)


def logsumexp_f32_rows(const float[:, ::1] x, double[::1] out, int algorithm, int level, threads=None):
    """out[r] = logsumexp(x[r]) in double (-inf for empty rows); algorithm 0 two-pass (one read)."""
    _logsumexp_rows(x, out, algorithm, level, threads)


def logsumexp_f64_rows(const double[:, ::1] x, double[::1] out, int algorithm, int level, threads=None):
    """logsumexp_f32_rows for float64 rows."""
    _logsumexp_rows(x, out, algorithm, level, threads)


def logsumexp_f16_rows(x, double[::1] out, int algorithm, int level, threads=None):
    """logsumexp_f32_rows for float16 rows."""
    cdef const uint16_t[:, ::1] xv = _half_bits(x)
    _logsumexp_rows(xv, out, algorithm, level, threads)


cdef _logsumexp_columns(const element[:, :, ::1] x, double[:, ::1] out, int level, threads):
    cdef int status, typenum
    if x.shape[0] != out.shape[0] or x.shape[2] != out.shape[1]:
        raise ValueError("out must have x's shape without its axis 1")
    _check_level(level)
    cdef int t = _threads(threads)
    _calls[level] += 1
    if x.shape[0] == 0 or x.shape[2] == 0:
        return
    if x.shape[1] == 0:  # empty sums
        out[:, :] = -np.inf
        return
    if element is float:
        typenum = cnp.NPY_FLOAT32
    elif element is double:
        typenum = cnp.NPY_FLOAT64
    else:
        typenum = cnp.NPY_FLOAT16
    with nogil:
        status = _logsumexp_columns_of(typenum, level, x.shape[0], x.shape[1], x.shape[2], &x[0, 0, 0],
                                       &out[0, 0], t)
    if status != 0:
        raise MemoryError("no memory for one column of scratch")


def logsumexp_f32_columns(const float[:, :, ::1] x, double[:, ::1] out, int level, threads=None):
    """out[o, c] = logsumexp(x[o, :, c]) in double: down axis 1 of (outer, rows, cols) arrays without
    transposing (two-pass, lane by lane; -inf for rows == 0)."""
    _logsumexp_columns(x, out, level, threads)


def logsumexp_f64_columns(const double[:, :, ::1] x, double[:, ::1] out, int level, threads=None):
    """logsumexp_f32_columns for float64."""
    _logsumexp_columns(x, out, level, threads)


def logsumexp_f16_columns(x, double[:, ::1] out, int level, threads=None):
    """logsumexp_f32_columns for float16 arrays."""
    cdef const uint16_t[:, :, ::1] xv = _half_bits(x)
    _logsumexp_columns(xv, out, level, threads)


cdef _extsum_rows(const element[:, ::1] x, double[::1] mantissa, double[::1] exponent, int level, threads):
    if x.shape[0] != mantissa.shape[0] or x.shape[0] != exponent.shape[0]:
        raise ValueError("mantissa and exponent need one entry per row")
    _check_level(level)
    cdef int t = _threads(threads)
    _calls[level] += 1
    if x.shape[0] == 0:
        return
    with nogil:
        if element is float:
            twopass_extsum_f32_rows(twopass_f32_kernels_for(level), x.shape[0], x.shape[1],
                                    &x[0, 0] if x.shape[1] else NULL, x.shape[1], &mantissa[0], &exponent[0], t)
        elif element is uint16_t:
            twopass_extsum_f16_rows(twopass_f16_kernels_for(level), x.shape[0], x.shape[1],
                                    &x[0, 0] if x.shape[1] else NULL, x.shape[1], &mantissa[0], &exponent[0], t)
        else:
            twopass_extsum_f64_rows(twopass_f64_kernels_for(level), x.shape[0], x.shape[1],
                                    &x[0, 0] if x.shape[1] else NULL, x.shape[1], &mantissa[0], &exponent[0], t)


def extsum_f32_rows(const float[:, ::1] x, double[::1] mantissa, double[::1] exponent, int level,
                    threads=None):
    """sum exp(x[r]) = mantissa[r] * 2**exponent[r] for every row."""
    _extsum_rows(x, mantissa, exponent, level, threads)


def extsum_f64_rows(const double[:, ::1] x, double[::1] mantissa, double[::1] exponent, int level,
                    threads=None):
    """extsum_f32_rows for float64 rows."""
    _extsum_rows(x, mantissa, exponent, level, threads)


def extsum_f16_rows(x, double[::1] mantissa, double[::1] exponent, int level, threads=None):
    """extsum_f32_rows for float16 rows."""
    cdef const uint16_t[:, ::1] xv = _half_bits(x)
    _extsum_rows(xv, mantissa, exponent, level, threads)


cdef _softmax_from_extsum_rows(const element[:, ::1] x, element[:, ::1] out, const double[::1] mantissa,
                               const double[::1] exponent, int level, threads):
    cdef Py_ssize_t r
    cdef double limit = TWOPASS_F64_EXTEXP_EXPONENT_LIMIT if element is double else TWOPASS_EXTEXP_EXPONENT_LIMIT
    if x.shape[0] != out.shape[0] or x.shape[1] != out.shape[1]:
        raise ValueError("out must have x's shape")
    if x.shape[0] != mantissa.shape[0] or x.shape[0] != exponent.shape[0]:
        raise ValueError("mantissa and exponent need one entry per row")
    for r in range(x.shape[0]):
        if not (0.0 < mantissa[r] < INFINITY) or not (fabs(exponent[r]) <= limit):
            raise ValueError(f"row {r}: the sum ({mantissa[r]}, {exponent[r]}) is outside the kernels' range")
    _check_level(level)
    cdef int t = _threads(threads)
    _calls[level] += 1
    if x.shape[0] == 0 or x.shape[1] == 0:
        return
    with nogil:
        if element is float:
            twopass_softmax_from_extsum_f32_rows(twopass_f32_kernels_for(level), x.shape[0], x.shape[1], &x[0, 0],
                                                 x.shape[1], &out[0, 0], out.shape[1], &mantissa[0], &exponent[0], t)
        elif element is uint16_t:
            twopass_softmax_from_extsum_f16_rows(twopass_f16_kernels_for(level), x.shape[0], x.shape[1], &x[0, 0],
                                                 x.shape[1], &out[0, 0], out.shape[1], &mantissa[0], &exponent[0], t)
        else:
            twopass_softmax_from_extsum_f64_rows(twopass_f64_kernels_for(level), x.shape[0], x.shape[1], &x[0, 0],
                                                 x.shape[1], &out[0, 0], out.shape[1], &mantissa[0], &exponent[0], t)


def softmax_from_extsum_f32_rows(const float[:, ::1] x, float[:, ::1] out, const double[::1] mantissa,
                                 const double[::1] exponent, int level, threads=None):
    """out[r] = exp(x[r]) / (mantissa[r] * 2**exponent[r]): pass 2 of two-pass for given sums, each
    with mantissa finite and > 0 and |exponent| <= 2**17 (else ValueError)."""
    _softmax_from_extsum_rows(x, out, mantissa, exponent, level, threads)


def softmax_from_extsum_f64_rows(const double[:, ::1] x, double[:, ::1] out, const double[::1] mantissa,
                                 const double[::1] exponent, int level, threads=None):
    """softmax_from_extsum_f32_rows for float64 rows (|exponent| <= 2**38)."""
    _softmax_from_extsum_rows(x, out, mantissa, exponent, level, threads)


def softmax_from_extsum_f16_rows(x, out, const double[::1] mantissa, const double[::1] exponent, int level,
                                 threads=None):
    """softmax_from_extsum_f32_rows for float16 rows (|exponent| <= 2**17)."""
    cdef const uint16_t[:, ::1] xv = _half_bits(x)
    cdef uint16_t[:, ::1] yv = _half_bits(out)
    _softmax_from_extsum_rows(xv, yv, mantissa, exponent, level, threads)


# ---- benchmarks ----

def prefetch_ahead():
    """Bytes ahead of their main loop that the exp passes prefetch (set for this CPU at import)."""
    return twopass_prefetch_ahead


def set_prefetch_ahead(size_t nbytes):
    """Benchmarks only (never while kernels run): the exp passes' prefetch distance, 0 to 1 MiB."""
    global twopass_prefetch_ahead
    if nbytes > 1 << 20:
        raise ValueError("prefetch distance above 1 MiB")
    twopass_prefetch_ahead = nbytes


def set_sum_block(size_t elements):
    """Elements per sum block of the drivers (0: the default, TWOPASS_SUM_BLOCK). Benchmarks only: a block
    longer than any slice makes each chunk one float32 sum (benchmarks.sum_blocks)."""
    twopass_set_sum_block(elements)


def sum_block():
    """Elements per sum block of the drivers."""
    return twopass_sum_block()


def set_row_group_bytes(nbytes=None):
    """For tests and benchmarks: short rows in three-pass reload and two-pass run in groups whose
    input fits nbytes (0: row by row; None: the default). The results are the same bits either way."""
    twopass_set_row_group_bytes(<size_t>-1 if nbytes is None else <size_t>nbytes)


def row_group_bytes():
    """The input bytes of a group of short rows (0: row by row)."""
    return twopass_row_group_bytes()


BANDWIDTH_LOOPS = ("read", "copy", "copy_nt", "scale")


def bandwidth_loop(str kind, float[::1] x, float[::1] y, long repeats=1, int threads=1):
    """Run a memory-bandwidth loop `repeats` times without the GIL (benchmarks; needs AVX2):
    read (sum x), copy (y = x), copy_nt (y = x, non-temporal stores), scale (x *= 1, in place);
    with threads > 1, each thread takes an equal part of the arrays."""
    cdef size_t n = x.shape[0], part, begin, length
    cdef long r
    cdef int k = BANDWIDTH_LOOPS.index(kind), i
    _table(1)
    if <size_t>y.shape[0] != n or n == 0:
        raise ValueError("x and y must have the same, non-zero length")
    if threads < 1 or <size_t>threads > n:
        raise ValueError("threads must be between 1 and len(x)")
    part = (n + threads - 1) // threads
    for r in range(repeats):
        for i in prange(threads, nogil=True, num_threads=threads, schedule="static", chunksize=1):
            begin = i * part
            length = min(part, n - begin) if begin < n else 0
            if length == 0:
                continue
            if k == 0:
                twopass_bw_read__avx2(length, &x[begin])
            elif k == 1:
                twopass_bw_copy__avx2(length, &x[begin], &y[begin])
            elif k == 2:
                twopass_bw_copy_nt__avx2(length, &x[begin], &y[begin])
            else:
                twopass_bw_scale__avx2(length, &x[begin], 1.0)


def benchmark_softmax_f32_rows(const float[:, ::1] x, float[:, ::1] out, int algorithm, int level,
                               long repeats=1, variants=(), int threads=1):
    """softmax_f32_rows run `repeats` times in one call (no Python overhead between runs), with the
    level's default kernels or, for the tuning sweep, the named registry `variants` in their place."""
    cdef size_t count, i
    cdef const twopass_kernel_info* r = twopass_f32_kernel_registry(&count)
    cdef twopass_f32_kernels t = _table(level)[0]
    cdef long rep
    t.streaming = &t  # the variants as given, whatever the size
    if x.shape[0] != out.shape[0] or x.shape[1] != out.shape[1] or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError("x and out must have the same, non-empty shape")
    if algorithm < 0 or algorithm >= ALGORITHM_COUNT:
        raise ValueError(f"unknown algorithm {algorithm}")
    for name in variants:
        for i in range(count):
            if r[i].name.decode() == name:
                if <int>r[i].level != level:
                    raise ValueError(f"{name} is not a kernel of level {level}")
                twopass_f32_kernels_with(&t, &r[i])
                break
        else:
            raise ValueError(f"no kernel named {name!r}")
    with nogil:
        for rep in range(repeats):
            twopass_softmax_f32_rows(&t, algorithm, x.shape[0], x.shape[1], &x[0, 0], x.shape[1],
                                     &out[0, 0], out.shape[1], threads)


# ---- cimport API (kernels.pxd) ----

cdef int _softmax_rows_api(size_t rows, size_t n, const floating* x, ptrdiff_t x_stride, floating* out,
                           ptrdiff_t out_stride, int algorithm, int level) noexcept nogil:
    if level == LEVEL_DEFAULT:
        level = _default_level
    if level < 1 or level > _best_level or algorithm < 0 or algorithm >= TWOPASS_ALGORITHM_COUNT:
        return -1
    if floating is float:
        twopass_softmax_f32_rows(twopass_f32_kernels_for(level), algorithm, rows, n, x, x_stride,
                                 out, out_stride, 1)
    else:
        twopass_softmax_f64_rows(twopass_f64_kernels_for(level), algorithm, rows, n, x, x_stride,
                                 out, out_stride, 1)
    return 0


cdef int _softmax_view_api(const floating[:, ::1] x, floating[:, ::1] out, int algorithm,
                           int level) noexcept nogil:
    if x.shape[0] != out.shape[0] or x.shape[1] != out.shape[1]:
        return -1
    if x.shape[0] == 0 or x.shape[1] == 0:
        return 0 if (algorithm >= 0 and algorithm < TWOPASS_ALGORITHM_COUNT) else -1
    return _softmax_rows_api(x.shape[0], x.shape[1], &x[0, 0], x.shape[1], &out[0, 0], out.shape[1],
                             algorithm, level)


cdef int softmax_f32_strided(size_t rows, size_t n, const float* x, ptrdiff_t x_stride,
                             float* out, ptrdiff_t out_stride, int algorithm, int level) noexcept nogil:
    return _softmax_rows_api(rows, n, x, x_stride, out, out_stride, algorithm, level)


cdef int softmax_f32(const float[:, ::1] x, float[:, ::1] out, int algorithm, int level) noexcept nogil:
    return _softmax_view_api(x, out, algorithm, level)


cdef int softmax_f64_strided(size_t rows, size_t n, const double* x, ptrdiff_t x_stride,
                             double* out, ptrdiff_t out_stride, int algorithm, int level) noexcept nogil:
    return _softmax_rows_api(rows, n, x, x_stride, out, out_stride, algorithm, level)


cdef int softmax_f64(const double[:, ::1] x, double[:, ::1] out, int algorithm, int level) noexcept nogil:
    return _softmax_view_api(x, out, algorithm, level)
