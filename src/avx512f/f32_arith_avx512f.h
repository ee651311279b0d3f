/* The float32 arithmetic of the AVX-512F templates (kernels_avx512f.h): 16-float vectors, the float32
 * exp of f32_exp_avx512f.h. Shared by the float32 kernels and the float16 ones, which compute in
 * float32 and differ only in their element type and its loads and stores. */
#include "f32_exp_avx512f.h"

#define T float
#define T_MAX FLT_MAX
#define VEC __m512
#define VLEN 16
#define MASK __mmask16
#define ALL_LANES ((__mmask16)0xFFFF)
#define V(op) _mm512_##op##_ps
#define CMP_MASK(a, b, predicate) _mm512_cmp_ps_mask(a, b, predicate)
#define EXP(name) f32x16_##name
#define FOLD_EXPONENT f32x16_fold_exponent /* instantiate.h */
