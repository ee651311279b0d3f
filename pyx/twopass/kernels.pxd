# cython: language_level=3
"""The nogil C-level API of twopass, for other Cython code:

    from twopass.kernels cimport softmax_f32, softmax_f32_strided, TWO_PASS, LEVEL_DEFAULT
    (and softmax_f64, softmax_f64_strided on double)

    with nogil:
        status = softmax_f32(x, out, TWO_PASS, LEVEL_DEFAULT)   # x: const float[:, ::1]

Each function computes softmax over the last axis of rows of float32 and returns 0, or -1 if the
shapes differ or the level is not supported by this CPU (nothing is written then). LEVEL_DEFAULT is
the best level of the CPU, capped by TWOPASS_ISA; twopass.use_isa() does not affect these calls.
"""
from libc.stddef cimport ptrdiff_t

cdef enum Algorithm:
    TWO_PASS = 0
    THREE_PASS_RELOAD = 1
    THREE_PASS_RECOMPUTE = 2
    ONLINE = 3
    BLOCKED_RELOAD = 4

cdef enum Level:
    LEVEL_DEFAULT = -1
    LEVEL_PYTHON = 0
    LEVEL_AVX2 = 1
    LEVEL_AVX512F = 2

cdef int softmax_f32(const float[:, ::1] x, float[:, ::1] out, int algorithm, int level) noexcept nogil

cdef int softmax_f32_strided(size_t rows, size_t n, const float* x, ptrdiff_t x_stride,
                             float* out, ptrdiff_t out_stride, int algorithm, int level) noexcept nogil

# The same for float64 (its own kernels: exp within 1 ULP).
cdef int softmax_f64(const double[:, ::1] x, double[:, ::1] out, int algorithm, int level) noexcept nogil

cdef int softmax_f64_strided(size_t rows, size_t n, const double* x, ptrdiff_t x_stride,
                             double* out, ptrdiff_t out_stride, int algorithm, int level) noexcept nogil
