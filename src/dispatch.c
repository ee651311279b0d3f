/* The registry of every compiled kernel variant and the kernel table of each ISA level, built from
 * the lists in kernels.h (one list per dtype: the first variant listed for an op and ISA is the
 * default). One source for every dtype: dispatch_template.h, included once per dtype.
 * Baseline x86-64 code: it only takes the kernels' addresses, it never runs them. */
#include <string.h>
#include "twopass/softmax.h"

#define TWOPASS_LEVEL_OF_avx512f TWOPASS_LEVEL_AVX512F
#define TWOPASS_LEVEL_OF_avx2 TWOPASS_LEVEL_AVX2
#define TWOPASS_STR(x) #x
#define TWOPASS_XSTR(x) TWOPASS_STR(x)

#define TD_KERNELS TWOPASS_F32_KERNELS
#define TD_OPS TWOPASS_F32_OPS
#define TD_RNAME TWOPASS_F32_RNAME
#define TD_VNAME TWOPASS_F32_VNAME
#define TD_NNAME TWOPASS_F32_NNAME
#define TD(a, b) a##_f32_##b
#define TD_TABLE struct twopass_f32_kernels
#define TD_FN(op) twopass_f32_##op##_fn
#include "dispatch_template.h"
#undef TD_KERNELS
#undef TD_OPS
#undef TD_RNAME
#undef TD_VNAME
#undef TD_NNAME
#undef TD
#undef TD_TABLE
#undef TD_FN

#define TD_KERNELS TWOPASS_F64_KERNELS
#define TD_OPS TWOPASS_F64_OPS
#define TD_RNAME TWOPASS_F64_RNAME
#define TD_VNAME TWOPASS_F64_VNAME
#define TD_NNAME TWOPASS_F64_NNAME
#define TD(a, b) a##_f64_##b
#define TD_TABLE struct twopass_f64_kernels
#define TD_FN(op) twopass_f64_##op##_fn
#include "dispatch_template.h"
#undef TD_KERNELS
#undef TD_OPS
#undef TD_RNAME
#undef TD_VNAME
#undef TD_NNAME
#undef TD
#undef TD_TABLE
#undef TD_FN

#define TD_KERNELS TWOPASS_F16_KERNELS
#define TD_OPS TWOPASS_F16_OPS
#define TD_RNAME TWOPASS_F16_RNAME
#define TD_VNAME TWOPASS_F16_VNAME
#define TD_NNAME TWOPASS_F16_NNAME
#define TD(a, b) a##_f16_##b
#define TD_TABLE struct twopass_f16_kernels
#define TD_FN(op) twopass_f16_##op##_fn
#include "dispatch_template.h"
