/* float32 softmax passes for AVX2 + FMA: the templates of kernels_avx2.h on 8-float vectors with
 * the float32 exp of f32_exp_avx2.h (powers of two below 2^-126 flush to 0). Compiled with -mavx2
 * -mfma; nothing here runs unless the dispatcher found AVX2, FMA and OS support for YMM state.
 * TWOPASS_F32_AVX2_KERNELS in kernels.h lists the instances.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include "twopass/kernels.h"
#include "f32_exp_avx2.h"

#define T float
#define T_MAX FLT_MAX
#define VEC __m256
#define VLEN 8
#define V(op) _mm256_##op##_ps
#define EXP(name) f32x8_##name
#define ALL_LANES _mm256_set1_epi32(-1)
#define HMAX hmax_f32x8
#define HSUM hsum_f32x8

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

#include "kernels_avx2.h"

#define TP_T float
#define TP_RNAME TWOPASS_F32_RNAME
#define TP_VNAME TWOPASS_F32_VNAME
#define TP_NNAME TWOPASS_F32_NNAME
#include "../instantiate.h"
TWOPASS_F32_AVX2_KERNELS(DEFINE_R, DEFINE_V, DEFINE_N)
