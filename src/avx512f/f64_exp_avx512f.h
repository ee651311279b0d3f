/* float64 exp cores on 8 doubles with AVX-512F. Included only by files compiled with -mavx512f.
 * The same reduction and polynomial as f64_exp_avx2.h (constants and error budget there); powers
 * of two by vscalefpd, which also rounds subnormal results once and overflows to inf by itself.
 */
#ifndef TWOPASS_F64_EXP_AVX512F_H
#define TWOPASS_F64_EXP_AVX512F_H

#include <immintrin.h>
#include "twopass/common.h"

/* Constants: twopass/common.h. */

/* e^t ~ 1 + (t + t^2 * Q(t)), Q(t) = C2 + t*(C3 + ... + t*C11) by Horner with FMA, on |t| <= 0.3468:
 * relative error 2^-57.9 before rounding; the rounding of t + t^2*Q and of 1 + that dominate. */
TWOPASS_INLINE __m512d f64x8_exp_poly(__m512d t)
{
    __m512d q = _mm512_fmadd_pd(_mm512_set1_pd(TWOPASS_F64_EXP_C11), t, _mm512_set1_pd(TWOPASS_F64_EXP_C10));
    q = _mm512_fmadd_pd(q, t, _mm512_set1_pd(TWOPASS_F64_EXP_C9));
    q = _mm512_fmadd_pd(q, t, _mm512_set1_pd(TWOPASS_F64_EXP_C8));
    q = _mm512_fmadd_pd(q, t, _mm512_set1_pd(TWOPASS_F64_EXP_C7));
    q = _mm512_fmadd_pd(q, t, _mm512_set1_pd(TWOPASS_F64_EXP_C6));
    q = _mm512_fmadd_pd(q, t, _mm512_set1_pd(TWOPASS_F64_EXP_C5));
    q = _mm512_fmadd_pd(q, t, _mm512_set1_pd(TWOPASS_F64_EXP_C4));
    q = _mm512_fmadd_pd(q, t, _mm512_set1_pd(TWOPASS_F64_EXP_C3));
    q = _mm512_fmadd_pd(q, t, _mm512_set1_pd(TWOPASS_F64_EXP_C2));
    const __m512d u = _mm512_fmadd_pd(_mm512_mul_pd(t, t), q, t);
    return _mm512_add_pd(u, _mm512_set1_pd(1.0));
}

/* v * 2^d for integral d <= 0 (or NaN): one VSCALEFPD. A result below 2^-1022 is flushed to 0 by
 * MXCSR.FTZ, which every caller of the kernels sets (as for float32, f32_exp_avx512f.h), where a
 * compare, a multiply and a masked VSCALEF flushed every d < -1022 (float64 softmax on 1e5 doubles:
 * two_pass 1.10x and reload 1.05x faster without). FTZ zeroes the same results for |v| < 2
 * and keeps the normal results of a larger v (a sum's mantissa). A NaN v or d gives NaN. d = +inf is
 * outside: there VSCALEF gives +inf even for a NaN v (its special-case table). The passes never pass
 * it but in one case: only x = +inf has n = +inf, and then the max they subtract is +inf too (rmax
 * keeps NaN, so a NaN elsewhere cannot hide it) and d is NaN; blocked reload's pass 1 runs a block on
 * the exponent so far, where x = +inf gives d = +inf, but its max (or a NaN sum) then sends the slice
 * to reload, which discards that pass. */
TWOPASS_INLINE __m512d f64x8_mul_exp2(__m512d v, __m512d d)
{
    return _mm512_scalef_pd(v, d);
}

/* n = round(x * log2(e)); t = x - n * ln2 by Cody-Waite with two FMA steps; returns e^t. */
TWOPASS_INLINE __m512d f64x8_exp_reduce(__m512d x, __m512d* n)
{
    *n = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(TWOPASS_F64_LOG2E)),
                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d t = _mm512_fmadd_pd(*n, _mm512_set1_pd(TWOPASS_F64_MINUS_LN2_HI), x);
    t = _mm512_fmadd_pd(*n, _mm512_set1_pd(TWOPASS_F64_MINUS_LN2_LO), t);
    return f64x8_exp_poly(t);
}

/* exp(x) over the whole double range: scalef(p, n) = p * 2^n rounded once, so subnormal results
 * underflow gradually and n = 1024 with p < 1 stays finite. x is clamped to [-746, 710] (max(c, x) and
 * min(c, x) keep a NaN x) only so that +-inf and huge x do not make t = inf - inf. */
TWOPASS_INLINE __m512d f64x8_exp(__m512d x)
{
    x = _mm512_max_pd(_mm512_set1_pd(TWOPASS_F64_EXP_X_MIN), x);
    x = _mm512_min_pd(_mm512_set1_pd(TWOPASS_F64_EXP_X_MAX), x);
    __m512d n;
    const __m512d p = f64x8_exp_reduce(x, &n);
    return _mm512_scalef_pd(p, n);
}

/* Extended exponent: exp(x) = p * 2^n with p in [0.707, 1.415] and n an integer kept as a double, so
 * no x overflows or underflows. x is clamped at TWOPASS_F64_EXTEXP_X_MIN (max(c, x) keeps a NaN x);
 * +inf gives a NaN p, as in float32. */
TWOPASS_INLINE __m512d f64x8_extexp(__m512d x, __m512d* n)
{
    x = _mm512_max_pd(_mm512_set1_pd(TWOPASS_F64_EXTEXP_X_MIN), x);
    return f64x8_exp_reduce(x, n);
}

/* exp(x - shift) * 2^-exponent, the caller's split of exp(x - max) (kernels.h): u = x - shift is
 * exact for every element that matters, clamped like an extended-exponent input; results below
 * 2^-1022 are flushed to 0. */
TWOPASS_INLINE __m512d f64x8_exp_shifted(__m512d x, __m512d shift, __m512d exponent)
{
    __m512d n;
    const __m512d p = f64x8_extexp(_mm512_sub_pd(x, shift), &n);
    return f64x8_mul_exp2(p, _mm512_sub_pd(n, exponent));
}

/* exp(x - shift) * 2^-exponent * scale: the float32 cores fold the scale into their polynomial; here
 * it is one multiply. */
TWOPASS_INLINE __m512d f64x8_exp_shifted_scaled(__m512d x, __m512d shift, __m512d exponent, __m512d scale)
{
    return _mm512_mul_pd(f64x8_exp_shifted(x, shift, exponent), scale);
}

/* Mask of the first `rem` lanes, 0 < rem < 8 (plain C: _cvtu32_mask8 is AVX512DQ). */
TWOPASS_INLINE __mmask8 f64x8_tail_mask(size_t rem)
{
    return (__mmask8)((1u << rem) - 1u);
}

#endif /* TWOPASS_F64_EXP_AVX512F_H */
