/* exp cores on 16 floats with AVX-512F. Included only by files compiled with -mavx512f. */
#ifndef TWOPASS_F32_EXP_AVX512F_H
#define TWOPASS_F32_EXP_AVX512F_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include "twopass/common.h"

/* s * e^t ~ s * (1 + t*(c1 + t*(c2 + t*(c3 + t*(c4 + t*c5))))) on |t| <= ln2/2, Horner with FMA on the
 * coefficients times s, computed once outside the loops wherever s is loop-invariant: a scale costs
 * no multiply per vector, and rounds s*c1..s*c5 once each (at most 0.3 ULP, less than a multiply's
 * 0.5; as on AVX2). */
TWOPASS_INLINE __m512 f32x16_exp_poly_times(__m512 t, __m512 s)
{
    __m512 p = _mm512_fmadd_ps(_mm512_mul_ps(s, _mm512_set1_ps(TWOPASS_F32_EXP_C5)), t,
                               _mm512_mul_ps(s, _mm512_set1_ps(TWOPASS_F32_EXP_C4)));
    p = _mm512_fmadd_ps(p, t, _mm512_mul_ps(s, _mm512_set1_ps(TWOPASS_F32_EXP_C3)));
    p = _mm512_fmadd_ps(p, t, _mm512_mul_ps(s, _mm512_set1_ps(TWOPASS_F32_EXP_C2)));
    p = _mm512_fmadd_ps(p, t, _mm512_mul_ps(s, _mm512_set1_ps(TWOPASS_F32_EXP_C1)));
    return _mm512_fmadd_ps(p, t, s);
}

/* v * 2^d for integral d <= 0 (or NaN): one VSCALEFPS. A result below 2^-126 is flushed to 0 by
 * MXCSR.FTZ, which every caller of the kernels sets (the drivers, and run_kernel for tests and
 * benchmarks; softmax.c): without it such a result is subnormal, and Intel forms each through a
 * microcode assist (about 40 ns). An explicit flush of d < -126 (a compare, a multiply and a masked
 * VSCALEF) cost 2 of the 12-15 operations per vector of the exp passes (in L1, raddextexp 0.171 and
 * 0.141 ns per element with and without it); FTZ zeroes the same results for |v| < 2, and keeps the
 * normal results of a larger v (a sum's mantissa) that the explicit flush zeroed. NaN v or d gives
 * NaN, d = -inf gives 0 (inf v: NaN). d = +inf is outside: there VSCALEF gives +inf even for a NaN v
 * (its special-case table). The passes never pass it but in one case: only x = +inf has n = +inf, and
 * then the max they subtract is +inf too (rmax keeps NaN, so a NaN elsewhere cannot hide it) and d is
 * NaN; blocked reload's pass 1 runs a block on the exponent so far, where x = +inf gives d = +inf,
 * but its max (or a NaN sum) then sends the slice to reload, which discards that pass. */
TWOPASS_INLINE __m512 f32x16_mul_exp2(__m512 v, __m512 d)
{
    return _mm512_scalef_ps(v, d);
}

/* n = round(x * log2(e)) by the magic number (common.h), as on AVX2; t = x - n * ln2 by Cody-Waite
 * with two FMA steps; returns s * e^t. n is exact for |x * log2e| < 2^22. Below, down to x = -2^22
 * (the callers' clamp; x * log2e = -2^22.53), n is within 1/2 of it and the term is 0 after the
 * scaling. Above (only pass 1 of two-pass sees such x) n and t are inexact, and the block's
 * exponent lies beyond TWOPASS_EXTEXP_EXPONENT_LIMIT (or its sum is NaN), so the slice goes to
 * three-pass (softmax_template.h, extsum_add). One FMA and one subtraction: a multiply and
 * VRNDSCALEPS (2 uops on Intel) took one operation more per vector (of 15 in exp(x - max) then). */
TWOPASS_INLINE __m512 f32x16_exp_reduce(__m512 x, __m512* n, __m512 s)
{
    const __m512 magic = _mm512_set1_ps(TWOPASS_F32_MAGIC);
    *n = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(TWOPASS_F32_LOG2E), magic), magic);
    __m512 t = _mm512_fmadd_ps(*n, _mm512_set1_ps(TWOPASS_F32_MINUS_LN2_HI), x);
    t = _mm512_fmadd_ps(*n, _mm512_set1_ps(TWOPASS_F32_LN2_LO), t);
    return f32x16_exp_poly_times(t, s);
}

/* Extended exponent: s * exp(x) = p * 2^n with p in s * [0.7, 1.42] and n kept as a float, so no x
 * overflows. x is clamped at TWOPASS_F32_EXTEXP_X_MIN (max(c, x) keeps a NaN x). */
TWOPASS_INLINE __m512 f32x16_extexp_times(__m512 x, __m512* n, __m512 s)
{
    x = _mm512_max_ps(_mm512_set1_ps(TWOPASS_F32_EXTEXP_X_MIN), x);
    return f32x16_exp_reduce(x, n, s);
}

TWOPASS_INLINE __m512 f32x16_extexp(__m512 x, __m512* n)
{
    return f32x16_extexp_times(x, n, _mm512_set1_ps(1.0f));
}

/* exp(x - shift) * 2^-exponent * scale, the caller's split of exp(x - max) (kernels.h) times the
 * pass's scale: u = x - shift is exact for every element that matters, clamped like an
 * extended-exponent input; results whose power of two is below 2^-126 are flushed to 0. */
TWOPASS_INLINE __m512 f32x16_exp_shifted_scaled(__m512 x, __m512 shift, __m512 exponent, __m512 scale)
{
    __m512 n;
    const __m512 p = f32x16_extexp_times(_mm512_sub_ps(x, shift), &n, scale);
    return f32x16_mul_exp2(p, _mm512_sub_ps(n, exponent));
}

/* 2^-exponent folded into the scale, for the kernels' shift = 0 instances (instantiate.h): with
 * folded = scale * 2^-exponent, exp_shifted_scaled(x, 0, 0, folded) is exp_shifted_scaled(x, 0,
 * exponent, scale) without the subtraction n - exponent: one operation fewer per vector. The same
 * bits wherever every step of the polynomial times `folded` stays normal: each rounding then scales
 * by the power of two, and VSCALEF forms p' 2^n = p 2^(n - exponent) exactly (or flushes both). The
 * steps lie in [2^-7, 1.42] times the scale (c5 > 2^-7, |t| <= ln2/2), hence both the scale (for
 * the instance that does not fold) and folded in [2^-119, 2^126]; returns 0 (no fold) outside that,
 * for a NaN scale, and for an exponent that is not an integer whose power of two is a normal float.
 * The drivers' scales, 1 and 1 / sum, always qualify. */
TWOPASS_INLINE int f32x16_fold_exponent(float exponent, float scale, float* folded)
{
    if (!(exponent >= -126.0f && exponent <= 126.0f) || exponent != (float)(int)exponent) return 0;
    if (!(scale >= 0x1.0p-119f && scale <= 0x1.0p126f)) return 0;
    const uint32_t bits = (uint32_t)(127 - (int)exponent) << 23; /* 2^-exponent, exact */
    float power;
    memcpy(&power, &bits, sizeof power);
    *folded = scale * power; /* exact, or out of the range below */
    return *folded >= 0x1.0p-119f && *folded <= 0x1.0p126f;
}

TWOPASS_INLINE __m512 f32x16_exp_shifted(__m512 x, __m512 shift, __m512 exponent)
{
    return f32x16_exp_shifted_scaled(x, shift, exponent, _mm512_set1_ps(1.0f));
}

/* Mask of the first `rem` lanes, 0 < rem < 16. */
TWOPASS_INLINE __mmask16 f32x16_tail_mask(size_t rem)
{
    return _cvtu32_mask16((1u << rem) - 1u);
}

#endif /* TWOPASS_F32_EXP_AVX512F_H */
