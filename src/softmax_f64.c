/* The float64 drivers: src/softmax_template.h, the same source as float32's (softmax.c), with
 * float64's kernels and limits (common.h). Baseline x86-64 code. */
#define _GNU_SOURCE /* M_LN2 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include "twopass/common.h"
#include "twopass/softmax.h"

#define TP_T double
#define TP_E double
#define TP_E_ISNAN(e) isnan(e)
#define TP_E_ISFINITE(e) isfinite(e)
#define TP_E_ONE 1.0
#define TP_E_ZERO 0.0
#define TP_E_NAN NAN
#define TP_F64 1
#define TP_KERNELS struct twopass_f64_kernels
#define TP_PUB(name, suffix) twopass_##name##_f64##suffix
#define TP_EXPONENT_LIMIT TWOPASS_F64_EXTEXP_EXPONENT_LIMIT
#define TP_SHIFT_LIMIT TWOPASS_F64_EXP_SHIFT_LIMIT
#define TP_MAX DBL_MAX
#define TP_MIN DBL_MIN
#define TP_FABS fabs
#include "softmax_template.h"
