/* exp cores and horizontal reductions on 8 floats with AVX2 + FMA. Included only by files compiled with -mavx2 -mfma.
 * AVX2 has no scalef: powers of two are built in the exponent field (PAPER.md). */
#ifndef TWOPASS_F32_EXP_AVX2_H
#define TWOPASS_F32_EXP_AVX2_H

#include <immintrin.h>
#include "twopass/common.h"

/* 2^d for integral d in [-127, 0]: d + 0x1.8000FEp23 holds d + 127 in its low mantissa bits, and a
 * left shift by 23 moves them into the exponent field. Exact for d >= -126, +0.0 at d = -127. */
TWOPASS_INLINE __m256 f32x8_exp2_small(__m256 d)
{
    const __m256 biased = _mm256_add_ps(d, _mm256_set1_ps(0x1.8000FEp23f));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(biased), 23));
}

/* v * 2^d for integral d <= 0 (or NaN), with d < -126 flushed to 0: the factor 2^d is then always a
 * normal float, so subnormals (slow on x86) arise only where v * 2^-126 itself is one (v < 1). A
 * NaN d is only ever paired with a NaN v, so the product stays NaN. */
TWOPASS_INLINE __m256 f32x8_mul_exp2(__m256 v, __m256 d)
{
    return _mm256_mul_ps(v, f32x8_exp2_small(_mm256_max_ps(d, _mm256_set1_ps(-127.0f))));
}

/* e^t ~ 1 + t*(c1 + t*(c2 + t*(c3 + t*(c4 + t*c5)))) on |t| <= ln2/2, Horner with FMA. */
TWOPASS_INLINE __m256 f32x8_exp_poly(__m256 t)
{
    __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(TWOPASS_F32_EXP_C5), t, _mm256_set1_ps(TWOPASS_F32_EXP_C4));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(TWOPASS_F32_EXP_C3));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(TWOPASS_F32_EXP_C2));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(TWOPASS_F32_EXP_C1));
    return _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.0f));
}

/* n = round(x * log2(e)); t = x - n * ln2 by Cody-Waite with two FMA steps; returns e^t. */
TWOPASS_INLINE __m256 f32x8_exp_reduce(__m256 x, __m256* n)
{
    *n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(TWOPASS_F32_LOG2E)),
                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 t = _mm256_fmadd_ps(*n, _mm256_set1_ps(TWOPASS_F32_MINUS_LN2_HI), x);
    t = _mm256_fmadd_ps(*n, _mm256_set1_ps(TWOPASS_F32_LN2_LO), t);
    return f32x8_exp_poly(t);
}

/* Extended exponent: exp(x) = p * 2^n, x clamped at TWOPASS_F32_EXTEXP_X_MIN (max(c, x) keeps NaN). */
TWOPASS_INLINE __m256 f32x8_extexp(__m256 x, __m256* n)
{
    x = _mm256_max_ps(_mm256_set1_ps(TWOPASS_F32_EXTEXP_X_MIN), x);
    return f32x8_exp_reduce(x, n);
}

/* exp(x - shift) * 2^-exponent, the caller's split of exp(x - max) (kernels.h): u = x - shift is
 * exact for every element that matters; results below 2^-126 are flushed to 0. */
TWOPASS_INLINE __m256 f32x8_exp_shifted(__m256 x, __m256 shift, __m256 exponent)
{
    __m256 n;
    const __m256 p = f32x8_extexp(_mm256_sub_ps(x, shift), &n);
    return f32x8_mul_exp2(p, _mm256_sub_ps(n, exponent));
}

/* The largest lane and the sum of the lanes (added pairwise: upper half + lower half, ...). */
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

/* Lane mask (all ones in the first `rem` lanes) for maskload/maskstore and blends, 0 < rem < 8. */
TWOPASS_INLINE __m256i f32x8_tail_mask(size_t rem)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

#endif /* TWOPASS_F32_EXP_AVX2_H */
