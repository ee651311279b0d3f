/* The softmax algorithms, composed from the passes of one kernel table. Baseline x86-64 code.
 * This file holds the threads and the float32 drivers; the drivers themselves are one template for
 * both dtypes, src/softmax_template.h, included here for float32 and in softmax_f64.c for float64.
 *
 *   two-pass:             (M, E) = sum exp(x) as mantissa and exponent;  y = exp(x) / M * 2^-E
 *   three-pass reload:    m = max x;  w = exp(x - m), s = sum w;  y = w * 1/s  (w: y itself, or
 *                         float16's float32 row)
 *   three-pass recompute: m = max x;  s = sum exp(x - m);  y = exp(x - m) * 1/s
 *   online:               (m, s) = (max x, sum exp(x - m)) in one read, s rescaled by exp(m - m')
 *                         whenever the running max grows to m';  y = exp(x - m) * 1/s
 *   blocked reload:       per sum block b: m_b = the largest max so far (found by the exp pass
 *                         itself, which redoes a block that raises it), w = exp(x - m_b),
 *                         s_b = sum w;  (s, m) merged as extended sums;  y = w * e^(m_b - m) / s
 *                         (e^(m_b - m) a power of two: m_b and m are split as exponent * ln2)
 *
 * exp(x - m) is evaluated as exp(x - shift) * 2^-exponent with shift + exponent * ln2 close to m
 * (see exp_shift): x - m itself would round (error up to |x - m| * 2^-24 relative in float32).
 *
 * The sums run over blocks of TWOPASS_SUM_BLOCK elements whose partial sums are added in double.
 *
 * Threads (OpenMP): a slice is cut into chunks of whole blocks (struct slice); each pass runs its
 * chunks in parallel, and the chunks' partial maxima and sums are merged in chunk order on the
 * calling thread. The cut depends on n alone, so every thread count gives bitwise the same result.
 * Many rows are shared out whole, one thread per row.
 *
 * log_softmax and logsumexp reuse them: logsumexp = log(M) + E ln2 from two-pass pass 1 alone (or
 * max + log sum exp(x - max), three-pass), and log_softmax y = x - logsumexp(x).
 */
#define _GNU_SOURCE /* M_LN2 */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#if defined(__SSE__)
#include <xmmintrin.h> /* _mm_getcsr, _mm_setcsr: SSE, in the x86-64 baseline */
#endif
#ifdef _OPENMP
#include <omp.h>
#endif
#include "twopass/common.h"
#include "twopass/softmax.h"

/* ---- non-temporal stores ---- */

/* Jobs whose output has at least this many bytes write it with non-temporal stores (the level's
 * streaming table): it will not stay in the caches anyway, and streaming skips reading each line
 * before writing it. twopass sets it from the last-level cache size at import; never until then. */
static size_t streaming_threshold = SIZE_MAX;

void twopass_set_streaming_threshold(size_t bytes)
{
    streaming_threshold = bytes;
}

size_t twopass_streaming_threshold(void)
{
    return streaming_threshold;
}

/* ---- sum blocks ---- */

/* Elements per sum block. Only benchmarks change it (twopass_set_sum_block), to measure what the
 * blocked sums cost against one float32 accumulation over a whole chunk. */
static size_t sum_block = TWOPASS_SUM_BLOCK;

void twopass_set_sum_block(size_t elements)
{
    sum_block = elements == 0 ? TWOPASS_SUM_BLOCK : elements;
}

size_t twopass_sum_block(void)
{
    return sum_block;
}

/* ---- float16 reload's float32 rows ---- */

/* Each thread keeps one row for its calls, of up to TWOPASS_STORED_KEEP floats, freed when the
 * thread exits (a pthread key's destructor): a malloc and free per row cost 6-10% of float16 reload
 * on rows of 4097-8192 halves. Longer rows get their own allocation (*owned = 1: the caller frees
 * it), so no thread holds more than 1 MiB. */
#define TWOPASS_STORED_KEEP ((size_t)1 << 18)
struct stored_row {
    size_t capacity;
    float data[];
};
static pthread_key_t stored_key;
static int stored_key_made;

static void make_stored_key(void)
{
    stored_key_made = pthread_key_create(&stored_key, free) == 0;
}

float* twopass_stored_row(size_t n, int* owned)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, make_stored_key);
    *owned = 0;
    if (n > TWOPASS_STORED_KEEP || !stored_key_made) {
        *owned = 1;
        return malloc(sizeof(float) * n);
    }
    struct stored_row* row = pthread_getspecific(stored_key);
    if (row != NULL && row->capacity >= n) {
        return row->data;
    }
    size_t capacity = row != NULL ? 2 * row->capacity : 8192;
    capacity = capacity < n ? n : capacity > TWOPASS_STORED_KEEP ? TWOPASS_STORED_KEEP : capacity;
    struct stored_row* bigger = malloc(sizeof(struct stored_row) + sizeof(float) * capacity);
    if (bigger == NULL) {
        return NULL;
    }
    bigger->capacity = capacity;
    if (pthread_setspecific(stored_key, bigger) != 0) {
        free(bigger);
        *owned = 1;
        return malloc(sizeof(float) * n);
    }
    free(row);
    return bigger->data;
}

/* ---- row groups ---- */

static size_t row_group_bytes = TWOPASS_ROW_GROUP_BYTES;

void twopass_set_row_group_bytes(size_t bytes)
{
    row_group_bytes = bytes == SIZE_MAX ? TWOPASS_ROW_GROUP_BYTES : bytes;
}

size_t twopass_row_group_bytes(void)
{
    return row_group_bytes;
}

/* ---- parallel loops ---- */

/* libgomp cannot run a team in a child forked after the parent ran one (its pool's threads are not
 * copied, and the child waits for them forever): such a child runs everything on one thread. */
static int team_started, forked_after_team;
static struct twopass_thread_stats stats;

static void on_fork_in_child(void)
{
    forked_after_team = __atomic_load_n(&team_started, __ATOMIC_RELAXED);
}

static void register_fork_handler(void)
{
    pthread_atfork(NULL, NULL, on_fork_in_child);
}

void twopass_threads_init(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_fork_handler);
}

int twopass_threads_usable(void)
{
    return !forked_after_team;
}

/* Slices that ran blocked reload's own passes, and slices that two-pass computed, counted per
 * OpenMP thread number in a cache line of its own: rows shared out one per thread would otherwise all
 * add to one contended line. */
#define SLICE_COUNT_SLOTS 64
static struct {
    long blocked, two_pass;
    char pad[64 - 2 * sizeof(long)];
} slice_counts[SLICE_COUNT_SLOTS] __attribute__((aligned(64)));

static int slice_count_slot(void)
{
#ifdef _OPENMP
    return omp_get_thread_num() % SLICE_COUNT_SLOTS;
#else
    return 0;
#endif
}

void twopass_get_thread_stats(struct twopass_thread_stats* out)
{
    out->teams = __atomic_load_n(&stats.teams, __ATOMIC_RELAXED);
    out->team_threads = __atomic_load_n(&stats.team_threads, __ATOMIC_RELAXED);
    out->streaming_jobs = __atomic_load_n(&stats.streaming_jobs, __ATOMIC_RELAXED);
    out->grouped_jobs = __atomic_load_n(&stats.grouped_jobs, __ATOMIC_RELAXED);
    out->blocked_slices = 0, out->two_pass_slices = 0;
    for (int i = 0; i < SLICE_COUNT_SLOTS; i++) {
        out->blocked_slices += __atomic_load_n(&slice_counts[i].blocked, __ATOMIC_RELAXED);
        out->two_pass_slices += __atomic_load_n(&slice_counts[i].two_pass, __ATOMIC_RELAXED);
    }
}

void twopass_count_grouped_job(void)
{
    __atomic_add_fetch(&stats.grouped_jobs, 1, __ATOMIC_RELAXED);
}

void twopass_count_blocked_slice(void)
{
    __atomic_add_fetch(&slice_counts[slice_count_slot()].blocked, 1, __ATOMIC_RELAXED);
}

void twopass_count_two_pass_slices(long count)
{
    __atomic_add_fetch(&slice_counts[slice_count_slot()].two_pass, count, __ATOMIC_RELAXED);
}

int twopass_streaming_job(size_t elements, size_t element_size)
{
    if (elements < streaming_threshold / element_size) {
        return 0;
    }
    __atomic_add_fetch(&stats.streaming_jobs, 1, __ATOMIC_RELAXED);
    return 1;
}

/* ---- flush-to-zero ---- */

/* The drivers run the kernels with MXCSR.FTZ set, on the calling thread and on each OpenMP thread,
 * and then restore the caller's MXCSR: a result below the smallest normal (2^-126 in float32,
 * 2^-1022 in float64) becomes 0 instead of a subnormal. Intel CPUs form a subnormal by a microcode
 * assist: about 40 ns each from VSCALEFPS measured here, and three-pass recompute on AVX-512 was
 * 4.5x slower on uniform [-100, 100] rows, whose outputs are 2.5% subnormal. The AVX2 kernels flush
 * the results whose power of two is below the smallest normal themselves, which is nearly all of
 * them, and FTZ takes the rest (p * 2^-126 with p < 1, or a small scale); the AVX-512F exp leaves
 * the whole flush to FTZ (one VSCALEF, f32_exp_avx512f.h and f64_exp_avx512f.h), and so does
 * vscale, reload's scaling, on every level and dtype (one multiply, kernels_*.h); so every caller of
 * the kernels must set it (run_kernel too). Only the float results change: 0 where they were
 * subnormal (below 2^-125 after the scaling, as documented), no other bit. */
unsigned int twopass_flush_to_zero_begin(void)
{
#if defined(__SSE__)
    const unsigned int csr = _mm_getcsr();
    _mm_setcsr(csr | _MM_FLUSH_ZERO_ON);
    return csr;
#else
    return 0;
#endif
}

void twopass_flush_to_zero_end(unsigned int csr)
{
#if defined(__SSE__)
    _mm_setcsr(csr);
#else
    (void)csr;
#endif
}

/* body(ctx, i) for i < count, on up to `threads` OpenMP threads (the calling thread alone if 1).
 * The OpenMP threads flush to zero as the calling thread does (twopass_flush_to_zero_begin). */
void twopass_parallel_for(int threads, size_t count, void (*body)(void* ctx, size_t i), void* ctx)
{
    if (threads > 1 && count > 1 && !forked_after_team) {
        const int team = (size_t)threads < count ? threads : (int)count;
        __atomic_store_n(&team_started, 1, __ATOMIC_RELAXED);
#pragma omp parallel num_threads(team)
        {
            const unsigned int csr = twopass_flush_to_zero_begin();
#ifdef _OPENMP
#pragma omp master
            {
                __atomic_add_fetch(&stats.teams, 1, __ATOMIC_RELAXED);
                __atomic_add_fetch(&stats.team_threads, omp_get_num_threads(), __ATOMIC_RELAXED);
            }
#endif
#pragma omp for schedule(static)
            for (size_t i = 0; i < count; i++) {
                body(ctx, i);
            }
            twopass_flush_to_zero_end(csr);
        }
    } else {
        for (size_t i = 0; i < count; i++) {
            body(ctx, i);
        }
    }
}

/* Threads worth using on `elements` elements in all: one below TWOPASS_PARALLEL_MIN. */
int twopass_useful_threads(int threads, size_t elements)
{
    return elements < TWOPASS_PARALLEL_MIN ? 1 : threads;
}

#include "softmax_f32_scalars.h"
#define TP_E float
#define TP_E_ISNAN(e) isnan(e)
#define TP_E_ISFINITE(e) isfinite(e)
#define TP_E_ONE 1.0f
#define TP_E_ZERO 0.0f
#define TP_E_NAN NAN
#define TP_KERNELS struct twopass_f32_kernels
#define TP_PUB(name, suffix) twopass_##name##_f32##suffix
#include "softmax_template.h"
