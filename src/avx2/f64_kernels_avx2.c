/* float64 softmax passes for AVX2 + FMA: the templates of kernels_avx2.h on 4-double vectors with
 * the float64 exp of f64_exp_avx2.h (powers of two below 2^-1022 flush to 0). Compiled with
 * -mavx2 -mfma; nothing here runs unless the dispatcher found AVX2, FMA and OS support for YMM
 * state. TWOPASS_F64_AVX2_KERNELS in kernels.h lists the instances.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include "twopass/kernels.h"
#include "f64_exp_avx2.h"

#define T double
#define T_MAX DBL_MAX
#define VEC __m256d
#define VLEN 4
#define V(op) _mm256_##op##_pd
#define EXP(name) f64x4_##name
#define MASK __m256i
#define ALL_LANES _mm256_set1_epi64x(-1)
#define HMAX hmax_f64x4
#define EXP_CONSTANTS struct f64x4_exp_constants
#define EXP_LOG2E TWOPASS_F64_LOG2E
#define EXP_LN2 (-TWOPASS_F64_MINUS_LN2_HI)
#define EXTEXP_LIMIT TWOPASS_F64_EXTEXP_EXPONENT_LIMIT
#define HSUM hsum_f64x4

TWOPASS_INLINE double hmax_f64x4(__m256d v)
{
    __m128d m = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    m = _mm_max_sd(m, _mm_unpackhi_pd(m, m));
    return _mm_cvtsd_f64(m);
}

TWOPASS_INLINE double hsum_f64x4(__m256d v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

#include "kernels_avx2.h"

#define TP_T double
#define TP_RNAME TWOPASS_F64_RNAME
#define TP_VNAME TWOPASS_F64_VNAME
#define TP_NNAME TWOPASS_F64_NNAME
#include "../instantiate.h"
TWOPASS_F64_AVX2_KERNELS(DEFINE_R, DEFINE_V, DEFINE_N)
