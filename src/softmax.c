/* The softmax algorithms, composed from the passes of one kernel table. Baseline x86-64 code.
 *
 *   two-pass:             (M, E) = sum exp(x) as mantissa and exponent;  y = exp(x) / M * 2^-E
 *   three-pass reload:    m = max x;  y = exp(x - m), s = sum y;  y *= 1/s
 *   three-pass recompute: m = max x;  s = sum exp(x - m);  y = exp(x - m) * 1/s
 *
 * exp(x - m) is evaluated as exp(x - shift) * 2^-exponent with shift + exponent * ln2 close to m
 * (see exp_shift): in float32, x - m itself would round (error up to |x - m| * 2^-24 relative).
 *
 * The sums run over blocks of TWOPASS_SUM_BLOCK elements whose partial sums are added in double.
 *
 * log_softmax and logsumexp reuse them: logsumexp = log(M) + E ln2 from two-pass pass 1 alone (or
 * max + log sum exp(x - max), three-pass), and log_softmax y = x - logsumexp(x).
 */
#define _GNU_SOURCE /* M_LN2 */
#include <math.h>
#include <stdlib.h>
#include "twopass/common.h"
#include "twopass/softmax.h"

static size_t block_len(size_t n, size_t i)
{
    return n - i < TWOPASS_SUM_BLOCK ? n - i : TWOPASS_SUM_BLOCK;
}

/* Split max as shift + exponent * ln2. Usually shift = 0 and exponent = round(max * log2(e)): then
 * exp(x - max) ~ exp(x) * 2^-exponent is computed without subtracting at all, and every term is at
 * most exp(ln2/2) ~ 1.42. For |max| beyond the extended-exponent range, shift = max: x - max is then
 * exact wherever exp(x - max) is not 0. A NaN or infinite max gives NaN sums, as it should. */
static void exp_shift(float max, float* shift, float* exponent)
{
    if (fabsf(max) <= TWOPASS_EXP_SHIFT_LIMIT) {
        *shift = 0.0f, *exponent = nearbyintf(max * TWOPASS_F32_LOG2E);
    } else {
        *shift = max, *exponent = 0.0f;
    }
}

static void softmax_three_pass_recompute(const struct twopass_f32_kernels* k, size_t n,
                                         const float* x, float* y)
{
    float shift, exponent;
    exp_shift(k->rmax(n, x), &shift, &exponent);
    double sum = 0.0;
    for (size_t i = 0; i < n; i += TWOPASS_SUM_BLOCK) {
        sum += k->raddexpminusmax(block_len(n, i), x + i, shift, exponent);
    }
    /* sum >= 0.7 (the max contributes about 1) unless the slice holds NaN or +-inf: then NaN. */
    k->vscaleexpminusmax(n, x, y, shift, exponent, (float)(1.0 / sum));
}

static void softmax_three_pass_reload(const struct twopass_f32_kernels* k, size_t n,
                                      const float* x, float* y)
{
    float shift, exponent;
    exp_shift(k->rmax(n, x), &shift, &exponent);
    double sum = 0.0;
    for (size_t i = 0; i < n; i += TWOPASS_SUM_BLOCK) {
        sum += k->raddstoreexpminusmax(block_len(n, i), x + i, y + i, shift, exponent);
    }
    k->vscale(n, y, y, (float)(1.0 / sum));
}

/* The two-pass partial sum of a slice, merged block by block in double:
 * (M, E) + (m, e) = (M * 2^(E - E') + m * 2^(e - E'), E') with E' = max(E, e). */
struct extsum_acc {
    double mantissa, exponent;
    int blocks, valid;
};

/* Add one block's (m, e). A NaN or infinite mantissa (NaN or +inf in the block) or an exponent above
 * the exact range makes the slice invalid; exponents far below it (clamped or -inf elements) merge
 * normally, since the final range check decides whether they matter. */
static void extsum_add(struct extsum_acc* acc, double m, double e)
{
    if (!acc->valid) {
        return;
    }
    if (!(m > 0.0 && m < INFINITY) || !(e <= TWOPASS_EXTEXP_EXPONENT_LIMIT)) {
        acc->valid = 0;
    } else if (acc->blocks++ == 0) {
        acc->mantissa = m, acc->exponent = e;
    } else if (e > acc->exponent) { /* |e|, |E| <= 2^23: the casts are exact */
        acc->mantissa = ldexp(acc->mantissa, (int)(acc->exponent - e)) + m, acc->exponent = e;
    } else {
        acc->mantissa += ldexp(m, (int)(e - acc->exponent));
    }
}

/* 1 if the merged sum is exact: some block, and the largest exponent within the exact range. */
static int extsum_done(const struct extsum_acc* acc)
{
    return acc->valid && acc->blocks > 0 && acc->exponent >= -TWOPASS_EXTEXP_EXPONENT_LIMIT;
}

/* Pass 1 of two-pass: sum exp(x) = mantissa * 2^exponent. Returns 0 if the slice holds NaN or +inf
 * or its max lies beyond the exact range of the exponents (then the caller uses three-pass). */
static int extsum(const struct twopass_f32_kernels* k, size_t n, const float* x, double* mantissa,
                  double* exponent)
{
    struct extsum_acc acc = {0.0, 0.0, 0, 1};
    for (size_t i = 0; i < n && acc.valid; i += TWOPASS_SUM_BLOCK) {
        float block[2];
        k->raddextexp(block_len(n, i), x + i, block);
        extsum_add(&acc, block[0], block[1]);
    }
    *mantissa = acc.mantissa, *exponent = acc.exponent;
    return extsum_done(&acc);
}

static void softmax_two_pass(const struct twopass_f32_kernels* k, size_t n, const float* x, float* y)
{
    double mantissa, exponent;
    if (!extsum(k, n, x, &mantissa, &exponent)) {
        softmax_three_pass_recompute(k, n, x, y);
        return;
    }
    /* Normalise M = f * 2^q with f in [0.5, 1): pass 2 scales by 1/f and 2^-(E + q). */
    int q;
    const double f = frexp(mantissa, &q);
    k->vscaleextexp(n, x, y, (float)(1.0 / f), (float)(exponent + q));
}

/* logsumexp of a slice the extended sum cannot take (NaN, +-inf, or |max| beyond ~2e6), as SciPy:
 * NaN if any NaN; else +inf if any +inf; else -inf if all are -inf; else max + log sum exp(x - max). */
static double logsumexp_three_pass(const struct twopass_f32_kernels* k, size_t n, const float* x)
{
    const float max = k->rmax(n, x);
    if (isfinite(max)) {
        float shift, exponent;
        exp_shift(max, &shift, &exponent);
        double sum = 0.0;
        for (size_t i = 0; i < n; i += TWOPASS_SUM_BLOCK) {
            sum += k->raddexpminusmax(block_len(n, i), x + i, shift, exponent);
        }
        if (!isnan(sum)) {
            return (double)shift + (double)exponent * M_LN2 + log(sum);
        }
    }
    for (size_t i = 0; i < n; i++) { /* rare: find out which special value decides */
        if (isnan(x[i])) {
            return NAN;
        }
    }
    return max; /* +inf, or -inf when every element is -inf */
}

double twopass_logsumexp_f32(const struct twopass_f32_kernels* k, enum twopass_algorithm algorithm,
                             size_t n, const float* x)
{
    double mantissa, exponent;
    if (n == 0) {
        return -INFINITY;
    }
    if (algorithm == TWOPASS_TWO_PASS && extsum(k, n, x, &mantissa, &exponent)) {
        return log(mantissa) + exponent * M_LN2;
    }
    return logsumexp_three_pass(k, n, x);
}

void twopass_extsum_f32(const struct twopass_f32_kernels* k, size_t n, const float* x,
                        double* mantissa, double* exponent)
{
    if (n == 0) {
        *mantissa = 0.0, *exponent = -INFINITY; /* the identity of the merge */
        return;
    }
    if (extsum(k, n, x, mantissa, exponent)) {
        return;
    }
    /* Special or huge slices: the same value in log space, logsumexp = log(M) + E ln2 */
    const double lse = logsumexp_three_pass(k, n, x);
    if (!isfinite(lse)) {
        *mantissa = lse == -INFINITY ? 0.0 : lse, *exponent = lse == -INFINITY ? -INFINITY : 0.0;
        return;
    }
    *exponent = nearbyint(lse / M_LN2);
    *mantissa = exp(lse - *exponent * M_LN2);
}

void twopass_log_softmax_f32(const struct twopass_f32_kernels* k, enum twopass_algorithm algorithm,
                             size_t n, const float* x, float* y)
{
    /* y = x - logsumexp(x): with IEEE arithmetic this is also SciPy's answer for NaN, +inf
     * (NaN at +inf, -inf elsewhere) and all -inf (NaN). */
    if (n != 0) {
        /* the double logsumexp as hi + lo floats: x - hi is exact near the top of the slice */
        const double lse = twopass_logsumexp_f32(k, algorithm, n, x);
        const float hi = (float)lse;
        k->vsubc(n, x, y, hi, isfinite(lse) ? (float)(lse - hi) : 0.0f);
    }
}

void twopass_softmax_f32(const struct twopass_f32_kernels* k, enum twopass_algorithm algorithm,
                         size_t n, const float* x, float* y)
{
    if (n == 0) {
        return;
    }
    switch (algorithm) {
    case TWOPASS_THREE_PASS_RELOAD:
        softmax_three_pass_reload(k, n, x, y);
        break;
    case TWOPASS_THREE_PASS_RECOMPUTE:
        softmax_three_pass_recompute(k, n, x, y);
        break;
    case TWOPASS_TWO_PASS:
    default:
        softmax_two_pass(k, n, x, y);
        break;
    }
}

void twopass_softmax_f32_rows(const struct twopass_f32_kernels* k, enum twopass_algorithm algorithm,
                              size_t rows, size_t n, const float* x, ptrdiff_t x_stride, float* y,
                              ptrdiff_t y_stride)
{
    for (size_t r = 0; r < rows; r++) {
        twopass_softmax_f32(k, algorithm, n, x + (ptrdiff_t)r * x_stride, y + (ptrdiff_t)r * y_stride);
    }
}

int twopass_softmax_f32_columns(const struct twopass_f32_kernels* k, size_t rows, size_t cols,
                                const float* x, ptrdiff_t x_ld, float* y, ptrdiff_t y_ld)
{
    enum { MAX_WIDTH = TWOPASS_MAX_COLUMNS };
    const size_t width_max = k->columns_width; /* <= TWOPASS_MAX_COLUMNS (instantiate.h) */
    float* scratch = NULL; /* one column, for the rare columns two-pass cannot take */
    if (rows == 0) {
        return 0;
    }
    for (size_t c0 = 0; c0 < cols; c0 += width_max) {
        const size_t width = cols - c0 < width_max ? cols - c0 : width_max;
        struct extsum_acc acc[MAX_WIDTH];
        float scale[MAX_WIDTH], block_exponent[MAX_WIDTH];
        int valid[MAX_WIDTH];
        for (size_t j = 0; j < width; j++) {
            acc[j] = (struct extsum_acc){0.0, 0.0, 0, 1};
        }
        /* pass 1 over blocks of rows, merged per column in double as in extsum() */
        for (size_t r0 = 0; r0 < rows; r0 += TWOPASS_COLUMN_SUM_BLOCK) {
            float m[MAX_WIDTH], e[MAX_WIDTH];
            const size_t block_rows = rows - r0 < TWOPASS_COLUMN_SUM_BLOCK ? rows - r0 : TWOPASS_COLUMN_SUM_BLOCK;
            k->raddextexp_columns(block_rows, width, x + (ptrdiff_t)r0 * x_ld + c0, x_ld, m, e);
            for (size_t j = 0; j < width; j++) {
                extsum_add(&acc[j], m[j], e[j]);
            }
        }
        for (size_t j = 0; j < width; j++) {
            int q = 0;
            valid[j] = extsum_done(&acc[j]);
            const double f = valid[j] ? frexp(acc[j].mantissa, &q) : 1.0;
            scale[j] = (float)(1.0 / f), block_exponent[j] = (float)(acc[j].exponent + q);
        }
        /* Columns two-pass cannot take: copied out, computed by three-pass, copied back. Pass 2
         * below never touches them, so this is safe in place too. */
        for (size_t j = 0; j < width; j++) {
            if (valid[j]) {
                continue;
            }
            if (scratch == NULL && (scratch = malloc(sizeof(float) * rows)) == NULL) {
                return -1;
            }
            for (size_t r = 0; r < rows; r++) scratch[r] = x[(ptrdiff_t)r * x_ld + c0 + j];
            softmax_three_pass_recompute(k, rows, scratch, scratch);
            for (size_t r = 0; r < rows; r++) y[(ptrdiff_t)r * y_ld + c0 + j] = scratch[r];
        }
        /* pass 2 on each run of valid columns */
        for (size_t j = 0; j < width;) {
            size_t end = j;
            while (end < width && valid[end]) end++;
            if (end > j) {
                k->vscaleextexp_columns(rows, end - j, x + c0 + j, x_ld, y + c0 + j, y_ld, scale + j,
                                        block_exponent + j);
            }
            j = end + 1;
        }
    }
    free(scratch);
    return 0;
}

void twopass_log_softmax_f32_rows(const struct twopass_f32_kernels* k, enum twopass_algorithm algorithm,
                                  size_t rows, size_t n, const float* x, ptrdiff_t x_stride, float* y,
                                  ptrdiff_t y_stride)
{
    for (size_t r = 0; r < rows; r++) {
        twopass_log_softmax_f32(k, algorithm, n, x + (ptrdiff_t)r * x_stride, y + (ptrdiff_t)r * y_stride);
    }
}
