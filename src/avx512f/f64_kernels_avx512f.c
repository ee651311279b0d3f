/* float64 softmax passes for AVX-512F: the templates of kernels_avx512f.h on 8-double vectors with
 * the float64 exp of f64_exp_avx512f.h (results below 2^-1022 flush to 0 under MXCSR.FTZ). Compiled with
 * -mavx512f -mfma; nothing here runs unless the dispatcher found AVX-512F and OS support for ZMM
 * state. TWOPASS_F64_AVX512F_KERNELS in kernels.h lists the instances.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include "twopass/kernels.h"
#include "f64_exp_avx512f.h"

#define T double
#define T_MAX DBL_MAX
#define VEC __m512d
#define VLEN 8
#define MASK __mmask8
#define ALL_LANES ((__mmask8)0xFF)
#define V(op) _mm512_##op##_pd
#define CMP_MASK(a, b, predicate) _mm512_cmp_pd_mask(a, b, predicate)
#define EXP(name) f64x8_##name

#include "kernels_avx512f.h"

#define TP_T double
#define TP_RNAME TWOPASS_F64_RNAME
#define TP_VNAME TWOPASS_F64_VNAME
#define TP_NNAME TWOPASS_F64_NNAME
#include "../instantiate.h"
TWOPASS_F64_AVX512F_KERNELS(DEFINE_R, DEFINE_V, DEFINE_N)
