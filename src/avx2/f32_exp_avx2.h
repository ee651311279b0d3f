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

/* s * e^t ~ s * (1 + t*(c1 + t*(c2 + t*(c3 + t*(c4 + t*c5))))) on |t| <= ln2/2, Horner with FMA on
 * the coefficients times s. Wherever s is loop-invariant (a power-of-two constant, or a pass's scale)
 * the products are computed once, outside the loop, so s costs no multiply per vector. A power of two
 * scales them exactly; any other s rounds s*c1..s*c5 once each, which moves the result by at most
 * 0.3 ULP (|t c1| <= 0.35, |t^2 c2| <= 0.06, ...: less than the 0.5 ULP of a separate multiply). */
TWOPASS_INLINE __m256 f32x8_exp_poly_times(__m256 t, __m256 s)
{
    __m256 p = _mm256_fmadd_ps(_mm256_mul_ps(s, _mm256_set1_ps(TWOPASS_F32_EXP_C5)), t,
                               _mm256_mul_ps(s, _mm256_set1_ps(TWOPASS_F32_EXP_C4)));
    p = _mm256_fmadd_ps(p, t, _mm256_mul_ps(s, _mm256_set1_ps(TWOPASS_F32_EXP_C3)));
    p = _mm256_fmadd_ps(p, t, _mm256_mul_ps(s, _mm256_set1_ps(TWOPASS_F32_EXP_C2)));
    p = _mm256_fmadd_ps(p, t, _mm256_mul_ps(s, _mm256_set1_ps(TWOPASS_F32_EXP_C1)));
    return _mm256_fmadd_ps(p, t, s);
}

/* t = x - n * ln2 by Cody-Waite with two FMA steps; returns s * e^t. */
TWOPASS_INLINE __m256 f32x8_exp_reduced(__m256 x, __m256 n, __m256 s)
{
    __m256 t = _mm256_fmadd_ps(n, _mm256_set1_ps(TWOPASS_F32_MINUS_LN2_HI), x);
    t = _mm256_fmadd_ps(n, _mm256_set1_ps(TWOPASS_F32_LN2_LO), t);
    return f32x8_exp_poly_times(t, s);
}

/* Extended exponent: exp(x) = p * 2^n, x clamped at TWOPASS_F32_EXTEXP_X_MIN (max(c, x) keeps NaN).
 * n is exact for |x * log2e| < 2^22, far beyond the range where the two-pass result is used
 * (common.h); below, down to the clamp, n is within 1/2 of x * log2e (spacing 1/2) and the term
 * vanishes against the slice's largest one. */
TWOPASS_INLINE __m256 f32x8_extexp(__m256 x, __m256* n)
{
    const __m256 magic = _mm256_set1_ps(TWOPASS_F32_MAGIC);
    x = _mm256_max_ps(_mm256_set1_ps(TWOPASS_F32_EXTEXP_X_MIN), x);
    *n = _mm256_sub_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(TWOPASS_F32_LOG2E), magic), magic);
    return f32x8_exp_reduced(x, *n, _mm256_set1_ps(1.0f));
}

/* The pieces of raddextexp's accumulation (kernels_avx2.h): p2 = 2 e^t (coefficients doubled, exact)
 * and z = n + 0x1.8p23, from which n = z - 0x1.8p23 exactly (as in extexp). */
#define TWOPASS_F32_EXP_MAGIC TWOPASS_F32_MAGIC
#define TWOPASS_F32_EXP_BIAS 126.0f
TWOPASS_INLINE __m256 f32x8_extexp_biased(__m256 x, __m256* z)
{
    const __m256 magic = _mm256_set1_ps(TWOPASS_F32_MAGIC);
    x = _mm256_max_ps(_mm256_set1_ps(TWOPASS_F32_EXTEXP_X_MIN), x);
    *z = _mm256_fmadd_ps(x, _mm256_set1_ps(TWOPASS_F32_LOG2E), magic);
    return f32x8_exp_reduced(x, _mm256_sub_ps(*z, magic), _mm256_set1_ps(2.0f));
}

/* For w = 0x1.8p23 + 126 + d (d integral, <= 128): 2^(d - 1) for d >= -125, +0.0 for d <= -126 (so
 * p2 * 2^(d - 1) = e^t 2^d is never subnormal). w is clamped at d >= -126 (max(w, c) gives c for a NaN
 * w: the NaN p2 that goes with it keeps the product NaN), then d + 126 is shifted into the exponent. */
TWOPASS_INLINE __m256 f32x8_pow2_biased(__m256 w)
{
    const __m256 wc = _mm256_max_ps(w, _mm256_set1_ps(TWOPASS_F32_MAGIC));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(wc), 23));
}

/* exp(x - shift) * 2^-exponent * scale, the caller's split of exp(x - max) (kernels.h) times the
 * pass's scale: u = x - shift is exact for every element that matters. The magic constant carries
 * the bias 126 - exponent, so
 * z = fma(u, log2e, 0x1.8p23 + 126 - exponent) holds d + 126 (d = n - exponent) in its low bits:
 * shifted into the exponent field, it is 2^(d - 1) for d >= -125 and +0.0 for d = -126, and p is
 * taken as 2 scale e^t (exp_poly_times: scale costs no multiply per vector).
 * u is clamped at c = (exponent - 126.25) ln2, so d >= -126 for every element: an element below c
 * would have d <= -126 and gets d = -126 (result 0, as it would have had), and no z falls below
 * 0x1.8p23, whose bits would shift into garbage. That one max is also what keeps |u log2e| + |exponent|
 * + 126 < 2^22 (|exponent| <= 2^17, common.h) and -inf finite. In float (ln2 rounded: the
 * LN2_HI of the reduction), c log2e - exponent stays within 0.007 of -126.25 at every integral
 * |exponent| <= 2^17 (checked one by one), inside the margin of 0.25 to the rounding tie at -126.5.
 * Results whose power of two is below 2^-125 (d <= -126) are flushed to 0; a product p 2^(d - 1)
 * below 2^-126 (p < 1 at d = -125) would still be subnormal, and MXCSR.FTZ, which every caller of
 * the kernels sets (softmax.c), makes it 0.
 * max(c, u) keeps a NaN u, and p (NaN) then makes the product NaN whatever the power of two. One max
 * per vector fewer than clamping u and z apart: 6.65 -> 6.37 cycles per vector in reload's pass 2 on Zen 3. */
TWOPASS_INLINE __m256 f32x8_exp_shifted_scaled(__m256 x, __m256 shift, __m256 exponent, __m256 scale)
{
    const __m256 bias = _mm256_sub_ps(_mm256_set1_ps(TWOPASS_F32_MAGIC + 126.0f), exponent); /* exact */
    const __m256 lowest = /* c */
        _mm256_mul_ps(_mm256_sub_ps(exponent, _mm256_set1_ps(126.25f)), _mm256_set1_ps(-TWOPASS_F32_MINUS_LN2_HI));
    const __m256 u = _mm256_max_ps(lowest, _mm256_sub_ps(x, shift));
    const __m256 z = _mm256_fmadd_ps(u, _mm256_set1_ps(TWOPASS_F32_LOG2E), bias);
    const __m256 p = f32x8_exp_reduced(u, _mm256_sub_ps(z, bias), _mm256_add_ps(scale, scale));
    return _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(z), 23)));
}

TWOPASS_INLINE __m256 f32x8_exp_shifted(__m256 x, __m256 shift, __m256 exponent)
{
    return f32x8_exp_shifted_scaled(x, shift, exponent, _mm256_set1_ps(1.0f));
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
