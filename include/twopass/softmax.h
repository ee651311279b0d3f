/* twopass: CPU detection, kernel tables per ISA level, and the softmax algorithms composed from the
 * passes of kernels.h. Everything declared here is compiled for the x86-64 baseline; only the
 * kernels behind the function pointers use AVX2 or AVX-512.
 */
#ifndef TWOPASS_SOFTMAX_H
#define TWOPASS_SOFTMAX_H

#include <stddef.h>
#include <stdint.h>
#include "twopass/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CPU features (read once with CPUID and XGETBV) ---- */
struct twopass_cpu_features {
    int sse2, sse4_1, avx, f16c, fma, avx2, avx512f, avx512bw, avx512dq, avx512vl;
    int os_ymm;  /* XCR0 & 0x06: the OS saves SSE and AVX state */
    int os_zmm;  /* XCR0 & 0xE6: ... and the AVX-512 opmask and ZMM state */
    int intel;   /* vendor "GenuineIntel": the prefetch distance (common.h) and auto's rule depend on it */
};
void twopass_detect_cpu(struct twopass_cpu_features* features);

/* Set MXCSR.FTZ, returning the MXCSR to restore: every caller of the kernels runs them with it
 * (softmax.c), and the AVX-512F float32 exp passes and vscale (every level and dtype) rely on it to
 * flush results below the smallest normal. */
unsigned int twopass_flush_to_zero_begin(void);
void twopass_flush_to_zero_end(unsigned int csr);

/* Tune what depends on the CPU rather than on its ISA: the exp passes' prefetch distance (common.h).
 * Called once at import, before any kernel runs. */
void twopass_tune_for_cpu(const struct twopass_cpu_features* features);

/* ---- ISA levels, in priority order ---- */
enum twopass_level {
    TWOPASS_LEVEL_PYTHON = 0,  /* no kernels: the NumPy fallback */
    TWOPASS_LEVEL_AVX2 = 1,    /* AVX2 + FMA + F16C, OS saves YMM */
    TWOPASS_LEVEL_AVX512F = 2, /* AVX-512F + the avx2 level, OS saves ZMM */
    TWOPASS_LEVEL_COUNT = 3
};
/* Highest level this CPU and OS support. */
enum twopass_level twopass_best_level(const struct twopass_cpu_features* features);

/* ---- Kernel tables ---- */
enum twopass_f32_op {
#define TWOPASS_OP_ENUM(op) TWOPASS_F32_OP_##op,
    TWOPASS_F32_OPS(TWOPASS_OP_ENUM)
#undef TWOPASS_OP_ENUM
    TWOPASS_F32_OP_COUNT
};

/* One compiled kernel variant. */
struct twopass_kernel_info {
    const char* name;
    enum twopass_f32_op op;
    enum twopass_level level;
    int unroll;       /* floats per main-loop iteration */
    int accumulators; /* 0 for elementwise passes */
    int streaming;    /* 1: an elementwise pass with non-temporal stores */
    void (*fn)(void);
};
/* The kernel table of one dtype (dt: f32, f64, f16; unroll in elements of that dtype): the passes
 * one level uses, the registry of every compiled variant (for the benchmarks' sweep; count in
 * *count), the default table of a level (NULL for TWOPASS_LEVEL_PYTHON; callers must check that the
 * CPU supports the level, twopass_best_level, before calling any kernel), and the replacement of
 * one pass of a table by another variant of the same op and level (benchmark sweep). The ops are
 * the same for every dtype: enum twopass_f32_op indexes every table. */
#define TWOPASS_KERNEL_TABLE(dt)                                                                   \
    struct twopass_##dt##_kernels {                                                                \
        twopass_##dt##_rmax_fn* rmax;                                                              \
        twopass_##dt##_raddextexp_fn* raddextexp;                                                  \
        twopass_##dt##_vscaleextexp_fn* vscaleextexp;                                              \
        twopass_##dt##_raddexpminusmax_fn* raddexpminusmax;                                        \
        twopass_##dt##_raddstoreexpminusmax_fn* raddstoreexpminusmax;                              \
        twopass_##dt##_vscaleexpminusmax_fn* vscaleexpminusmax;                                    \
        twopass_##dt##_vscale_fn* vscale;                                                          \
        twopass_##dt##_vsubc_fn* vsubc;                                                            \
        twopass_##dt##_raddonline_fn* raddonline;                                                  \
        twopass_##dt##_raddextexp_columns_fn* raddextexp_columns;                                  \
        twopass_##dt##_vscaleextexp_columns_fn* vscaleextexp_columns;                              \
        twopass_##dt##_vsubc_columns_fn* vsubc_columns;                                            \
        twopass_##dt##_softmax_short_rows_fn* softmax_short_rows;                                  \
        /* the same level with non-temporal stores in the elementwise passes (itself for that table) */ \
        const struct twopass_##dt##_kernels* streaming;                                            \
        const char* names[TWOPASS_F32_OP_COUNT];                                                   \
    };                                                                                             \
    const struct twopass_kernel_info* twopass_##dt##_kernel_registry(size_t* count);               \
    const struct twopass_##dt##_kernels* twopass_##dt##_kernels_for(enum twopass_level level);     \
    int twopass_##dt##_kernels_with(struct twopass_##dt##_kernels* table,                          \
                                    const struct twopass_kernel_info* variant);
TWOPASS_KERNEL_TABLE(f32)
TWOPASS_KERNEL_TABLE(f64)
TWOPASS_KERNEL_TABLE(f16)

/* ---- Algorithms ---- */
enum twopass_algorithm {
    TWOPASS_TWO_PASS = 0,
    TWOPASS_THREE_PASS_RELOAD = 1,
    TWOPASS_THREE_PASS_RECOMPUTE = 2,
    TWOPASS_ONLINE = 3, /* the online normaliser: max and sum in one read, then y = exp(x - max) / sum */
    TWOPASS_BLOCKED_RELOAD = 4, /* three-pass reload with the max found by the exp pass: x read once */
    TWOPASS_ALGORITHM_COUNT = 5
};

/* Elements per block of the sums: each block is summed in float32 vector accumulators, and the
 * block sums are added in double, so the rounding error of a sum does not grow with n. Each AVX2
 * accumulator lane adds at most 64 terms. Larger blocks save the per-block work (the kernel's final
 * reduction, the merge in double: 3-4% of an in-cache pass, about 1% at 4096), but equal terms, the
 * worst case of float32 summation, then round the same way 256 times: a row of 8000 equal values is
 * off by 1.35e-6 at 4096 (tests/test_softmax.py::test_constant_rows_and_columns), 3e-7 here. */
#define TWOPASS_SUM_BLOCK 1024
/* For benchmarks only: set the elements per sum block (0: back to TWOPASS_SUM_BLOCK), e.g. to more
 * than any slice, so each chunk is summed by one kernel call in float32 (the unblocked sum whose
 * cost and error the benchmarks compare). Not thread-safe against running drivers. */
void twopass_set_sum_block(size_t elements);
size_t twopass_sum_block(void);
/* The same for the columns driver, whose lanes each sum one term per row in a single accumulator. */
#define TWOPASS_COLUMN_SUM_BLOCK 64
/* Columns pass 1 streams each row across a block of at most this many columns (one per thread at
 * least), keeping each column's state in memory: wide blocks make long contiguous reads (4096x4096
 * float32, axis 0 / axis 1, 1 thread: 1024 wide 1.09, 2048 1.04, 4096 1.02; medians of 7, twice). */
#define TWOPASS_COLUMN_PASS1_WIDTH 4096

/* Threads. Every driver takes `threads` (1: the calling thread alone) and runs on OpenMP threads:
 * whole rows per thread when there are many rows, else each slice cut into about equal chunks of
 * whole sum blocks, n / TWOPASS_CHUNK_MIN of them (at most TWOPASS_MAX_CHUNKS), whose partial
 * results are merged in chunk order. The cut depends on n alone: results are bitwise the same for every thread count.
 * Jobs under TWOPASS_PARALLEL_MIN elements in all run on the calling thread. */
#define TWOPASS_CHUNK_MIN (4 * TWOPASS_SUM_BLOCK)
#define TWOPASS_MAX_CHUNKS 256
#define TWOPASS_PARALLEL_MIN (32 * 1024)
/* softmax by three-pass reload and by two-pass runs rows of at most TWOPASS_ROW_GROUP_ROW_BYTES (and
 * one sum block) in groups whose input fits twopass_row_group_bytes(), TWOPASS_ROW_GROUP_BYTES by
 * default, and of at most TWOPASS_SHORT_ROWS_GROUP rows (kernels.h; 64 rows of 64 bytes fill a
 * group): reload by the level's softmax_short_rows kernel (softmax_template.h, reload_group), two-pass
 * a pass at a time through the rows' kernels (two_pass_group; float32 two_pass 65536 x 64 0.729
 * against 0.920 row by row, 4096 x 16 1.718 against 2.337, float16 65536 x 64 0.714 against 0.975;
 * medians of 5 interleaved rounds). Measured on the
 * Xeon of family 6 model 167, float32, ns per element, medians of 7 interleaved rounds:
 * - groups through the rows' kernels (rmax, raddstoreexpminusmax, vscale) against row by row:
 *   65536 x 64 0.44-0.47 against 0.56, 2048 x 64 (in L2) 0.40-0.42 against 0.54, 32768 x 128
 *   0.32-0.34 against 0.35; rows of 1 KiB (16384 x 256) 0.33-0.35 against 0.33-0.34, and of 2 KiB
 *   (8192 x 512) up to 1.18x slower in groups of 4 KiB or more, so rows longer than 512 bytes run one
 *   by one;
 * - softmax_short_rows against those groups, avx512f: 65536 x 64 0.370 against 0.454, 2048 x 64
 *   0.282 against 0.369, 4096 x 16 0.622 against 0.887, 32768 x 128 0.301 against 0.346; avx2:
 *   65536 x 64 0.393 against 0.497, 4096 x 16 0.455 against 0.875. */
#define TWOPASS_ROW_GROUP_ROW_BYTES TWOPASS_SHORT_ROWS_BYTES /* kernels.h */
#define TWOPASS_ROW_GROUP_BYTES 4096
/* For tests and benchmarks: set the group's input bytes (0: row by row; SIZE_MAX: back to
 * TWOPASS_ROW_GROUP_BYTES). The results are the same bits either way. Not thread-safe against
 * running drivers. */
void twopass_set_row_group_bytes(size_t bytes);
size_t twopass_row_group_bytes(void);

/* Outputs of at least `bytes` are written with non-temporal stores (the level's streaming table);
 * initially never. twopass sets it at import from the last-level cache size. */
void twopass_set_streaming_threshold(size_t bytes);
size_t twopass_streaming_threshold(void);

/* Call once before any driver: registers the fork handler behind twopass_threads_usable(). */
void twopass_threads_init(void);
/* 0 in a process forked after its parent ran a team of threads (libgomp cannot run one there):
 * the drivers then run on the calling thread only. */
int twopass_threads_usable(void);
/* Teams of threads the drivers have started since load, their threads in all, the jobs that
 * wrote with non-temporal stores, the jobs that ran short rows in groups, the slices that ran
 * blocked reload's passes and the slices (rows, columns) that two-pass computed from its pass 1's
 * sum, not those it handed to three-pass (for tests: on AVX2 two-pass and reload can give the same
 * bits). */
struct twopass_thread_stats {
    long teams, team_threads, streaming_jobs, grouped_jobs, blocked_slices, two_pass_slices;
};
/* Count one job run in row groups, one slice run by blocked reload, slices computed by two-pass
 * (softmax_template.h). */
void twopass_count_grouped_job(void);
void twopass_count_blocked_slice(void);
void twopass_count_two_pass_slices(long count);
void twopass_get_thread_stats(struct twopass_thread_stats* out);

/* The drivers of one dtype (dt: f32, f64, f16 with elements E: float, double, uint16_t); one
 * source, src/softmax_template.h. Rows are slices of n elements, row r at x + r * x_stride
 * (strides and leading dimensions count elements). Per-row results are doubles for every dtype.
 *
 * softmax_rows          y = softmax of each row, with the given algorithm.
 * log_softmax_rows      y = x - logsumexp(x) over each row (two-pass: 1 read for the sum;
 *                       three-pass: max and sum); then one read and one write.
 * logsumexp_rows        out[r] = logsumexp of row r (SciPy's values for NaN, +-inf, empty slices).
 * extsum_rows           the mergeable partial sum of each row: sum exp(x) = mantissa * 2^exponent
 *                       (exponent an integer in a double). Empty slice: (0, -inf), the identity of
 *                       the merge; NaN gives a NaN mantissa, +inf an infinite one; slices with |max|
 *                       beyond the extended range are exact in log space only.
 * softmax_from_extsum_rows   pass 2 of two-pass given each row's sum of exp, mantissa[r] *
 *                       2^exponent[r] (e.g. merged from the extsums of pieces); the caller
 *                       guarantees mantissa finite and > 0 and |exponent| within the dtype's
 *                       extended range (TWOPASS_EXTEXP_EXPONENT_LIMIT, float64's
 *                       TWOPASS_F64_EXTEXP_EXPONENT_LIMIT).
 * softmax_columns       two-pass softmax down each of `cols` columns of a (rows x cols) array whose
 *                       rows are x_ld (y_ld) elements apart: the reduced axis is not the contiguous
 *                       one, so each SIMD lane follows its own column and nothing is transposed;
 *                       threads share out blocks of columns. Columns with NaN, +inf or huge values
 *                       are copied out and computed by the one-slice three-pass algorithm. Returns
 *                       -1 if the scratch memory for such a column cannot be allocated, else 0.
 * log_softmax_columns   the same for log_softmax (pass 2 a subtraction).
 * logsumexp_columns     pass 1 of log_softmax_columns alone: out[c] = logsumexp of column c, in
 *                       double, as logsumexp_rows gives it for a row (-inf for rows == 0, SciPy's
 *                       x + log 1 = x + 0 for rows == 1). Returns -1 or 0 as softmax_columns.
 * y may be x (in place) everywhere. */
#define TWOPASS_DRIVERS(dt, E)                                                                     \
    void twopass_softmax_##dt##_rows(const struct twopass_##dt##_kernels* k, enum twopass_algorithm algorithm, \
                                     size_t rows, size_t n, const E* x, ptrdiff_t x_stride, E* y,   \
                                     ptrdiff_t y_stride, int threads);                             \
    void twopass_log_softmax_##dt##_rows(const struct twopass_##dt##_kernels* k,                   \
                                         enum twopass_algorithm algorithm, size_t rows, size_t n,  \
                                         const E* x, ptrdiff_t x_stride, E* y, ptrdiff_t y_stride, \
                                         int threads);                                             \
    void twopass_logsumexp_##dt##_rows(const struct twopass_##dt##_kernels* k,                     \
                                       enum twopass_algorithm algorithm, size_t rows, size_t n,    \
                                       const E* x, ptrdiff_t x_stride, double* out, int threads);  \
    void twopass_extsum_##dt##_rows(const struct twopass_##dt##_kernels* k, size_t rows, size_t n, \
                                    const E* x, ptrdiff_t x_stride, double* mantissa, double* exponent, \
                                    int threads);                                                  \
    void twopass_softmax_from_extsum_##dt##_rows(const struct twopass_##dt##_kernels* k, size_t rows, \
                                                 size_t n, const E* x, ptrdiff_t x_stride, E* y,   \
                                                 ptrdiff_t y_stride, const double* mantissa,       \
                                                 const double* exponent, int threads);             \
    int twopass_softmax_##dt##_columns(const struct twopass_##dt##_kernels* k, size_t rows, size_t cols, \
                                       const E* x, ptrdiff_t x_ld, E* y, ptrdiff_t y_ld, int threads); \
    int twopass_log_softmax_##dt##_columns(const struct twopass_##dt##_kernels* k, size_t rows,    \
                                           size_t cols, const E* x, ptrdiff_t x_ld, E* y,          \
                                           ptrdiff_t y_ld, int threads);                           \
    int twopass_logsumexp_##dt##_columns(const struct twopass_##dt##_kernels* k, size_t rows,      \
                                         size_t cols, const E* x, ptrdiff_t x_ld, double* out,     \
                                         int threads);
TWOPASS_DRIVERS(f32, float)
TWOPASS_DRIVERS(f64, double)
TWOPASS_DRIVERS(f16, uint16_t)

#ifdef __cplusplus
}
#endif

#endif /* TWOPASS_SOFTMAX_H */
