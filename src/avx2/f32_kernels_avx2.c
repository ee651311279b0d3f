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
#define T_MIN FLT_MIN
#define VEC __m256
#define VLEN 8
#define V(op) _mm256_##op##_ps
#define EXP(name) f32x8_##name
#define ALL_LANES _mm256_set1_epi32(-1)
#define HMAX hmax_f32x8
#define EXP_MAGIC TWOPASS_F32_EXP_MAGIC
#define EXP_BIAS TWOPASS_F32_EXP_BIAS
#define HSUM hsum_f32x8

#include "kernels_avx2.h"

#define TP_T float
#define TP_RNAME TWOPASS_F32_RNAME
#define TP_VNAME TWOPASS_F32_VNAME
#define TP_NNAME TWOPASS_F32_NNAME
#include "../instantiate.h"
TWOPASS_F32_AVX2_KERNELS(DEFINE_R, DEFINE_V, DEFINE_N)
