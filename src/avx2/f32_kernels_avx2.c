/* float32 softmax passes for AVX2 + FMA: the templates of kernels_avx2.h on 8-float vectors with
 * the float32 exp of f32_exp_avx2.h (powers of two below 2^-126 flush to 0). Compiled with -mavx2
 * -mfma; nothing here runs unless the dispatcher found AVX2, FMA and OS support for YMM state.
 * TWOPASS_F32_AVX2_KERNELS in kernels.h lists the instances.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include "twopass/kernels.h"
#include "f32_arith_avx2.h"

#include "kernels_avx2.h"

#define TP_T float
#define TP_RNAME TWOPASS_F32_RNAME
#define TP_VNAME TWOPASS_F32_VNAME
#define TP_NNAME TWOPASS_F32_NNAME
#include "../instantiate.h"
TWOPASS_F32_AVX2_KERNELS(DEFINE_R, DEFINE_V, DEFINE_N)
