/* float64 softmax passes for AVX2 + FMA. Compiled with -mavx2 -mfma; nothing here runs unless the
 * dispatcher found AVX2, FMA and OS support for YMM state.
 *
 * The templates of f32_kernels_avx2.c on 4-double vectors, with the float64 exp of f64_exp_avx2.h:
 * U doubles per iteration, vector j feeding accumulator j % ACC, then whole vectors, then one masked
 * vector for the last n % 4 doubles (maskload/maskstore never touch memory past the end). Powers of
 * two below 2^-1022 flush to 0. TWOPASS_F64_AVX2_KERNELS lists the instances.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include "twopass/kernels.h"
#include "f64_exp_avx2.h"

#define VLEN 4

TWOPASS_INLINE double hmax_f64x4(__m256d v)
{
    __m128d m = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    m = _mm_max_sd(m, _mm_unpackhi_pd(m, m));
    return _mm_cvtsd_f64(m);
}

TWOPASS_INLINE double hsum_f64x4(__m256d v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

/* The lanes of x selected by mask, `fill` in the others (maskload reads nothing past them). */
TWOPASS_INLINE __m256d load_tail(const double* x, __m256i mask, __m256d fill)
{
    return _mm256_blendv_pd(fill, _mm256_maskload_pd(x, mask), _mm256_castsi256_pd(mask));
}

TWOPASS_INLINE double rmax_impl(size_t n, const double* x, const size_t U, const size_t ACC)
{
    const size_t NV = U / VLEN;
    __m256d vmax[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) vmax[k] = _mm256_set1_pd(-INFINITY);
    for (; n >= U; n -= U, x += U) {
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            vmax[j % ACC] = _mm256_max_pd(vmax[j % ACC], _mm256_loadu_pd(x + j * VLEN));
        }
    }
    for (; n >= VLEN; n -= VLEN, x += VLEN) {
        vmax[0] = _mm256_max_pd(vmax[0], _mm256_loadu_pd(x));
    }
    if (n != 0) {
        vmax[0] = _mm256_max_pd(vmax[0], load_tail(x, f64x4_tail_mask(n), _mm256_set1_pd(-INFINITY)));
    }
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) vmax[0] = _mm256_max_pd(vmax[0], vmax[k]);
    return hmax_f64x4(vmax[0]);
}

/* Accumulators hold sum = acc_p * 2^acc_n per lane. Adding terms p_j * 2^n_j:
 *   e = max(acc_n, n_j...);  acc_p = acc_p * 2^(acc_n - e) + sum_j p_j * 2^(n_j - e);  acc_n = e. */
TWOPASS_INLINE void raddextexp_impl(size_t n, const double* x, double* sum, const size_t U, const size_t ACC)
{
    const size_t NV = U / VLEN;
    __m256d acc_p[TWOPASS_MAX_ACC], acc_n[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        acc_p[k] = _mm256_setzero_pd();
        acc_n[k] = _mm256_set1_pd(-INFINITY);
    }
    for (; n >= U; n -= U, x += U) {
        __m256d p[TWOPASS_MAX_VECTORS], pn[TWOPASS_MAX_VECTORS], e[TWOPASS_MAX_ACC];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) p[j] = f64x4_extexp(_mm256_loadu_pd(x + j * VLEN), &pn[j]);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) e[k] = acc_n[k];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) e[j % ACC] = _mm256_max_pd(e[j % ACC], pn[j]);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
            acc_p[k] = f64x4_mul_exp2(acc_p[k], _mm256_sub_pd(acc_n[k], e[k]));
        }
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            acc_p[j % ACC] = _mm256_add_pd(acc_p[j % ACC], f64x4_mul_exp2(p[j], _mm256_sub_pd(pn[j], e[j % ACC])));
        }
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) acc_n[k] = e[k];
    }
    for (; n != 0;) {
        /* one vector at a time; the last one masked, its other lanes keeping the accumulator */
        const __m256i mask = n >= VLEN ? _mm256_set1_epi64x(-1) : f64x4_tail_mask(n);
        __m256d vn;
        const __m256d p = f64x4_extexp(_mm256_maskload_pd(x, mask), &vn);
        const __m256d e = _mm256_max_pd(acc_n[0], vn);
        const __m256d new_p = _mm256_add_pd(f64x4_mul_exp2(acc_p[0], _mm256_sub_pd(acc_n[0], e)),
                                           f64x4_mul_exp2(p, _mm256_sub_pd(vn, e)));
        acc_p[0] = _mm256_blendv_pd(acc_p[0], new_p, _mm256_castsi256_pd(mask));
        acc_n[0] = _mm256_blendv_pd(acc_n[0], e, _mm256_castsi256_pd(mask));
        const size_t step = n >= VLEN ? VLEN : n;
        n -= step, x += step;
    }
    /* Reduce the accumulators, then the lanes, to one (mantissa, exponent) pair; lanes never written
     * hold (0, -inf) and scale to 0; n >= 1 keeps one lane finite. */
    __m256d e = acc_n[0];
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) e = _mm256_max_pd(e, acc_n[k]);
    const double emax = hmax_f64x4(e);
    const __m256d vemax = _mm256_set1_pd(emax);
    __m256d total = _mm256_setzero_pd();
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        total = _mm256_add_pd(total, f64x4_mul_exp2(acc_p[k], _mm256_sub_pd(acc_n[k], vemax)));
    }
    sum[0] = hsum_f64x4(total);
    sum[1] = emax;
}

/* Online normaliser (Milakov and Gimelshein 2018), per lane and accumulator: a running max m and
 * d = sum exp(x - m); a larger max m' rescales d:  d <- d exp(m - m') + sum_j exp(x_j - m').
 * m starts at -DBL_MAX, so m - m' and x - m' are never inf - inf (an -inf x gives 0); NaN or +inf
 * make d NaN. result = (max, sum exp(x - max)). */
TWOPASS_INLINE void raddonline_impl(size_t n, const double* x, double* result, const size_t U, const size_t ACC)
{
    const size_t NV = U / VLEN;
    const __m256d zero = _mm256_setzero_pd();
    __m256d m[TWOPASS_MAX_ACC], d[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        m[k] = _mm256_set1_pd(-DBL_MAX);
        d[k] = zero;
    }
    for (; n >= U; n -= U, x += U) {
        __m256d v[TWOPASS_MAX_VECTORS], mn[TWOPASS_MAX_ACC];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) v[j] = _mm256_loadu_pd(x + j * VLEN);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) mn[k] = m[k];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) mn[j % ACC] = _mm256_max_pd(mn[j % ACC], v[j]);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) d[k] = _mm256_mul_pd(d[k], f64x4_exp_shifted(m[k], mn[k], zero));
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            d[j % ACC] = _mm256_add_pd(d[j % ACC], f64x4_exp_shifted(v[j], mn[j % ACC], zero));
        }
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) m[k] = mn[k];
    }
    for (; n != 0;) {
        /* one vector at a time; lanes past the end read as -inf, which changes neither m nor d */
        const __m256i mask = n >= VLEN ? _mm256_set1_epi64x(-1) : f64x4_tail_mask(n);
        const __m256d v = load_tail(x, mask, _mm256_set1_pd(-INFINITY));
        const __m256d mn = _mm256_max_pd(m[0], v);
        d[0] = _mm256_add_pd(_mm256_mul_pd(d[0], f64x4_exp_shifted(m[0], mn, zero)), f64x4_exp_shifted(v, mn, zero));
        m[0] = mn;
        const size_t step = n >= VLEN ? VLEN : n;
        n -= step, x += step;
    }
    __m256d mmax = m[0];
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) mmax = _mm256_max_pd(mmax, m[k]);
    const double max = hmax_f64x4(mmax);
    __m256d total = zero;
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        total = _mm256_add_pd(total, _mm256_mul_pd(d[k], f64x4_exp_shifted(m[k], _mm256_set1_pd(max), zero)));
    }
    result[0] = max;
    result[1] = hsum_f64x4(total);
}

/* y = p * scale * 2^(n - exponent), flushed to 0 below 2^-1022. */
TWOPASS_INLINE __m256d scaleextexp(__m256d x, __m256d vscale, __m256d vexponent)
{
    __m256d vn;
    const __m256d p = f64x4_extexp(x, &vn);
    return f64x4_mul_exp2(_mm256_mul_pd(p, vscale), _mm256_sub_pd(vn, vexponent));
}

/* Sum of e = exp(x - shift) * 2^-exponent, optionally storing each e to y (STORE is a constant). */
TWOPASS_INLINE double raddexpminusmax_impl(size_t n, const double* x, double* y, double shift, double exponent,
                                          const size_t U, const size_t ACC, const int STORE)
{
    const size_t NV = U / VLEN;
    const __m256d vshift = _mm256_set1_pd(shift), vexponent = _mm256_set1_pd(exponent);
    __m256d acc[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) acc[k] = _mm256_setzero_pd();
    for (; n >= U; n -= U, x += U, y += STORE ? U : 0) {
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            const __m256d v = f64x4_exp_shifted(_mm256_loadu_pd(x + j * VLEN), vshift, vexponent);
            if (STORE) _mm256_storeu_pd(y + j * VLEN, v);
            acc[j % ACC] = _mm256_add_pd(acc[j % ACC], v);
        }
    }
    for (; n != 0;) {
        const __m256i mask = n >= VLEN ? _mm256_set1_epi64x(-1) : f64x4_tail_mask(n);
        __m256d v = f64x4_exp_shifted(_mm256_maskload_pd(x, mask), vshift, vexponent);
        if (STORE) _mm256_maskstore_pd(y, mask, v);
        v = _mm256_and_pd(v, _mm256_castsi256_pd(mask)); /* lanes past the end add 0 */
        acc[0] = _mm256_add_pd(acc[0], v);
        const size_t step = n >= VLEN ? VLEN : n;
        n -= step, x += step, y += STORE ? step : 0;
    }
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) acc[0] = _mm256_add_pd(acc[0], acc[k]);
    return hsum_f64x4(acc[0]);
}

TWOPASS_INLINE __m256d apply_mode(__m256d v, __m256d vshift, __m256d vexponent, __m256d vscale, const int MODE)
{
    if (MODE == TWOPASS_MODE_SUB) return _mm256_sub_pd(_mm256_sub_pd(v, vshift), vexponent);
    if (MODE == TWOPASS_MODE_EXTEXP) return scaleextexp(v, vscale, vexponent);
    if (MODE == TWOPASS_MODE_EXP) v = f64x4_exp_shifted(v, vshift, vexponent);
    return _mm256_mul_pd(v, vscale);
}

/* The elementwise passes (MODE is a constant, common.h): y = x * scale (TWOPASS_MODE_SCALE),
 * y = exp(x - shift) * 2^-exponent * scale (TWOPASS_MODE_EXP), y = (x - shift) - exponent
 * (TWOPASS_MODE_SUB), y = exp(x) * scale * 2^-exponent (TWOPASS_MODE_EXTEXP).
 * NT (a constant): non-temporal stores, for outputs too large for the caches. They skip the read
 * of each line before it is written (write-allocate) and keep the input in cache; they need 32-byte
 * aligned addresses, so the doubles before y's first 32-byte boundary and the tail use masked
 * ordinary stores. An sfence orders the streamed stores before anything that follows. */
TWOPASS_INLINE void vscale_impl(size_t n, const double* x, double* y, double shift, double exponent, double scale,
                                const size_t U, const int MODE, const int NT)
{
    const size_t NV = U / VLEN;
    const __m256d vshift = _mm256_set1_pd(shift), vexponent = _mm256_set1_pd(exponent), vscale = _mm256_set1_pd(scale);
    if (NT) {
        size_t head = (((uintptr_t)0 - (uintptr_t)y) & 31) / sizeof(double); /* y is double-aligned */
        head = head < n ? head : n;
        if (head != 0) {
            const __m256i mask = f64x4_tail_mask(head);
            _mm256_maskstore_pd(y, mask, apply_mode(_mm256_maskload_pd(x, mask), vshift, vexponent, vscale, MODE));
            n -= head, x += head, y += head;
        }
    }
    for (; n >= U; n -= U, x += U, y += U) {
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            const __m256d v = apply_mode(_mm256_loadu_pd(x + j * VLEN), vshift, vexponent, vscale, MODE);
            if (NT) {
                _mm256_stream_pd(y + j * VLEN, v);
            } else {
                _mm256_storeu_pd(y + j * VLEN, v);
            }
        }
    }
    for (; n != 0;) {
        const __m256i mask = n >= VLEN ? _mm256_set1_epi64x(-1) : f64x4_tail_mask(n);
        const __m256d v = apply_mode(_mm256_maskload_pd(x, mask), vshift, vexponent, vscale, MODE);
        if (NT && n >= VLEN) {
            _mm256_stream_pd(y, v);
        } else {
            _mm256_maskstore_pd(y, mask, v);
        }
        const size_t step = n >= VLEN ? VLEN : n;
        n -= step, x += step, y += step;
    }
    if (NT) {
        _mm_sfence();
    }
}

/* ---- Columns: lane j of vector v follows column 4v + j, one row at a time (rows ld apart). A
 * block is up to U columns wide (U/4 vectors, accumulators in L1), so each row is read as one long
 * contiguous piece: few TLB misses and whole cache lines, however far apart the rows are. ---- */

/* Vector v of row x of a block of `width` columns: whole, or masked if it is the last, partial one
 * (vmaskmov is slow on some CPUs, so only the partial vector uses it). */
TWOPASS_INLINE __m256d column_load(const double* x, size_t width, size_t v)
{
    const size_t lanes = width - v * VLEN;
    return lanes >= VLEN ? _mm256_loadu_pd(x + v * VLEN) : _mm256_maskload_pd(x + v * VLEN, f64x4_tail_mask(lanes));
}

TWOPASS_INLINE void column_store(double* y, size_t width, size_t v, __m256d value)
{
    const size_t lanes = width - v * VLEN;
    if (lanes >= VLEN) {
        _mm256_storeu_pd(y + v * VLEN, value);
    } else {
        _mm256_maskstore_pd(y + v * VLEN, f64x4_tail_mask(lanes), value);
    }
}

/* Per lane: acc = (p, n) += extexp(x[r]) for every row, the update of raddextexp one term at a time. */
TWOPASS_INLINE void raddextexp_columns_impl(size_t rows, size_t width, const double* x, ptrdiff_t ld,
                                            double* mantissa, double* exponent, const size_t U)
{
    double acc_p[TWOPASS_MAX_COLUMNS], acc_n[TWOPASS_MAX_COLUMNS];
    (void)U;
    const size_t nv = (width + VLEN - 1) / VLEN;
    for (size_t v = 0; v < nv; v++) {
        _mm256_storeu_pd(acc_p + v * VLEN, _mm256_setzero_pd());
        _mm256_storeu_pd(acc_n + v * VLEN, _mm256_set1_pd(-INFINITY));
    }
    for (size_t r = 0; r < rows; r++, x += ld) {
        for (size_t v = 0; v < nv; v++) {
            __m256d vn;
            const __m256d p = f64x4_extexp(column_load(x, width, v), &vn);
            const __m256d old_p = _mm256_loadu_pd(acc_p + v * VLEN), old_n = _mm256_loadu_pd(acc_n + v * VLEN);
            const __m256d e = _mm256_max_pd(old_n, vn);
            _mm256_storeu_pd(acc_p + v * VLEN, _mm256_add_pd(f64x4_mul_exp2(old_p, _mm256_sub_pd(old_n, e)),
                                                             f64x4_mul_exp2(p, _mm256_sub_pd(vn, e))));
            _mm256_storeu_pd(acc_n + v * VLEN, e);
        }
    }
    for (size_t v = 0; v < nv; v++) {
        column_store(mantissa, width, v, _mm256_loadu_pd(acc_p + v * VLEN));
        column_store(exponent, width, v, _mm256_loadu_pd(acc_n + v * VLEN));
    }
}

TWOPASS_INLINE void vscaleextexp_columns_impl(size_t rows, size_t width, const double* x, ptrdiff_t x_ld,
                                              double* y, ptrdiff_t y_ld, const double* scale,
                                              const double* exponent, const size_t U)
{
    (void)U;
    const size_t nv = (width + VLEN - 1) / VLEN;
    for (size_t r = 0; r < rows; r++, x += x_ld, y += y_ld) {
        for (size_t v = 0; v < nv; v++) {
            column_store(y, width, v, scaleextexp(column_load(x, width, v), column_load(scale, width, v),
                                                  column_load(exponent, width, v)));
        }
    }
}

/* y[r, j] = (x[r, j] - c_hi[j]) - c_lo[j]: log_softmax down the columns. */
TWOPASS_INLINE void vsubc_columns_impl(size_t rows, size_t width, const double* x, ptrdiff_t x_ld, double* y,
                                       ptrdiff_t y_ld, const double* c_hi, const double* c_lo, const size_t U)
{
    (void)U;
    const size_t nv = (width + VLEN - 1) / VLEN;
    for (size_t r = 0; r < rows; r++, x += x_ld, y += y_ld) {
        for (size_t v = 0; v < nv; v++) {
            const __m256d d = _mm256_sub_pd(column_load(x, width, v), column_load(c_hi, width, v));
            column_store(y, width, v, _mm256_sub_pd(d, column_load(c_lo, width, v)));
        }
    }
}

#define TP_T double
#define TP_RNAME TWOPASS_F64_RNAME
#define TP_VNAME TWOPASS_F64_VNAME
#define TP_NNAME TWOPASS_F64_NNAME
#include "../instantiate.h"
TWOPASS_F64_AVX2_KERNELS(DEFINE_R, DEFINE_V, DEFINE_N)
