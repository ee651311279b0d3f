/* float64 softmax passes for AVX-512F. Compiled with -mavx512f -mfma; nothing here runs unless the
 * dispatcher found AVX-512F and OS support for ZMM state.
 *
 * The templates of f32_kernels_avx512f.c on 8-double vectors, with the float64 exp of
 * f64_exp_avx512f.h: U doubles per iteration (U/8 vectors), vector j feeding accumulator j % ACC;
 * then whole vectors; then one masked vector for the last n % 8 doubles. Powers of two below
 * 2^-1022 flush to 0. TWOPASS_F64_AVX512F_KERNELS in kernels.h lists the instances.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include "twopass/kernels.h"
#include "f64_exp_avx512f.h"

#define VLEN 8

TWOPASS_INLINE double rmax_impl(size_t n, const double* x, const size_t U, const size_t ACC)
{
    const size_t NV = U / VLEN;
    __m512d vmax[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) vmax[k] = _mm512_set1_pd(-INFINITY);
    for (; n >= U; n -= U, x += U) {
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            vmax[j % ACC] = _mm512_max_pd(vmax[j % ACC], _mm512_loadu_pd(x + j * VLEN));
        }
    }
    for (; n >= VLEN; n -= VLEN, x += VLEN) {
        vmax[0] = _mm512_max_pd(vmax[0], _mm512_loadu_pd(x));
    }
    if (n != 0) {
        const __mmask8 mask = f64x8_tail_mask(n);
        vmax[0] = _mm512_mask_max_pd(vmax[0], mask, vmax[0], _mm512_maskz_loadu_pd(mask, x));
    }
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) vmax[0] = _mm512_max_pd(vmax[0], vmax[k]);
    return _mm512_reduce_max_pd(vmax[0]);
}

/* Accumulators hold sum = acc_p * 2^acc_n per lane. Adding terms p_j * 2^n_j:
 *   e = max(acc_n, n_j...);  acc_p = acc_p * 2^(acc_n - e) + sum_j p_j * 2^(n_j - e);  acc_n = e.
 * Scaling by 2^(negative) is exact, or flushes a term 2^-1022 below the largest to 0. */
TWOPASS_INLINE void raddextexp_impl(size_t n, const double* x, double* sum, const size_t U, const size_t ACC)
{
    const size_t NV = U / VLEN;
    __m512d acc_p[TWOPASS_MAX_ACC], acc_n[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        acc_p[k] = _mm512_setzero_pd();
        acc_n[k] = _mm512_set1_pd(-INFINITY);
    }
    for (; n >= U; n -= U, x += U) {
        __m512d p[TWOPASS_MAX_VECTORS], e[TWOPASS_MAX_ACC], pn[TWOPASS_MAX_VECTORS];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) p[j] = f64x8_extexp(_mm512_loadu_pd(x + j * VLEN), &pn[j]);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) e[k] = acc_n[k];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) e[j % ACC] = _mm512_max_pd(e[j % ACC], pn[j]);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
            acc_p[k] = f64x8_mul_exp2(acc_p[k], _mm512_sub_pd(acc_n[k], e[k]));
        }
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            acc_p[j % ACC] = _mm512_add_pd(acc_p[j % ACC], f64x8_mul_exp2(p[j], _mm512_sub_pd(pn[j], e[j % ACC])));
        }
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) acc_n[k] = e[k];
    }
    for (; n != 0;) {
        /* one vector at a time; the last one masked */
        const __mmask8 mask = n >= VLEN ? (__mmask8)0xFF : f64x8_tail_mask(n);
        __m512d vn;
        const __m512d p = f64x8_extexp(_mm512_maskz_loadu_pd(mask, x), &vn);
        const __m512d e = _mm512_mask_max_pd(acc_n[0], mask, acc_n[0], vn);
        const __m512d sum = _mm512_add_pd(f64x8_mul_exp2(acc_p[0], _mm512_sub_pd(acc_n[0], e)),
                                         f64x8_mul_exp2(p, _mm512_sub_pd(vn, e)));
        acc_p[0] = _mm512_mask_mov_pd(acc_p[0], mask, sum); /* lanes past the end keep (0, -inf) */
        acc_n[0] = e;
        const size_t step = n >= VLEN ? VLEN : n;
        n -= step, x += step;
    }
    /* Reduce the accumulators, then the lanes, to one (mantissa, exponent) pair. Lanes never
     * written hold (0, -inf) and scale to 0; n >= 1 keeps one lane finite. */
    __m512d e = acc_n[0];
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) e = _mm512_max_pd(e, acc_n[k]);
    const double emax = _mm512_reduce_max_pd(e);
    const __m512d vemax = _mm512_set1_pd(emax);
    __m512d total = _mm512_setzero_pd();
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        total = _mm512_add_pd(total, f64x8_mul_exp2(acc_p[k], _mm512_sub_pd(acc_n[k], vemax)));
    }
    sum[0] = _mm512_reduce_add_pd(total);
    sum[1] = emax;
}

/* Online normaliser (Milakov and Gimelshein 2018), per lane and accumulator: a running max m and
 * d = sum exp(x - m); a larger max m' rescales d:  d <- d exp(m - m') + sum_j exp(x_j - m').
 * m starts at -DBL_MAX, so m - m' and x - m' are never inf - inf (an -inf x gives 0); NaN or +inf
 * make d NaN. result = (max, sum exp(x - max)). */
TWOPASS_INLINE void raddonline_impl(size_t n, const double* x, double* result, const size_t U, const size_t ACC)
{
    const size_t NV = U / VLEN;
    const __m512d zero = _mm512_setzero_pd();
    __m512d m[TWOPASS_MAX_ACC], d[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        m[k] = _mm512_set1_pd(-DBL_MAX);
        d[k] = zero;
    }
    for (; n >= U; n -= U, x += U) {
        __m512d v[TWOPASS_MAX_VECTORS], mn[TWOPASS_MAX_ACC];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) v[j] = _mm512_loadu_pd(x + j * VLEN);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) mn[k] = m[k];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) mn[j % ACC] = _mm512_max_pd(mn[j % ACC], v[j]);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) d[k] = _mm512_mul_pd(d[k], f64x8_exp_shifted(m[k], mn[k], zero));
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            d[j % ACC] = _mm512_add_pd(d[j % ACC], f64x8_exp_shifted(v[j], mn[j % ACC], zero));
        }
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) m[k] = mn[k];
    }
    for (; n != 0;) {
        /* one vector at a time; lanes past the end read as -inf, which changes neither m nor d */
        const __mmask8 mask = n >= VLEN ? (__mmask8)0xFF : f64x8_tail_mask(n);
        const __m512d v = _mm512_mask_mov_pd(_mm512_set1_pd(-INFINITY), mask, _mm512_maskz_loadu_pd(mask, x));
        const __m512d mn = _mm512_max_pd(m[0], v);
        d[0] = _mm512_add_pd(_mm512_mul_pd(d[0], f64x8_exp_shifted(m[0], mn, zero)), f64x8_exp_shifted(v, mn, zero));
        m[0] = mn;
        const size_t step = n >= VLEN ? VLEN : n;
        n -= step, x += step;
    }
    __m512d mmax = m[0];
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) mmax = _mm512_max_pd(mmax, m[k]);
    const double max = _mm512_reduce_max_pd(mmax);
    __m512d total = zero;
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        total = _mm512_add_pd(total, _mm512_mul_pd(d[k], f64x8_exp_shifted(m[k], _mm512_set1_pd(max), zero)));
    }
    result[0] = max;
    result[1] = _mm512_reduce_add_pd(total);
}

/* Sum of e = exp(x - shift) * 2^-exponent, optionally storing each e to y (STORE is a constant). */
TWOPASS_INLINE double raddexpminusmax_impl(size_t n, const double* x, double* y, double shift, double exponent,
                                          const size_t U, const size_t ACC, const int STORE)
{
    const size_t NV = U / VLEN;
    const __m512d vshift = _mm512_set1_pd(shift), vexponent = _mm512_set1_pd(exponent);
    __m512d acc[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) acc[k] = _mm512_setzero_pd();
    for (; n >= U; n -= U, x += U, y += STORE ? U : 0) {
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            const __m512d v = f64x8_exp_shifted(_mm512_loadu_pd(x + j * VLEN), vshift, vexponent);
            if (STORE) _mm512_storeu_pd(y + j * VLEN, v);
            acc[j % ACC] = _mm512_add_pd(acc[j % ACC], v);
        }
    }
    for (; n != 0;) {
        const __mmask8 mask = n >= VLEN ? (__mmask8)0xFF : f64x8_tail_mask(n);
        const __m512d v = f64x8_exp_shifted(_mm512_maskz_loadu_pd(mask, x), vshift, vexponent);
        if (STORE) _mm512_mask_storeu_pd(y, mask, v);
        acc[0] = _mm512_mask_add_pd(acc[0], mask, acc[0], v);
        const size_t step = n >= VLEN ? VLEN : n;
        n -= step, x += step, y += STORE ? step : 0;
    }
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) acc[0] = _mm512_add_pd(acc[0], acc[k]);
    return _mm512_reduce_add_pd(acc[0]);
}

/* y = p * scale * 2^(n - exponent), flushed to 0 below 2^-1022. */
TWOPASS_INLINE __m512d scaleextexp(__m512d x, __m512d vscale, __m512d vexponent)
{
    __m512d vn;
    const __m512d p = f64x8_extexp(x, &vn);
    return f64x8_mul_exp2(_mm512_mul_pd(p, vscale), _mm512_sub_pd(vn, vexponent));
}

TWOPASS_INLINE __m512d apply_mode(__m512d v, __m512d vshift, __m512d vexponent, __m512d vscale, const int MODE)
{
    if (MODE == TWOPASS_MODE_SUB) return _mm512_sub_pd(_mm512_sub_pd(v, vshift), vexponent);
    if (MODE == TWOPASS_MODE_EXTEXP) return scaleextexp(v, vscale, vexponent);
    if (MODE == TWOPASS_MODE_EXP) v = f64x8_exp_shifted(v, vshift, vexponent);
    return _mm512_mul_pd(v, vscale);
}

/* The elementwise passes (MODE is a constant, common.h): y = x * scale (TWOPASS_MODE_SCALE),
 * y = exp(x - shift) * 2^-exponent * scale (TWOPASS_MODE_EXP), y = (x - shift) - exponent
 * (TWOPASS_MODE_SUB), y = exp(x) * scale * 2^-exponent (TWOPASS_MODE_EXTEXP).
 * NT (a constant): non-temporal stores, for outputs too large for the caches (as on AVX2), from
 * y's first 64-byte boundary; masked ordinary stores before it and for the tail; then an sfence. */
TWOPASS_INLINE void vscale_impl(size_t n, const double* x, double* y, double shift, double exponent, double scale,
                                const size_t U, const int MODE, const int NT)
{
    const size_t NV = U / VLEN;
    const __m512d vshift = _mm512_set1_pd(shift), vexponent = _mm512_set1_pd(exponent), vscale = _mm512_set1_pd(scale);
    if (NT) {
        size_t head = (((uintptr_t)0 - (uintptr_t)y) & 63) / sizeof(double); /* y is double-aligned */
        head = head < n ? head : n;
        if (head != 0) {
            const __mmask8 mask = f64x8_tail_mask(head);
            _mm512_mask_storeu_pd(y, mask, apply_mode(_mm512_maskz_loadu_pd(mask, x), vshift, vexponent, vscale, MODE));
            n -= head, x += head, y += head;
        }
    }
    for (; n >= U; n -= U, x += U, y += U) {
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            const __m512d v = apply_mode(_mm512_loadu_pd(x + j * VLEN), vshift, vexponent, vscale, MODE);
            if (NT) {
                _mm512_stream_pd(y + j * VLEN, v);
            } else {
                _mm512_storeu_pd(y + j * VLEN, v);
            }
        }
    }
    for (; n != 0;) {
        const __mmask8 mask = n >= VLEN ? (__mmask8)0xFF : f64x8_tail_mask(n);
        const __m512d v = apply_mode(_mm512_maskz_loadu_pd(mask, x), vshift, vexponent, vscale, MODE);
        if (NT && n >= VLEN) {
            _mm512_stream_pd(y, v);
        } else {
            _mm512_mask_storeu_pd(y, mask, v);
        }
        const size_t step = n >= VLEN ? VLEN : n;
        n -= step, x += step, y += step;
    }
    if (NT) {
        _mm_sfence();
    }
}

/* ---- Columns: lane j of vector v follows column 8v + j, one row at a time (rows ld apart). A
 * block is up to U columns wide (U/8 vectors, accumulators in L1), so each row is read as one long
 * contiguous piece: few TLB misses and whole cache lines, however far apart the rows are. ---- */

TWOPASS_INLINE __mmask8 column_mask(size_t width, size_t v)
{
    const size_t lanes = width - v * VLEN;
    return lanes >= VLEN ? (__mmask8)0xFF : f64x8_tail_mask(lanes);
}

/* Per lane: acc = (p, n) += extexp(x[r]) for every row, the update of raddextexp one term at a time. */
TWOPASS_INLINE void raddextexp_columns_impl(size_t rows, size_t width, const double* x, ptrdiff_t ld,
                                            double* mantissa, double* exponent, const size_t U)
{
    double acc_p[TWOPASS_MAX_COLUMNS], acc_n[TWOPASS_MAX_COLUMNS];
    (void)U;
    const size_t nv = (width + VLEN - 1) / VLEN;
    for (size_t v = 0; v < nv; v++) {
        _mm512_storeu_pd(acc_p + v * VLEN, _mm512_setzero_pd());
        _mm512_storeu_pd(acc_n + v * VLEN, _mm512_set1_pd(-INFINITY));
    }
    for (size_t r = 0; r < rows; r++, x += ld) {
        for (size_t v = 0; v < nv; v++) {
            const __mmask8 mask = column_mask(width, v);
            __m512d vn;
            const __m512d p = f64x8_extexp(_mm512_maskz_loadu_pd(mask, x + v * VLEN), &vn);
            const __m512d old_p = _mm512_loadu_pd(acc_p + v * VLEN), old_n = _mm512_loadu_pd(acc_n + v * VLEN);
            const __m512d e = _mm512_mask_max_pd(old_n, mask, old_n, vn);
            const __m512d sum = _mm512_add_pd(f64x8_mul_exp2(old_p, _mm512_sub_pd(old_n, e)),
                                             f64x8_mul_exp2(p, _mm512_sub_pd(vn, e)));
            _mm512_storeu_pd(acc_p + v * VLEN, _mm512_mask_mov_pd(old_p, mask, sum)); /* lanes past width keep (0, -inf) */
            _mm512_storeu_pd(acc_n + v * VLEN, e);
        }
    }
    for (size_t v = 0; v < nv; v++) {
        _mm512_mask_storeu_pd(mantissa + v * VLEN, column_mask(width, v), _mm512_loadu_pd(acc_p + v * VLEN));
        _mm512_mask_storeu_pd(exponent + v * VLEN, column_mask(width, v), _mm512_loadu_pd(acc_n + v * VLEN));
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
            const __mmask8 mask = column_mask(width, v);
            _mm512_mask_storeu_pd(y + v * VLEN, mask, scaleextexp(_mm512_maskz_loadu_pd(mask, x + v * VLEN),
                                                                  _mm512_maskz_loadu_pd(mask, scale + v * VLEN),
                                                                  _mm512_maskz_loadu_pd(mask, exponent + v * VLEN)));
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
            const __mmask8 mask = column_mask(width, v);
            const __m512d d = _mm512_sub_pd(_mm512_maskz_loadu_pd(mask, x + v * VLEN),
                                           _mm512_maskz_loadu_pd(mask, c_hi + v * VLEN));
            _mm512_mask_storeu_pd(y + v * VLEN, mask, _mm512_sub_pd(d, _mm512_maskz_loadu_pd(mask, c_lo + v * VLEN)));
        }
    }
}

#define TP_T double
#define TP_RNAME TWOPASS_F64_RNAME
#define TP_VNAME TWOPASS_F64_VNAME
#define TP_NNAME TWOPASS_F64_NNAME
#include "../instantiate.h"
TWOPASS_F64_AVX512F_KERNELS(DEFINE_R, DEFINE_V, DEFINE_N)
