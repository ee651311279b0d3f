/* The softmax algorithms on one dtype, composed from the passes of one kernel table: the one source
 * of the drivers for float32 (src/softmax.c) and float64 (src/softmax_f64.c), each of which defines
 * the parameters below and includes this file once (float16: src/softmax_f16.c). Baseline x86-64
 * code.
 *
 *   TP_T                 the arithmetic type of the kernels' scalars (float, double)
 *   TP_E                 the element type in memory: TP_T, or uint16_t for float16 (binary16 bits,
 *                        whose kernels compute in float32); TP_E_ISNAN(e) and TP_E_ISFINITE(e) test
 *                        one element; TP_E_ONE, TP_E_ZERO and TP_E_NAN are 1, +0 and a quiet NaN
 *   TP_F64               1 for float64: the few dtype-specific steps below (#if TP_F64) keep
 *                        float64's large exponents exact; 0 for float32
 *   TP_STORED_APART      1 for float16: three-pass reload keeps its exps in a float32 row apart from
 *                        the output, so that the result is rounded to float16 once (kernels.h);
 *                        0 (the default): in the output itself
 *   TP_KERNELS           the kernel table type (struct twopass_f32_kernels ...)
 *   TP_PUB(name, suffix) a public name: TP_PUB(softmax, _rows) -> twopass_softmax_f32_rows
 *   TP_EXPONENT_LIMIT, TP_SHIFT_LIMIT   the dtype's limits (common.h)
 *   TP_MAX, TP_MIN, TP_FABS             FLT_MAX, FLT_MIN, fabsf (or DBL_MAX, DBL_MIN, fabs)
 *
 * Per-row results (sums, logsumexp, extsum) are doubles for both dtypes. The algorithms and the
 * threads: see src/softmax.c.
 */
#if defined(__SSE2__)
#include <emmintrin.h> /* baseline on x86-64: the columns merge */
#endif
#ifndef TP_STORED_APART
#define TP_STORED_APART 0
#endif
/* the kernels decide the same from the types (instantiate.h's STORED_APART) */
_Static_assert(TP_STORED_APART == (sizeof(TP_E) != sizeof(TP_T)), "TP_STORED_APART must match the element type");
/* Rows of up to this many elements keep reload's stored exps apart on the stack (16 KiB); longer ones
 * in the thread's row (twopass_stored_row). Without the stack, rows of 300-4000 halves ran 2-5%
 * slower (benchmarks.ab, three_pass_reload float16, 11 rounds). */
#define TP_STORED_ON_STACK 4096

/* In softmax.c: body(ctx, i) for i < count on up to `threads` OpenMP threads; and the threads worth
 * using on `elements` elements in all. */
void twopass_parallel_for(int threads, size_t count, void (*body)(void* ctx, size_t i), void* ctx);
int twopass_useful_threads(int threads, size_t elements);
/* In softmax.c: the calling thread's float32 row of at least n floats (float16 reload's stored
 * exps), kept for its next calls; *owned = 1 if it is the caller's to free instead; NULL if memory
 * ran out. */
float* twopass_stored_row(size_t n, int* owned);
/* 1 (and counted) if a job writing `elements` outputs of element_size bytes should use the level's
 * streaming table (non-temporal stores): at least the streaming threshold of bytes. */
int twopass_streaming_job(size_t elements, size_t element_size);

/* ---- one slice, cut into chunks ---- */

/* The two-pass partial sum, merged block by block (then chunk by chunk) in double:
 * (M, E) + (m, e) = (M * 2^(E - E') + m * 2^(e - E'), E') with E' = max(E, e). */
struct extsum_acc {
    double mantissa, exponent;
    int blocks, valid;
};
static const struct extsum_acc EXTSUM_EMPTY = {0.0, 0.0, 0, 1};

/* 2^d for an integral d <= 0, built in the exponent field without a branch (ldexp is a libm call
 * per block, 7% of an in-cache two-pass pass; the columns merge below vectorises the same steps):
 * d + 0x1.8p52 + 1023 holds 1023 + d in its low bits, shifted into the exponent field. Exact for
 * d >= -1022; 0 below (and for a NaN d, never passed). Flushing there changes nothing: every
 * mantissa merged here is below 2^75, so m * 2^d < 2^-947, while the sum it joins is at least about
 * 0.7 (a block's largest term contributes about exp(x) 2^-round(x log2 e) >= 1/sqrt(2)): the term
 * is lost in the rounding of the addition anyway. (A block whose AVX2 lanes all stay at the kernel's
 * floor exponent, its elements below about -90986 in float32, can sum to less; it lies 256 binades
 * or more below every slice that two-pass takes.) */
static double exp2_nonpositive(double d)
{
    union { double value; uint64_t bits; } w = {(d > -1023.0 ? d : -1023.0) + (0x1.8p52 + 1023.0)};
    w.bits <<= 52;
    return w.value;
}

/* Add one block's (m, e). A NaN or infinite mantissa (NaN or +inf in the block) or an exponent above
 * the exact range makes the slice invalid; exponents far below it merge normally, since the final
 * range check decides whether they matter. A block of sum 0 adds nothing (every element -inf, or on
 * AVX2 so far below the kernel's floor exponent that its terms are 0: causal-mask padding), so a
 * slice of such blocks alone has none and runs three-pass. */
static void extsum_add(struct extsum_acc* acc, double m, double e)
{
    if (!acc->valid || m == 0.0) {
        return;
    }
    if (!(m > 0.0 && m < INFINITY) || !(e <= TP_EXPONENT_LIMIT)) {
        acc->valid = 0;
    } else if (acc->blocks++ == 0) {
        acc->mantissa = m, acc->exponent = e;
    } else if (e > acc->exponent) {
        acc->mantissa = acc->mantissa * exp2_nonpositive(acc->exponent - e) + m, acc->exponent = e;
    } else {
        acc->mantissa += m * exp2_nonpositive(e - acc->exponent);
    }
}

/* acc += part (a chunk's sum). */
static void extsum_merge(struct extsum_acc* acc, const struct extsum_acc* part)
{
    if (!part->valid) {
        acc->valid = 0;
    } else if (part->blocks > 0) {
        const int blocks = acc->blocks;
        extsum_add(acc, part->mantissa, part->exponent);
        acc->blocks = blocks + part->blocks;
    }
}

/* 1 if the merged sum is exact: some block, and the largest exponent within the exact range. */
static int extsum_done(const struct extsum_acc* acc)
{
    return acc->valid && acc->blocks > 0 && acc->exponent >= -TP_EXPONENT_LIMIT;
}

/* The merged sum with its mantissa in [1, 2), the exponent taking the rest exactly: the kernels'
 * block mantissas are not normalised (up to 2^75), and log(M) of a large M would carry its rounding
 * into logsumexp (float64: 48 * 2^-53 absolute at M = 2^70). */
static void extsum_normalized(const struct extsum_acc* acc, double* mantissa, double* exponent)
{
    int q;
    *mantissa = 2.0 * frexp(acc->mantissa, &q), *exponent = acc->exponent + (q - 1);
}

/* A slice and the scalars of the pass running on it, with one partial result per chunk. */
struct slice {
    const TP_KERNELS* k;
    size_t n, chunk, chunks; /* chunks of `chunk` elements (the last shorter), a multiple of blocks */
    size_t block;            /* elements per sum block: twopass_sum_block() */
    const TP_E* x;
    TP_E* y;
    TP_T* w; /* three-pass reload's stored exps: y itself, or float16's float32 row apart */
    TP_T* block_exponent; /* blocked reload: the exponent each sum block's exps were scaled by */
    int threads;
    TP_T shift, exponent, scale, c_lo;
    TP_T max[TWOPASS_MAX_CHUNKS];
    double sum[TWOPASS_MAX_CHUNKS];
    struct extsum_acc acc[TWOPASS_MAX_CHUNKS];
};

static void slice_init(struct slice* s, const TP_KERNELS* k, size_t n, const TP_E* x,
                       TP_E* y, int threads)
{
    s->k = k, s->n = n, s->x = x, s->y = y;
    s->block = twopass_sum_block();
    if (n <= s->block) { /* one block: the common short row, without the divisions below */
        s->chunk = s->block, s->chunks = n != 0, s->threads = 1;
        return;
    }
    /* about equal chunks of whole blocks, n / TWOPASS_CHUNK_MIN of them (at most TWOPASS_MAX_CHUNKS) */
    size_t chunks = (n + TWOPASS_CHUNK_MIN - 1) / TWOPASS_CHUNK_MIN;
    chunks = chunks < 1 ? 1 : chunks > TWOPASS_MAX_CHUNKS ? TWOPASS_MAX_CHUNKS : chunks;
    const size_t blocks = n / s->block + (n % s->block != 0);
    s->chunk = (blocks + chunks - 1) / chunks * s->block;
    s->chunks = n == 0 ? 0 : (n + s->chunk - 1) / s->chunk;
    s->threads = twopass_useful_threads(threads, n);
}

/* Where chunk c starts, and its length. */
static size_t chunk_begin(const struct slice* s, size_t c) { return c * s->chunk; }
static size_t chunk_len(const struct slice* s, size_t c)
{
    return s->n - c * s->chunk < s->chunk ? s->n - c * s->chunk : s->chunk;
}
static size_t block_len(const struct slice* s, size_t n, size_t i)
{
    return n - i < s->block ? n - i : s->block;
}

/* The passes, one chunk each. */
static void chunk_max(void* ctx, size_t c)
{
    struct slice* s = ctx;
    s->max[c] = s->k->rmax(chunk_len(s, c), s->x + chunk_begin(s, c));
}
static void chunk_extsum(void* ctx, size_t c)
{
    struct slice* s = ctx;
    const size_t len = chunk_len(s, c);
    const TP_E* x = s->x + chunk_begin(s, c);
    struct extsum_acc acc = EXTSUM_EMPTY;
    for (size_t i = 0; i < len && acc.valid; i += s->block) {
        TP_T block[2];
        s->k->raddextexp(block_len(s, len, i), x + i, block);
        extsum_add(&acc, block[0], block[1]);
    }
    s->acc[c] = acc;
}
/* (M, D) += (m, d) for online sums D = sum exp(x - M):  M' = max(M, m), D' = D e^(M - M') + d e^(m - M'). */
static void online_merge(double* max, double* sum, double m, double d)
{
    if (m > *max) {
        *sum = *sum * exp(*max - m) + d, *max = m;
    } else {
        *sum += d * exp(m - *max);
    }
}
static void chunk_online(void* ctx, size_t c)
{
    struct slice* s = ctx;
    const size_t len = chunk_len(s, c);
    const TP_E* x = s->x + chunk_begin(s, c);
    double max = -TP_MAX, sum = 0.0;
    for (size_t i = 0; i < len; i += s->block) {
        TP_T block[2];
        s->k->raddonline(block_len(s, len, i), x + i, block);
        online_merge(&max, &sum, block[0], block[1]);
    }
    s->max[c] = (TP_T)max, s->sum[c] = sum; /* max is one of the x: exact */
}
static void chunk_sum_exp(void* ctx, size_t c)
{
    struct slice* s = ctx;
    const size_t len = chunk_len(s, c);
    const TP_E* x = s->x + chunk_begin(s, c);
    double sum = 0.0;
    for (size_t i = 0; i < len; i += s->block) {
        sum += s->k->raddexpminusmax(block_len(s, len, i), x + i, s->shift, s->exponent);
    }
    s->sum[c] = sum;
}
static void chunk_store_sum_exp(void* ctx, size_t c)
{
    struct slice* s = ctx;
    const size_t len = chunk_len(s, c), begin = chunk_begin(s, c);
    double sum = 0.0;
    for (size_t i = 0; i < len; i += s->block) {
        sum += s->k->raddstoreexpminusmax(block_len(s, len, i), s->x + begin + i, s->w + begin + i, s->shift,
                                          s->exponent, NULL);
    }
    s->sum[c] = sum;
}
static void chunk_scale_extexp(void* ctx, size_t c)
{
    struct slice* s = ctx;
    const size_t b = chunk_begin(s, c);
    s->k->vscaleextexp(chunk_len(s, c), s->x + b, s->y + b, s->scale, s->exponent);
}
static void chunk_scale_exp(void* ctx, size_t c)
{
    struct slice* s = ctx;
    const size_t b = chunk_begin(s, c);
    s->k->vscaleexpminusmax(chunk_len(s, c), s->x + b, s->y + b, s->shift, s->exponent, s->scale);
}
static void chunk_scale(void* ctx, size_t c)
{
    struct slice* s = ctx;
    const size_t b = chunk_begin(s, c);
    s->k->vscale(chunk_len(s, c), s->w + b, s->y + b, s->scale);
}
static void chunk_subtract(void* ctx, size_t c)
{
    struct slice* s = ctx;
    const size_t b = chunk_begin(s, c);
    s->k->vsubc(chunk_len(s, c), s->x + b, s->y + b, s->shift, s->c_lo);
}

static void run_chunks(struct slice* s, void (*pass)(void*, size_t))
{
    if (s->chunks == 1) {
        pass(s, 0);
        return;
    }
    twopass_parallel_for(s->threads, s->chunks, pass, s);
}

/* Merged in chunk order: max x (NaN if any chunk's max is NaN), sum of the chunk sums, extsum. */
static TP_T slice_max(struct slice* s)
{
    run_chunks(s, chunk_max);
    TP_T max = s->max[0];
    for (size_t c = 1; c < s->chunks; c++) {
        if (isnan(s->max[c]) || s->max[c] > max) max = isnan(max) ? max : s->max[c];
    }
    return max;
}
static double slice_sum(const struct slice* s)
{
    double sum = 0.0;
    for (size_t c = 0; c < s->chunks; c++) sum += s->sum[c];
    return sum;
}

/* max - shift - exponent * ln2 for the split of exp_shift(): float32's scalars are exact in double;
 * float64's exponent reaches 2^37, so E ln2 is subtracted by Cody-Waite (ln2 = LN2_HI + LN2_LO; the
 * first FMA is exact up to one rounding of a result below 1). */
static double exp_remainder(double max, TP_T shift, TP_T exponent)
{
#if TP_F64
    return fma(exponent, TWOPASS_F64_MINUS_LN2_LO, fma(exponent, TWOPASS_F64_MINUS_LN2_HI, max - shift));
#else
    return max - shift - exponent * M_LN2;
#endif
}

static void exp_shift(struct slice* s, TP_T max)
{
    TWOPASS_EXP_SPLIT(max, &s->shift, &s->exponent); /* common.h */
}

static void softmax_three_pass_recompute(struct slice* s)
{
    exp_shift(s, slice_max(s));
    run_chunks(s, chunk_sum_exp);
    /* sum >= 0.7 (the max contributes about 1) unless the slice holds NaN or +-inf: then NaN. */
    s->scale = (TP_T)(1.0 / slice_sum(s));
    run_chunks(s, chunk_scale_exp);
}

static void softmax_two_pass(struct slice* s);

/* Blocked reload (TWOPASS_BLOCKED_RELOAD): three-pass reload with its max pass folded into the exp
 * pass, so x is read once from memory, not twice.
 *   pass 1 (read x, write w), sum block by sum block b: w_b = exp(x_b) * 2^-E_b and the block sum
 *          s_b, with E_b = round(m log2 e) for the largest max m seen so far in its run of chunks
 *          (below). Mostly each block finds its own max on the way (raddstoreexpminusmax's max
 *          output) and is redone, rarely, if that max raises the exponent. A span of
 *          TP_BLOCKS_PER_MAX blocks finds its max first (rmax; the span is then in L1) where no
 *          finite max is known yet, and for the rest of the run after a redo, so that a rising row
 *          costs an rmax per span (as uniform spans did before) rather than a second exp pass for
 *          many blocks. Either way every E_b is at least the exponent of its block's max, and
 *          w_b <= 2^(1/2). The (s_b, E_b) merge as extended sums: S * 2^E = sum_b s_b * 2^E_b.
 *   pass 2 (read w, write y), per run of blocks with one exponent: y_b = w_b * (2^(E_b - E) / S).
 * E = max_b E_b is reload's exponent round(max log2 e) (rounding is monotone), and scaling by a
 * power of two is exact, so w_b * 2^(E_b - E), the block sums and S are reload's very numbers: the
 * results are reload's bit for bit (outputs below about 2^-125, which either may flush to 0, aside).
 * Spans of -inf alone before any finite max add nothing (E_b = -inf: w = 0, scale 0). Returns 0 when
 * reload must run instead, with x untouched: a slice of one span; w in place of x (pass 1 would
 * overwrite x before a later block could send the slice to reload); no memory for the exponents;
 * or a block whose max is NaN, +inf, or beyond the shift limit (reload then subtracts the max
 * itself). */
#define TP_BLOCK_EXPONENTS_ON_STACK 512 /* blocks (512 Ki elements); more take the heap */
/* Sum blocks that share one max when a span finds its max first (one rmax call): 2, 8 KiB of
 * float32, still in L1 when the exp pass reads them. */
#define TP_BLOCKS_PER_MAX 2

/* What pass 1 knows after some blocks of a run: the largest max so far and its exponent, and whether
 * a block had to be redone (then the spans find their max first). */
struct blocked_state {
    TP_T top, exponent;
    int redone;
};

/* Takes in the max of a span or block: -1 if the slice must run reload (NaN, +inf, or beyond the
 * shift limit either way; -inf is no max), else 1 if it raised the exponent (or gave the first
 * one), 0 if not. */
static int blocked_take_max(struct blocked_state* st, TP_T max)
{
    if (max != -INFINITY && !(TP_FABS(max) <= TP_SHIFT_LIMIT)) {
        return -1;
    }
    if (!(max > st->top)) {
        return 0;
    }
    TP_T shift, raised;
    TWOPASS_EXP_SPLIT(max, &shift, &raised); /* shift = 0 within the limit */
    const int raises = st->top == -INFINITY || raised > st->exponent;
    st->top = max, st->exponent = raises ? raised : st->exponent;
    return raises;
}

/* Pass 1 on chunk c; 0 if the slice must run reload (then s->acc[c] is invalid). */
static int chunk_store_sum_exp_blocked(struct slice* s, size_t c, struct blocked_state* st)
{
    const size_t len = chunk_len(s, c), begin = chunk_begin(s, c), span = TP_BLOCKS_PER_MAX * s->block;
    const TP_E* x = s->x + begin;
    TP_T* w = s->w + begin;
    TP_T* exponents = s->block_exponent + begin / s->block;
    struct extsum_acc acc = EXTSUM_EMPTY;
    for (size_t i = 0, b = 0; i < len && acc.valid;) {
        if (st->top == -INFINITY || st->redone) { /* a span, its max first */
            const size_t end = len - i < span ? len : i + span;
            if (blocked_take_max(st, s->k->rmax(end - i, x + i)) < 0) {
                acc.valid = 0;
                break;
            }
            const int none = st->top == -INFINITY; /* all -inf so far: exp(-inf) * 2^0, w = 0, sums 0 */
            for (; i < end; i += s->block, b++) {
                exponents[b] = none ? -INFINITY : st->exponent;
                const double sum = s->k->raddstoreexpminusmax(block_len(s, len, i), x + i, w + i, 0,
                                                              none ? 0 : st->exponent, NULL);
                if (sum != 0.0) { /* a block far below the max (or -inf) adds nothing */
                    extsum_add(&acc, sum, st->exponent);
                }
            }
            continue;
        }
        /* a block on the exponent so far, its max found on the way */
        const size_t n = block_len(s, len, i);
        TP_T max;
        double sum = s->k->raddstoreexpminusmax(n, x + i, w + i, 0, st->exponent, &max);
        const int taken = blocked_take_max(st, max);
        if (taken > 0) { /* the rare redo (the first try may have overflowed) */
            st->redone = 1;
            sum = s->k->raddstoreexpminusmax(n, x + i, w + i, 0, st->exponent, NULL);
        }
        if (taken < 0 || isnan(sum)) { /* isnan: a NaN x, which the max may miss */
            acc.valid = 0;
            break;
        }
        exponents[b] = st->exponent;
        if (sum != 0.0) {
            extsum_add(&acc, sum, st->exponent);
        }
        i += n, b++;
    }
    s->acc[c] = acc;
    return acc.valid;
}

/* Pass 1 on a run of chunks in order, each going on from the state of the ones before it: runs of
 * whole chunks of at least TP_CARRY_BLOCKS sum blocks, fixed by the slice alone, so that the
 * exponents, and so the outputs below 2^-125 that they may flush, are the same on any number of
 * threads. Each run finds its first span's max by rmax: 32 blocks keep that to 1/16 of the
 * elements and still give rows of 1e5 floats 3 runs to share among threads. A run stops at the
 * first chunk that sends the slice to reload. */
#define TP_CARRY_BLOCKS 32
static size_t blocked_chunks_per_run(const struct slice* s)
{
    const size_t chunk_blocks = s->chunk / s->block; /* whole blocks */
    return chunk_blocks >= TP_CARRY_BLOCKS ? 1 : (TP_CARRY_BLOCKS + chunk_blocks - 1) / chunk_blocks;
}
static void chunk_run_store_sum_exp_blocked(void* ctx, size_t r)
{
    struct slice* s = ctx;
    struct blocked_state state = {-INFINITY, 0, 0};
    const size_t per_run = blocked_chunks_per_run(s);
    const size_t end = (r + 1) * per_run < s->chunks ? (r + 1) * per_run : s->chunks;
    for (size_t c = r * per_run; c < end; c++) {
        if (!chunk_store_sum_exp_blocked(s, c, &state)) {
            for (c++; c < end; c++) s->acc[c] = s->acc[c - 1]; /* invalid too */
            break;
        }
    }
}

/* scale * 2^d for the exponent difference d <= 0 (-inf: 0), flushed to 0 below the smallest normal:
 * the outputs it makes are then below 2^-125 (w <= 2^(1/2) * 2^(1/2)). */
static TP_T block_scale(TP_T scale, TP_T d)
{
    const double scaled = d == 0 ? scale : scale * exp2_nonpositive(d);
    return scaled >= TP_MIN ? (TP_T)scaled : 0;
}

/* Pass 2, one vscale per run of blocks with the same exponent (usually the whole chunk). */
static void chunk_scale_blocked(void* ctx, size_t c)
{
    struct slice* s = ctx;
    const size_t len = chunk_len(s, c), begin = chunk_begin(s, c);
    const TP_T* exponents = s->block_exponent + begin / s->block;
    for (size_t i = 0, b = 0; i < len;) {
        const TP_T exponent = exponents[b];
        size_t end = i;
        for (; end < len && exponents[b] == exponent; b++) end += s->block;
        end = end < len ? end : len;
        s->k->vscale(end - i, s->w + begin + i, s->y + begin + i, block_scale(s->scale, exponent - s->exponent));
        i = end;
    }
}

static int reload_blocked_passes(struct slice* s)
{
    const size_t blocks = s->n / s->block + (s->n % s->block != 0);
    if (blocks <= TP_BLOCKS_PER_MAX || (const void*)s->w == (const void*)s->x) {
        return 0;
    }
    TP_T on_stack[TP_BLOCK_EXPONENTS_ON_STACK];
    s->block_exponent = blocks <= TP_BLOCK_EXPONENTS_ON_STACK ? on_stack : malloc(blocks * sizeof(TP_T));
    if (s->block_exponent == NULL) {
        return 0;
    }
    const size_t per_run = blocked_chunks_per_run(s);
    twopass_parallel_for(s->threads, (s->chunks + per_run - 1) / per_run, chunk_run_store_sum_exp_blocked, s);
    struct extsum_acc acc = s->acc[0];
    for (size_t c = 1; c < s->chunks; c++) extsum_merge(&acc, &s->acc[c]);
    const int done = acc.valid && acc.blocks > 0; /* no block at all: every element is -inf */
    if (done) {
        s->exponent = (TP_T)acc.exponent;       /* an exponent of one of the blocks: exact */
        s->scale = (TP_T)(1.0 / acc.mantissa); /* reload's 1 / sum */
        run_chunks(s, chunk_scale_blocked);
        twopass_count_blocked_slice();
    }
    if (s->block_exponent != on_stack) {
        free(s->block_exponent);
    }
    return done;
}

/* Three-pass reload (blocked: the blocked variant above when it can). float16 keeps the exps apart
 * (TP_STORED_APART): a float32 row on the stack or, for rows over TP_STORED_ON_STACK, the thread's
 * row on the heap (twopass_stored_row); if memory runs out, two-pass (as accurate) instead. */
static void softmax_reload(struct slice* s, int blocked)
{
#if TP_STORED_APART
    TP_T on_stack[TP_STORED_ON_STACK], *on_heap = NULL;
    int owned = 0;
    if (s->n > TP_STORED_ON_STACK && (on_heap = twopass_stored_row(s->n, &owned)) == NULL) {
        softmax_two_pass(s);
        return;
    }
    s->w = on_heap != NULL ? on_heap : on_stack;
#else
    s->w = s->y;
#endif
    if (!blocked || !reload_blocked_passes(s)) {
        exp_shift(s, slice_max(s));
        run_chunks(s, chunk_store_sum_exp);
        s->scale = (TP_T)(1.0 / slice_sum(s));
        run_chunks(s, chunk_scale);
    }
#if TP_STORED_APART
    if (owned) {
        free(on_heap);
    }
#endif
}

static void softmax_three_pass_reload(struct slice* s)
{
    softmax_reload(s, 0);
}

/* Pass 1 of online: (max, sum exp(x - max)). Returns 0 if the slice holds NaN or +inf, or only -inf
 * (then the caller uses three-pass, whose answers are SciPy's there). */
static int slice_online(struct slice* s, double* max, double* sum)
{
    run_chunks(s, chunk_online);
    *max = -TP_MAX, *sum = 0.0;
    for (size_t c = 0; c < s->chunks; c++) online_merge(max, sum, s->max[c], s->sum[c]);
    return *sum >= 1.0 && *sum < INFINITY; /* the max contributes exp(0) = 1; NaN fails too */
}

static void softmax_online(struct slice* s)
{
    double max, sum;
    if (!slice_online(s, &max, &sum)) {
        softmax_three_pass_recompute(s);
        return;
    }
    /* pass 2 evaluates exp(x - shift) 2^-exponent = exp(x - max) exp(max - shift - exponent ln2) */
    exp_shift(s, (TP_T)max);
    s->scale = (TP_T)(1.0 / (sum * exp(exp_remainder(max, s->shift, s->exponent))));
    run_chunks(s, chunk_scale_exp);
}

/* Pass 1 of two-pass: sum exp(x) = mantissa * 2^exponent. Returns 0 if the slice holds NaN or +inf
 * or its max lies beyond the exact range of the exponents (then the caller uses three-pass). */
static int slice_extsum(struct slice* s, double* mantissa, double* exponent)
{
    run_chunks(s, chunk_extsum);
    struct extsum_acc acc = s->acc[0];
    for (size_t c = 1; c < s->chunks; c++) extsum_merge(&acc, &s->acc[c]);
    if (!extsum_done(&acc)) {
        *mantissa = acc.mantissa, *exponent = acc.exponent;
        return 0;
    }
    extsum_normalized(&acc, mantissa, exponent);
    twopass_count_two_pass_slices(1);
    return 1;
}

/* Pass 2 of two-pass for a sum M * 2^E: y = exp(x) / M * 2^-E = exp(x) * scale * 2^-exponent, with
 * M = f * 2^q, f in [0.5, 1), scale = 1 / f and exponent = E + q. */
static void extexp_scale(double mantissa, double exponent, TP_T* scale, TP_T* scale_exponent)
{
    int q;
    const double f = frexp(mantissa, &q);
    *scale = (TP_T)(1.0 / f), *scale_exponent = (TP_T)(exponent + q);
}
static void softmax_scale_extexp(struct slice* s, double mantissa, double exponent)
{
    extexp_scale(mantissa, exponent, &s->scale, &s->exponent);
    run_chunks(s, chunk_scale_extexp);
}

static void softmax_two_pass(struct slice* s)
{
    double mantissa, exponent;
    if (!slice_extsum(s, &mantissa, &exponent)) {
        softmax_three_pass_recompute(s);
        return;
    }
    softmax_scale_extexp(s, mantissa, exponent);
}

/* logsumexp as two floats, lse ~ hi + lo, for log_softmax's y = (x - hi) - lo: x - hi is exact for
 * the x near the max. Beyond the extended range, hi is the max itself and lo = log sum exp(x - max):
 * then y is SciPy's (x - max) - log(sum), exact at the max (a double lse could not even hold log 3
 * next to 3e38). Special values: hi = lse, lo = 0 (IEEE then gives SciPy's answers). */
struct lse_parts {
    TP_T hi, lo;
};

static double lse_split(double lse, struct lse_parts* parts)
{
    parts->hi = (TP_T)lse, parts->lo = isfinite(lse) ? (TP_T)(lse - parts->hi) : 0;
    return lse;
}

static double lse_from_max(TP_T max, double log_sum, struct lse_parts* parts)
{
    /* float64 always keeps the max as hi: y = (x - max) - log(sum), as SciPy, exact at the max (one
     * double lse could not hold log(sum) next to a max of 2^37 to the last bit). */
    if (TP_F64 || TP_FABS(max) > TP_SHIFT_LIMIT) {
        parts->hi = max, parts->lo = (TP_T)log_sum;
        return (double)max + log_sum;
    }
    return lse_split((double)max + log_sum, parts);
}

/* logsumexp of a slice the extended sum cannot take (NaN, +-inf, or |max| beyond ~2e6), as SciPy:
 * NaN if any NaN; else +inf if any +inf; else -inf if all are -inf; else max + log sum exp(x - max). */
static double logsumexp_three_pass(struct slice* s, struct lse_parts* parts)
{
    const TP_T max = slice_max(s);
    if (isfinite(max)) {
        exp_shift(s, max);
        run_chunks(s, chunk_sum_exp);
        const double sum = slice_sum(s);
        if (!isnan(sum)) { /* sum exp(x - max) = sum * exp(shift + exponent ln2 - max) */
#if TP_F64
            return lse_from_max(max, log(sum) - exp_remainder(max, s->shift, s->exponent), parts);
#else
            return lse_from_max(max, log(sum) + (((double)s->shift - max) + (double)s->exponent * M_LN2), parts);
#endif
        }
    }
    for (size_t i = 0; i < s->n; i++) { /* rare: find out which special value decides */
        if (TP_E_ISNAN(s->x[i])) {
            return lse_split(NAN, parts);
        }
    }
    return lse_split(max, parts); /* +inf, or -inf when every element is -inf */
}

/* logsumexp = log(M) + E ln2 of an extended sum, as hi + lo. float32: in double, then split.
 * float64: E reaches 2^38, so E ln2 is carried as a double-double (E * LN2_HI exact with FMA, plus
 * E * LN2_LO), added to log(M) by TwoSum; hi is the lse rounded once. */
static double lse_of_extsum(double mantissa, double exponent, struct lse_parts* parts)
{
#if TP_F64
    const double p = exponent * -TWOPASS_F64_MINUS_LN2_HI;
    const double t = log(mantissa) + (fma(exponent, -TWOPASS_F64_MINUS_LN2_HI, -p) + exponent * -TWOPASS_F64_MINUS_LN2_LO);
    const double hi = p + t, bv = hi - p;
    parts->hi = hi, parts->lo = (p - (hi - bv)) + (t - bv);
    return hi;
#else
    return lse_split(log(mantissa) + exponent * M_LN2, parts);
#endif
}

static double logsumexp_slice(struct slice* s, enum twopass_algorithm algorithm, struct lse_parts* parts)
{
    double mantissa, exponent;
    if (s->n <= 1) { /* log exp(x) = x exactly, as SciPy's x + log 1 (which makes -0 +0) */
        return lse_split(s->n == 0 ? -INFINITY : (double)slice_max(s) + 0.0, parts);
    }
    /* blocked reload's logsumexp is two-pass's: its per-block sums merged as extended sums need no
     * max pass either, and raddextexp finds them without the blocks' max */
    const int extended = algorithm == TWOPASS_TWO_PASS || algorithm == TWOPASS_BLOCKED_RELOAD;
    if (extended && slice_extsum(s, &mantissa, &exponent)) {
        return lse_of_extsum(mantissa, exponent, parts);
    }
    double max, sum;
    if (algorithm == TWOPASS_ONLINE && slice_online(s, &max, &sum)) {
        return lse_from_max((TP_T)max, log(sum), parts);
    }
    return logsumexp_three_pass(s, parts);
}

static void extsum_slice(struct slice* s, double* mantissa, double* exponent)
{
    if (s->n == 0) {
        *mantissa = 0.0, *exponent = -INFINITY; /* the identity of the merge */
        return;
    }
    if (slice_extsum(s, mantissa, exponent)) {
        return;
    }
    /* Special or huge slices: the same value in log space, logsumexp = log(M) + E ln2 */
    struct lse_parts parts;
    const double lse = logsumexp_three_pass(s, &parts);
    if (!isfinite(lse)) {
        *mantissa = lse == -INFINITY ? 0.0 : lse, *exponent = lse == -INFINITY ? -INFINITY : 0.0;
        return;
    }
#if TP_F64 /* lse = hi + lo with hi = max: mantissa = exp((hi - E ln2) + lo), Cody-Waite again */
    *exponent = nearbyint(parts.hi / M_LN2);
    *mantissa = exp(exp_remainder(parts.hi, 0.0, *exponent) + parts.lo);
#else
    *exponent = nearbyint(lse / M_LN2);
    *mantissa = exp(lse - *exponent * M_LN2);
#endif
}

/* softmax (log: log_softmax) over one element, as SciPy's exp(x - x) / 1 and (x - x) - log 1: exactly
 * 1 (0) for a finite x, NaN for +-inf and NaN. The general passes would round exp(x - max) and the
 * sum apart, giving 1 - 2^-24 or 0 +- 1e-7 for some x. */
static TP_E one_element(TP_E x, int log)
{
    return TP_E_ISFINITE(x) ? (log ? TP_E_ZERO : TP_E_ONE) : TP_E_NAN;
}

static void log_softmax_slice(struct slice* s, enum twopass_algorithm algorithm)
{
    /* y = x - logsumexp(x): with IEEE arithmetic this is also SciPy's answer for NaN, +inf
     * (NaN at +inf, -inf elsewhere) and all -inf (NaN). */
    if (s->n == 1) {
        s->y[0] = one_element(s->x[0], 1);
    } else if (s->n != 0) {
        struct lse_parts parts;
        logsumexp_slice(s, algorithm, &parts);
        s->shift = parts.hi, s->c_lo = parts.lo;
        run_chunks(s, chunk_subtract);
    }
}

static void softmax_slice(struct slice* s, enum twopass_algorithm algorithm)
{
    if (s->n <= 1) {
        if (s->n == 1) s->y[0] = one_element(s->x[0], 0);
        return;
    }
    switch (algorithm) {
    case TWOPASS_THREE_PASS_RELOAD:
        softmax_three_pass_reload(s);
        break;
    case TWOPASS_BLOCKED_RELOAD:
        softmax_reload(s, 1);
        break;
    case TWOPASS_THREE_PASS_RECOMPUTE:
        softmax_three_pass_recompute(s);
        break;
    case TWOPASS_ONLINE:
        softmax_online(s);
        break;
    case TWOPASS_TWO_PASS:
    default:
        softmax_two_pass(s);
        break;
    }
}

/* ---- rows ---- */

/* One job on each of `rows` slices of n floats (row r at x + r * x_stride, out at y + r * y_stride). */
struct rows_job {
    const TP_KERNELS* k;
    enum twopass_algorithm algorithm;
    size_t n;
    const TP_E* x;
    ptrdiff_t x_stride;
    TP_E* y;
    ptrdiff_t y_stride;
    double* out1; /* per-row results: logsumexp, or the extsum mantissa */
    double* out2; /* the extsum exponent */
    const double* in1;
    const double* in2; /* per-row sums given to pass 2 (softmax from extsum) */
    void (*row)(struct slice* s, const struct rows_job* job, size_t r);
    int row_threads;
    size_t rows;
    size_t group; /* > 1: softmax on groups of this many short rows (reload_group, two_pass_group) */
};

static void rows_body(void* ctx, size_t r)
{
    const struct rows_job* job = ctx;
    struct slice s;
    slice_init(&s, job->k, job->n, job->x + (ptrdiff_t)r * job->x_stride,
               job->y ? job->y + (ptrdiff_t)r * job->y_stride : NULL, job->row_threads);
    job->row(&s, job, r);
}

/* Short rows in three-pass reload run a group at a time through the level's softmax_short_rows
 * kernel (instantiate.h): the group's passes one after another, so the rows' chains overlap, with
 * the bits of row by row. The rows it declines (float16 rows of 129 to 256 halves on AVX2, kernels.h)
 * run the same passes through the table's kernels: the max of every row, then row by row the exps,
 * stored apart (a float32 row for float16), and their scaling. For a row of one sum block the slice
 * path computes scale = 1 / (0 + (0 + sum)) in double: the same as 1 / sum, since a sum of exps is
 * never -0; so the kernels get the same arguments as row by row, and the results are the same bits. */
static void reload_group(void* ctx, size_t g)
{
    const struct rows_job* job = ctx;
    const TP_KERNELS* k = job->k;
    const size_t n = job->n, first = g * job->group;
    const size_t count = job->rows - first < job->group ? job->rows - first : job->group;
    const TP_E* x = job->x + (ptrdiff_t)first * job->x_stride;
    TP_E* y = job->y + (ptrdiff_t)first * job->y_stride;
    if (k->softmax_short_rows(count, n, x, job->x_stride, y, job->y_stride)) {
        return;
    }
    TP_T shift[TWOPASS_SHORT_ROWS_GROUP], exponent[TWOPASS_SHORT_ROWS_GROUP];
    TP_T stored[TWOPASS_ROW_GROUP_ROW_BYTES / sizeof(TP_E)]; /* n fits: row_group */
    for (size_t i = 0; i < count; i++) {
        TWOPASS_EXP_SPLIT(k->rmax(n, x + (ptrdiff_t)i * job->x_stride), &shift[i], &exponent[i]);
    }
    for (size_t i = 0; i < count; i++) {
        const double sum = k->raddstoreexpminusmax(n, x + (ptrdiff_t)i * job->x_stride, stored, shift[i], exponent[i],
                                                   NULL);
        k->vscale(n, stored, y + (ptrdiff_t)i * job->y_stride, (TP_T)(1.0 / sum));
    }
}

/* Short rows in two-pass, a group at a time, pass by pass: every row's extended sum (a row of one
 * sum block: one raddextexp), then every row's scaling; rows whose sum is not exact (NaN, +inf, or
 * exponents out of range) run three-pass recompute, as softmax_two_pass does. The same bits as row
 * by row. */
static void two_pass_group(void* ctx, size_t g)
{
    const struct rows_job* job = ctx;
    const TP_KERNELS* k = job->k;
    const size_t n = job->n, first = g * job->group;
    const size_t count = job->rows - first < job->group ? job->rows - first : job->group;
    TP_T scale[TWOPASS_SHORT_ROWS_GROUP], exponent[TWOPASS_SHORT_ROWS_GROUP];
    int exact[TWOPASS_SHORT_ROWS_GROUP];
    long exact_rows = 0;
    for (size_t i = 0; i < count; i++) {
        TP_T block[2];
        k->raddextexp(n, job->x + (ptrdiff_t)(first + i) * job->x_stride, block);
        struct extsum_acc acc = EXTSUM_EMPTY;
        extsum_add(&acc, block[0], block[1]);
        exact[i] = extsum_done(&acc);
        exact_rows += exact[i];
        if (exact[i]) {
            double mantissa, e;
            extsum_normalized(&acc, &mantissa, &e);
            extexp_scale(mantissa, e, &scale[i], &exponent[i]);
        }
    }
    twopass_count_two_pass_slices(exact_rows);
    for (size_t i = 0; i < count; i++) {
        const TP_E* x = job->x + (ptrdiff_t)(first + i) * job->x_stride;
        TP_E* y = job->y + (ptrdiff_t)(first + i) * job->y_stride;
        if (exact[i]) {
            k->vscaleextexp(n, x, y, scale[i], exponent[i]);
        } else { /* softmax_two_pass's fallback */
            struct slice s;
            slice_init(&s, k, n, x, y, 1);
            softmax_three_pass_recompute(&s);
        }
    }
}

/* Rows per group for softmax by three-pass reload (blocked too) or two-pass (1: row by row): rows of
 * at most TWOPASS_ROW_GROUP_ROW_BYTES and one sum block, as many as fit twopass_row_group_bytes();
 * single elements row by row (softmax_slice). */
static size_t row_group(enum twopass_algorithm algorithm, size_t n)
{
    const size_t row_bytes = n * sizeof(TP_E);
    /* (blocked reload runs a row of one sum block as reload: reload_group takes its groups) */
    const int grouped = algorithm == TWOPASS_THREE_PASS_RELOAD || algorithm == TWOPASS_TWO_PASS
                        || algorithm == TWOPASS_BLOCKED_RELOAD;
    if (!grouped || n <= 1 || n > twopass_sum_block() /* one element: softmax_slice's exact 1 */
        || row_bytes > TWOPASS_ROW_GROUP_ROW_BYTES) {
        return 1;
    }
    const size_t group = twopass_row_group_bytes() / row_bytes;
    return group < 1 ? 1 : group < TWOPASS_SHORT_ROWS_GROUP ? group : TWOPASS_SHORT_ROWS_GROUP;
}

/* Rows are shared out whole when there are enough of them to balance the threads (or they are too
 * short to cut), or by groups of short rows (job->group > 1); otherwise they run one after another,
 * each cut into chunks across the threads. */
static void run_rows(struct rows_job* job, size_t rows, int threads)
{
    if (job->y != NULL && job->k->streaming != NULL && twopass_streaming_job(rows * job->n, sizeof(TP_E))) {
        job->k = job->k->streaming;
    }
    threads = twopass_useful_threads(threads, rows * job->n);
    job->rows = rows;
    const unsigned int csr = twopass_flush_to_zero_begin();
    if (job->group > 1) {
        twopass_count_grouped_job();
        twopass_parallel_for(threads, (rows + job->group - 1) / job->group,
                             job->algorithm == TWOPASS_TWO_PASS ? two_pass_group : reload_group, job);
    } else if (threads > 1 && rows > 1 && (rows >= 4 * (size_t)threads || job->n < 2 * TWOPASS_CHUNK_MIN)) {
        job->row_threads = 1;
        twopass_parallel_for(threads, rows, rows_body, job);
    } else {
        job->row_threads = threads;
        twopass_parallel_for(1, rows, rows_body, job);
    }
    twopass_flush_to_zero_end(csr);
}

static void softmax_row(struct slice* s, const struct rows_job* job, size_t r)
{
    (void)r;
    softmax_slice(s, job->algorithm);
}
static void log_softmax_row(struct slice* s, const struct rows_job* job, size_t r)
{
    (void)r;
    log_softmax_slice(s, job->algorithm);
}
static void logsumexp_row(struct slice* s, const struct rows_job* job, size_t r)
{
    struct lse_parts parts;
    job->out1[r] = logsumexp_slice(s, job->algorithm, &parts);
}
static void extsum_row(struct slice* s, const struct rows_job* job, size_t r)
{
    extsum_slice(s, &job->out1[r], &job->out2[r]);
}
static void softmax_from_extsum_row(struct slice* s, const struct rows_job* job, size_t r)
{
    if (s->n != 0) {
        softmax_scale_extexp(s, job->in1[r], job->in2[r]);
    }
}

void TP_PUB(softmax, _rows)(const TP_KERNELS* k, enum twopass_algorithm algorithm,
                              size_t rows, size_t n, const TP_E* x, ptrdiff_t x_stride, TP_E* y,
                              ptrdiff_t y_stride, int threads)
{
    struct rows_job job = {k, algorithm, n, x, x_stride, y, y_stride, NULL, NULL, NULL, NULL, softmax_row, 1};
    job.group = row_group(algorithm, n);
    run_rows(&job, rows, threads);
}

void TP_PUB(log_softmax, _rows)(const TP_KERNELS* k, enum twopass_algorithm algorithm,
                                  size_t rows, size_t n, const TP_E* x, ptrdiff_t x_stride, TP_E* y,
                                  ptrdiff_t y_stride, int threads)
{
    struct rows_job job = {k, algorithm, n, x, x_stride, y, y_stride, NULL, NULL, NULL, NULL, log_softmax_row, 1};
    run_rows(&job, rows, threads);
}

void TP_PUB(logsumexp, _rows)(const TP_KERNELS* k, enum twopass_algorithm algorithm,
                                size_t rows, size_t n, const TP_E* x, ptrdiff_t x_stride, double* out,
                                int threads)
{
    struct rows_job job = {k, algorithm, n, x, x_stride, NULL, 0, out, NULL, NULL, NULL, logsumexp_row, 1};
    run_rows(&job, rows, threads);
}

void TP_PUB(extsum, _rows)(const TP_KERNELS* k, size_t rows, size_t n, const TP_E* x,
                             ptrdiff_t x_stride, double* mantissa, double* exponent, int threads)
{
    struct rows_job job = {k, TWOPASS_TWO_PASS, n, x, x_stride, NULL, 0, mantissa, exponent, NULL, NULL,
                           extsum_row, 1};
    run_rows(&job, rows, threads);
}

void TP_PUB(softmax_from_extsum, _rows)(const TP_KERNELS* k, size_t rows, size_t n,
                                          const TP_E* x, ptrdiff_t x_stride, TP_E* y, ptrdiff_t y_stride,
                                          const double* mantissa, const double* exponent, int threads)
{
    struct rows_job job = {k, TWOPASS_TWO_PASS, n, x, x_stride, y, y_stride, NULL, NULL, mantissa, exponent,
                           softmax_from_extsum_row, 1};
    run_rows(&job, rows, threads);
}

/* ---- columns ---- */

struct columns_job {
    const TP_KERNELS* k;
    const TP_KERNELS* k2; /* pass 2's: the streaming table (non-temporal stores) for large outputs */
    size_t rows, cols;
    const TP_E* x;
    ptrdiff_t x_ld;
    TP_E* y;
    ptrdiff_t y_ld;
    int log;    /* log_softmax, else softmax */
    int failed; /* set (atomically) when scratch memory runs out */
    double* lse; /* logsumexp only: each column's logsumexp here, and no pass 2 (log is set) */
    /* pass 2's per-column constants for all columns: softmax scale a = 1/f and exponent b; log_softmax
     * logsumexp = a + b; valid: two-pass took the column (softmax skips the others in pass 2) */
    TP_T *a, *b;
    unsigned char* valid;
    /* pass 1's per-column state: each block of rows' sum m * 2^e (the kernel's, of type TP_T), and
     * the running sum M * 2^E of the blocks so far, in double */
    TP_T *m, *e;
    double *sum_m, *sum_e;
    size_t block_cols; /* columns per task of pass 1 */
    size_t row_chunk;  /* rows per task of pass 2 */
};

/* Column j of a block, copied out (for the rare columns two-pass cannot take). */
static void copy_column(const struct columns_job* job, size_t c, TP_E* column)
{
    for (size_t r = 0; r < job->rows; r++) column[r] = job->x[(ptrdiff_t)r * job->x_ld + c];
}

/* Per column j < width: merge a block's m[j] * 2^e[j] into the running sum_m[j] * 2^sum_e[j] in
 * double, E' = max(E, e), M = M 2^(E - E') + m 2^(e - E'); valid[j] = 0 on a NaN, infinite or
 * negative m or an e above the exact range (m = 0, a block of -inf or of elements far below the
 * kernels' floor exponent, adds nothing: its e is the floor, 256 binades below the range, so a
 * column of such blocks alone fails the final range check and runs three-pass). Two columns at a
 * time with SSE2 (gcc does not vectorise the scalar loop: its selects may trap), the same operations
 * in the same order, so the bits are those of the scalar loop (maxpd(a, b) = a > b ? a : b). */
static void columns_merge(size_t width, const TP_T* m, const TP_T* e, double* sum_m, double* sum_e,
                          unsigned char* valid)
{
    size_t j = 0;
#if defined(__SSE2__)
    const __m128d zero = _mm_setzero_pd(), inf = _mm_set1_pd(INFINITY), limit = _mm_set1_pd(TP_EXPONENT_LIMIT),
                  floor = _mm_set1_pd(-1023.0), magic = _mm_set1_pd(0x1.8p52 + 1023.0);
    for (; j + 2 <= width; j += 2) {
#if TP_F64
        const __m128d mj = _mm_loadu_pd(m + j), ej = _mm_loadu_pd(e + j);
#else
        const __m128d mj = _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i*)(m + j))));
        const __m128d ej = _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i*)(e + j))));
#endif
        const __m128d E = _mm_loadu_pd(sum_e + j), E_new = _mm_max_pd(ej, E);
        const __m128d ok = _mm_and_pd(_mm_and_pd(_mm_cmpge_pd(mj, zero), _mm_cmplt_pd(mj, inf)), _mm_cmple_pd(ej, limit));
        const int bits = _mm_movemask_pd(ok);
        valid[j] &= (unsigned char)(bits & 1), valid[j + 1] &= (unsigned char)(bits >> 1);
        /* 2^d as exp2_nonpositive */
        const __m128d f_old = _mm_castsi128_pd(_mm_slli_epi64(
            _mm_castpd_si128(_mm_add_pd(_mm_max_pd(_mm_sub_pd(E, E_new), floor), magic)), 52));
        const __m128d f_new = _mm_castsi128_pd(_mm_slli_epi64(
            _mm_castpd_si128(_mm_add_pd(_mm_max_pd(_mm_sub_pd(ej, E_new), floor), magic)), 52));
        _mm_storeu_pd(sum_m + j, _mm_add_pd(_mm_mul_pd(_mm_loadu_pd(sum_m + j), f_old), _mm_mul_pd(mj, f_new)));
        _mm_storeu_pd(sum_e + j, E_new);
    }
#endif
    for (; j < width; j++) {
        const double mj = m[j], ej = e[j], E = sum_e[j];
        const double E_new = ej > E ? ej : E;
        valid[j] &= (unsigned char)((mj >= 0.0) & (mj < INFINITY) & (ej <= TP_EXPONENT_LIMIT));
        sum_m[j] = sum_m[j] * exp2_nonpositive(E - E_new) + mj * exp2_nonpositive(ej - E_new);
        sum_e[j] = E_new;
    }
}

/* Pass 1 on one block of columns c0 .. c0 + width: the extended sums down the columns, by the
 * kernel over blocks of TWOPASS_COLUMN_SUM_BLOCK rows (each row streamed across the block), each
 * block's (m, e) merged per column in double as extsum_add does:  E' = max(E, e),
 * M = M 2^(E - E') + m 2^(e - E'); a NaN, infinite or non-positive m or an e above the exact range
 * marks the column invalid. Then turned into pass 2's constants (softmax: scale and exponent;
 * log_softmax: logsumexp as hi + lo). Columns two-pass cannot take (NaN, +-inf, huge) get three-pass
 * on a copy. Each column's arithmetic is its own, so results do not depend on the blocks of
 * columns, hence not on the thread count. */
static void columns_block(void* ctx, size_t block)
{
    struct columns_job* job = ctx;
    const TP_KERNELS* k = job->k;
    const size_t rows = job->rows, c0 = block * job->block_cols;
    const size_t width = job->cols - c0 < job->block_cols ? job->cols - c0 : job->block_cols;
    const TP_E* x = job->x + c0;
    TP_T* a = job->a + c0;
    TP_T* b = job->b + c0;
    TP_T *m = job->m + c0, *e = job->e + c0;
    double *sum_m = job->sum_m + c0, *sum_e = job->sum_e + c0;
    unsigned char* valid = job->valid + c0;
    for (size_t j = 0; j < width; j++) {
        sum_m[j] = 0.0, sum_e[j] = -INFINITY, valid[j] = 1;
    }
    for (size_t r0 = 0; r0 < rows; r0 += TWOPASS_COLUMN_SUM_BLOCK) {
        const size_t block_rows = rows - r0 < TWOPASS_COLUMN_SUM_BLOCK ? rows - r0 : TWOPASS_COLUMN_SUM_BLOCK;
        k->raddextexp_columns(block_rows, width, x + (ptrdiff_t)r0 * job->x_ld, job->x_ld, m, e);
        columns_merge(width, m, e, sum_m, sum_e, valid);
    }
    TP_E* scratch = NULL; /* one column */
    long valid_columns = 0;
    for (size_t j = 0; j < width; j++) {
        valid[j] = valid[j] && sum_e[j] >= -TP_EXPONENT_LIMIT; /* as extsum_done */
        valid_columns += valid[j];
        if (valid[j]) { /* M = f 2^q, f in [0.5, 1): the kernel's lazy scaling leaves M up to ~2^72,
                         * and log(M) must stay small beside E ln2 */
            int q;
            sum_m[j] = frexp(sum_m[j], &q), sum_e[j] += q;
        }
        if (!valid[j] && scratch == NULL && (scratch = malloc(sizeof(TP_E) * rows)) == NULL) {
            __atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
            return;
        }
        if (job->log) {
            /* logsumexp = log(M) + E ln2, or three-pass on a copy (NaN, +-inf, huge), as hi + lo */
            struct lse_parts parts;
            double lse;
            if (valid[j]) {
                lse = lse_of_extsum(sum_m[j], sum_e[j], &parts);
            } else {
                struct slice s;
                copy_column(job, c0 + j, scratch);
                slice_init(&s, k, rows, scratch, NULL, 1);
                lse = logsumexp_three_pass(&s, &parts);
            }
            a[j] = parts.hi, b[j] = parts.lo;
            if (job->lse != NULL) job->lse[c0 + j] = lse;
        } else if (valid[j]) {
            /* scale by 1/f and 2^-(E + q), as softmax_scale_extexp, with 1/f = m 2^k, m in [0.5, 1),
             * as vscale_impl normalises it (the exp flushes below 2^-126 before the scale) */
            int k2;
            a[j] = (TP_T)frexp((TP_T)(1.0 / sum_m[j]), &k2), b[j] = (TP_T)(sum_e[j] - k2);
        } else {
            /* softmax by three-pass on a copy, written back; pass 2 skips the column, and no other
             * block reads it, so this is safe in place too */
            struct slice s;
            copy_column(job, c0 + j, scratch);
            slice_init(&s, k, rows, scratch, scratch, 1);
            softmax_three_pass_recompute(&s);
            for (size_t r = 0; r < rows; r++) job->y[(ptrdiff_t)r * job->y_ld + c0 + j] = scratch[r];
        }
    }
    twopass_count_two_pass_slices(valid_columns);
    free(scratch);
}

/* Pass 2 on rows r0 .. r0 + row_chunk, whole rows at a time: softmax scales exp(x) by each column's
 * constants (on each run of valid columns); log_softmax subtracts each column's logsumexp. Whole
 * rows are long contiguous streams, which the prefetchers follow; blocks of columns would walk
 * short pieces of rows far apart (measured: 2.7 against 0.9 cycles per element on 4096x4096). */
static void columns_pass2(void* ctx, size_t chunk)
{
    const struct columns_job* job = ctx;
    const TP_KERNELS* k = job->k2;
    const size_t r0 = chunk * job->row_chunk;
    const size_t rows = job->rows - r0 < job->row_chunk ? job->rows - r0 : job->row_chunk;
    const TP_E* x = job->x + (ptrdiff_t)r0 * job->x_ld;
    TP_E* y = job->y + (ptrdiff_t)r0 * job->y_ld;
    if (job->log) {
        k->vsubc_columns(rows, job->cols, x, job->x_ld, y, job->y_ld, job->a, job->b);
        return;
    }
    for (size_t c = 0; c < job->cols;) { /* each run of valid columns */
        size_t end = c;
        while (end < job->cols && job->valid[end]) end++;
        if (end > c) {
            k->vscaleextexp_columns(rows, end - c, x + c, job->x_ld, y + c, job->y_ld, job->a + c, job->b + c);
        }
        c = end + 1;
    }
}

static int run_columns(struct columns_job* job, int threads)
{
    if (job->cols == 0) {
        return 0;
    }
    if (job->rows <= 1 && job->lse != NULL) { /* the empty sum's -inf; SciPy's x + log 1 = x + 0 */
        for (size_t c = 0; c < job->cols; c++) {
            struct slice s;
            if (job->rows == 0) {
                job->lse[c] = -INFINITY;
                continue;
            }
            slice_init(&s, job->k, 1, job->x + c, NULL, 1);
            job->lse[c] = (double)slice_max(&s) + 0.0;
        }
        return 0;
    }
    if (job->rows == 0) {
        return 0;
    }
    if (job->rows == 1) { /* columns of one element */
        for (size_t c = 0; c < job->cols; c++) job->y[c] = one_element(job->x[c], job->log);
        return 0;
    }
    const size_t cols = job->cols;
    job->a = malloc(sizeof(TP_T) * cols);
    job->b = malloc(sizeof(TP_T) * cols);
    job->m = malloc(sizeof(TP_T) * cols);
    job->e = malloc(sizeof(TP_T) * cols);
    job->sum_m = malloc(sizeof(double) * cols);
    job->sum_e = malloc(sizeof(double) * cols);
    job->valid = malloc(cols);
    if (job->a == NULL || job->b == NULL || job->m == NULL || job->e == NULL || job->sum_m == NULL
        || job->sum_e == NULL || job->valid == NULL) {
        job->failed = 1;
    } else {
        threads = twopass_useful_threads(threads, job->rows * cols);
        const unsigned int csr = twopass_flush_to_zero_begin();
        /* pass 1: about equal blocks of whole cache lines of columns, at least one per thread and at
         * most TWOPASS_COLUMN_PASS1_WIDTH columns wide */
        const size_t line = 64 / sizeof(TP_E);
        size_t blocks = (cols + TWOPASS_COLUMN_PASS1_WIDTH - 1) / TWOPASS_COLUMN_PASS1_WIDTH;
        blocks = blocks < (size_t)threads ? (size_t)threads : blocks;
        job->block_cols = ((cols + blocks - 1) / blocks + line - 1) / line * line;
        twopass_parallel_for(threads, (cols + job->block_cols - 1) / job->block_cols, columns_block, job);
        if (!job->failed && job->lse == NULL) {
            /* whole rows, as the rows driver's elementwise passes: streamed stores past the threshold */
            const int streaming = job->k->streaming != NULL && twopass_streaming_job(job->rows * cols, sizeof(TP_E));
            job->k2 = streaming ? job->k->streaming : job->k;
            const size_t tasks = (size_t)threads < job->rows ? (size_t)threads : job->rows;
            job->row_chunk = (job->rows + tasks - 1) / tasks;
            twopass_parallel_for(threads, (job->rows + job->row_chunk - 1) / job->row_chunk, columns_pass2, job);
        }
        twopass_flush_to_zero_end(csr);
    }
    free(job->a), free(job->b), free(job->m), free(job->e), free(job->sum_m), free(job->sum_e), free(job->valid);
    return job->failed ? -1 : 0;
}

int TP_PUB(softmax, _columns)(const TP_KERNELS* k, size_t rows, size_t cols,
                                const TP_E* x, ptrdiff_t x_ld, TP_E* y, ptrdiff_t y_ld, int threads)
{
    struct columns_job job = {.k = k, .k2 = k, .rows = rows, .cols = cols, .x = x, .x_ld = x_ld, .y = y, .y_ld = y_ld};
    return run_columns(&job, threads);
}

int TP_PUB(log_softmax, _columns)(const TP_KERNELS* k, size_t rows, size_t cols,
                                    const TP_E* x, ptrdiff_t x_ld, TP_E* y, ptrdiff_t y_ld, int threads)
{
    struct columns_job job = {.k = k, .k2 = k, .rows = rows, .cols = cols, .x = x, .x_ld = x_ld, .y = y, .y_ld = y_ld,
                              .log = 1};
    return run_columns(&job, threads);
}

int TP_PUB(logsumexp, _columns)(const TP_KERNELS* k, size_t rows, size_t cols, const TP_E* x,
                                  ptrdiff_t x_ld, double* out, int threads)
{
    struct columns_job job = {.k = k, .k2 = k, .rows = rows, .cols = cols, .x = x, .x_ld = x_ld, .log = 1, .lse = out};
    return run_columns(&job, threads);
}
