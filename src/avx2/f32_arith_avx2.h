/* The float32 arithmetic of the AVX2 templates (kernels_avx2.h): 8-float vectors, the float32 exp of
 * f32_exp_avx2.h. Shared by the float32 kernels and the float16 ones, which compute in float32 and
 * differ only in their element type and its loads and stores. */
#include "f32_exp_avx2.h"

#define T float
#define T_MAX FLT_MAX
#define VEC __m256
#define VLEN 8
#define V(op) _mm256_##op##_ps
#define EXP(name) f32x8_##name
#define MASK __m256i /* a lane mask: all bits of a lane set */
#define ALL_LANES _mm256_set1_epi32(-1)
#define HMAX hmax_f32x8
#define EXP_CONSTANTS struct f32x8_exp_constants
#define EXP_LOG2E TWOPASS_F32_LOG2E
#define EXP_LN2 (-TWOPASS_F32_MINUS_LN2_HI)
#define EXTEXP_LIMIT TWOPASS_EXTEXP_EXPONENT_LIMIT
#define HSUM hsum_f32x8
