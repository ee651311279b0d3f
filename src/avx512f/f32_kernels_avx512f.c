/* float32 softmax passes for AVX-512F. Compiled with -mavx512f -mfma; nothing here runs unless the
 * dispatcher found AVX-512F and OS support for ZMM state.
 *
 * Each pass is one template (an always-inline function whose unroll U and accumulator count ACC are
 * constants once instantiated); TWOPASS_F32_AVX512F_KERNELS in kernels.h lists the instances.
 * Main loop: U floats (U/16 vectors) per iteration, vector j feeding accumulator j % ACC; then whole
 * vectors; then one masked vector for the last n % 16 floats (masked loads and stores never touch
 * memory past the end).
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include "twopass/kernels.h"
#include "f32_exp_avx512f.h"

#define VLEN 16

TWOPASS_INLINE float rmax_impl(size_t n, const float* x, const size_t U, const size_t ACC)
{
    const size_t NV = U / VLEN;
    __m512 vmax[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) vmax[k] = _mm512_set1_ps(-INFINITY);
    for (; n >= U; n -= U, x += U) {
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            vmax[j % ACC] = _mm512_max_ps(vmax[j % ACC], _mm512_loadu_ps(x + j * VLEN));
        }
    }
    for (; n >= VLEN; n -= VLEN, x += VLEN) {
        vmax[0] = _mm512_max_ps(vmax[0], _mm512_loadu_ps(x));
    }
    if (n != 0) {
        const __mmask16 mask = f32x16_tail_mask(n);
        vmax[0] = _mm512_mask_max_ps(vmax[0], mask, vmax[0], _mm512_maskz_loadu_ps(mask, x));
    }
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) vmax[0] = _mm512_max_ps(vmax[0], vmax[k]);
    return _mm512_reduce_max_ps(vmax[0]);
}

/* Accumulators hold sum = acc_p * 2^acc_n per lane. Adding terms p_j * 2^n_j:
 *   e = max(acc_n, n_j...);  acc_p = acc_p * 2^(acc_n - e) + sum_j p_j * 2^(n_j - e);  acc_n = e.
 * Scaling by 2^(negative) is exact, or flushes a term 2^-126 below the largest to 0. */
TWOPASS_INLINE void raddextexp_impl(size_t n, const float* x, float* sum, const size_t U, const size_t ACC)
{
    const size_t NV = U / VLEN;
    __m512 acc_p[TWOPASS_MAX_ACC], acc_n[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        acc_p[k] = _mm512_setzero_ps();
        acc_n[k] = _mm512_set1_ps(-INFINITY);
    }
    for (; n >= U; n -= U, x += U) {
        __m512 p[TWOPASS_MAX_VECTORS], e[TWOPASS_MAX_ACC], pn[TWOPASS_MAX_VECTORS];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) p[j] = f32x16_extexp(_mm512_loadu_ps(x + j * VLEN), &pn[j]);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) e[k] = acc_n[k];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) e[j % ACC] = _mm512_max_ps(e[j % ACC], pn[j]);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
            acc_p[k] = f32x16_mul_exp2(acc_p[k], _mm512_sub_ps(acc_n[k], e[k]));
        }
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            acc_p[j % ACC] = _mm512_add_ps(acc_p[j % ACC], f32x16_mul_exp2(p[j], _mm512_sub_ps(pn[j], e[j % ACC])));
        }
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) acc_n[k] = e[k];
    }
    for (; n != 0;) {
        /* one vector at a time; the last one masked */
        const __mmask16 mask = n >= VLEN ? (__mmask16)0xFFFF : f32x16_tail_mask(n);
        __m512 vn;
        const __m512 p = f32x16_extexp(_mm512_maskz_loadu_ps(mask, x), &vn);
        const __m512 e = _mm512_mask_max_ps(acc_n[0], mask, acc_n[0], vn);
        const __m512 sum = _mm512_add_ps(f32x16_mul_exp2(acc_p[0], _mm512_sub_ps(acc_n[0], e)),
                                         f32x16_mul_exp2(p, _mm512_sub_ps(vn, e)));
        acc_p[0] = _mm512_mask_mov_ps(acc_p[0], mask, sum); /* lanes past the end keep (0, -inf) */
        acc_n[0] = e;
        const size_t step = n >= VLEN ? VLEN : n;
        n -= step, x += step;
    }
    /* Reduce the accumulators, then the lanes, to one (mantissa, exponent) pair. Lanes never
     * written hold (0, -inf) and scale to 0; n >= 1 keeps one lane finite. */
    __m512 e = acc_n[0];
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) e = _mm512_max_ps(e, acc_n[k]);
    const float emax = _mm512_reduce_max_ps(e);
    const __m512 vemax = _mm512_set1_ps(emax);
    __m512 total = _mm512_setzero_ps();
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        total = _mm512_add_ps(total, f32x16_mul_exp2(acc_p[k], _mm512_sub_ps(acc_n[k], vemax)));
    }
    sum[0] = _mm512_reduce_add_ps(total);
    sum[1] = emax;
}

/* Online normaliser (Milakov and Gimelshein 2018), per lane and accumulator: a running max m and
 * d = sum exp(x - m); a larger max m' rescales d:  d <- d exp(m - m') + sum_j exp(x_j - m').
 * m starts at -FLT_MAX, so m - m' and x - m' are never inf - inf (an -inf x gives 0); NaN or +inf
 * make d NaN. result = (max, sum exp(x - max)). */
TWOPASS_INLINE void raddonline_impl(size_t n, const float* x, float* result, const size_t U, const size_t ACC)
{
    const size_t NV = U / VLEN;
    const __m512 zero = _mm512_setzero_ps();
    __m512 m[TWOPASS_MAX_ACC], d[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        m[k] = _mm512_set1_ps(-FLT_MAX);
        d[k] = zero;
    }
    for (; n >= U; n -= U, x += U) {
        __m512 v[TWOPASS_MAX_VECTORS], mn[TWOPASS_MAX_ACC];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) v[j] = _mm512_loadu_ps(x + j * VLEN);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) mn[k] = m[k];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) mn[j % ACC] = _mm512_max_ps(mn[j % ACC], v[j]);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) d[k] = _mm512_mul_ps(d[k], f32x16_exp_shifted(m[k], mn[k], zero));
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            d[j % ACC] = _mm512_add_ps(d[j % ACC], f32x16_exp_shifted(v[j], mn[j % ACC], zero));
        }
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) m[k] = mn[k];
    }
    for (; n != 0;) {
        /* one vector at a time; lanes past the end read as -inf, which changes neither m nor d */
        const __mmask16 mask = n >= VLEN ? (__mmask16)0xFFFF : f32x16_tail_mask(n);
        const __m512 v = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), mask, _mm512_maskz_loadu_ps(mask, x));
        const __m512 mn = _mm512_max_ps(m[0], v);
        d[0] = _mm512_add_ps(_mm512_mul_ps(d[0], f32x16_exp_shifted(m[0], mn, zero)), f32x16_exp_shifted(v, mn, zero));
        m[0] = mn;
        const size_t step = n >= VLEN ? VLEN : n;
        n -= step, x += step;
    }
    __m512 mmax = m[0];
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) mmax = _mm512_max_ps(mmax, m[k]);
    const float max = _mm512_reduce_max_ps(mmax);
    __m512 total = zero;
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        total = _mm512_add_ps(total, _mm512_mul_ps(d[k], f32x16_exp_shifted(m[k], _mm512_set1_ps(max), zero)));
    }
    result[0] = max;
    result[1] = _mm512_reduce_add_ps(total);
}

/* Sum of e = exp(x - shift) * 2^-exponent, optionally storing each e to y (STORE is a constant). */
TWOPASS_INLINE float raddexpminusmax_impl(size_t n, const float* x, float* y, float shift, float exponent,
                                          const size_t U, const size_t ACC, const int STORE)
{
    const size_t NV = U / VLEN;
    const __m512 vshift = _mm512_set1_ps(shift), vexponent = _mm512_set1_ps(exponent);
    __m512 acc[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) acc[k] = _mm512_setzero_ps();
    for (; n >= U; n -= U, x += U, y += STORE ? U : 0) {
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            const __m512 v = f32x16_exp_shifted(_mm512_loadu_ps(x + j * VLEN), vshift, vexponent);
            if (STORE) _mm512_storeu_ps(y + j * VLEN, v);
            acc[j % ACC] = _mm512_add_ps(acc[j % ACC], v);
        }
    }
    for (; n != 0;) {
        const __mmask16 mask = n >= VLEN ? (__mmask16)0xFFFF : f32x16_tail_mask(n);
        const __m512 v = f32x16_exp_shifted(_mm512_maskz_loadu_ps(mask, x), vshift, vexponent);
        if (STORE) _mm512_mask_storeu_ps(y, mask, v);
        acc[0] = _mm512_mask_add_ps(acc[0], mask, acc[0], v);
        const size_t step = n >= VLEN ? VLEN : n;
        n -= step, x += step, y += STORE ? step : 0;
    }
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) acc[0] = _mm512_add_ps(acc[0], acc[k]);
    return _mm512_reduce_add_ps(acc[0]);
}

/* y = p * scale * 2^(n - exponent), flushed to 0 below 2^-126. */
TWOPASS_INLINE __m512 scaleextexp(__m512 x, __m512 vscale, __m512 vexponent)
{
    __m512 vn;
    const __m512 p = f32x16_extexp(x, &vn);
    return f32x16_mul_exp2(_mm512_mul_ps(p, vscale), _mm512_sub_ps(vn, vexponent));
}

TWOPASS_INLINE __m512 apply_mode(__m512 v, __m512 vshift, __m512 vexponent, __m512 vscale, const int MODE)
{
    if (MODE == TWOPASS_MODE_SUB) return _mm512_sub_ps(_mm512_sub_ps(v, vshift), vexponent);
    if (MODE == TWOPASS_MODE_EXTEXP) return scaleextexp(v, vscale, vexponent);
    if (MODE == TWOPASS_MODE_EXP) v = f32x16_exp_shifted(v, vshift, vexponent);
    return _mm512_mul_ps(v, vscale);
}

/* The elementwise passes (MODE is a constant, common.h): y = x * scale (TWOPASS_MODE_SCALE),
 * y = exp(x - shift) * 2^-exponent * scale (TWOPASS_MODE_EXP), y = (x - shift) - exponent
 * (TWOPASS_MODE_SUB), y = exp(x) * scale * 2^-exponent (TWOPASS_MODE_EXTEXP).
 * NT (a constant): non-temporal stores, for outputs too large for the caches (as on AVX2), from
 * y's first 64-byte boundary; masked ordinary stores before it and for the tail; then an sfence. */
TWOPASS_INLINE void vscale_impl(size_t n, const float* x, float* y, float shift, float exponent, float scale,
                                const size_t U, const int MODE, const int NT)
{
    const size_t NV = U / VLEN;
    const __m512 vshift = _mm512_set1_ps(shift), vexponent = _mm512_set1_ps(exponent), vscale = _mm512_set1_ps(scale);
    if (NT) {
        size_t head = (((uintptr_t)0 - (uintptr_t)y) & 63) / sizeof(float); /* y is float-aligned */
        head = head < n ? head : n;
        if (head != 0) {
            const __mmask16 mask = f32x16_tail_mask(head);
            _mm512_mask_storeu_ps(y, mask, apply_mode(_mm512_maskz_loadu_ps(mask, x), vshift, vexponent, vscale, MODE));
            n -= head, x += head, y += head;
        }
    }
    for (; n >= U; n -= U, x += U, y += U) {
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            const __m512 v = apply_mode(_mm512_loadu_ps(x + j * VLEN), vshift, vexponent, vscale, MODE);
            if (NT) {
                _mm512_stream_ps(y + j * VLEN, v);
            } else {
                _mm512_storeu_ps(y + j * VLEN, v);
            }
        }
    }
    for (; n != 0;) {
        const __mmask16 mask = n >= VLEN ? (__mmask16)0xFFFF : f32x16_tail_mask(n);
        const __m512 v = apply_mode(_mm512_maskz_loadu_ps(mask, x), vshift, vexponent, vscale, MODE);
        if (NT && n >= VLEN) {
            _mm512_stream_ps(y, v);
        } else {
            _mm512_mask_storeu_ps(y, mask, v);
        }
        const size_t step = n >= VLEN ? VLEN : n;
        n -= step, x += step, y += step;
    }
    if (NT) {
        _mm_sfence();
    }
}

/* ---- Columns: lane j of vector v follows column 16v + j, one row at a time (rows ld apart). A
 * block is up to U columns wide (U/16 vectors, accumulators in L1), so each row is read as one long
 * contiguous piece: few TLB misses and whole cache lines, however far apart the rows are. ---- */

TWOPASS_INLINE __mmask16 column_mask(size_t width, size_t v)
{
    const size_t lanes = width - v * VLEN;
    return lanes >= VLEN ? (__mmask16)0xFFFF : f32x16_tail_mask(lanes);
}

/* Per lane: acc = (p, n) += extexp(x[r]) for every row, the update of raddextexp one term at a time. */
TWOPASS_INLINE void raddextexp_columns_impl(size_t rows, size_t width, const float* x, ptrdiff_t ld,
                                            float* mantissa, float* exponent, const size_t U)
{
    float acc_p[TWOPASS_MAX_COLUMNS], acc_n[TWOPASS_MAX_COLUMNS];
    (void)U;
    const size_t nv = (width + VLEN - 1) / VLEN;
    for (size_t v = 0; v < nv; v++) {
        _mm512_storeu_ps(acc_p + v * VLEN, _mm512_setzero_ps());
        _mm512_storeu_ps(acc_n + v * VLEN, _mm512_set1_ps(-INFINITY));
    }
    for (size_t r = 0; r < rows; r++, x += ld) {
        for (size_t v = 0; v < nv; v++) {
            const __mmask16 mask = column_mask(width, v);
            __m512 vn;
            const __m512 p = f32x16_extexp(_mm512_maskz_loadu_ps(mask, x + v * VLEN), &vn);
            const __m512 old_p = _mm512_loadu_ps(acc_p + v * VLEN), old_n = _mm512_loadu_ps(acc_n + v * VLEN);
            const __m512 e = _mm512_mask_max_ps(old_n, mask, old_n, vn);
            const __m512 sum = _mm512_add_ps(f32x16_mul_exp2(old_p, _mm512_sub_ps(old_n, e)),
                                             f32x16_mul_exp2(p, _mm512_sub_ps(vn, e)));
            _mm512_storeu_ps(acc_p + v * VLEN, _mm512_mask_mov_ps(old_p, mask, sum)); /* lanes past width keep (0, -inf) */
            _mm512_storeu_ps(acc_n + v * VLEN, e);
        }
    }
    for (size_t v = 0; v < nv; v++) {
        _mm512_mask_storeu_ps(mantissa + v * VLEN, column_mask(width, v), _mm512_loadu_ps(acc_p + v * VLEN));
        _mm512_mask_storeu_ps(exponent + v * VLEN, column_mask(width, v), _mm512_loadu_ps(acc_n + v * VLEN));
    }
}

TWOPASS_INLINE void vscaleextexp_columns_impl(size_t rows, size_t width, const float* x, ptrdiff_t x_ld,
                                              float* y, ptrdiff_t y_ld, const float* scale,
                                              const float* exponent, const size_t U)
{
    (void)U;
    const size_t nv = (width + VLEN - 1) / VLEN;
    for (size_t r = 0; r < rows; r++, x += x_ld, y += y_ld) {
        for (size_t v = 0; v < nv; v++) {
            const __mmask16 mask = column_mask(width, v);
            _mm512_mask_storeu_ps(y + v * VLEN, mask, scaleextexp(_mm512_maskz_loadu_ps(mask, x + v * VLEN),
                                                                  _mm512_maskz_loadu_ps(mask, scale + v * VLEN),
                                                                  _mm512_maskz_loadu_ps(mask, exponent + v * VLEN)));
        }
    }
}

/* y[r, j] = (x[r, j] - c_hi[j]) - c_lo[j]: log_softmax down the columns. */
TWOPASS_INLINE void vsubc_columns_impl(size_t rows, size_t width, const float* x, ptrdiff_t x_ld, float* y,
                                       ptrdiff_t y_ld, const float* c_hi, const float* c_lo, const size_t U)
{
    (void)U;
    const size_t nv = (width + VLEN - 1) / VLEN;
    for (size_t r = 0; r < rows; r++, x += x_ld, y += y_ld) {
        for (size_t v = 0; v < nv; v++) {
            const __mmask16 mask = column_mask(width, v);
            const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + v * VLEN),
                                           _mm512_maskz_loadu_ps(mask, c_hi + v * VLEN));
            _mm512_mask_storeu_ps(y + v * VLEN, mask, _mm512_sub_ps(d, _mm512_maskz_loadu_ps(mask, c_lo + v * VLEN)));
        }
    }
}

#define TP_T float
#define TP_RNAME TWOPASS_F32_RNAME
#define TP_VNAME TWOPASS_F32_VNAME
#define TP_NNAME TWOPASS_F32_NNAME
#include "../instantiate.h"
TWOPASS_F32_AVX512F_KERNELS(DEFINE_R, DEFINE_V, DEFINE_N)
