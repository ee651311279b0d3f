/* twopass: CPU detection, kernel tables per ISA level, and the softmax algorithms composed from the
 * passes of kernels.h. Everything declared here is compiled for the x86-64 baseline; only the
 * kernels behind the function pointers use AVX2 or AVX-512.
 */
#ifndef TWOPASS_SOFTMAX_H
#define TWOPASS_SOFTMAX_H

#include <stddef.h>
#include "twopass/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CPU features (read once with CPUID and XGETBV) ---- */
struct twopass_cpu_features {
    int sse2, sse4_1, avx, f16c, fma, avx2, avx512f, avx512bw, avx512dq, avx512vl;
    int os_ymm;  /* XCR0 & 0x06: the OS saves SSE and AVX state */
    int os_zmm;  /* XCR0 & 0xE6: ... and the AVX-512 opmask and ZMM state */
};
void twopass_detect_cpu(struct twopass_cpu_features* features);

/* ---- ISA levels, in priority order ---- */
enum twopass_level {
    TWOPASS_LEVEL_PYTHON = 0,  /* no kernels: the NumPy fallback */
    TWOPASS_LEVEL_AVX2 = 1,    /* AVX2 + FMA, OS saves YMM */
    TWOPASS_LEVEL_AVX512F = 2, /* AVX-512F + AVX2 + FMA, OS saves ZMM */
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
/* Every compiled variant (for the benchmarks' sweep); count in *count. */
const struct twopass_kernel_info* twopass_f32_kernel_registry(size_t* count);

/* The passes one level uses. */
struct twopass_f32_kernels {
    twopass_f32_rmax_fn* rmax;
    twopass_f32_raddextexp_fn* raddextexp;
    twopass_f32_vscaleextexp_fn* vscaleextexp;
    twopass_f32_raddexpminusmax_fn* raddexpminusmax;
    twopass_f32_raddstoreexpminusmax_fn* raddstoreexpminusmax;
    twopass_f32_vscaleexpminusmax_fn* vscaleexpminusmax;
    twopass_f32_vscale_fn* vscale;
    twopass_f32_vsubc_fn* vsubc;
    twopass_f32_raddonline_fn* raddonline;
    twopass_f32_raddextexp_columns_fn* raddextexp_columns;
    twopass_f32_vscaleextexp_columns_fn* vscaleextexp_columns;
    twopass_f32_vsubc_columns_fn* vsubc_columns;
    size_t columns_width; /* most columns one call of the *_columns kernels takes */
    /* The same level with non-temporal stores in the elementwise passes (itself for that table). */
    const struct twopass_f32_kernels* streaming;
    const char* names[TWOPASS_F32_OP_COUNT];
};
/* The default kernels of a level; NULL for TWOPASS_LEVEL_PYTHON. Callers must check that the CPU
 * supports the level (twopass_best_level) before calling any of them. */
const struct twopass_f32_kernels* twopass_f32_kernels_for(enum twopass_level level);
/* Replace one pass of a table by another variant of the same op and level (benchmark sweep). */
int twopass_f32_kernels_with(struct twopass_f32_kernels* table, const struct twopass_kernel_info* variant);

/* The same for float64 (the same ops, enum twopass_f32_op indexes both; struct twopass_kernel_info
 * describes float64 variants too, unroll counted in doubles). */
const struct twopass_kernel_info* twopass_f64_kernel_registry(size_t* count);
struct twopass_f64_kernels {
    twopass_f64_rmax_fn* rmax;
    twopass_f64_raddextexp_fn* raddextexp;
    twopass_f64_vscaleextexp_fn* vscaleextexp;
    twopass_f64_raddexpminusmax_fn* raddexpminusmax;
    twopass_f64_raddstoreexpminusmax_fn* raddstoreexpminusmax;
    twopass_f64_vscaleexpminusmax_fn* vscaleexpminusmax;
    twopass_f64_vscale_fn* vscale;
    twopass_f64_vsubc_fn* vsubc;
    twopass_f64_raddonline_fn* raddonline;
    twopass_f64_raddextexp_columns_fn* raddextexp_columns;
    twopass_f64_vscaleextexp_columns_fn* vscaleextexp_columns;
    twopass_f64_vsubc_columns_fn* vsubc_columns;
    size_t columns_width;
    const struct twopass_f64_kernels* streaming;
    const char* names[TWOPASS_F32_OP_COUNT];
};
const struct twopass_f64_kernels* twopass_f64_kernels_for(enum twopass_level level);
int twopass_f64_kernels_with(struct twopass_f64_kernels* table, const struct twopass_kernel_info* variant);

/* ---- Algorithms ---- */
enum twopass_algorithm {
    TWOPASS_TWO_PASS = 0,
    TWOPASS_THREE_PASS_RELOAD = 1,
    TWOPASS_THREE_PASS_RECOMPUTE = 2,
    TWOPASS_ONLINE = 3, /* the online normaliser: max and sum in one read, then y = exp(x - max) / sum */
    TWOPASS_ALGORITHM_COUNT = 4
};

/* Elements per block of the sums: each block is summed in float32 vector accumulators, and the
 * block sums are added in double, so the rounding error of a sum does not grow with n. */
#define TWOPASS_SUM_BLOCK 1024
/* The same for the columns driver, whose lanes each sum one term per row in a single accumulator. */
#define TWOPASS_COLUMN_SUM_BLOCK 64

/* Threads. Every driver takes `threads` (1: the calling thread alone) and runs on OpenMP threads:
 * whole rows per thread when there are many rows, else each slice cut into about equal chunks of
 * whole sum blocks, n / TWOPASS_CHUNK_MIN of them (at most TWOPASS_MAX_CHUNKS), whose partial
 * results are merged in chunk order. The cut depends on n alone: results are bitwise the same for every thread count.
 * Jobs under TWOPASS_PARALLEL_MIN elements in all run on the calling thread. */
#define TWOPASS_CHUNK_MIN (4 * TWOPASS_SUM_BLOCK)
#define TWOPASS_MAX_CHUNKS 256
#define TWOPASS_PARALLEL_MIN (32 * 1024)

/* Outputs of at least `bytes` are written with non-temporal stores (the level's streaming table);
 * initially never. twopass sets it at import from the last-level cache size. */
void twopass_set_streaming_threshold(size_t bytes);
size_t twopass_streaming_threshold(void);

/* Call once before any driver: registers the fork handler behind twopass_threads_usable(). */
void twopass_threads_init(void);
/* 0 in a process forked after its parent ran a team of threads (libgomp cannot run one there):
 * the drivers then run on the calling thread only. */
int twopass_threads_usable(void);
/* Teams of threads the drivers have started since load, their threads in all, and the jobs that
 * wrote with non-temporal stores (for tests). */
struct twopass_thread_stats {
    long teams, team_threads, streaming_jobs;
};
void twopass_get_thread_stats(struct twopass_thread_stats* out);

/* Softmax of each of `rows` slices of n floats; row r starts at x + r * x_stride (in floats). */
void twopass_softmax_f32_rows(const struct twopass_f32_kernels* k, enum twopass_algorithm algorithm,
                              size_t rows, size_t n, const float* x, ptrdiff_t x_stride, float* y,
                              ptrdiff_t y_stride, int threads);

/* Two-pass softmax down each of `cols` columns of a (rows x cols) array whose rows are x_ld (y_ld)
 * floats apart: the reduced axis is not the contiguous one, so each SIMD lane follows its own
 * column and nothing is transposed; threads share out blocks of columns. Columns with NaN, +inf or
 * huge values are copied out and computed by the one-slice three-pass algorithm. Returns -1 if the
 * scratch memory for such a column (rows floats) cannot be allocated, else 0. y may be x (in place). */
int twopass_softmax_f32_columns(const struct twopass_f32_kernels* k, size_t rows, size_t cols,
                                const float* x, ptrdiff_t x_ld, float* y, ptrdiff_t y_ld, int threads);
/* The same for log_softmax: y = x - logsumexp down each column (pass 1 as above, pass 2 a
 * subtraction; columns two-pass cannot take get their logsumexp from three-pass on a copy). */
int twopass_log_softmax_f32_columns(const struct twopass_f32_kernels* k, size_t rows, size_t cols,
                                    const float* x, ptrdiff_t x_ld, float* y, ptrdiff_t y_ld, int threads);

/* y = log_softmax(x) = x - logsumexp(x) over each row (two-pass: 1 read for the sum; three-pass:
 * max and sum, both algorithms TWOPASS_THREE_PASS_*); then one read and one write. */
void twopass_log_softmax_f32_rows(const struct twopass_f32_kernels* k, enum twopass_algorithm algorithm,
                                  size_t rows, size_t n, const float* x, ptrdiff_t x_stride, float* y,
                                  ptrdiff_t y_stride, int threads);

/* out[r] = logsumexp of row r, in double (SciPy's values for NaN, +-inf and empty slices). */
void twopass_logsumexp_f32_rows(const struct twopass_f32_kernels* k, enum twopass_algorithm algorithm,
                                size_t rows, size_t n, const float* x, ptrdiff_t x_stride, double* out,
                                int threads);

/* The mergeable partial sum of each row: sum exp(x) = mantissa * 2^exponent (exponent an integer in
 * a double). Empty slice: (0, -inf), the identity of the merge; slices with NaN give a NaN mantissa,
 * +inf an infinite one; slices with |max| beyond ~2e6 are exact in log space only. */
void twopass_extsum_f32_rows(const struct twopass_f32_kernels* k, size_t rows, size_t n, const float* x,
                             ptrdiff_t x_stride, double* mantissa, double* exponent, int threads);

/* Pass 2 of two-pass given each row's sum of exp, mantissa[r] * 2^exponent[r] (e.g. merged from
 * the extsums of pieces): y = exp(x) / (mantissa * 2^exponent). The caller guarantees mantissa
 * finite and > 0 and |exponent| <= TWOPASS_EXTEXP_EXPONENT_LIMIT. */
void twopass_softmax_from_extsum_f32_rows(const struct twopass_f32_kernels* k, size_t rows, size_t n,
                                          const float* x, ptrdiff_t x_stride, float* y, ptrdiff_t y_stride,
                                          const double* mantissa, const double* exponent, int threads);

/* float64: the same drivers on float64 rows and columns (one source, src/softmax_template.h). The
 * per-row results are doubles as above; softmax_from_extsum needs |exponent| <=
 * TWOPASS_F64_EXTEXP_EXPONENT_LIMIT. */
void twopass_softmax_f64_rows(const struct twopass_f64_kernels* k, enum twopass_algorithm algorithm,
                              size_t rows, size_t n, const double* x, ptrdiff_t x_stride, double* y,
                              ptrdiff_t y_stride, int threads);
int twopass_softmax_f64_columns(const struct twopass_f64_kernels* k, size_t rows, size_t cols,
                                const double* x, ptrdiff_t x_ld, double* y, ptrdiff_t y_ld, int threads);
int twopass_log_softmax_f64_columns(const struct twopass_f64_kernels* k, size_t rows, size_t cols,
                                    const double* x, ptrdiff_t x_ld, double* y, ptrdiff_t y_ld, int threads);
void twopass_log_softmax_f64_rows(const struct twopass_f64_kernels* k, enum twopass_algorithm algorithm,
                                  size_t rows, size_t n, const double* x, ptrdiff_t x_stride, double* y,
                                  ptrdiff_t y_stride, int threads);
void twopass_logsumexp_f64_rows(const struct twopass_f64_kernels* k, enum twopass_algorithm algorithm,
                                size_t rows, size_t n, const double* x, ptrdiff_t x_stride, double* out,
                                int threads);
void twopass_extsum_f64_rows(const struct twopass_f64_kernels* k, size_t rows, size_t n, const double* x,
                             ptrdiff_t x_stride, double* mantissa, double* exponent, int threads);
void twopass_softmax_from_extsum_f64_rows(const struct twopass_f64_kernels* k, size_t rows, size_t n,
                                          const double* x, ptrdiff_t x_stride, double* y, ptrdiff_t y_stride,
                                          const double* mantissa, const double* exponent, int threads);

#ifdef __cplusplus
}
#endif

#endif /* TWOPASS_SOFTMAX_H */
