/* float32 softmax passes for AVX2 + FMA. Compiled with -mavx2 -mfma; nothing here runs unless the
 * dispatcher found AVX2, FMA and OS support for YMM state.
 *
 * Same templates as the AVX-512F file, on 8-float vectors: U floats per iteration, vector j feeding
 * accumulator j % ACC, then whole vectors, then one masked vector for the last n % 8 floats
 * (maskload/maskstore never touch memory past the end). TWOPASS_F32_AVX2_KERNELS lists the instances.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include "twopass/kernels.h"
#include "f32_exp_avx2.h"

#define VLEN 8

TWOPASS_INLINE float hmax_f32x8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

TWOPASS_INLINE float hsum_f32x8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The lanes of x selected by mask, `fill` in the others (maskload reads nothing past them). */
TWOPASS_INLINE __m256 load_tail(const float* x, __m256i mask, __m256 fill)
{
    return _mm256_blendv_ps(fill, _mm256_maskload_ps(x, mask), _mm256_castsi256_ps(mask));
}

TWOPASS_INLINE float rmax_impl(size_t n, const float* x, const size_t U, const size_t ACC)
{
    const size_t NV = U / VLEN;
    __m256 vmax[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) vmax[k] = _mm256_set1_ps(-INFINITY);
    for (; n >= U; n -= U, x += U) {
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            vmax[j % ACC] = _mm256_max_ps(vmax[j % ACC], _mm256_loadu_ps(x + j * VLEN));
        }
    }
    for (; n >= VLEN; n -= VLEN, x += VLEN) {
        vmax[0] = _mm256_max_ps(vmax[0], _mm256_loadu_ps(x));
    }
    if (n != 0) {
        vmax[0] = _mm256_max_ps(vmax[0], load_tail(x, f32x8_tail_mask(n), _mm256_set1_ps(-INFINITY)));
    }
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) vmax[0] = _mm256_max_ps(vmax[0], vmax[k]);
    return hmax_f32x8(vmax[0]);
}

/* Accumulators hold sum = acc_p * 2^acc_n per lane. Adding terms p_j * 2^n_j:
 *   e = max(acc_n, n_j...);  acc_p = acc_p * 2^(acc_n - e) + sum_j p_j * 2^(n_j - e);  acc_n = e. */
TWOPASS_INLINE void raddextexp_impl(size_t n, const float* x, float* sum, const size_t U, const size_t ACC)
{
    const size_t NV = U / VLEN;
    __m256 acc_p[TWOPASS_MAX_ACC], acc_n[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        acc_p[k] = _mm256_setzero_ps();
        acc_n[k] = _mm256_set1_ps(-INFINITY);
    }
    for (; n >= U; n -= U, x += U) {
        __m256 p[TWOPASS_MAX_VECTORS], pn[TWOPASS_MAX_VECTORS], e[TWOPASS_MAX_ACC];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) p[j] = f32x8_extexp(_mm256_loadu_ps(x + j * VLEN), &pn[j]);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) e[k] = acc_n[k];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) e[j % ACC] = _mm256_max_ps(e[j % ACC], pn[j]);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
            acc_p[k] = f32x8_mul_exp2(acc_p[k], _mm256_sub_ps(acc_n[k], e[k]));
        }
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            acc_p[j % ACC] = _mm256_add_ps(acc_p[j % ACC], f32x8_mul_exp2(p[j], _mm256_sub_ps(pn[j], e[j % ACC])));
        }
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) acc_n[k] = e[k];
    }
    for (; n != 0;) {
        /* one vector at a time; the last one masked, its other lanes keeping the accumulator */
        const __m256i mask = n >= VLEN ? _mm256_set1_epi32(-1) : f32x8_tail_mask(n);
        __m256 vn;
        const __m256 p = f32x8_extexp(_mm256_maskload_ps(x, mask), &vn);
        const __m256 e = _mm256_max_ps(acc_n[0], vn);
        const __m256 new_p = _mm256_add_ps(f32x8_mul_exp2(acc_p[0], _mm256_sub_ps(acc_n[0], e)),
                                           f32x8_mul_exp2(p, _mm256_sub_ps(vn, e)));
        acc_p[0] = _mm256_blendv_ps(acc_p[0], new_p, _mm256_castsi256_ps(mask));
        acc_n[0] = _mm256_blendv_ps(acc_n[0], e, _mm256_castsi256_ps(mask));
        const size_t step = n >= VLEN ? VLEN : n;
        n -= step, x += step;
    }
    /* Reduce the accumulators, then the lanes, to one (mantissa, exponent) pair; lanes never written
     * hold (0, -inf) and scale to 0; n >= 1 keeps one lane finite. */
    __m256 e = acc_n[0];
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) e = _mm256_max_ps(e, acc_n[k]);
    const float emax = hmax_f32x8(e);
    const __m256 vemax = _mm256_set1_ps(emax);
    __m256 total = _mm256_setzero_ps();
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        total = _mm256_add_ps(total, f32x8_mul_exp2(acc_p[k], _mm256_sub_ps(acc_n[k], vemax)));
    }
    sum[0] = hsum_f32x8(total);
    sum[1] = emax;
}

/* Online normaliser (Milakov and Gimelshein 2018), per lane and accumulator: a running max m and
 * d = sum exp(x - m); a larger max m' rescales d:  d <- d exp(m - m') + sum_j exp(x_j - m').
 * m starts at -FLT_MAX, so m - m' and x - m' are never inf - inf (an -inf x gives 0); NaN or +inf
 * make d NaN. result = (max, sum exp(x - max)). */
TWOPASS_INLINE void raddonline_impl(size_t n, const float* x, float* result, const size_t U, const size_t ACC)
{
    const size_t NV = U / VLEN;
    const __m256 zero = _mm256_setzero_ps();
    __m256 m[TWOPASS_MAX_ACC], d[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        m[k] = _mm256_set1_ps(-FLT_MAX);
        d[k] = zero;
    }
    for (; n >= U; n -= U, x += U) {
        __m256 v[TWOPASS_MAX_VECTORS], mn[TWOPASS_MAX_ACC];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) v[j] = _mm256_loadu_ps(x + j * VLEN);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) mn[k] = m[k];
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) mn[j % ACC] = _mm256_max_ps(mn[j % ACC], v[j]);
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) d[k] = _mm256_mul_ps(d[k], f32x8_exp_shifted(m[k], mn[k], zero));
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            d[j % ACC] = _mm256_add_ps(d[j % ACC], f32x8_exp_shifted(v[j], mn[j % ACC], zero));
        }
        TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) m[k] = mn[k];
    }
    for (; n != 0;) {
        /* one vector at a time; lanes past the end read as -inf, which changes neither m nor d */
        const __m256i mask = n >= VLEN ? _mm256_set1_epi32(-1) : f32x8_tail_mask(n);
        const __m256 v = load_tail(x, mask, _mm256_set1_ps(-INFINITY));
        const __m256 mn = _mm256_max_ps(m[0], v);
        d[0] = _mm256_add_ps(_mm256_mul_ps(d[0], f32x8_exp_shifted(m[0], mn, zero)), f32x8_exp_shifted(v, mn, zero));
        m[0] = mn;
        const size_t step = n >= VLEN ? VLEN : n;
        n -= step, x += step;
    }
    __m256 mmax = m[0];
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) mmax = _mm256_max_ps(mmax, m[k]);
    const float max = hmax_f32x8(mmax);
    __m256 total = zero;
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) {
        total = _mm256_add_ps(total, _mm256_mul_ps(d[k], f32x8_exp_shifted(m[k], _mm256_set1_ps(max), zero)));
    }
    result[0] = max;
    result[1] = hsum_f32x8(total);
}

/* y = p * scale * 2^(n - exponent), flushed to 0 below 2^-126. */
TWOPASS_INLINE __m256 scaleextexp(__m256 x, __m256 vscale, __m256 vexponent)
{
    __m256 vn;
    const __m256 p = f32x8_extexp(x, &vn);
    return f32x8_mul_exp2(_mm256_mul_ps(p, vscale), _mm256_sub_ps(vn, vexponent));
}

/* Sum of e = exp(x - shift) * 2^-exponent, optionally storing each e to y (STORE is a constant). */
TWOPASS_INLINE float raddexpminusmax_impl(size_t n, const float* x, float* y, float shift, float exponent,
                                          const size_t U, const size_t ACC, const int STORE)
{
    const size_t NV = U / VLEN;
    const __m256 vshift = _mm256_set1_ps(shift), vexponent = _mm256_set1_ps(exponent);
    __m256 acc[TWOPASS_MAX_ACC];
    TWOPASS_UNROLL for (size_t k = 0; k < ACC; k++) acc[k] = _mm256_setzero_ps();
    for (; n >= U; n -= U, x += U, y += STORE ? U : 0) {
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            const __m256 v = f32x8_exp_shifted(_mm256_loadu_ps(x + j * VLEN), vshift, vexponent);
            if (STORE) _mm256_storeu_ps(y + j * VLEN, v);
            acc[j % ACC] = _mm256_add_ps(acc[j % ACC], v);
        }
    }
    for (; n != 0;) {
        const __m256i mask = n >= VLEN ? _mm256_set1_epi32(-1) : f32x8_tail_mask(n);
        __m256 v = f32x8_exp_shifted(_mm256_maskload_ps(x, mask), vshift, vexponent);
        if (STORE) _mm256_maskstore_ps(y, mask, v);
        v = _mm256_and_ps(v, _mm256_castsi256_ps(mask)); /* lanes past the end add 0 */
        acc[0] = _mm256_add_ps(acc[0], v);
        const size_t step = n >= VLEN ? VLEN : n;
        n -= step, x += step, y += STORE ? step : 0;
    }
    TWOPASS_UNROLL for (size_t k = 1; k < ACC; k++) acc[0] = _mm256_add_ps(acc[0], acc[k]);
    return hsum_f32x8(acc[0]);
}

TWOPASS_INLINE __m256 apply_mode(__m256 v, __m256 vshift, __m256 vexponent, __m256 vscale, const int MODE)
{
    if (MODE == TWOPASS_MODE_SUB) return _mm256_sub_ps(_mm256_sub_ps(v, vshift), vexponent);
    if (MODE == TWOPASS_MODE_EXTEXP) return scaleextexp(v, vscale, vexponent);
    if (MODE == TWOPASS_MODE_EXP) v = f32x8_exp_shifted(v, vshift, vexponent);
    return _mm256_mul_ps(v, vscale);
}

/* The elementwise passes (MODE is a constant, common.h): y = x * scale (TWOPASS_MODE_SCALE),
 * y = exp(x - shift) * 2^-exponent * scale (TWOPASS_MODE_EXP), y = (x - shift) - exponent
 * (TWOPASS_MODE_SUB), y = exp(x) * scale * 2^-exponent (TWOPASS_MODE_EXTEXP).
 * NT (a constant): non-temporal stores, for outputs too large for the caches. They skip the read
 * of each line before it is written (write-allocate) and keep the input in cache; they need 32-byte
 * aligned addresses, so the floats before y's first 32-byte boundary and the tail use masked
 * ordinary stores. An sfence orders the streamed stores before anything that follows. */
TWOPASS_INLINE void vscale_impl(size_t n, const float* x, float* y, float shift, float exponent, float scale,
                                const size_t U, const int MODE, const int NT)
{
    const size_t NV = U / VLEN;
    const __m256 vshift = _mm256_set1_ps(shift), vexponent = _mm256_set1_ps(exponent), vscale = _mm256_set1_ps(scale);
    if (NT) {
        size_t head = (((uintptr_t)0 - (uintptr_t)y) & 31) / sizeof(float); /* y is float-aligned */
        head = head < n ? head : n;
        if (head != 0) {
            const __m256i mask = f32x8_tail_mask(head);
            _mm256_maskstore_ps(y, mask, apply_mode(_mm256_maskload_ps(x, mask), vshift, vexponent, vscale, MODE));
            n -= head, x += head, y += head;
        }
    }
    for (; n >= U; n -= U, x += U, y += U) {
        TWOPASS_UNROLL for (size_t j = 0; j < NV; j++) {
            const __m256 v = apply_mode(_mm256_loadu_ps(x + j * VLEN), vshift, vexponent, vscale, MODE);
            if (NT) {
                _mm256_stream_ps(y + j * VLEN, v);
            } else {
                _mm256_storeu_ps(y + j * VLEN, v);
            }
        }
    }
    for (; n != 0;) {
        const __m256i mask = n >= VLEN ? _mm256_set1_epi32(-1) : f32x8_tail_mask(n);
        const __m256 v = apply_mode(_mm256_maskload_ps(x, mask), vshift, vexponent, vscale, MODE);
        if (NT && n >= VLEN) {
            _mm256_stream_ps(y, v);
        } else {
            _mm256_maskstore_ps(y, mask, v);
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

/* Vector v of row x of a block of `width` columns: whole, or masked if it is the last, partial one
 * (vmaskmov is slow on some CPUs, so only the partial vector uses it). */
TWOPASS_INLINE __m256 column_load(const float* x, size_t width, size_t v)
{
    const size_t lanes = width - v * VLEN;
    return lanes >= VLEN ? _mm256_loadu_ps(x + v * VLEN) : _mm256_maskload_ps(x + v * VLEN, f32x8_tail_mask(lanes));
}

TWOPASS_INLINE void column_store(float* y, size_t width, size_t v, __m256 value)
{
    const size_t lanes = width - v * VLEN;
    if (lanes >= VLEN) {
        _mm256_storeu_ps(y + v * VLEN, value);
    } else {
        _mm256_maskstore_ps(y + v * VLEN, f32x8_tail_mask(lanes), value);
    }
}

/* Per lane: acc = (p, n) += extexp(x[r]) for every row, the update of raddextexp one term at a time. */
TWOPASS_INLINE void raddextexp_columns_impl(size_t rows, size_t width, const float* x, ptrdiff_t ld,
                                            float* mantissa, float* exponent, const size_t U)
{
    float acc_p[TWOPASS_MAX_COLUMNS], acc_n[TWOPASS_MAX_COLUMNS];
    (void)U;
    const size_t nv = (width + VLEN - 1) / VLEN;
    for (size_t v = 0; v < nv; v++) {
        _mm256_storeu_ps(acc_p + v * VLEN, _mm256_setzero_ps());
        _mm256_storeu_ps(acc_n + v * VLEN, _mm256_set1_ps(-INFINITY));
    }
    for (size_t r = 0; r < rows; r++, x += ld) {
        for (size_t v = 0; v < nv; v++) {
            __m256 vn;
            const __m256 p = f32x8_extexp(column_load(x, width, v), &vn);
            const __m256 old_p = _mm256_loadu_ps(acc_p + v * VLEN), old_n = _mm256_loadu_ps(acc_n + v * VLEN);
            const __m256 e = _mm256_max_ps(old_n, vn);
            _mm256_storeu_ps(acc_p + v * VLEN, _mm256_add_ps(f32x8_mul_exp2(old_p, _mm256_sub_ps(old_n, e)),
                                                             f32x8_mul_exp2(p, _mm256_sub_ps(vn, e))));
            _mm256_storeu_ps(acc_n + v * VLEN, e);
        }
    }
    for (size_t v = 0; v < nv; v++) {
        column_store(mantissa, width, v, _mm256_loadu_ps(acc_p + v * VLEN));
        column_store(exponent, width, v, _mm256_loadu_ps(acc_n + v * VLEN));
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
            column_store(y, width, v, scaleextexp(column_load(x, width, v), column_load(scale, width, v),
                                                  column_load(exponent, width, v)));
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
            const __m256 d = _mm256_sub_ps(column_load(x, width, v), column_load(c_hi, width, v));
            column_store(y, width, v, _mm256_sub_ps(d, column_load(c_lo, width, v)));
        }
    }
}

#define TP_T float
#define TP_RNAME TWOPASS_F32_RNAME
#define TP_VNAME TWOPASS_F32_VNAME
#define TP_NNAME TWOPASS_F32_NNAME
#include "../instantiate.h"
TWOPASS_F32_AVX2_KERNELS(DEFINE_R, DEFINE_V, DEFINE_N)
