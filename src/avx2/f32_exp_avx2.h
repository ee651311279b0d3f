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

/* The table exp: exp(u) 2^-exponent from a table of eight powers 2^(k/8) and a cubic. u is reduced by
 * m = round(8 u log2e) to t = u - m ln2/8, |t| <= ln2/16 (Cody-Waite, two FMA steps), and with
 * m = 8 j + k, 0 <= k < 8:
 *     exp(u) 2^-exponent = s e^t,   s = 2^D 2^(k/8),   D = j - exponent,
 *     e^t ~ 1 + q,   q = t + C2 t^2 + C3 t^3 (common.h),   result = fma(s, q, s).
 * Seven multiply-class operations per vector against nine for a degree-5 polynomial on |t| <= ln2/2
 * (raddstoreexpminusmax on Zen 3: 6.36 -> 5.65 cycles per vector), and nearer exp: at most 1.135 ULP
 * over every float32 whose exp is normal, 0.04% of them above 1 ULP, against 1.98 and 1.8%
 * (benchmarks/exp_accuracy.py; for |u| near 2^16, where 8 u log2e rounds log2e's error into m and
 * |t| reaches 0.0445, a review measured 1.18). The cubic's relative error is 2.6e-8, each 2^(k/8)
 * rounded to float at most 3.2e-8.
 * m by the magic number: z = fma(u, 8 log2e, 0x1.8p23 + b) (b integral) holds m + b in its low bits
 * while |8 u log2e + b| < 2^22, so z's lowest 3 bits are k, which index the table (vpermd reads only
 * those), and z << 20 puts (m + b - k) / 8 in the exponent field with k in the 3 mantissa bits below
 * it. Each table entry is the float bits of 2^(k/8) minus k << 20, so their integer sum is the float
 * 2^((m + b - k) / 8) 2^(k/8) while it is normal. The two pieces: */

/* q with e^t ~ 1 + q, t = u - m ln2/8. */
TWOPASS_INLINE __m256 f32x8_exp8_q(__m256 u, __m256 m)
{
    __m256 t = _mm256_fmadd_ps(m, _mm256_set1_ps(0.125f * TWOPASS_F32_MINUS_LN2_HI), u);
    t = _mm256_fmadd_ps(m, _mm256_set1_ps(0.125f * TWOPASS_F32_LN2_LO), t);
    const __m256 c2t = _mm256_mul_ps(_mm256_fmadd_ps(_mm256_set1_ps(TWOPASS_F32_EXP8_C3), t,
                                                     _mm256_set1_ps(TWOPASS_F32_EXP8_C2)), t);
    return _mm256_fmadd_ps(c2t, t, t);
}

/* s = 2^D 2^(k/8) for z = 0x1.8p23 + 8 D + k (-126 <= D <= 127, 0 <= k < 8). */
TWOPASS_INLINE __m256 f32x8_exp8_power(__m256 z)
{
    const __m256i table = _mm256_setr_epi32(0x3F800000 - (0 << 20), 0x3F8B95C2 - (1 << 20), 0x3F9837F0 - (2 << 20),
                                            0x3FA5FED7 - (3 << 20), 0x3FB504F3 - (4 << 20), 0x3FC5672A - (5 << 20),
                                            0x3FD744FD - (6 << 20), 0x3FEAC0C7 - (7 << 20));
    const __m256i zi = _mm256_castps_si256(z);
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_slli_epi32(zi, 20), _mm256_permutevar8x32_epi32(table, zi)));
}

/* exp(u) * 2^-exponent by the table exp with b = -8 exponent: D = j - exponent, for per-lane constants
 * made once per exponent (exp_constants): bias = 0x1.8p23 - 8 exponent and the clamp c below. Higher
 * D than 127 wrap into inf and NaN patterns: the drivers' results are at most about 2 (D <= 1),
 * raddextexp's at most 2^66 (D <= 65), and the first try of blocked reload's pass 1 that meets them is
 * redone (softmax_template.h).
 * The clamp u >= c = (exponent - EXP8_CLAMP) ln2 keeps D >= -126: an element at c (and every one
 * below, -inf included) gets D = -126, k = 0 and t ~ -ln2/32, a result 2^-126 e^t < 2^-126 that
 * MXCSR.FTZ (set by every caller of the kernels, softmax.c) makes 0. So every result below 2^-126 is
 * 0, every one above is computed, and s is never subnormal. In float (ln2 rounded: the LN2_HI of the
 * reduction) 8 c log2e - 8 exponent lies within 0.06 of -1008.25 at every integral exponent in
 * [-2^17 - 256, 2^17 + 128] (tests/test_kernels.py checks each: raddextexp's floor below the split's
 * limit, and above it the exponents of two-pass's pass 2, whose sums may exceed the limit by their
 * mantissa's binades, below 2^75), inside the margin of 0.25 to the rounding
 * ties either side. max(c, u) keeps a NaN u, whose t, q and result are NaN; a NaN or infinite
 * exponent makes every result NaN (bias or c NaN or infinite). */
struct f32x8_exp_constants {
    __m256 bias, lowest;
};
TWOPASS_INLINE struct f32x8_exp_constants f32x8_exp_constants(__m256 exponent)
{
    const struct f32x8_exp_constants c = {
        _mm256_fmadd_ps(exponent, _mm256_set1_ps(-8.0f), _mm256_set1_ps(TWOPASS_F32_MAGIC)), /* exact */
        _mm256_mul_ps(_mm256_sub_ps(exponent, _mm256_set1_ps(TWOPASS_F32_EXP8_CLAMP)), _mm256_set1_ps(-TWOPASS_F32_MINUS_LN2_HI))};
    return c;
}
TWOPASS_INLINE __m256 f32x8_exp_times_pow2(__m256 u, struct f32x8_exp_constants c)
{
    u = _mm256_max_ps(c.lowest, u);
    const __m256 z = _mm256_fmadd_ps(u, _mm256_set1_ps(8.0f * TWOPASS_F32_LOG2E), c.bias);
    const __m256 q = f32x8_exp8_q(u, _mm256_sub_ps(z, c.bias));
    const __m256 s = f32x8_exp8_power(z);
    return _mm256_fmadd_ps(s, q, s);
}

/* exp(x - shift) * 2^-exponent, the caller's split of exp(x - max) (kernels.h): u = x - shift is exact
 * for every element that matters. Two-pass runs it with shift 0: its pass 1 (raddextexp) with one
 * exponent per lane, pass 2 with the sum's, so each x gets the same m, t and q in both and the
 * outputs follow the sum. */
TWOPASS_INLINE __m256 f32x8_exp_shifted(__m256 x, __m256 shift, __m256 exponent)
{
    return f32x8_exp_times_pow2(_mm256_sub_ps(x, shift), f32x8_exp_constants(exponent));
}

/* The same times scale, rounded once more (as the float64 core does): 2.12 ULP at scale 0.7391 on the
 * sample of tests/test_kernels.py (the degree-5 polynomial with the scale folded into its coefficients:
 * 2.28). Where scale is the constant 1 the compiler drops the multiply. */
TWOPASS_INLINE __m256 f32x8_exp_shifted_scaled(__m256 x, __m256 shift, __m256 exponent, __m256 scale)
{
    return _mm256_mul_ps(f32x8_exp_shifted(x, shift, exponent), scale);
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
