/* float32 softmax passes for AVX-512F: the templates of kernels_avx512f.h on 16-float vectors with
 * the float32 exp of f32_exp_avx512f.h (results below 2^-126 flush to 0 under MXCSR.FTZ). Compiled with
 * -mavx512f -mfma; nothing here runs unless the dispatcher found AVX-512F and OS support for ZMM
 * state. TWOPASS_F32_AVX512F_KERNELS in kernels.h lists the instances.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include "twopass/kernels.h"
#include "f32_arith_avx512f.h"

#include "kernels_avx512f.h"

#define TP_T float
#define TP_RNAME TWOPASS_F32_RNAME
#define TP_VNAME TWOPASS_F32_VNAME
#define TP_NNAME TWOPASS_F32_NNAME
#include "../instantiate.h"
TWOPASS_F32_AVX512F_KERNELS(DEFINE_R, DEFINE_V, DEFINE_N)
