/* float64 exp cores on 4 doubles with AVX2 + FMA. Included only by files compiled with -mavx2 -mfma.
 * The same structure as f32_exp_avx2.h: exp(x) = 2^n * e^t with n = round(x * log2(e)), t = x - n*ln2
 * (Cody-Waite, two FMA steps), e^t by a polynomial, powers of two built in the exponent field
 * (AVX2 has no scalef). Accuracy, measured by benchmarks/exp64_check.c: < 1 ULP (see the budget at
 * f64x4_exp_poly).
 */
#ifndef TWOPASS_F64_EXP_AVX2_H
#define TWOPASS_F64_EXP_AVX2_H

#include <immintrin.h>
#include "twopass/common.h"

/* Constants, and the error budget of the reduction and polynomial: twopass/common.h. */

/* 2^d for integral d in [-1023, 1024]: d + 0x1.8p52 + 1023 holds d + 1023 in its low mantissa bits,
 * and a left shift by 52 moves them into the exponent field. Exact for d in [-1022, 1023]; +0.0 at
 * d = -1023 and +inf at d = 1024. */
TWOPASS_INLINE __m256d f64x4_exp2_small(__m256d d)
{
    const __m256d biased = _mm256_add_pd(d, _mm256_set1_pd(0x1.80000000003FFp52));
    return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_castpd_si256(biased), 52));
}

/* v * 2^d for integral d <= 1023 (or NaN; raddextexp's terms reach d = 65), with d < -1022 flushed to
 * 0: the factor 2^d is then always a normal double, so subnormals (slow on x86) arise only where
 * v * 2^-1022 itself is one (v < 1). A NaN d is only ever paired with a NaN v, so the product stays
 * NaN. */
TWOPASS_INLINE __m256d f64x4_mul_exp2(__m256d v, __m256d d)
{
    return _mm256_mul_pd(v, f64x4_exp2_small(_mm256_max_pd(d, _mm256_set1_pd(-1023.0))));
}

/* e^t ~ 1 + (t + t^2 * Q(t)), Q(t) = C2 + t*(C3 + ... + t*C11) by Horner with FMA, on |t| <= 0.3468.
 * Error budget, in ULPs of the result (which lies in [0.707, 1.415]): the polynomial 0.034; the
 * rounding of t 0.2; of u = t + t^2*Q (|u| < 0.415) 0.2; of t^2 and Q, scaled by t^2 <= 0.12, 0.1;
 * the final 1 + u 0.5. At most about 1.03 in the worst case, measured 0.999 over 1e8 samples. (A
 * compensated tail, t and 1 + t carried as double-doubles, measured 0.77 but cost 20-35% in L1.) */
TWOPASS_INLINE __m256d f64x4_exp_poly(__m256d t)
{
    __m256d q = _mm256_fmadd_pd(_mm256_set1_pd(TWOPASS_F64_EXP_C11), t, _mm256_set1_pd(TWOPASS_F64_EXP_C10));
    q = _mm256_fmadd_pd(q, t, _mm256_set1_pd(TWOPASS_F64_EXP_C9));
    q = _mm256_fmadd_pd(q, t, _mm256_set1_pd(TWOPASS_F64_EXP_C8));
    q = _mm256_fmadd_pd(q, t, _mm256_set1_pd(TWOPASS_F64_EXP_C7));
    q = _mm256_fmadd_pd(q, t, _mm256_set1_pd(TWOPASS_F64_EXP_C6));
    q = _mm256_fmadd_pd(q, t, _mm256_set1_pd(TWOPASS_F64_EXP_C5));
    q = _mm256_fmadd_pd(q, t, _mm256_set1_pd(TWOPASS_F64_EXP_C4));
    q = _mm256_fmadd_pd(q, t, _mm256_set1_pd(TWOPASS_F64_EXP_C3));
    q = _mm256_fmadd_pd(q, t, _mm256_set1_pd(TWOPASS_F64_EXP_C2));
    const __m256d u = _mm256_fmadd_pd(_mm256_mul_pd(t, t), q, t);
    return _mm256_add_pd(u, _mm256_set1_pd(1.0));
}

/* n = round(x * log2(e)); t = x - n * ln2 by Cody-Waite with two FMA steps; returns e^t. */
TWOPASS_INLINE __m256d f64x4_exp_reduce(__m256d x, __m256d* n)
{
    *n = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(TWOPASS_F64_LOG2E)),
                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d t = _mm256_fmadd_pd(*n, _mm256_set1_pd(TWOPASS_F64_MINUS_LN2_HI), x);
    t = _mm256_fmadd_pd(*n, _mm256_set1_pd(TWOPASS_F64_MINUS_LN2_LO), t);
    return f64x4_exp_poly(t);
}

/* exp(x) over the whole double range: 0 below about -745.13, subnormal results rounded once
 * (gradual underflow), +inf above about 709.78, NaN for NaN. x is clamped to [-746, 710] (max(c, x)
 * and min(c, x) keep a NaN x); n in [-1076, 1024] is then split as a + b with a = floor(n/2), so both
 * 2^a and 2^b are normal and p * 2^a is exact: the one rounding is in the product with 2^b. */
TWOPASS_INLINE __m256d f64x4_exp(__m256d x)
{
    x = _mm256_max_pd(_mm256_set1_pd(TWOPASS_F64_EXP_X_MIN), x);
    x = _mm256_min_pd(_mm256_set1_pd(TWOPASS_F64_EXP_X_MAX), x);
    __m256d n;
    const __m256d p = f64x4_exp_reduce(x, &n);
    const __m256d a = _mm256_round_pd(_mm256_mul_pd(n, _mm256_set1_pd(0.5)), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    const __m256d b = _mm256_sub_pd(n, a);
    return _mm256_mul_pd(_mm256_mul_pd(p, f64x4_exp2_small(a)), f64x4_exp2_small(b));
}

/* Extended exponent: exp(x) = p * 2^n with p in [0.707, 1.415] and n an integer kept as a double, so
 * no x overflows or underflows. x is clamped at TWOPASS_F64_EXTEXP_X_MIN (max(c, x) keeps a NaN x);
 * +inf gives a NaN p, as in float32 (the sums detect the slice by it). */
TWOPASS_INLINE __m256d f64x4_extexp(__m256d x, __m256d* n)
{
    x = _mm256_max_pd(_mm256_set1_pd(TWOPASS_F64_EXTEXP_X_MIN), x);
    return f64x4_exp_reduce(x, n);
}

/* exp(x - shift) * 2^-exponent, the caller's split of exp(x - max) (kernels.h): u = x - shift is
 * exact for every element that matters; results below 2^-1022 are flushed to 0. */
TWOPASS_INLINE __m256d f64x4_exp_shifted(__m256d x, __m256d shift, __m256d exponent)
{
    __m256d n;
    const __m256d p = f64x4_extexp(_mm256_sub_pd(x, shift), &n);
    return f64x4_mul_exp2(p, _mm256_sub_pd(n, exponent));
}

/* exp(x - shift) * 2^-exponent * scale. */
TWOPASS_INLINE __m256d f64x4_exp_shifted_scaled(__m256d x, __m256d shift, __m256d exponent, __m256d scale)
{
    return _mm256_mul_pd(f64x4_exp_shifted(x, shift, exponent), scale);
}

/* exp(u) * 2^-exponent for per-lane constants made once per exponent, as f32x8_exp_times_pow2
 * (raddextexp_impl, kernels_avx2.h): here just the exponent. */
struct f64x4_exp_constants {
    __m256d exponent;
};
TWOPASS_INLINE struct f64x4_exp_constants f64x4_exp_constants(__m256d exponent)
{
    const struct f64x4_exp_constants c = {exponent};
    return c;
}
TWOPASS_INLINE __m256d f64x4_exp_times_pow2(__m256d u, struct f64x4_exp_constants c)
{
    return f64x4_exp_shifted(u, _mm256_setzero_pd(), c.exponent);
}

/* Lane mask (all ones in the first `rem` lanes) for maskload/maskstore and blends, 0 < rem < 4. */
TWOPASS_INLINE __m256i f64x4_tail_mask(size_t rem)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x((long long)rem), _mm256_setr_epi64x(0, 1, 2, 3));
}

#endif /* TWOPASS_F64_EXP_AVX2_H */
