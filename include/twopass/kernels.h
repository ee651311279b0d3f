/* The float32 and float64 passes of the softmax algorithms and the list of every compiled variant.
 *
 * Kernel contract (as in XNNPACK): a size, a const input pointer, an output pointer and a few
 * scalars; no allocation, no Python. n >= 1 unless stated. Output may alias input exactly (in place).
 *
 *   rmax                  return max_i x_i
 *   raddextexp            sum[0] * 2^sum[1] = sum_i exp(x_i), accumulated as a mantissa per lane
 *                         and an exponent that it raises as x grows, so nothing overflows (two-pass,
 *                         pass 1)
 *   vscaleextexp          y_i = min(1, exp(x_i) * scale * 2^-exponent), by the same exp as pass 1's
 *                         terms (two-pass, pass 2)
 *   raddexpminusmax       return sum_i e_i                               (three-pass recompute, pass 2)
 *   raddstoreexpminusmax  w_i = e_i, return sum_i e_i                    (three-pass reload, pass 2)
 *                         and, unless max is NULL, *max = max_i x_i, found on the way (blocked
 *                         reload's pass 1 then needs no rmax; a NaN x may be missing from *max, but
 *                         then makes the sum NaN, as can an exponent far below the max)
 *   vscaleexpminusmax     y_i = min(1, e_i * scale)                      (three-pass recompute, pass 3)
 *   vscale                y_i = w_i * scale, 0 below the smallest normal  (three-pass reload, pass 3)
 *   vsubc                 y_i = min(0, (x_i - c_hi) - c_lo)              (log_softmax, last pass)
 *   raddonline            result = (m, sum_i exp(x_i - m)) with m = max_i x_i, in one read: the
 *                         online normaliser, rescaling its running sum as the max grows (online, pass 1)
 *
 * Columns (softmax over a non-contiguous axis without a transposing copy): each lane follows its own
 * column of a (rows x width) block, of any width, whose rows are `ld` elements apart:
 *   raddextexp_columns    mantissa[j] * 2^exponent[j] = sum_r exp(x[r, j])      (two-pass, pass 1)
 *   vscaleextexp_columns  y[r, j] = exp(x[r, j]) * scale[j] * 2^-exponent[j]   (two-pass, pass 2)
 *   vsubc_columns         y[r, j] = min(0, (x[r, j] - c_hi[j]) - c_lo[j])      (log_softmax, pass 2)
 *
 * Short rows (softmax over many rows of at most U elements, a group of rows a pass at a time):
 *   softmax_short_rows    y[r] = softmax(x[r]) by three-pass reload (rows x_stride and y_stride
 *                         elements apart): returns 1, or 0 without touching y when n = 0 or rows
 *                         are longer than TWOPASS_SHORT_ROWS_BYTES or _MAX_VECTORS vectors
 *
 * w, reload's stored exps, is of the arithmetic type T: for float32 and float64 the output itself
 * (y = w, in place), for float16 a float32 row apart, so that its result is rounded to float16 once.
 * The min() keep softmax <= 1 and log_softmax <= 0 (src/result_bounds.h); NaN stays NaN.
 *
 * where e_i = exp(x_i - shift) * 2^-exponent stands for exp(x_i - max): the caller splits the max
 * as shift + exponent * ln2 (TWOPASS_EXP_SPLIT, common.h), so that x_i - shift is exact for
 * every element whose exp matters and no float32 rounding of x_i - max enters the result.
 *
 * Name of a kernel: twopass_<f32|f64|f16>_<op>__<isa>_u<elements per iteration>[_acc<accumulators>][_nt].
 * _nt: the same elementwise pass with non-temporal stores (vscale_impl's NT), which the drivers use
 * for outputs too large for the caches (twopass_set_streaming_threshold).
 */
#ifndef TWOPASS_KERNELS_H
#define TWOPASS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The AVX2 columns pass 1 (raddextexp_columns) streams each row across the whole block, its
 * per-column accumulators in the output arrays, TWOPASS_COLUMN_ROW_GROUP rows per update: long
 * contiguous reads (4096x4096 float32 softmax axis 0 / axis 1, 1 thread: 1.79 -> 1.34 against the
 * strips below). The AVX-512F one walks strips of TWOPASS_COLUMN_STRIP vectors down the rows, its
 * accumulators in registers, merging TWOPASS_COLUMN_GROUP rows per update, and prefetches each row
 * piece it reads one call's worth of rows ahead (the driver's next block of rows): measured on the
 * AMD EPYC here (AVX2), 4096x4096 float32 axis 0, pass 1 went from 2.8 to 1.8 cycles per element
 * with the prefetch; strips of 2 vectors and groups of 2 rows were the best of the tried 1/2/4 x
 * 2/4. The _MAX_ bound the arrays of the templates. */
/* Rows per update of the AVX2 pass 1 (one state load, limit check and store per this many terms):
 * 4 against 2, 4096x4096 float32 axis 0 / axis 1: softmax 1.28 against 1.33, log_softmax 1.35
 * against 1.43 (medians of 7 interleaved rounds, twice). */
#define TWOPASS_COLUMN_ROW_GROUP 4
#define TWOPASS_COLUMN_STRIP 2
#define TWOPASS_COLUMN_GROUP 2
#define TWOPASS_COLUMN_MAX_STRIP 4

/* softmax_short_rows takes rows of at most TWOPASS_SHORT_ROWS_BYTES (the rows the drivers group,
 * TWOPASS_ROW_GROUP_ROW_BYTES in softmax.h) and TWOPASS_SHORT_ROWS_MAX_VECTORS vectors: every grouped
 * row but float16's of 129 to 256 halves on AVX2. Up to 32 vectors took those too, but made the
 * float16 AVX2 instances of a few vectors 1.06-1.25x slower (rows of 16 and 64 halves). It takes at
 * most TWOPASS_SHORT_ROWS_GROUP rows a pass at a time (the bound of its per-row scalars). */
#define TWOPASS_SHORT_ROWS_BYTES 512
#define TWOPASS_SHORT_ROWS_GROUP 64
#define TWOPASS_SHORT_ROWS_MAX_VECTORS 16
#define TWOPASS_COLUMN_MAX_ROWS 4

/* Function types, one per pass, for one dtype: elements of type E (in memory), arithmetic and
 * scalars of type T. float32 and float64 compute in their own type; float16 elements (IEEE binary16
 * bits in a uint16_t) are converted on load and store (F16C) and computed in float32. */
#define TWOPASS_KERNEL_TYPES(dt, E, T)                                                             \
    typedef T twopass_##dt##_rmax_fn(size_t n, const E* x);                                        \
    typedef void twopass_##dt##_raddextexp_fn(size_t n, const E* x, T sum[2]);                     \
    typedef void twopass_##dt##_vscaleextexp_fn(size_t n, const E* x, E* y, T scale, T exponent);  \
    typedef T twopass_##dt##_raddexpminusmax_fn(size_t n, const E* x, T shift, T exponent);        \
    typedef T twopass_##dt##_raddstoreexpminusmax_fn(size_t n, const E* x, T* w, T shift, T exponent, \
                                                     T* max);                                      \
    typedef void twopass_##dt##_vscaleexpminusmax_fn(size_t n, const E* x, E* y, T shift, T exponent, \
                                                     T scale);                                     \
    typedef void twopass_##dt##_vscale_fn(size_t n, const T* w, E* y, T scale);                    \
    typedef void twopass_##dt##_vsubc_fn(size_t n, const E* x, E* y, T c_hi, T c_lo);              \
    typedef void twopass_##dt##_raddonline_fn(size_t n, const E* x, T result[2]);                  \
    typedef void twopass_##dt##_raddextexp_columns_fn(size_t rows, size_t width, const E* x, ptrdiff_t ld, \
                                                      T* mantissa, T* exponent);                   \
    typedef void twopass_##dt##_vscaleextexp_columns_fn(size_t rows, size_t width, const E* x,      \
                                                        ptrdiff_t x_ld, E* y, ptrdiff_t y_ld,      \
                                                        const T* scale, const T* exponent);        \
    typedef void twopass_##dt##_vsubc_columns_fn(size_t rows, size_t width, const E* x, ptrdiff_t x_ld, \
                                                 E* y, ptrdiff_t y_ld, const T* c_hi, const T* c_lo); \
    typedef int twopass_##dt##_softmax_short_rows_fn(size_t rows, size_t n, const E* x, ptrdiff_t x_stride, \
                                                     E* y, ptrdiff_t y_stride);
TWOPASS_KERNEL_TYPES(f32, float, float)
TWOPASS_KERNEL_TYPES(f64, double, double)
TWOPASS_KERNEL_TYPES(f16, uint16_t, float)

/* The passes, in the order of the fields of struct twopass_f32_kernels. */
#define TWOPASS_F32_OPS(OP)                                                                        \
    OP(rmax) OP(raddextexp) OP(vscaleextexp) OP(raddexpminusmax) OP(raddstoreexpminusmax)          \
    OP(vscaleexpminusmax) OP(vscale) OP(vsubc) OP(raddonline) OP(raddextexp_columns)                \
    OP(vscaleextexp_columns) OP(vsubc_columns) OP(softmax_short_rows)

/* Every compiled variant, one list per ISA (its defaults, the sweep's other variants, its streaming
 * variants: the defaults and streaming ones are lists of their own for float16 to share).
 * R(op, isa, unroll, accumulators) is a reduction,
 * V(op, isa, unroll) an elementwise pass, N(op, isa, unroll) one with non-temporal stores (the
 * streaming table of a level: the first listed N of an op replaces its V there). The first variant
 * listed for an (op, isa) is the one the dispatcher uses; the others exist for the tuning sweep of
 * the benchmarks (python -m benchmarks --sweep; the defaults are its winners, or within 5% of them,
 * on the machines of benchmarks/RESULTS.md). softmax_short_rows is listed once per level, with the
 * unroll and accumulators of that level's raddstoreexpminusmax, whose order of summation it keeps. */
#define TWOPASS_F32_AVX512F_DEFAULTS(R, V)                                                         \
    R(rmax, avx512f, 128, 4)                                                                       \
    R(raddextexp, avx512f, 128, 4)                                                                 \
    V(vscaleextexp, avx512f, 64)                                                                   \
    R(raddexpminusmax, avx512f, 128, 4)                                                            \
    R(raddstoreexpminusmax, avx512f, 128, 4)                                                       \
    V(vscaleexpminusmax, avx512f, 64)                                                              \
    V(vscale, avx512f, 64)                                                                         \
    V(vsubc, avx512f, 64)                                                                          \
    R(raddonline, avx512f, 128, 1)                                                                 \
    V(raddextexp_columns, avx512f, 256)                                                            \
    V(vscaleextexp_columns, avx512f, 256)                                                          \
    V(vsubc_columns, avx512f, 256)                                                               \
    R(softmax_short_rows, avx512f, 128, 4)

#define TWOPASS_F32_AVX512F_STREAMING(N)                                                           \
    N(vscaleextexp, avx512f, 64)                                                                   \
    N(vscaleexpminusmax, avx512f, 64)                                                              \
    N(vsubc, avx512f, 64)

#define TWOPASS_F32_AVX512F_KERNELS(R, V, N)                                                       \
    TWOPASS_F32_AVX512F_DEFAULTS(R, V)                                                             \
    R(rmax, avx512f, 64, 2)                                                                        \
    R(raddextexp, avx512f, 64, 2)                                                                  \
    R(raddextexp, avx512f, 192, 3)                                                                 \
    V(vscaleextexp, avx512f, 128)                                                                  \
    R(raddexpminusmax, avx512f, 64, 2)                                                             \
    R(raddexpminusmax, avx512f, 192, 3)                                                            \
    R(raddstoreexpminusmax, avx512f, 64, 2)                                                        \
    R(raddstoreexpminusmax, avx512f, 192, 3)                                                       \
    V(vscaleexpminusmax, avx512f, 128)                                                             \
    V(vscale, avx512f, 128)                                                                        \
    R(raddonline, avx512f, 64, 1)                                                                  \
    R(raddonline, avx512f, 128, 2)                                                                 \
    TWOPASS_F32_AVX512F_STREAMING(N)

/* AVX2's sums of exps (raddextexp, raddexpminusmax) take four vector accumulators (u64_acc4: 32
 * partial sums): within 2% of u32_acc2 in the sweep (nineteenth session), and rows of one repeated
 * value, the worst case of float32 partial sums, then give at most 5.4e-7 relative error instead of
 * 1.03e-6 (150 values at 1e3-1e6 elements; tests/test_softmax.py keeps the worst). */
#define TWOPASS_F32_AVX2_DEFAULTS(R, V)                                                            \
    R(rmax, avx2, 64, 4)                                                                           \
    R(raddextexp, avx2, 64, 4)                                                                     \
    V(vscaleextexp, avx2, 32)                                                                      \
    R(raddexpminusmax, avx2, 64, 4)                                                                \
    R(raddstoreexpminusmax, avx2, 64, 4)                                                           \
    V(vscaleexpminusmax, avx2, 32)                                                                 \
    V(vscale, avx2, 32)                                                                            \
    V(vsubc, avx2, 32)                                                                             \
    R(raddonline, avx2, 64, 1)                                                                     \
    V(raddextexp_columns, avx2, 256)                                                               \
    V(vscaleextexp_columns, avx2, 256)                                                             \
    V(vsubc_columns, avx2, 256)                                                               \
    R(softmax_short_rows, avx2, 64, 4)

#define TWOPASS_F32_AVX2_STREAMING(N)                                                              \
    N(vscaleextexp, avx2, 32)                                                                      \
    N(vscaleexpminusmax, avx2, 32)                                                                 \
    N(vsubc, avx2, 32)                                                                             \
    N(vscaleextexp_columns, avx2, 256)                                                             \
    N(vsubc_columns, avx2, 256)

#define TWOPASS_F32_AVX2_KERNELS(R, V, N)                                                          \
    TWOPASS_F32_AVX2_DEFAULTS(R, V)                                                                \
    R(rmax, avx2, 32, 2)                                                                           \
    R(raddextexp, avx2, 32, 2)                                                                     \
    R(raddextexp, avx2, 96, 3)                                                                     \
    V(vscaleextexp, avx2, 64)                                                                      \
    R(raddexpminusmax, avx2, 32, 2)                                                                \
    R(raddexpminusmax, avx2, 96, 3)                                                                \
    R(raddstoreexpminusmax, avx2, 32, 2)                                                           \
    R(raddstoreexpminusmax, avx2, 96, 3)                                                           \
    V(vscaleexpminusmax, avx2, 64)                                                                 \
    V(vscale, avx2, 64)                                                                            \
    R(raddonline, avx2, 32, 1)                                                                     \
    R(raddonline, avx2, 64, 2)                                                                     \
    TWOPASS_F32_AVX2_STREAMING(N)

#define TWOPASS_F32_KERNELS(R, V, N) TWOPASS_F32_AVX512F_KERNELS(R, V, N) TWOPASS_F32_AVX2_KERNELS(R, V, N)

#define TWOPASS_F32_RNAME(op, isa, u, acc) twopass_f32_##op##__##isa##_u##u##_acc##acc
#define TWOPASS_F32_VNAME(op, isa, u) twopass_f32_##op##__##isa##_u##u
#define TWOPASS_F32_NNAME(op, isa, u) twopass_f32_##op##__##isa##_u##u##_nt

/* Declarations of every variant. */
#define TWOPASS_DECLARE_R(op, isa, u, acc) twopass_f32_##op##_fn TWOPASS_F32_RNAME(op, isa, u, acc);
#define TWOPASS_DECLARE_V(op, isa, u) twopass_f32_##op##_fn TWOPASS_F32_VNAME(op, isa, u);
#define TWOPASS_DECLARE_N(op, isa, u) twopass_f32_##op##_fn TWOPASS_F32_NNAME(op, isa, u);
TWOPASS_F32_KERNELS(TWOPASS_DECLARE_R, TWOPASS_DECLARE_V, TWOPASS_DECLARE_N)
#undef TWOPASS_DECLARE_R
#undef TWOPASS_DECLARE_V
#undef TWOPASS_DECLARE_N

/* ---- float64: the same passes on doubles, with the same contracts (exponents and scalars are
 * doubles). ---- */
/* The float64 passes: the same ops in the same order (enum twopass_f32_op indexes both tables). */
#define TWOPASS_F64_OPS(OP) TWOPASS_F32_OPS(OP)

/* Every compiled float64 variant, as above: the first listed for an (op, isa) is the default. The
 * unrolls count doubles: half the float32 tile in vectors of half the lanes keeps the registers
 * per iteration the same. The defaults are untuned guesses (float32's AVX2 winners, halved). */
#define TWOPASS_F64_AVX512F_KERNELS(R, V, N)                                                       \
    R(rmax, avx512f, 64, 4)                                                                        \
    R(raddextexp, avx512f, 64, 4)                                                                  \
    V(vscaleextexp, avx512f, 32)                                                                   \
    R(raddexpminusmax, avx512f, 64, 4)                                                             \
    R(raddstoreexpminusmax, avx512f, 64, 4)                                                        \
    V(vscaleexpminusmax, avx512f, 32)                                                              \
    V(vscale, avx512f, 32)                                                                         \
    V(vsubc, avx512f, 32)                                                                          \
    R(raddonline, avx512f, 64, 1)                                                                  \
    V(raddextexp_columns, avx512f, 256)                                                            \
    V(vscaleextexp_columns, avx512f, 256)                                                          \
    V(vsubc_columns, avx512f, 256)                                                                 \
    R(softmax_short_rows, avx512f, 64, 4)                                                          \
    R(raddextexp, avx512f, 32, 2)                                                                  \
    R(raddexpminusmax, avx512f, 32, 2)                                                             \
    V(vscaleextexp, avx512f, 64)                                                                   \
    N(vscaleextexp, avx512f, 32)                                                                   \
    N(vscaleexpminusmax, avx512f, 32)                                                              \
    N(vsubc, avx512f, 32)

#define TWOPASS_F64_AVX2_KERNELS(R, V, N)                                                          \
    R(rmax, avx2, 32, 4)                                                                           \
    R(raddextexp, avx2, 16, 2)                                                                     \
    V(vscaleextexp, avx2, 16)                                                                      \
    R(raddexpminusmax, avx2, 16, 2)                                                                \
    R(raddstoreexpminusmax, avx2, 32, 4)                                                           \
    V(vscaleexpminusmax, avx2, 16)                                                                 \
    V(vscale, avx2, 16)                                                                            \
    V(vsubc, avx2, 16)                                                                             \
    R(raddonline, avx2, 32, 1)                                                                     \
    V(raddextexp_columns, avx2, 256)                                                               \
    V(vscaleextexp_columns, avx2, 256)                                                             \
    V(vsubc_columns, avx2, 256)                                                                    \
    R(softmax_short_rows, avx2, 32, 4)                                                             \
    R(raddextexp, avx2, 32, 4)                                                                     \
    R(raddexpminusmax, avx2, 32, 4)                                                                \
    V(vscaleextexp, avx2, 32)                                                                      \
    N(vscaleextexp, avx2, 16)                                                                      \
    N(vscaleexpminusmax, avx2, 16)                                                                 \
    N(vsubc, avx2, 16)                                                                             \
    N(vscaleextexp_columns, avx2, 256)                                                             \
    N(vsubc_columns, avx2, 256)

#define TWOPASS_F64_KERNELS(R, V, N) TWOPASS_F64_AVX512F_KERNELS(R, V, N) TWOPASS_F64_AVX2_KERNELS(R, V, N)

#define TWOPASS_F64_RNAME(op, isa, u, acc) twopass_f64_##op##__##isa##_u##u##_acc##acc
#define TWOPASS_F64_VNAME(op, isa, u) twopass_f64_##op##__##isa##_u##u
#define TWOPASS_F64_NNAME(op, isa, u) twopass_f64_##op##__##isa##_u##u##_nt

#define TWOPASS_DECLARE_R(op, isa, u, acc) twopass_f64_##op##_fn TWOPASS_F64_RNAME(op, isa, u, acc);
#define TWOPASS_DECLARE_V(op, isa, u) twopass_f64_##op##_fn TWOPASS_F64_VNAME(op, isa, u);
#define TWOPASS_DECLARE_N(op, isa, u) twopass_f64_##op##_fn TWOPASS_F64_NNAME(op, isa, u);
TWOPASS_F64_KERNELS(TWOPASS_DECLARE_R, TWOPASS_DECLARE_V, TWOPASS_DECLARE_N)
#undef TWOPASS_DECLARE_R
#undef TWOPASS_DECLARE_V
#undef TWOPASS_DECLARE_N

/* ---- float16: the same passes on IEEE binary16 elements, computed in float32 (scalars, sums and
 * exponents are floats): each load converts 8 (AVX2, F16C) or 16 (AVX-512F) halves to floats, each
 * store rounds floats to the nearest half (ties to even), so no float32 copy of the array exists
 * (three-pass reload keeps one row's exps in float32: raddstoreexpminusmax writes them, vscale
 * rounds them).
 * The variants are float32's defaults and streaming ones (the lists below name float32's); unrolls
 * count halves. ---- */
#define TWOPASS_F16_OPS(OP) TWOPASS_F32_OPS(OP)

#define TWOPASS_F16_AVX512F_KERNELS(R, V, N)                                                       \
    TWOPASS_F32_AVX512F_DEFAULTS(R, V) TWOPASS_F32_AVX512F_STREAMING(N)

#define TWOPASS_F16_AVX2_KERNELS(R, V, N)                                                          \
    TWOPASS_F32_AVX2_DEFAULTS(R, V) TWOPASS_F32_AVX2_STREAMING(N)

#define TWOPASS_F16_KERNELS(R, V, N) TWOPASS_F16_AVX512F_KERNELS(R, V, N) TWOPASS_F16_AVX2_KERNELS(R, V, N)

#define TWOPASS_F16_RNAME(op, isa, u, acc) twopass_f16_##op##__##isa##_u##u##_acc##acc
#define TWOPASS_F16_VNAME(op, isa, u) twopass_f16_##op##__##isa##_u##u
#define TWOPASS_F16_NNAME(op, isa, u) twopass_f16_##op##__##isa##_u##u##_nt

#define TWOPASS_DECLARE_R(op, isa, u, acc) twopass_f16_##op##_fn TWOPASS_F16_RNAME(op, isa, u, acc);
#define TWOPASS_DECLARE_V(op, isa, u) twopass_f16_##op##_fn TWOPASS_F16_VNAME(op, isa, u);
#define TWOPASS_DECLARE_N(op, isa, u) twopass_f16_##op##_fn TWOPASS_F16_NNAME(op, isa, u);
TWOPASS_F16_KERNELS(TWOPASS_DECLARE_R, TWOPASS_DECLARE_V, TWOPASS_DECLARE_N)
#undef TWOPASS_DECLARE_R
#undef TWOPASS_DECLARE_V
#undef TWOPASS_DECLARE_N

#ifdef __cplusplus
}
#endif

#endif /* TWOPASS_KERNELS_H */
